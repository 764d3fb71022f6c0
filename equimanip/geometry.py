"""Rigid-body helpers shared by the simulation, perception and the nodes.

Conventions used everywhere in equimanip:

* A *pose7* is ``[x, y, z, qx, qy, qz, qw]``: position in metres and a unit quaternion in
  ROS / PyBullet order (scalar last). transforms3d uses scalar-first quaternions; the conversion
  happens only in this module.
* Yaw is the rotation about the base frame's vertical (+z) axis, in radians, wrapped to [-pi, pi).
* ``T_a_b`` is a 4 x 4 homogeneous matrix that maps points expressed in frame ``b`` into frame ``a``.
"""
from __future__ import annotations

import math

import numpy as np
import transforms3d


def normalize_frame_id(frame_id: str) -> str:
    """tf2 frame ids carry no leading slash; ROS 1 style '/base_link' names the same frame."""
    return (frame_id or "").strip().lstrip("/")


def wrap_angle(angle):
    """Wrap an angle (scalar or array) to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def quat_xyzw_to_matrix(q) -> np.ndarray:
    """3 x 3 rotation matrix of a quaternion in (x, y, z, w) order. The quaternion is normalised;
    a zero or non-finite quaternion raises ValueError."""
    q = np.asarray(q, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if q.shape != (4,) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"not a valid quaternion (x, y, z, w): {q.tolist()}")
    x, y, z, w = q / norm
    return transforms3d.quaternions.quat2mat([w, x, y, z])


def matrix_to_quat_xyzw(R) -> np.ndarray:
    w, x, y, z = transforms3d.quaternions.mat2quat(np.asarray(R, dtype=np.float64))
    q = np.array([x, y, z, w])
    return q if w >= 0 else -q


def pose7_to_matrix(pose7) -> np.ndarray:
    """4 x 4 homogeneous transform of a pose7 [x y z qx qy qz qw]."""
    pose7 = np.asarray(pose7, dtype=np.float64)
    if pose7.shape != (7,) or not np.all(np.isfinite(pose7)):
        raise ValueError(f"a pose needs 7 finite numbers [x y z qx qy qz qw], got {pose7.tolist()}")
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_matrix(pose7[3:])
    T[:3, 3] = pose7[:3]
    return T


def matrix_to_pose7(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])])


def pose_difference(pose_a, pose_b) -> tuple[float, float]:
    """(distance in m, rotation angle in degrees) between two pose7 [x y z qx qy qz qw]."""
    a, b = np.asarray(pose_a, dtype=np.float64), np.asarray(pose_b, dtype=np.float64)
    qa, qb = a[3:] / np.linalg.norm(a[3:]), b[3:] / np.linalg.norm(b[3:])
    angle = 2.0 * np.arccos(np.clip(abs(float(np.dot(qa, qb))), 0.0, 1.0))
    return float(np.linalg.norm(a[:3] - b[:3])), float(np.degrees(angle))


def transform_points(T, points) -> np.ndarray:
    """Apply a 4 x 4 transform to points of shape (..., 3); NaNs stay NaN. Keeps float32 input float32."""
    points = np.asarray(points)
    dtype = points.dtype if points.dtype in (np.float32, np.float64) else np.float64
    R = np.asarray(T[:3, :3], dtype=dtype)
    t = np.asarray(T[:3, 3], dtype=dtype)
    return points @ R.T + t


def yaw_of_quat_xyzw(q) -> float:
    """Yaw of an orientation: the heading of its x axis projected on the base xy plane."""
    x, y, z, w = (float(v) for v in q)
    # atan2(R[1, 0], R[0, 0]) of the quaternion's rotation matrix, in closed form (a hot path:
    # every control step reads the gripper's yaw); the scale of q cancels out.
    return math.atan2(2.0 * (x * y + w * z), w * w + x * x - y * y - z * z)


def down_quat_xyzw(yaw: float) -> np.ndarray:
    """Orientation of a gripper that points straight down, turned by ``yaw`` about base z:
    Rz(yaw) @ Rx(pi), whose quaternion is (cos(yaw/2), sin(yaw/2), 0, 0) in (x, y, z, w)."""
    return np.array([math.cos(yaw / 2.0), math.sin(yaw / 2.0), 0.0, 0.0])


def yaw_quat_xyzw(yaw: float) -> np.ndarray:
    """Orientation turned by ``yaw`` about base z (an upright object's pose)."""
    return np.array([0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)])


def rotation_z(angle: float) -> np.ndarray:
    """3 x 3 rotation about +z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def look_at_pose7(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Pose7 of a camera optical frame (z forward, x right, y down in the image) at ``eye``
    looking at ``target``; ``up`` (base frame) points to the top of the image and must not be
    parallel to the viewing direction."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-6:
        raise ValueError("the up vector is parallel to the viewing direction")
    right /= norm
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([right, down, forward])
    T[:3, 3] = eye
    return matrix_to_pose7(T)
