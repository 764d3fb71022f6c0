"""Diagnostic: which part of the input standardisation breaks plain BC on block_picking?

(It was the gripper aperture: `--raw aperture`. Since then the aperture is left raw by default,
bc.RAW_ENTRIES; this script starts from every entry standardised, the earlier default.)

BC trained as `python -m equimanip.learning.bmil_experiments run --method bc` trains it (same
demonstrations, side camera, evaluation protocol), with the standardisation of some entries of
the object-centric state left out (their shift 0, scale 1). Prints the success in distribution,
from perturbed starts and on rotated scenes; appends no results row. docs/imitation.md quotes it.

    python scripts/bc_input_scaling.py --task block_picking --seed 0 --raw sizes
"""
from __future__ import annotations

import argparse
import json

import torch

from equimanip.learning import bc
from equimanip.learning import bmil_experiments as experiments

# Entry groups of the object-centric state, by the last part of their names (symmetry layout).
GROUPS = {"sizes": ("long", "short", "height"), "offsets": ("dx", "dy", "dz"), "present": ("present",),
          "gripper": ("gripper_aperture", "ee_height"), "aperture": ("gripper_aperture",), "height": ("ee_height",),
          "none": ()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="block_picking", choices=("block_picking", "block_pushing"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=10)
    parser.add_argument("--raw", choices=sorted(GROUPS), default="sizes", help="entries fed unstandardised")
    parser.add_argument("--episodes", type=int, default=100, help="perturbed episodes (50 in distribution, 48 rotated)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    standardise = bc.input_standardisation
    leave = GROUPS[args.raw]

    def partly(layout, features, keep_raw=()):
        shift, scale = standardise(layout, features, keep_raw)
        for f in layout.fields:
            for name in f.names:
                if name.split(".")[-1] in leave:
                    i = layout.index(name)
                    shift[i], scale[i] = 0.0, 1.0
        return shift, scale

    bc.input_standardisation = partly          # policy_spec reads it from the module
    data = experiments.demonstrations(args.task, args.seed, args.demos)
    # From every entry standardised (the default before this diagnostic found the aperture).
    policy, _ = bc.train_bc(data, bc.BCConfig(seed=args.seed, standardise_aperture=True), progress=True)
    success = experiments.evaluate(policy, args.task, args.episodes, 50, 48)
    print(json.dumps({"task": args.task, "seed": args.seed, "demos": args.demos, "raw": args.raw, **success}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
