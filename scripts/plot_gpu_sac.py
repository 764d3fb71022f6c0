"""Learning curves of the paper-configuration SAC runs on the lent GPUs, from their raw logs.

    python scripts/plot_gpu_sac.py            # writes docs/results/gpu/sac_paper_curves.png

Each run's periodic evaluations (`*_eval.csv`, 20 held-out episodes each) against environment
steps, one line per run: the first lease (default camera, C8 seeds 0-2, the plain CNN, pushing),
the second (the side camera, C8 seeds 0-2) and the third (pushing with prioritized replay and with
the side camera, the plain CNN with the side camera). A run's camera and replay are read from its
name (``side``, ``per``) where its lease mixed them. The results table cannot hold the first lease's
runs (they were stopped before their final evaluations); this plot draws both from the same kind
of file. Where a run's final evaluation exists (50 test episodes), it is marked at its last step.
(The first lease's periodic evaluations played the first 20 test scenes, the second's 20 validation
scenes: see docs/equivariant_sac.md, stop 27.)
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "docs" / "results" / "gpu"
# Each lease's folder and the camera of its runs (None: named per run, ``side`` in the name).
LEASES = (("sac_paper_h200", "default camera"), ("sac_paper_side_h200", "side camera"),
          ("sac_paper_lease3_h200", None))
COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive")


def read_curve(path: Path) -> tuple[list[int], list[float]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [int(float(r["step"])) for r in rows], [float(r["success_rate"]) for r in rows]


def final_evaluation(folder: Path, run: str) -> tuple[int, float] | None:
    """The run's last final evaluation (the latest leg's summary), if it had one."""
    summaries = sorted(folder.glob(f"{run}_summary*.json"))
    if not summaries:
        return None
    summary = json.loads(summaries[-1].read_text())
    return int(summary["steps"]), float(summary["success"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "sac_paper_curves.png")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, task in zip(axes, ("block_picking", "block_pushing")):
        prefix = "pick" if task == "block_picking" else "push"
        lines: dict[str, list[tuple[Path, str]]] = {}     # legend label -> (folder, run) of its lines
        for number, (lease, camera) in enumerate(LEASES, start=1):
            folder = ROOT / lease
            for path in sorted(folder.glob(f"{prefix}_*_eval.csv")):
                run = path.name[: -len("_eval.csv")]
                group = "plain CNN" if "_none_" in run else "C8"
                seen_by = camera or ("side camera" if "_side_" in run else "default camera")
                replay = ", prioritized replay" if "_per_" in run else ""
                lines.setdefault(f"{group}, {seen_by}{replay}, lease {number}", []).append((folder, run))
        for colour, (label, runs) in zip(itertools.cycle(COLOURS), lines.items()):
            colour = "tab:red" if label.startswith("plain CNN") and "lease 1" in label else colour
            seeds = ", ".join(run[-1] for _, run in runs)
            for k, (folder, run) in enumerate(runs):     # one legend entry per label
                ax.plot(*read_curve(folder / f"{run}_eval.csv"),
                        label=f"{label} (seed{'s' * (len(runs) > 1)} {seeds})" if k == 0 else None,
                        color=colour, marker="o", alpha=0.8)
                final = final_evaluation(folder, run)
                if final is not None:
                    ax.plot(*final, marker="*", markersize=12, color=colour, linestyle="none")
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_xlim(0, 5000)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("success (periodic evaluations, 20 episodes; * final, 50)")
    axes[0].set_ylim(-0.02, 1.02)
    fig.suptitle("Equivariant SAC, paper configuration (n_hidden 64, 128 x 128), 20 demos, on a lent NVIDIA H200")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
