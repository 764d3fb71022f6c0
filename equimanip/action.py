"""The action every equimanip controller produces, and its limits.

An action is ``[p, dx, dy, dz, dyaw]`` (the Equivariant SAC layout, REFERENCES section 1):

* ``p``   gripper aperture command, 0 closed .. 1 open;
* ``dx, dy, dz`` end-effector displacement for one control step, metres, in ``base_link`` axes;
* ``dyaw`` rotation of the gripper about the base frame's vertical axis for one step, radians.

Under a rotation of the scene about the vertical axis, (dx, dy) rotates with it (the irrep-1 part
the equivariant networks produce) while p, dz and dyaw are invariant.

On the ROS side an action travels as a geometry_msgs/TwistStamped in m/s and rad/s (MoveIt Servo's
speed units, so the displacement is divided by the control period) plus a std_msgs/Float64
aperture on ``/gripper_command``.
"""
from __future__ import annotations

import math

import numpy as np

ACTION_NAMES = ("p", "dx", "dy", "dz", "dyaw")
ACTION_DIM = len(ACTION_NAMES)
MAX_STEP_M = 0.05
MAX_STEP_YAW = math.pi / 8
ACTION_LOW = np.array([0.0, -MAX_STEP_M, -MAX_STEP_M, -MAX_STEP_M, -MAX_STEP_YAW])
ACTION_HIGH = np.array([1.0, MAX_STEP_M, MAX_STEP_M, MAX_STEP_M, MAX_STEP_YAW])
# What the networks output and learn from: each entry mapped affinely from its limits to [-1, 1].
# (dx, dy) share one scale and have no offset, so a rotation commutes with the map.
ACTION_MID = (ACTION_HIGH + ACTION_LOW) / 2.0
ACTION_HALF_RANGE = (ACTION_HIGH - ACTION_LOW) / 2.0

# The Panda's parallel gripper, which ``p`` drives: its two finger joints and the position of each
# when fully open (2 x 0.04 m between the pads). The simulation uses them; the nodes take them as
# parameter defaults (another robot sets its own).
PANDA_FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
PANDA_FINGER_OPEN_POSITION = 0.04


def clip_action(action) -> tuple[np.ndarray, bool]:
    """Clip an action to the limits. Returns the clipped action and whether anything was clipped.
    Raises ValueError for a wrong shape or a non-finite entry: there is no safe guess for those."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"an action has {ACTION_DIM} entries {ACTION_NAMES}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action has non-finite entries: {a.tolist()}")
    clipped = np.clip(a, ACTION_LOW, ACTION_HIGH)
    return clipped, bool(np.any(clipped != a))


def gripper_aperture(finger_positions, open_position: float) -> float:
    """Measured aperture in [0, 1] of a parallel gripper from its finger joint positions (each
    ``open_position`` when fully open): what ``p`` commands, read back."""
    mean_position = float(np.mean(np.asarray(finger_positions, dtype=np.float64)))
    return float(np.clip(mean_position / open_position, 0.0, 1.0))


def action_to_velocity(action, control_period: float) -> tuple[np.ndarray, float]:
    """Displacement per step -> (linear velocity m/s (3,), yaw rate rad/s)."""
    a = np.asarray(action, dtype=np.float64)
    return a[1:4] / control_period, float(a[4] / control_period)


def velocity_to_delta(linear, yaw_rate: float, control_period: float) -> np.ndarray:
    """(linear velocity m/s, yaw rate rad/s) -> displacement for one step [dx, dy, dz, dyaw]."""
    return np.append(np.asarray(linear, dtype=np.float64), yaw_rate) * control_period


def normalize_action(action) -> np.ndarray:
    """Physical action [p, dx, dy, dz, dyaw] -> the networks' [-1, 1]^5 (float32, any batch shape)."""
    return ((np.asarray(action, dtype=np.float64) - ACTION_MID) / ACTION_HALF_RANGE).astype(np.float32)


def unnormalize_action(u) -> np.ndarray:
    """The networks' [-1, 1]^5 -> physical action (float32, any batch shape)."""
    return (np.asarray(u, dtype=np.float64) * ACTION_HALF_RANGE + ACTION_MID).astype(np.float32)
