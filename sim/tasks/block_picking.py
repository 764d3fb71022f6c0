"""Block picking: grasp a cube from the table and lift it."""
from __future__ import annotations

import numpy as np

from equimanip.sim.experts import BlockPickingExpert
from equimanip.sim.tasks.base import Task, sample_xy, sample_yaw, upright_pose7
from equimanip.sim.world import PandaWorld

BLOCK_SIZE = 0.04  # m, edge of the cube
BLOCK_MASS = 0.1  # kg
BLOCK_RGBA = (0.85, 0.2, 0.15, 1.0)
# Friction 1.0 against the rubber-like fingers (PyBullet multiplies the two coefficients) and 0.5
# against the table, whose default coefficient is 0.5.
BLOCK_FRICTION = 1.0
LIFT_HEIGHT = 0.08  # m the block's bottom must rise above the table


class BlockPickingTask(Task):
    """Lift a 4 cm cube at least 8 cm off the table.

    object_poses rows: 0 = block (centre of the cube; yaw meaningful modulo pi/2).
    """

    name = "block_picking"
    max_steps = 100
    object_names = ("block",)

    def build(self, world: PandaWorld) -> None:
        half = BLOCK_SIZE / 2.0
        self.block = world.create_box((half, half, half), (0.5, 0.0, half), mass=BLOCK_MASS, rgba=BLOCK_RGBA,
                                      lateral_friction=BLOCK_FRICTION)

    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        xy = sample_xy(rng, margin=0.03)
        world.set_body_pose(self.block, upright_pose7([*xy, BLOCK_SIZE / 2.0], sample_yaw(rng)))

    def object_poses(self, world: PandaWorld) -> np.ndarray:
        return world.body_pose(self.block)[None, :]

    def success(self, world: PandaWorld) -> bool:
        bottom = world.body_pose(self.block)[2] - BLOCK_SIZE / 2.0
        return bool(bottom >= LIFT_HEIGHT)

    def make_expert(self) -> BlockPickingExpert:
        return BlockPickingExpert(block_size=BLOCK_SIZE, lift_height=LIFT_HEIGHT)
