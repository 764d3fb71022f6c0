"""The safety layer between any controller and the arm.

Every command on its way to the arm, from the network, a planner or a human, passes these checks.
They are pure functions (no ROS) so that the simulation node, the policy nodes and the tests share
them. A check either returns a command that is safe to execute or raises ``CommandRejected`` with
one sentence saying why; the caller then holds the arm still and logs that sentence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from equimanip.action import ACTION_DIM, ACTION_NAMES, MAX_STEP_M, MAX_STEP_YAW
from equimanip.geometry import normalize_frame_id, yaw_of_quat_xyzw

# The box the grasp point must stay in (metres, base_link): the simulated cell's, and the default
# of every controller's safety layer (a real cell sets its own through the safety.* parameters).
# The lower z keeps the fingertips (1.1 cm below the grasp point) a few millimetres above the table.
WORKSPACE_LOW = (0.3, -0.2, 0.015)
WORKSPACE_HIGH = (0.7, 0.2, 0.4)
# The gripper's yaw about the vertical stays within +-YAW_LIMIT: the Panda's wrist (+-2.9 rad) cannot
# turn the hand much further, and a parallel gripper's 180-degree symmetry makes +-pi/2 enough for
# any grasp. An arm asked to turn past its wrist's range leaves its commanded path.
YAW_LIMIT = 0.75 * math.pi


class CommandRejected(ValueError):
    """A command that must not reach the arm. The message says what was wrong with it."""


def _finite(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise CommandRejected(f"{what} has non-finite values {arr.tolist()}")
    return arr


@dataclass(frozen=True)
class TwistLimits:
    """Speed limits for Cartesian commands (m/s per axis, rad/s), from the per-step action limits."""
    max_linear: float
    max_yaw_rate: float

    @classmethod
    def for_period(cls, control_period: float) -> "TwistLimits":
        return cls(MAX_STEP_M / control_period, MAX_STEP_YAW / control_period)


def check_twist(linear: Sequence[float], angular: Sequence[float], frame_id: str, base_frame: str,
                limits: TwistLimits) -> tuple[np.ndarray, float, list[str]]:
    """Validate a Cartesian velocity command.

    Returns (linear m/s, yaw rate rad/s, notes) where notes lists what was adjusted (scaled speed,
    ignored roll/pitch rates) for the caller to log.
    """
    if normalize_frame_id(frame_id) not in ("", normalize_frame_id(base_frame)):
        raise CommandRejected(f"twist is in frame '{frame_id}'; only '{base_frame}' is accepted")
    lin = _finite(linear, "twist.linear")
    ang = _finite(angular, "twist.angular")
    notes = []
    # The limit is per axis, like the action box; a faster command is scaled down as a whole so
    # that it keeps its direction (what MoveIt Servo does), never clipped axis by axis.
    fastest = float(np.max(np.abs(lin)))
    if fastest > limits.max_linear:
        lin = lin * (limits.max_linear / fastest)
        notes.append(f"speed {fastest:.4g} m/s along an axis scaled to the limit {limits.max_linear:.4g} m/s "
                     f"{_excess(fastest, limits.max_linear)}")
    yaw_rate = float(ang[2])
    if abs(yaw_rate) > limits.max_yaw_rate:
        notes.append(f"yaw rate {yaw_rate:.4g} rad/s clamped to {limits.max_yaw_rate:.4g} rad/s "
                     f"{_excess(yaw_rate, limits.max_yaw_rate)}")
        yaw_rate = math.copysign(limits.max_yaw_rate, yaw_rate)
    if abs(ang[0]) > 1e-9 or abs(ang[1]) > 1e-9:
        notes.append("roll and pitch rates ignored: the gripper is kept pointing down")
    return lin, yaw_rate, notes


def check_gripper(aperture: float) -> float:
    """A gripper aperture command must be finite and in [0, 1] (0 closed, 1 open)."""
    if not math.isfinite(aperture):
        raise CommandRejected(f"gripper command {aperture} is not finite")
    if not 0.0 <= aperture <= 1.0:
        raise CommandRejected(f"gripper command {aperture} is outside [0, 1] (0 closed .. 1 open)")
    return float(aperture)


@dataclass(frozen=True)
class JointTrajectoryCommand:
    """A validated joint trajectory: joint indices into the arm's joint list, waypoint times (s,
    from the start) and positions (n_points x n_joints)."""
    joint_indices: np.ndarray
    times: np.ndarray
    positions: np.ndarray

    def sample(self, t: float) -> np.ndarray:
        """Positions at time ``t`` after the start, linearly interpolated, held after the end.
        Before the first waypoint the first waypoint is the target (the caller limits the speed)."""
        if t >= self.times[-1]:
            return self.positions[-1]
        return np.array([np.interp(t, self.times, self.positions[:, j])
                         for j in range(self.positions.shape[1])])


def check_trajectory(joint_names: Sequence[str], points: Sequence[tuple[Sequence[float], float]],
                     known_joints: Sequence[str], lower: np.ndarray, upper: np.ndarray
                     ) -> JointTrajectoryCommand:
    """Validate a joint trajectory given as joint names and (positions, time_from_start) points.

    Rejects unknown or repeated joint names, empty trajectories, points whose length does not match
    the names, non-finite values, times that do not increase, and positions outside the joint limits
    (``lower``/``upper`` indexed like ``known_joints``).
    """
    names = list(joint_names)
    if not names:
        raise CommandRejected("trajectory names no joints")
    unknown = [n for n in names if n not in known_joints]
    if unknown:
        raise CommandRejected(f"trajectory names unknown joints {unknown}; known: {list(known_joints)}")
    if len(set(names)) != len(names):
        raise CommandRejected(f"trajectory names a joint twice: {names}")
    if not points:
        raise CommandRejected("trajectory has no points")
    for i, (positions, _) in enumerate(points):
        if len(positions) != len(names):
            raise CommandRejected(
                f"trajectory point {i} has {len(positions)} positions for {len(names)} joints")
    positions = _finite([p for p, _ in points], "trajectory positions")
    times = _finite([t for _, t in points], "trajectory times")
    if np.any(times < 0) or np.any(np.diff(times) <= 0):
        raise CommandRejected(f"trajectory times must be >= 0 and increasing, got {times.tolist()}")
    idx = np.array([list(known_joints).index(n) for n in names])
    lo, hi = np.asarray(lower)[idx], np.asarray(upper)[idx]
    outside = np.any((positions < lo - 1e-6) | (positions > hi + 1e-6), axis=0)
    if np.any(outside):
        bad = [names[j] for j in np.flatnonzero(outside)]
        raise CommandRejected(f"trajectory leaves the joint limits of {bad}")
    return JointTrajectoryCommand(idx, times, positions)


# ------------------------------------------------------------------ the controller-side layer


@dataclass(frozen=True)
class SafetyLimits:
    """What a controller guarantees about every command it sends, whatever the arm does with it:
    the measured grasp point is not driven out of the box [workspace_low, workspace_high], and no
    axis moves faster than max_linear_speed (m/s) or turns faster than max_yaw_rate (rad/s)."""
    workspace_low: tuple = WORKSPACE_LOW
    workspace_high: tuple = WORKSPACE_HIGH
    max_linear_speed: float = MAX_STEP_M / 0.1
    max_yaw_rate: float = MAX_STEP_YAW / 0.1
    max_yaw: float = YAW_LIMIT

    def validate(self) -> "SafetyLimits":
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low) & np.isfinite(high)):
            raise ValueError("the workspace corners need 3 finite numbers each")
        if np.any(low >= high):
            raise ValueError(f"workspace_min {low.tolist()} must be below workspace_max {high.tolist()} on every axis")
        for name in ("max_linear_speed", "max_yaw_rate", "max_yaw"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        return self


@dataclass(frozen=True)
class LimitedAction:
    """An action after the safety layer, and what was reduced (empty: passed unchanged)."""
    action: np.ndarray
    reductions: tuple[str, ...]


def as_action(action) -> np.ndarray:
    """An action as 5 finite float64 numbers, or CommandRejected. Complex numbers, booleans,
    strings and objects are refused, not converted: none of them is an action."""
    try:
        arr = np.asarray(action)
    except Exception as e:  # noqa: BLE001 - ragged lists and the like
        raise CommandRejected(f"an action must be {ACTION_DIM} real numbers, got {type(action).__name__}: "
                              f"{e}") from None
    if arr.dtype.kind not in "fiu":
        raise CommandRejected(f"an action must be real numbers {ACTION_NAMES}, got dtype {arr.dtype}")
    if arr.shape != (ACTION_DIM,):
        raise CommandRejected(f"an action has {ACTION_DIM} entries {ACTION_NAMES}, got shape {arr.shape}")
    return _finite(arr, "action")


def _excess(value: float, limit: float) -> str:
    """How far over its limit a value was, for the log line: a policy whose output is not squashed
    (BC, BMIL) may pass a limit by a hair, which rounded figures alone would show as "3.93 clamped
    to 3.93"."""
    percent = 100 * (abs(value) / limit - 1)
    return f"({percent:.0f}% over)" if percent >= 10 else f"({percent:.2g}% over)"


def limit_action(action, ee_pose, control_period: float, limits: SafetyLimits) -> LimitedAction:
    """The controller-side safety layer for one action ``[p, dx, dy, dz, dyaw]`` (per step), given
    the measured end-effector pose ``[x y z qx qy qz qw]``.

    * non-finite or malformed actions and end-effector positions: CommandRejected (the caller holds
      the arm still);
    * the aperture is clipped to [0, 1];
    * a step faster than ``max_linear_speed`` along any axis is scaled down as a whole, keeping
      its direction (as MoveIt Servo does); the yaw step is clamped to ``max_yaw_rate``;
    * the step is then cut where it would take the measured grasp point out of the workspace box,
      axis by axis, so that a push into a wall slides along it. A grasp point found outside the box
      (an arm that drifted or overshot, or was moved by hand) is sent back towards it on that axis,
      at most at the speed limit, whatever the action asked for there: the box is a virtual wall,
      as the simulation's own target clipping makes it;
    * the yaw likewise stays within +-``max_yaw``.
    """
    a = as_action(action).copy()
    pose = _finite(ee_pose, "end-effector pose")
    if pose.shape != (7,):
        raise CommandRejected(f"end-effector pose needs 7 numbers [x y z qx qy qz qw], got shape {pose.shape}")
    position, yaw = pose[:3], yaw_of_quat_xyzw(pose[3:])
    if not (math.isfinite(control_period) and control_period > 0):
        raise CommandRejected(f"control period must be positive, got {control_period}")
    reductions = []
    if not 0.0 <= a[0] <= 1.0:
        reductions.append(f"aperture {a[0]:.3g} clipped to [0, 1]")
        a[0] = min(max(a[0], 0.0), 1.0)
    # The speed limits, and never more than the action's own per-step limits (a long control
    # period must not turn 0.5 m/s into steps of 10 cm).
    max_step = min(limits.max_linear_speed * control_period, MAX_STEP_M)
    fastest = float(np.max(np.abs(a[1:4])))
    if fastest > max_step:
        a[1:4] *= max_step / fastest
        reductions.append(f"speed {fastest / control_period:.3g} m/s scaled to {max_step / control_period:.3g} m/s "
                          f"{_excess(fastest, max_step)}")
    max_turn = min(limits.max_yaw_rate * control_period, MAX_STEP_YAW)
    if abs(a[4]) > max_turn:
        reductions.append(f"yaw rate {a[4] / control_period:.3g} rad/s clamped to "
                          f"{max_turn / control_period:.3g} rad/s {_excess(a[4], max_turn)}")
        a[4] = math.copysign(max_turn, a[4])
    low = np.asarray(limits.workspace_low, dtype=np.float64)
    high = np.asarray(limits.workspace_high, dtype=np.float64)
    step = np.clip(position + a[1:4], low, high) - position
    step = np.clip(step, -max_step, max_step)      # a way back from far outside: at the speed limit
    if np.any(np.abs(step - a[1:4]) > 1e-12):
        cut = [name for name, s, want in zip(("x", "y", "z"), step, a[1:4]) if abs(s - want) > 1e-12]
        reductions.append(f"step along {'/'.join(cut)} held to the workspace box")
        a[1:4] = step
    turn = min(max(yaw + a[4], -limits.max_yaw), limits.max_yaw) - yaw
    turn = min(max(turn, -max_turn), max_turn)
    if abs(turn - a[4]) > 1e-12:
        reductions.append(f"yaw held within +-{limits.max_yaw:.3g} rad")
        a[4] = turn
    return LimitedAction(a, tuple(reductions))


def check_trajectory_rates(velocities: Sequence[Sequence[float]], accelerations: Sequence[Sequence[float]],
                           n_joints: int, max_velocities: np.ndarray) -> None:
    """The velocities and accelerations of a trajectory's points, as ros2_control reads them:
    per point either none or one per joint, finite, and velocities within the joints' limits
    (``max_velocities``, indexed like the trajectory's joints). Raises CommandRejected."""
    for what, rates in (("velocities", velocities), ("accelerations", accelerations)):
        for i, values in enumerate(rates):
            if len(values) not in (0, n_joints):
                raise CommandRejected(f"trajectory point {i} has {len(values)} {what} for {n_joints} joints")
            if len(values):
                _finite(values, f"trajectory point {i} {what}")
    for i, values in enumerate(velocities):
        if len(values) and np.any(np.abs(np.asarray(values, dtype=np.float64)) > max_velocities):
            raise CommandRejected(f"trajectory point {i} has velocities beyond the joints' limits "
                                  f"{np.round(max_velocities, 3).tolist()} rad/s")
