"""Drawer opening: pull a drawer out of a small cabinet by its handle tab."""
from __future__ import annotations

import math
import os

import numpy as np

from equimanip.sim.bullet import p
from equimanip.sim.experts import DrawerOpeningExpert
from equimanip.sim.tasks.base import Task, sample_yaw, upright_pose7
from equimanip.sim.world import WORKSPACE, PandaWorld

DRAWER_URDF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "drawer.urdf")
# Handle tab centre in the cabinet frame when the drawer is closed (see drawer.urdf).
HANDLE_OFFSET = np.array([0.0775, 0.0, 0.0925])
DRAWER_TRAVEL = 0.12  # m, joint limit of the slide
SUCCESS_OPENING = 0.10  # m the drawer must be pulled out
# Sliding friction of the drawer (N): a velocity motor with target 0 resists motion with up to
# this force, so the drawer stays put unless pulled.
SLIDE_FRICTION = 5.0
# The handle, closed or fully open, keeps this far inside the workspace edges.
PLACEMENT_MARGIN = 0.02


class DrawerOpeningTask(Task):
    """Open the drawer by at least 10 cm.

    The cabinet stands anywhere on the table facing any direction; it is placed so that the
    handle, both closed and fully pulled out, lies inside the workspace.

    object_poses rows: 0 = handle (centre of the tab; yaw = pull direction),
    1 = cabinet (centre of its footprint on the table; yaw = pull direction). The opening is
    ``(handle - cabinet) . pull_direction - 0.0775``.
    """

    name = "drawer_opening"
    max_steps = 100
    object_names = ("handle", "cabinet")

    def build(self, world: PandaWorld) -> None:
        self.cabinet = world.load_urdf(DRAWER_URDF, fixed_base=True)
        cid = world.client
        joints = {p.getJointInfo(self.cabinet, j, physicsClientId=cid)[1].decode(): j
                  for j in range(p.getNumJoints(self.cabinet, physicsClientId=cid))}
        self.slide_joint = joints["drawer_slide"]
        self.handle_link = joints["handle_mount"]  # a link's index is its parent joint's index
        p.setJointMotorControl2(self.cabinet, self.slide_joint, p.VELOCITY_CONTROL, targetVelocity=0.0,
                                force=SLIDE_FRICTION, physicsClientId=cid)

    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        yaw = sample_yaw(rng)
        pull = np.array([math.cos(yaw), math.sin(yaw)])
        # Handle positions for which both the closed and the fully open handle are in the
        # workspace: the intersection of two boxes, itself a box.
        low = WORKSPACE.low_array[:2] + PLACEMENT_MARGIN
        high = WORKSPACE.high_array[:2] - PLACEMENT_MARGIN
        handle_xy = rng.uniform(np.maximum(low, low - DRAWER_TRAVEL * pull),
                                np.minimum(high, high - DRAWER_TRAVEL * pull))
        cabinet_xy = handle_xy - HANDLE_OFFSET[0] * pull
        world.set_body_pose(self.cabinet, upright_pose7([*cabinet_xy, 0.0], yaw))
        p.resetJointState(self.cabinet, self.slide_joint, 0.0, 0.0, physicsClientId=world.client)

    def opening(self, world: PandaWorld) -> float:
        return float(p.getJointState(self.cabinet, self.slide_joint, physicsClientId=world.client)[0])

    def object_poses(self, world: PandaWorld) -> np.ndarray:
        return np.stack([world.link_pose(self.cabinet, self.handle_link), world.body_pose(self.cabinet)])

    def success(self, world: PandaWorld) -> bool:
        return self.opening(world) >= SUCCESS_OPENING

    def make_expert(self) -> DrawerOpeningExpert:
        return DrawerOpeningExpert()
