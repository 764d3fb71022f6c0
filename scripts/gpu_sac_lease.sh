#!/bin/bash
# Several `equimanip train sac` runs side by side on a lent GPU machine, one process each, packed
# for the trip back. Every run ends with its final evaluation before the lease does.
#
#   scripts/gpu_sac_lease.sh "pick_side_c8_s0 --task block_picking --group c8 --seed 0" \
#                            "pick_side_c8_s1 --task block_picking --group c8 --seed 1" ...
#
# Each argument is a run's name (its folder under runs/gpu) and its own options; COMMON (below)
# goes before them. In the device call: carry .gpu (scripts/gpu_site_packages.sh builds it) and
# give the call a timeout a little above LIMIT. Environment:
#   COMMON    options for every run (default: the paper network on CUDA, 20 demos, 5,000 steps,
#             evaluations every 1,000 steps on 20 validation scenes, 50 test scenes at the end)
#   TL        --time-limit in minutes (default 7.6: training stops then, the final evaluations of
#             the last policy and best.pt take about a minute with three runs sharing the GPU)
#   LIMIT     seconds after which a run is interrupted whatever it is doing (default 575)
#   KEEP      checkpoints to bring back, per run (default "best last"; 10.5 MB each at the paper
#             size: the call brings back 8 files, 64 MiB in all)
# What comes back in $OUT: machine.txt, gpu_runs.tgz (every run's log, CSVs, summary and plot,
# refreshed every 20 s, so a cut-off call still returns them) and NAME_best.pt / NAME_last.pt.
# A run stopped by the lease continues with `train sac --resume --out runs/gpu/NAME` on the same
# warm machine, or anywhere its folder is (`--device cpu` on a machine without a GPU).
set -u
cd "$(dirname "$0")/.."
SITE=${SITE-$PWD/.gpu/site312}
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
COMMON=${COMMON:---network paper --device cuda --demos 20 --steps 5000 --eval-every 1000 --eval-episodes 20 --final-eval-episodes 50}
TL=${TL:-7.6}; LIMIT=${LIMIT:-575}; KEEP=${KEEP:-best last}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT" runs/gpu
{ nvidia-smi -L; nproc --all; free -g | head -2; date -u; } | tee "$OUT/machine.txt"
$PY -c "import sys, torch, numpy, escnn, pybullet, gymnasium; print(sys.version.split()[0], torch.__version__, numpy.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/machine.txt" || exit 3

names=()
for spec in "$@"; do
  read -r name options <<< "$spec"
  names+=("$name")
  # shellcheck disable=SC2086 # the options are words
  ( timeout -s INT "$LIMIT" $PY -c 'import sys; from equimanip.cli import main; sys.exit(main())' \
      train sac $COMMON --time-limit "$TL" --out "runs/gpu/$name" --json $options > "runs/gpu/$name.log" 2>&1
    echo "exit $?" >> "runs/gpu/$name.log" ) &
done

pack() {
  tar czf "$OUT/gpu_runs.tgz.tmp" runs/gpu/*.log $(ls runs/gpu/*/{train.csv,eval.csv,summary.json,learning_curve.png} 2>/dev/null) 2>/dev/null
  mv "$OUT/gpu_runs.tgz.tmp" "$OUT/gpu_runs.tgz"
}
t0=$(date +%s)
while [ -n "$(jobs -r)" ]; do
  sleep 20; pack
  echo "t=$(( $(date +%s) - t0 ))s GPU $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  for name in "${names[@]}"; do
    f=runs/gpu/$name/train.csv
    [ -f "$f" ] && echo "  $name: step $(tail -1 "$f" | cut -d, -f1), $(tail -1 "$f" | rev | cut -d, -f1 | rev) s"
  done
done
pack
for name in "${names[@]}"; do
  for kind in $KEEP; do
    [ -f "runs/gpu/$name/$kind.pt" ] && cp "runs/gpu/$name/$kind.pt" "$OUT/${name}_$kind.pt"
  done
done
ls -la "$OUT"
for name in "${names[@]}"; do tail -n 2 "runs/gpu/$name.log" | cut -c1-400; done
