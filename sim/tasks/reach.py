"""Reach: bring the gripper to a point in the air."""
from __future__ import annotations

import numpy as np

from equimanip.sim.experts import ReachExpert
from equimanip.sim.tasks.base import Task, sample_xy, sample_yaw, upright_pose7
from equimanip.sim.world import WORKSPACE, PandaWorld

TARGET_RADIUS = 0.015  # radius of the visual marker, m
SUCCESS_DISTANCE = 0.02  # m, EE to target
TARGET_Z_RANGE = (0.05, 0.3)


class ReachTask(Task):
    """Move ``panda_grasptarget`` within 2 cm of a floating visual-only marker.

    object_poses rows: 0 = target (position of the marker; its yaw is random and irrelevant).
    """

    name = "reach"
    max_steps = 50
    object_names = ("target",)

    def build(self, world: PandaWorld) -> None:
        self.target = world.create_sphere_marker(TARGET_RADIUS, WORKSPACE.center, rgba=(0.1, 0.8, 0.2, 1.0))

    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        xy = sample_xy(rng, margin=0.02)
        z = rng.uniform(*TARGET_Z_RANGE)
        world.set_body_pose(self.target, upright_pose7([*xy, z], sample_yaw(rng)))

    def object_poses(self, world: PandaWorld) -> np.ndarray:
        return world.body_pose(self.target)[None, :]

    def success(self, world: PandaWorld) -> bool:
        distance = np.linalg.norm(world.ee_pose()[:3] - world.body_pose(self.target)[:3])
        return bool(distance < SUCCESS_DISTANCE)

    def make_expert(self) -> ReachExpert:
        return ReachExpert()
