"""Forward kinematics and Jacobians of the Franka Panda, in numpy: what turns a delta action into
joint targets for a ros2_control joint_trajectory_controller (the controllers' ``output``
parameter), where MoveIt Servo is not there to do it.

The chain is the one of the Panda's URDF (pybullet_data's ``franka_panda/panda.urdf``, which
follows franka_description): each joint's origin (xyz, rpy) relative to its parent, rotation about
the joint's z axis, then the fixed flange, the hand turned by -45 degrees and the grasp point
10.5 cm along the hand's z (``panda_grasptarget``, whose pose ``/ee_pose`` reports).
``test/test_kinematics.py`` checks the model against PyBullet's own forward kinematics.

A delta action ``[dx, dy, dz, dyaw]`` becomes a joint step by damped least squares on the
geometric Jacobian, keeping the roll and pitch rates at zero (the gripper keeps pointing down).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), \
        math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def _transform(xyz, rpy) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rpy_matrix(*rpy)
    T[:3, 3] = xyz
    return T


def _rot_z(q: float) -> np.ndarray:
    c, s = math.cos(q), math.sin(q)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    return T


@dataclass(frozen=True)
class SerialArm:
    """Revolute joints about their local z, each placed by an (xyz, rpy) origin, then a fixed tool."""
    joint_names: tuple
    origins: tuple            # per joint: (xyz, rpy) of the joint frame in its parent's
    tool: tuple               # fixed (xyz, rpy) transforms from the last joint to the tool point
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray  # rad/s

    def frames(self, q) -> list[np.ndarray]:
        """4 x 4 pose of every joint frame (after its rotation), then the tool's, in the base frame."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise ValueError(f"need {len(self.joint_names)} finite joint positions, got {q.tolist()}")
        T = np.eye(4)
        out = []
        for (xyz, rpy), angle in zip(self.origins, q):
            T = T @ _transform(xyz, rpy) @ _rot_z(angle)
            out.append(T)
        for xyz, rpy in self.tool:
            T = T @ _transform(xyz, rpy)
        out.append(T)
        return out

    def forward(self, q) -> np.ndarray:
        """4 x 4 pose of the tool point."""
        return self.frames(q)[-1]

    def jacobian(self, q) -> np.ndarray:
        """6 x n geometric Jacobian of the tool point: rows vx vy vz wx wy wz in the base frame."""
        frames = self.frames(q)
        tool = frames[-1][:3, 3]
        J = np.zeros((6, len(self.joint_names)))
        for i, T in enumerate(frames[:-1]):
            z, p = T[:3, 2], T[:3, 3]
            J[:3, i] = np.cross(z, tool - p)
            J[3:, i] = z
        return J

    def joint_step(self, q, delta, period: float, damping: float = 0.02) -> np.ndarray:
        """Joint targets that move the tool by ``delta`` = [dx, dy, dz, dyaw] (base frame, one step)
        with zero roll and pitch rates: damped least squares, then each joint's step held to what
        its maximum velocity reaches in ``period`` (the whole step scaled, keeping its direction)
        and the result to the joint limits."""
        q = np.asarray(q, dtype=np.float64)
        twist = np.array([delta[0], delta[1], delta[2], 0.0, 0.0, delta[3]], dtype=np.float64)
        J = self.jacobian(q)
        dq = J.T @ np.linalg.solve(J @ J.T + damping ** 2 * np.eye(6), twist)
        largest = np.max(np.abs(dq) / (self.max_velocity * period))
        if largest > 1.0:
            dq /= largest
        return np.clip(q + dq, self.lower, self.upper)


_HALF_PI = math.pi / 2

PANDA = SerialArm(
    joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
    origins=(((0, 0, 0.333), (0, 0, 0)), ((0, 0, 0), (-_HALF_PI, 0, 0)), ((0, -0.316, 0), (_HALF_PI, 0, 0)),
             ((0.0825, 0, 0), (_HALF_PI, 0, 0)), ((-0.0825, 0.384, 0), (-_HALF_PI, 0, 0)),
             ((0, 0, 0), (_HALF_PI, 0, 0)), ((0.088, 0, 0), (_HALF_PI, 0, 0))),
    tool=(((0, 0, 0.107), (0, 0, 0)), ((0, 0, 0), (0, 0, -math.pi / 4)), ((0, 0, 0.105), (0, 0, 0))),
    # Franka's published joint limits and speeds of the real arm (the simulated URDF allows ~4 degrees more).
    lower=np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
    upper=np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
    max_velocity=np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61]),
)
