"""Scripted experts: state machines that solve each task from what the ROS topics carry.

An expert sees only an :class:`ExpertInput` (end-effector pose, measured gripper aperture and the
ground-truth object poses of the task, in the order the task documents) and returns an action
``[p, dx, dy, dz, dyaw]`` inside ``ACTION_LOW .. ACTION_HIGH``. It never touches PyBullet, so the
same expert drives the simulator through the Python API or through ROS.

Each expert keeps a small phase memory (cleared by :meth:`Expert.reset`) and re-checks the scene
every step: when the state regresses (the block slipped out, the handle was lost) it goes back to
an earlier phase instead of carrying on blindly.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from equimanip.action import ACTION_HIGH, ACTION_LOW, PANDA_FINGER_OPEN_POSITION, gripper_aperture
from equimanip.geometry import wrap_angle, yaw_of_quat_xyzw

# Yaws the hand reaches from everywhere in the workspace without hitting the wrist joint limit
# (the wrist alone spans +-2.97 rad; the base joint's heading eats into it at the workspace corners).
REACHABLE_YAW = math.pi / 2
# Aperture of an empty, fully closed gripper is 0; anything clearly above means an object is held.
EMPTY_GRIP_APERTURE = 0.08


@dataclass(frozen=True)
class ExpertInput:
    ee_pose: np.ndarray  # pose7 of panda_grasptarget in base_link
    gripper_aperture: float  # measured, 0 closed .. 1 open
    object_poses: np.ndarray  # (K, 7), in the task's documented order

    @classmethod
    def from_state(cls, ee_pose, finger_positions, object_poses) -> "ExpertInput":
        """The input from the robot state as the ROS topics carry it (the one way every caller
        builds it): the measured finger joint positions give the aperture."""
        return cls(np.asarray(ee_pose, dtype=np.float64),
                   gripper_aperture(finger_positions, PANDA_FINGER_OPEN_POSITION),
                   np.asarray(object_poses, dtype=np.float64).reshape(-1, 7))

    @property
    def ee_position(self) -> np.ndarray:
        return np.asarray(self.ee_pose[:3], dtype=np.float64)

    @property
    def ee_yaw(self) -> float:
        return yaw_of_quat_xyzw(self.ee_pose[3:])


def closest_symmetric_yaw(object_yaw: float, period: float, current_yaw: float,
                          limit: float = REACHABLE_YAW) -> float:
    """Of the yaws ``object_yaw + k * period`` (the object's and the gripper's symmetries) inside
    [-limit, limit], the one closest to ``current_yaw``."""
    candidates = wrap_angle(object_yaw + period * np.arange(-8, 9))
    candidates = candidates[np.abs(candidates) <= limit + 1e-9]
    return float(candidates[np.argmin(np.abs(wrap_angle(candidates - current_yaw)))])


def move_towards(observation: ExpertInput, position, yaw: float, aperture: float) -> np.ndarray:
    """Action that steps the end-effector towards ``position``/``yaw`` as fast as the limits allow."""
    delta = np.asarray(position, dtype=np.float64) - observation.ee_position
    dyaw = float(wrap_angle(yaw - observation.ee_yaw))
    action = np.concatenate([[aperture], delta, [dyaw]])
    return np.clip(action, ACTION_LOW, ACTION_HIGH)


def hold_still(aperture: float) -> np.ndarray:
    return np.array([aperture, 0.0, 0.0, 0.0, 0.0])


class Expert(abc.ABC):
    """A scripted policy: ``act`` maps an :class:`ExpertInput` to an action."""

    def reset(self) -> None:
        """Forget the phase memory (call at the start of every episode)."""

    @abc.abstractmethod
    def act(self, observation: ExpertInput) -> np.ndarray:
        """The action ``[p, dx, dy, dz, dyaw]`` for this step."""


class ReachExpert(Expert):
    """Moves the open gripper straight to the target point (object row 0), keeping its yaw."""

    def act(self, observation: ExpertInput) -> np.ndarray:
        target = observation.object_poses[0, :3]
        return move_towards(observation, target, observation.ee_yaw, aperture=1.0)


class BlockPickingExpert(Expert):
    """Top-down grasp of a cube (object row 0): align above it, descend, close, lift."""

    APPROACH, DESCEND, CLOSE, LIFT = "approach", "descend", "close", "lift"

    def __init__(self, block_size: float, lift_height: float, approach_clearance: float = 0.05):
        self.block_size = block_size
        self.lift_z = block_size / 2.0 + lift_height + 0.04  # overshoot the success height
        self.approach_clearance = approach_clearance
        self.reset()

    def reset(self) -> None:
        self.phase = self.APPROACH
        self._last_aperture = None

    def act(self, observation: ExpertInput) -> np.ndarray:
        block = observation.object_poses[0]
        ee = observation.ee_position
        grasp_yaw = closest_symmetric_yaw(yaw_of_quat_xyzw(block[3:]), math.pi / 2, observation.ee_yaw)
        xy_error = float(np.linalg.norm(block[:2] - ee[:2]))
        between_fingers = xy_error < 0.02 and abs(block[2] - ee[2]) < 0.02
        holding = between_fingers and observation.gripper_aperture > EMPTY_GRIP_APERTURE

        # Regressions: the block moved away, slipped out, or the fingers closed on nothing.
        if self.phase == self.DESCEND and xy_error > 0.015:
            self.phase = self.APPROACH
        if self.phase == self.CLOSE and not between_fingers:
            self.phase = self.APPROACH
        if self.phase in (self.CLOSE, self.LIFT) and observation.gripper_aperture <= EMPTY_GRIP_APERTURE:
            self.phase = self.APPROACH
        if self.phase == self.LIFT and not holding:
            self.phase = self.APPROACH

        if self.phase == self.APPROACH:
            block_top = block[2] + self.block_size / 2.0
            if xy_error > 0.02 and ee[2] < block_top + 0.02:
                # Too low to pass over the block: rise first so the fingers do not knock it.
                return move_towards(observation, [ee[0], ee[1], block_top + self.approach_clearance], grasp_yaw, 1.0)
            aligned = xy_error < 0.006 and abs(wrap_angle(grasp_yaw - observation.ee_yaw)) < 0.08
            if aligned and observation.gripper_aperture > 0.9:
                self.phase = self.DESCEND
            else:
                return move_towards(observation, [block[0], block[1], block_top + self.approach_clearance],
                                    grasp_yaw, 1.0)

        if self.phase == self.DESCEND:
            if abs(ee[2] - block[2]) < 0.005:
                self.phase = self.CLOSE
                self._last_aperture = None
            else:
                return move_towards(observation, block[:3], grasp_yaw, 1.0)

        if self.phase == self.CLOSE:
            # Squeeze until the fingers stop moving, then lift.
            settled = self._last_aperture is not None and abs(self._last_aperture - observation.gripper_aperture) < 0.01
            self._last_aperture = observation.gripper_aperture
            if not settled:
                return hold_still(0.0)
            self.phase = self.LIFT

        return move_towards(observation, [ee[0], ee[1], self.lift_z], observation.ee_yaw, 0.0)


class BlockPushingExpert(Expert):
    """Pushes a cube (object row 0) onto a goal (object row 1) with the closed gripper.

    The push direction is the line from block to goal; the gripper goes behind the block on that
    line at travel height, descends, and pushes while steering back onto the line. If the block
    turns or slides off the line the gripper lifts and lines up again.
    """

    RISE, APPROACH, DESCEND, PUSH = "rise", "approach", "descend", "push"

    def __init__(self, block_size: float, push_speed: float = 0.03):
        self.block_size = block_size
        half = block_size / 2.0
        # EE to block centre before contact: the closed fingers reach 1.5 cm from the EE along its
        # x axis, plus 1.5 cm of clearance while descending next to the block.
        self.standoff = half + 0.03
        self.travel_z = block_size + 0.03  # fingertips clear the block top
        self.push_z = half
        self.push_speed = push_speed
        self.reset()

    def reset(self) -> None:
        self.phase = self.APPROACH

    def act(self, observation: ExpertInput) -> np.ndarray:
        block, goal = observation.object_poses[0, :3], observation.object_poses[1, :3]
        ee = observation.ee_position
        to_goal = goal[:2] - block[:2]
        direction = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
        # Push with the side of the closed finger pair that faces along the EE x axis: two fingers
        # side by side make a 6 cm wide flat pusher, wider than the block, so it does not spin.
        push_yaw = closest_symmetric_yaw(math.atan2(direction[1], direction[0]), math.pi, observation.ee_yaw)
        offset = ee[:2] - block[:2]
        along = float(offset @ direction)  # negative: behind the block
        across = float(offset @ np.array([-direction[1], direction[0]]))
        behind = -self.standoff - 0.02 < along < -self.block_size / 2.0 and abs(across) < 0.015
        pre_push = block[:2] - direction * self.standoff

        if self.phase == self.PUSH and not behind:
            self.phase = self.RISE
        if self.phase == self.DESCEND and np.linalg.norm(ee[:2] - pre_push) > 0.02:
            self.phase = self.RISE

        if self.phase == self.RISE:
            if ee[2] >= self.travel_z - 0.01:
                self.phase = self.APPROACH
            else:
                return move_towards(observation, [ee[0], ee[1], self.travel_z], push_yaw, 0.0)

        if self.phase == self.APPROACH:
            if np.linalg.norm(ee[:2] - pre_push) < 0.008 and abs(wrap_angle(push_yaw - observation.ee_yaw)) < 0.1:
                self.phase = self.DESCEND
            else:
                return move_towards(observation, [*pre_push, self.travel_z], push_yaw, 0.0)

        if self.phase == self.DESCEND:
            if abs(ee[2] - self.push_z) < 0.006:
                self.phase = self.PUSH
            else:
                return move_towards(observation, [*pre_push, self.push_z], push_yaw, 0.0)

        # Advance along the push line and steer back onto it (the lateral error is removed in one step).
        target = ee[:2] + direction * self.push_speed - across * np.array([-direction[1], direction[0]])
        return move_towards(observation, [*target, self.push_z], push_yaw, 0.0)


class DrawerOpeningExpert(Expert):
    """Opens a drawer by its handle tab (object row 0, yaw = pull direction): grasp the tab from
    above with the fingers closing along the pull direction, then pull."""

    APPROACH, DESCEND, CLOSE, PULL = "approach", "descend", "close", "pull"

    def __init__(self, grasp_height_offset: float = 0.005, approach_clearance: float = 0.06,
                 pull_speed: float = 0.04):
        self.grasp_height_offset = grasp_height_offset
        self.approach_clearance = approach_clearance
        self.pull_speed = pull_speed
        self.reset()

    def reset(self) -> None:
        self.phase = self.APPROACH
        self._last_aperture = None

    def act(self, observation: ExpertInput) -> np.ndarray:
        handle = observation.object_poses[0]
        ee = observation.ee_position
        pull_yaw = yaw_of_quat_xyzw(handle[3:])
        direction = np.array([math.cos(pull_yaw), math.sin(pull_yaw)])
        # The fingers close along the EE y axis, which must point along the pull direction.
        grasp_yaw = closest_symmetric_yaw(pull_yaw - math.pi / 2, math.pi, observation.ee_yaw)
        grasp = handle[:3] + np.array([0.0, 0.0, self.grasp_height_offset])
        xy_error = float(np.linalg.norm(handle[:2] - ee[:2]))
        at_handle = xy_error < 0.015 and abs(ee[2] - grasp[2]) < 0.015

        if self.phase == self.DESCEND and xy_error > 0.012:
            self.phase = self.APPROACH
        if self.phase in (self.CLOSE, self.PULL) and not at_handle:
            self.phase = self.APPROACH
        if self.phase == self.PULL and observation.gripper_aperture <= EMPTY_GRIP_APERTURE:
            self.phase = self.APPROACH

        if self.phase == self.APPROACH:
            above = grasp + np.array([0.0, 0.0, self.approach_clearance])
            if xy_error > 0.015 and ee[2] < above[2] - 0.03:
                # Open and rise straight up first: the fingers may be right next to the tab.
                return move_towards(observation, [ee[0], ee[1], above[2]], grasp_yaw, 1.0)
            aligned = xy_error < 0.005 and abs(wrap_angle(grasp_yaw - observation.ee_yaw)) < 0.08
            if aligned and observation.gripper_aperture > 0.9:
                self.phase = self.DESCEND
            else:
                return move_towards(observation, above, grasp_yaw, 1.0)

        if self.phase == self.DESCEND:
            if abs(ee[2] - grasp[2]) < 0.005:
                self.phase = self.CLOSE
                self._last_aperture = None
            else:
                return move_towards(observation, grasp, grasp_yaw, 1.0)

        if self.phase == self.CLOSE:
            settled = self._last_aperture is not None and abs(self._last_aperture - observation.gripper_aperture) < 0.01
            self._last_aperture = observation.gripper_aperture
            if not settled:
                return hold_still(0.0)
            self.phase = self.PULL

        target = np.concatenate([ee[:2] + direction * self.pull_speed, [grasp[2]]])
        return move_towards(observation, target, grasp_yaw, 0.0)
