"""Object-centric state for the low-dimensional learners (imitation, MPPI dynamics).

From base-frame points already cropped to the workspace:

1. **Table plane** by RANSAC (:func:`fit_table_plane`): our own vectorised version, all hypotheses
   scored in one matrix product over a fixed-seed subsample. Chosen over Open3D's ``segment_plane``
   because it can be told to consider only near-horizontal planes (a large box side never wins) and
   it is deterministic, so a rotated cloud gives the rotated plane. Falls back to ``z = table_z`` when
   no plausible plane is found.
2. Keep points between ``table_clearance`` and ``max_object_height`` above the plane (the upper
   bound leaves out the robot's arm above the gripper), drop those inside the **gripper box** (a
   box in the end-effector frame covering hand and open fingers; an object held between the
   fingers is inside it too and disappears while held, see ``aperture`` instead).
3. **Voxel downsample** (``voxel_size``) then **DBSCAN** (Open3D ``cluster_dbscan``, C++). The cost
   is bounded whatever the cloud: at most ``MAX_CLUSTER_POINTS`` points above the table go into
   the downsampling (a fixed-seed random subset of more), and at most ``MAX_CLUSTERS`` clusters
   (those nearest the gripper) are summarised; either cut comes with a ``PerceptionLimitWarning``.
   A real scene stays far below both (the 640 x 480 benchmark cloud has about 9,000 points above
   the table); 1 to 2 million random points in a slab above it took 6.5 to 35 s before the bounds.
4. Summarise each cluster as an upright box (:class:`DetectedObject`): the minimum-area rectangle of
   its points' (x, y) gives centre, yaw and the two horizontal extents; the height is its highest
   point above the plane, and the centre sits at half that height. A minimum-area rectangle rather
   than PCA because PCA's principal axis is undefined for a square footprint (a cube, the most common
   task object); for elongated objects both agree. ``yaw`` is the heading of the long side wrapped to
   [-pi/2, pi/2): the 180-degree ambiguity of a box is resolved by that wrap, and the state vector
   encodes it as (cos 2 yaw, sin 2 yaw), which is continuous across the wrap. (A square's long side
   is itself ambiguous, so its yaw is meaningful only modulo 90 degrees.)

The state vector layout (``object_state_layout`` gives the names):

* ``[0:3]``   cos(gripper yaw), sin(gripper yaw), gripper aperture
* then ``max_objects`` slots of 9 values each, slot k at ``3 + 9 k``:
  ``present`` (1 or 0), ``dx, dy, dz`` (object centre minus gripper position, in the base frame's
  axes, metres), ``cos 2 yaw, sin 2 yaw``, ``long, short, height`` (extents, metres).
  Slots hold the detected objects nearest the gripper in (x, y) first; unused slots are all zeros
  (``present`` 0). Distance to the gripper is invariant under rotations about the gripper, so the
  slot order is too.
* with ``ObservationConfig.goal_in_state`` two more: ``goal.dx, goal.dy``, the task's goal on the
  table minus the gripper position. The goal is the task's specification, given rather than
  perceived (block_pushing's goal patch is 2 mm thick: it is table to the clustering, and a block
  pushed onto it would hide it anyway).

Under a rotation by theta about the vertical axis through the gripper: (dx, dy) and the goal's
(dx, dy) rotate by theta, (cos, sin)(gripper yaw) by theta, (cos, sin)(2 yaw) by 2 theta;
everything else is unchanged.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from equimanip.geometry import pose7_to_matrix, yaw_of_quat_xyzw

# Positions are metres in the robot's base frame: the bound beyond which a decoded point is invalid
# holds for the end effector too (1e39 would overflow float32 on its way into the state vector).
from equimanip.perception.pointcloud2 import MAX_COORDINATE_M

# Bounds on the cost of one cloud (see step 3 above).
MAX_CLUSTER_POINTS = 50_000
MAX_CLUSTERS = 64


class PerceptionLimitWarning(UserWarning):
    """A cloud was cut to the documented bounds, or had nothing to see; the message says which."""


SLOT_FIELDS = ("present", "dx", "dy", "dz", "cos2yaw", "sin2yaw", "long", "short", "height")
GRIPPER_FIELDS = ("cos_gripper_yaw", "sin_gripper_yaw", "gripper_aperture")
GOAL_FIELDS = ("goal.dx", "goal.dy")


def object_state_dim(max_objects: int, goal: bool = False) -> int:
    return len(GRIPPER_FIELDS) + len(SLOT_FIELDS) * max_objects + (len(GOAL_FIELDS) if goal else 0)


def object_state_layout(max_objects: int, goal: bool = False) -> list[str]:
    """The name of every entry of the state vector, e.g. ``obj0.dx``."""
    return (list(GRIPPER_FIELDS) + [f"obj{k}.{name}" for k in range(max_objects) for name in SLOT_FIELDS]
            + (list(GOAL_FIELDS) if goal else []))


@dataclass
class DetectedObject:
    centroid: np.ndarray  # (3,) centre of the fitted upright box, base frame
    yaw: float            # heading of the long side, in [-pi/2, pi/2)
    extents: np.ndarray   # (3,) long side, short side, height (metres)
    n_points: int         # points in the cluster (after downsampling)


# ------------------------------------------------------------------------------------ table plane


def fit_table_plane(points: np.ndarray, distance: float = 0.005, iterations: int = 100,
                    max_tilt_deg: float = 15.0, sample_size: int = 2000, min_inlier_fraction: float = 0.2,
                    fallback_z: float = 0.0, seed: int = 0) -> np.ndarray:
    """Plane ``(a, b, c, d)`` with ``a x + b y + c z + d = 0``, unit normal, ``c > 0``.

    RANSAC over ``iterations`` random point triples of a ``sample_size`` subsample, keeping only
    planes within ``max_tilt_deg`` of horizontal; the best is refined by least squares on its
    inliers. ``z = fallback_z`` when fewer than ``min_inlier_fraction`` of the sample fit any plane."""
    fallback = np.array([0.0, 0.0, 1.0, -fallback_z])
    n = points.shape[0]
    if n < 3:
        return fallback
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(n, size=min(n, sample_size), replace=False)].astype(np.float64)
    triples = sample[rng.integers(0, sample.shape[0], size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    normals = normals[ok] / norms[ok, None]
    normals *= np.sign(normals[:, 2:3]) + (normals[:, 2:3] == 0)  # point up
    level = normals[:, 2] >= math.cos(math.radians(max_tilt_deg))
    normals, anchors = normals[level], triples[ok][level, 0]
    if normals.shape[0] == 0:
        return fallback
    offsets = -np.einsum("ij,ij->i", normals, anchors)
    inliers = np.abs(sample @ normals.T + offsets) < distance          # (sample, hypotheses)
    counts = inliers.sum(axis=0)
    best = int(np.argmax(counts))
    if counts[best] < min_inlier_fraction * sample.shape[0]:
        return fallback
    support = sample[inliers[:, best]]
    centre = support.mean(axis=0)
    normal = np.linalg.svd(support - centre, full_matrices=False)[2][-1]
    normal = normal if normal[2] > 0 else -normal
    return np.concatenate([normal, [-normal @ centre]])


def height_above_plane(points: np.ndarray, plane: np.ndarray) -> np.ndarray:
    return points @ plane[:3].astype(points.dtype) + points.dtype.type(plane[3])


# -------------------------------------------------------------------------- gripper and clusters


def outside_gripper(points: np.ndarray, ee_pose, box_min, box_max) -> np.ndarray:
    """Mask of the points outside the box [box_min, box_max] given in the end-effector frame."""
    return outside_boxes(points, ee_pose, [(box_min, box_max)])


def outside_boxes(points: np.ndarray, ee_pose, boxes) -> np.ndarray:
    """Mask of the points outside every box ``(box_min, box_max)`` of ``boxes``, all given in the
    end-effector frame; the points are moved into that frame once for all of them."""
    T = pose7_to_matrix(ee_pose)
    local = (points - T[:3, 3]) @ T[:3, :3]  # == R^T (p - t) for each row
    outside = np.ones(len(points), dtype=bool)
    for box_min, box_max in boxes:
        outside &= ~np.all((local >= box_min) & (local <= box_max), axis=1)
    return outside


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Mean of the points in each occupied voxel (Open3D, C++); unchanged when voxel_size <= 0."""
    if voxel_size <= 0 or points.shape[0] == 0:
        return points
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    return np.asarray(cloud.voxel_down_sample(voxel_size).points)


def cluster_points(points: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN labels (Open3D): -1 for noise, else 0 .. n_clusters - 1."""
    if points.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    return np.asarray(cloud.cluster_dbscan(eps=eps, min_points=min_points, print_progress=False))


def min_area_rectangle(xy: np.ndarray):
    """``(centre_xy, yaw, long, short)`` of the smallest rectangle around 2-D points; yaw is the
    heading of the long side in [-pi/2, pi/2). One side of that rectangle is collinear with a convex
    hull edge, so only the hull edges' directions need trying (all at once, vectorised)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):  # fewer than 3 points, or all collinear
        hull = xy
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), math.pi / 2)) if len(hull) > 1 else np.zeros(1)
    c, s = np.cos(angles), np.sin(angles)
    u = hull[:, 0:1] * c + hull[:, 1:2] * s          # coordinates along each candidate axis
    v = -hull[:, 0:1] * s + hull[:, 1:2] * c
    width = u.max(axis=0) - u.min(axis=0)
    depth = v.max(axis=0) - v.min(axis=0)
    k = int(np.argmin(width * depth))
    mid_u = (u[:, k].max() + u[:, k].min()) / 2
    mid_v = (v[:, k].max() + v[:, k].min()) / 2
    centre = np.array([mid_u * c[k] - mid_v * s[k], mid_u * s[k] + mid_v * c[k]])
    yaw, long, short = angles[k], width[k], depth[k]
    if depth[k] > width[k]:  # the long side runs along the candidate's second axis
        yaw, long, short = angles[k] + math.pi / 2, depth[k], width[k]
    return centre, float(_wrap_half_turn(yaw)), float(long), float(short)


def _wrap_half_turn(angle):
    """Wrap to [-pi/2, pi/2): the heading of an axis, which has no front or back."""
    return (np.asarray(angle) + math.pi / 2) % math.pi - math.pi / 2


def summarise_cluster(points: np.ndarray, plane: np.ndarray) -> DetectedObject:
    centre_xy, yaw, long, short = min_area_rectangle(points[:, :2].astype(np.float64))
    height = float(height_above_plane(points.astype(np.float64), plane).max())
    a, b, c, d = plane
    table_z_here = -(a * centre_xy[0] + b * centre_xy[1] + d) / c  # plane height under the centre
    centroid = np.array([centre_xy[0], centre_xy[1], table_z_here + height / 2])
    return DetectedObject(centroid, yaw, np.array([long, short, height]), int(points.shape[0]))


def detect_objects(points: np.ndarray, ee_pose, *, table_z: float = 0.0, plane_distance: float = 0.005,
                   table_clearance: float = 0.008, gripper_box_min=(-0.045, -0.11, -0.25),
                   gripper_box_max=(0.045, 0.11, 0.01), voxel_size: float = 0.004,
                   cluster_eps: float = 0.012, cluster_min_points: int = 10,
                   min_object_points: int = 15, max_object_height: float = 0.15) -> list[DetectedObject]:
    """Objects on the table in finite base-frame points (N, 3), nearest the gripper first.

    Only points up to ``max_object_height`` above the table are considered: that leaves out the
    robot's arm, whose wrist stays about 0.2 m above the gripper and outside the gripper box."""
    points = points.reshape(-1, 3)
    check_position(ee_pose[:3], "end-effector position")
    if points.shape[0] == 0:
        warnings.warn(PerceptionLimitWarning("no valid point of the cloud lies in the workspace box"), stacklevel=2)
        return []
    plane = fit_table_plane(points, distance=plane_distance, fallback_z=table_z)
    height = height_above_plane(points, plane)
    above = points[(height > table_clearance) & (height <= max_object_height)]
    above = above[outside_gripper(above, ee_pose, np.asarray(gripper_box_min), np.asarray(gripper_box_max))]
    if above.shape[0] > MAX_CLUSTER_POINTS:
        warnings.warn(PerceptionLimitWarning(
            f"{above.shape[0]} points above the table; objects are detected in a random {MAX_CLUSTER_POINTS} "
            "of them (MAX_CLUSTER_POINTS)"), stacklevel=2)
        above = above[np.sort(np.random.default_rng(0).choice(above.shape[0], MAX_CLUSTER_POINTS, replace=False))]
    sparse = voxel_downsample(above, voxel_size)
    labels = cluster_points(sparse, cluster_eps, cluster_min_points)
    gripper_xy = np.asarray(ee_pose[:2], dtype=np.float64)
    kept = _clusters_to_summarise(sparse, labels, min_object_points, gripper_xy)
    objects = [summarise_cluster(sparse[labels == label], plane) for label in kept]
    objects.sort(key=lambda obj: float(np.hypot(*(obj.centroid[:2] - gripper_xy))))
    return objects


def _clusters_to_summarise(points: np.ndarray, labels: np.ndarray, min_points: int, gripper_xy) -> np.ndarray:
    """Labels of the clusters large enough to be objects, at most MAX_CLUSTERS of them (the
    nearest the gripper by mean position; vectorised, whatever the number of clusters)."""
    n_clusters = int(labels.max(initial=-1)) + 1
    members = labels >= 0
    counts = np.bincount(labels[members], minlength=n_clusters)
    large = np.flatnonzero(counts >= min_points)
    if large.size <= MAX_CLUSTERS:
        return large
    warnings.warn(PerceptionLimitWarning(f"{large.size} clusters; the {MAX_CLUSTERS} nearest the gripper are "
                                         "summarised as objects (MAX_CLUSTERS)"), stacklevel=3)
    sums = np.stack([np.bincount(labels[members], weights=points[members, k], minlength=n_clusters)
                     for k in (0, 1)], axis=1)
    distance = np.linalg.norm(sums[large] / counts[large, None] - gripper_xy, axis=1)
    return large[np.argsort(distance, kind="stable")[:MAX_CLUSTERS]]


def check_position(position, what: str) -> np.ndarray:
    """``position`` (3) as float64 when it is finite and within MAX_COORDINATE_M of the base
    frame's origin; ValueError naming ``what`` otherwise."""
    position = np.asarray(position, dtype=np.float64)
    if not np.all(np.abs(position) <= MAX_COORDINATE_M):
        raise ValueError(f"{what} {position.tolist()} is not a position in the workspace "
                         f"(each coordinate must be finite and within {MAX_COORDINATE_M:g} m)")
    return position


def object_state_vector(objects: list[DetectedObject], ee_pose, gripper_aperture: float,
                        max_objects: int, goal_xy=None) -> np.ndarray:
    """The fixed-size float32 state vector documented in the module docstring (with the goal
    entries when ``goal_xy``, the task's goal (x, y) in the base frame, is given)."""
    state = np.zeros(object_state_dim(max_objects, goal_xy is not None), dtype=np.float32)
    gripper_yaw = yaw_of_quat_xyzw(np.asarray(ee_pose)[3:])
    state[:3] = (math.cos(gripper_yaw), math.sin(gripper_yaw), gripper_aperture)
    gripper_xyz = check_position(ee_pose[:3], "end-effector position")
    for k, obj in enumerate(objects[:max_objects]):
        start = len(GRIPPER_FIELDS) + len(SLOT_FIELDS) * k
        state[start:start + len(SLOT_FIELDS)] = (
            1.0, *(obj.centroid - gripper_xyz), math.cos(2 * obj.yaw), math.sin(2 * obj.yaw), *obj.extents)
    if goal_xy is not None:
        state[-len(GOAL_FIELDS):] = np.asarray(goal_xy, dtype=np.float64)[:2] - gripper_xyz[:2]
    return state
