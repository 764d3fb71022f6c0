"""Diagnostic: Equivariant SAC on block_pushing with the goal patch 2 cm thick instead of 2 mm.

The patch stays visual only (the block slides through it), so the only change is what the depth
camera sees: a raised square, as equi_rl paints the goal into its heightmaps. With the 2 mm patch
every pushing learner stayed near 0%; this run asks whether seeing the goal is what is missing
(docs/equivariant_sac.md, "block_pushing"). Takes `equimanip train sac`'s arguments:

    python scripts/push_goal_visibility.py --task block_pushing --group c8 --demos 20 --steps 5000 \\
        --seed 0 --eval-every 500 --out runs/diag_push_goal2cm

Not a product setting: the shipped task keeps its 2 mm patch.
"""
import sys

import equimanip.sim.tasks.block_pushing as block_pushing
from equimanip.learning.sac import main

block_pushing.GOAL_THICKNESS = 0.02   # read when the task builds and resets its goal

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
