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

from equimanip.action import MAX_STEP_M, MAX_STEP_YAW
from equimanip.geometry import normalize_frame_id


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
        notes.append(f"speed {fastest:.3f} m/s along an axis scaled to the limit {limits.max_linear:.3f} m/s")
    yaw_rate = float(ang[2])
    if abs(yaw_rate) > limits.max_yaw_rate:
        notes.append(f"yaw rate {yaw_rate:.3f} rad/s clamped to {limits.max_yaw_rate:.3f} rad/s")
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
