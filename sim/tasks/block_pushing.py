"""Block pushing: slide a cube onto a goal region on the table."""
from __future__ import annotations

import numpy as np

from equimanip.sim.experts import BlockPushingExpert
from equimanip.sim.tasks.base import Task, sample_xy, sample_yaw, upright_pose7
from equimanip.sim.tasks.block_picking import BLOCK_FRICTION, BLOCK_MASS, BLOCK_RGBA, BLOCK_SIZE
from equimanip.sim.world import PandaWorld

GOAL_HALF_SIZE = 0.05  # m, half edge of the square goal patch
GOAL_THICKNESS = 0.002  # m; visual only, so the block slides over it
GOAL_RGBA = (0.2, 0.75, 0.3, 1.0)
SUCCESS_DISTANCE = 0.05  # m, block centre to goal centre in the table plane
MIN_START_DISTANCE = 0.1  # m, so that every episode needs a real push
# Block and goal keep this far from the workspace edges so that the gripper (which stays in the
# workspace) can get behind the block whatever the push direction.
PLACEMENT_MARGIN = 0.05


class BlockPushingTask(Task):
    """Push a 4 cm cube until its centre is within 5 cm of the goal's centre.

    object_poses rows: 0 = block (cube centre), 1 = goal (centre of the patch on the table; its
    yaw is random and irrelevant).
    """

    name = "block_pushing"
    max_steps = 100
    object_names = ("block", "goal")

    def build(self, world: PandaWorld) -> None:
        half = BLOCK_SIZE / 2.0
        self.block = world.create_box((half, half, half), (0.5, 0.0, half), mass=BLOCK_MASS, rgba=BLOCK_RGBA,
                                      lateral_friction=BLOCK_FRICTION)
        self.goal = world.create_box((GOAL_HALF_SIZE, GOAL_HALF_SIZE, GOAL_THICKNESS / 2.0),
                                     (0.5, 0.0, GOAL_THICKNESS / 2.0), mass=0.0, rgba=GOAL_RGBA, collision=False)

    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        block_xy = sample_xy(rng, PLACEMENT_MARGIN)
        # Rejection sampling in batches: a few candidates are always far enough from the block.
        while True:
            candidates = sample_xy(rng, PLACEMENT_MARGIN, count=16)
            far_enough = np.linalg.norm(candidates - block_xy, axis=1) >= MIN_START_DISTANCE
            if far_enough.any():
                goal_xy = candidates[np.argmax(far_enough)]
                break
        world.set_body_pose(self.block, upright_pose7([*block_xy, BLOCK_SIZE / 2.0], sample_yaw(rng)))
        world.set_body_pose(self.goal, upright_pose7([*goal_xy, GOAL_THICKNESS / 2.0], sample_yaw(rng)))

    def object_poses(self, world: PandaWorld) -> np.ndarray:
        return np.stack([world.body_pose(self.block), world.body_pose(self.goal)])

    def success(self, world: PandaWorld) -> bool:
        block, goal = world.body_pose(self.block), world.body_pose(self.goal)
        return bool(np.linalg.norm(block[:2] - goal[:2]) <= SUCCESS_DISTANCE)

    def make_expert(self) -> BlockPushingExpert:
        return BlockPushingExpert(block_size=BLOCK_SIZE)
