"""What a controller sees: one :class:`Observation`, built by one function, :func:`build_observation`.

The nodes (from a live PointCloud2) and the training code (from simulated clouds) both call
:func:`build_observation`, so the heightmap and state a policy is trained on are computed exactly
as on the robot. Steps, in order:

1. workspace crop: keep finite points inside the box ``workspace_min .. workspace_max`` (base frame);
2. optional voxel downsampling (``voxel_size`` > 0) and statistical outlier removal
   (``outlier_neighbors`` > 0), both Open3D; off by default: on the 150 k workspace points of the
   benchmark cloud they take about 18 ms (5 mm voxels) and 600 ms (20 neighbours) on the 2-core
   build machine, several times the whole heightmap, and the voxel grid is anchored at the base
   origin, which breaks the heightmap's exact rotation equivariance;
3. heightmap (``equimanip.perception.heightmap``): 2 x S x S (3 x S x S with ``goal_channel``),
   channel 1 the gripper aperture tiled over the image, channel 2 the goal (below), channel 0 by
   ``heightmap_mode``:

   * ``table``: the max height above ``table_z`` of every point, the robot included (what a
     person looking at the cell wants to see; ``equimanip observe``);
   * ``gripper``: what Equivariant SAC's policies see (equi_rl's BulletArm view): the robot's own
     points left out (``robot_removal``, see ROBOT_REMOVALS below), each pixel the depth of its
     highest point below the grasp point (points above it: depth 0; empty pixels: the table's
     depth), clipped to ``gripper_depth_max``, and the two fingers drawn in at depth 0 where they are
     (from the gripper's yaw and aperture). The policy then sees how far down things are from
     its fingers and which way the fingers point, and nothing hides under its own hand. An
     imitation check (the CPU configuration's C8 actor cloning 60 expert episodes of
     block_picking) succeeded in 1 of 30 episodes with ``table`` and 25 of 30 with ``gripper``;

   ``goal_channel``: the task's goal as an input, for tasks whose goal is a place on the table
   (block_pushing): 1 on the pixels whose centre lies within ``goal_radius`` of the goal's (x, y),
   0 elsewhere. equi_rl paints its pushing goal into the heightmap as a 2 cm rise; a separate
   channel keeps it apart from the objects (at pushing height the fingertips are 2 cm over the
   table, where a painted rise and the block both clip to depth 0) and lets a real cell, whose
   goal is not drawn on the table, give it from a topic. A disc, so the channel turns with the
   scene: exactly for quarter turns and mirrors (pixel centres map onto pixel centres);
4. object-centric state (``equimanip.perception.object_state``, whose docstring gives the vector
   layout: gripper yaw and aperture, then ``max_objects`` fixed slots of presence flag, position
   relative to the gripper, doubled-angle yaw and extents, zero-padded; with ``goal_in_state``
   the task's goal relative to the gripper last, as the goal channel gives it to heightmaps).

``cloud_msg_to_base_points`` is the step before: decode a PointCloud2 and move it into the base
frame with a resolver from ``equimanip.perception.frames``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from equimanip.perception import heightmap as hm
from equimanip.perception import object_state as osm
from equimanip.perception.pointcloud2 import MAX_COORDINATE_M, PointCloud2Error, pointcloud2_to_xyz

HEIGHTMAP_MODES = ("table", "gripper")
# How the 'gripper' view tells the robot's own points from the scene (ObservationConfig.robot_removal):
#   hand_boxes         points inside the hand box or the finger box (end-effector frame), and
#                      points above the grasp point that are higher over the table than any
#                      table-top object (max_object_height): the rest of the arm. An object beside
#                      the fingers or taller than the grasp point's height stays in view (at depth 0
#                      where it rises above the fingertips, as equi_rl's clipped depths).
#   above_grasp_point  the object-state gripper box and *everything* above the grasp point: the
#                      view before 2026-11-26. It hid a pushed block (beside the fingers, its top
#                      above the fingertips) for the whole push; kept for the checkpoints trained on it.
ROBOT_REMOVALS = ("hand_boxes", "above_grasp_point")
# The fingers as drawn into a 'gripper' heightmap: each a square of this half-size (m), centred
# FINGER_GAP_M beyond the aperture's half-width along the hand's finger axis (its local y).
FINGER_HALF_SIZE_M = 0.01
FINGER_GAP_M = 0.01
# The settings a network's input depends on: a policy's come from its checkpoint, whatever the
# cell's parameters say (the rest, such as the table height and the crop box, belong to the cell).
NETWORK_OBSERVATION_FIELDS = ("heightmap_size", "heightmap_side", "heightmap_mode", "gripper_depth_max",
                              "robot_removal", "fill_empty", "max_objects", "compute_object_state",
                              "goal_channel", "goal_radius", "goal_in_state")


@dataclass
class ObservationConfig:
    """Every perception setting. ``validate()`` raises ValueError naming the first bad one."""
    # Workspace crop, base frame (metres). Points outside are ignored by everything below.
    workspace_min: tuple[float, float, float] = (0.15, -0.45, -0.05)  # x from 0.15: not the robot base
    workspace_max: tuple[float, float, float] = (0.9, 0.45, 0.5)
    # Heightmap: S x S pixels over L x L metres centred on the gripper (Equi SAC: 128 over 0.6 m).
    heightmap_size: int = 128
    heightmap_side: float = 0.6
    table_z: float = 0.0
    fill_empty: bool = False          # fill pixels with no point from their neighbours
    fill_iterations: int = 2
    # What channel 0 holds (module docstring): 'table' heights of everything above the table, or
    # 'gripper' depths below the grasp point without the robot, fingers drawn in (what policies see).
    heightmap_mode: str = "table"
    gripper_depth_max: float = 0.32   # 'gripper': depths are clipped to this (m), as equi_rl's
    robot_removal: str = "hand_boxes"  # 'gripper': which points are the robot's own (ROBOT_REMOVALS)
    # 'hand_boxes' geometry in the end-effector frame (z along the fingers, pointing down), from the
    # Panda's link bounding boxes: the hand body with the wrist above it (from 3 cm behind the
    # grasp point up), and the fingers at full opening with the gap between them (a held object).
    hand_box_min: tuple[float, float, float] = (-0.10, -0.125, -0.30)
    hand_box_max: tuple[float, float, float] = (0.10, 0.125, -0.03)
    finger_box_min: tuple[float, float, float] = (-0.02, -0.075, -0.055)
    finger_box_max: tuple[float, float, float] = (0.02, 0.075, 0.015)
    # Optional cloud filters (Open3D); 0 = off.
    voxel_size: float = 0.0
    outlier_neighbors: int = 0        # statistical outlier removal: neighbours considered
    outlier_std_ratio: float = 2.0
    # Object-centric state.
    max_objects: int = 4
    plane_distance: float = 0.005     # RANSAC inlier distance to the table plane
    table_clearance: float = 0.008    # points this far above the plane or less are table
    object_voxel_size: float = 0.004  # downsampling before clustering
    cluster_eps: float = 0.012        # DBSCAN neighbourhood radius
    cluster_min_points: int = 10
    min_object_points: int = 15       # smaller clusters are noise
    max_object_height: float = 0.15   # higher points are not table-top objects (the robot's arm)
    # Gripper box in the end-effector frame (z along the fingers, pointing down): points inside
    # are the gripper's own and are left out of the object state (they stay in the heightmap).
    gripper_box_min: tuple[float, float, float] = (-0.045, -0.11, -0.25)
    gripper_box_max: tuple[float, float, float] = (0.045, 0.11, 0.01)
    compute_object_state: bool = True
    # The goal as heightmap channel 2 (module docstring, step 3): build_observation then needs goal_xy.
    goal_channel: bool = False
    # The goal as two entries (goal minus gripper, x and y) at the end of the object-centric state
    # (equimanip.perception.object_state): build_observation then needs goal_xy too.
    goal_in_state: bool = False
    goal_radius: float = 0.05         # m; block_pushing's success distance

    def validate(self) -> "ObservationConfig":
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("workspace_min and workspace_max need 3 finite numbers each")
        if np.any(lo >= hi):
            raise ValueError(f"workspace_min {lo.tolist()} must be below workspace_max {hi.tolist()} on every axis")
        hm.check_grid(self.heightmap_size, self.heightmap_side)
        if self.heightmap_mode not in HEIGHTMAP_MODES:
            raise ValueError(f"heightmap_mode must be one of {', '.join(HEIGHTMAP_MODES)}, got {self.heightmap_mode!r}")
        if self.robot_removal not in ROBOT_REMOVALS:
            raise ValueError(f"robot_removal must be one of {', '.join(ROBOT_REMOVALS)}, got {self.robot_removal!r}")
        if not self.gripper_depth_max > 0:
            raise ValueError(f"gripper_depth_max must be positive, got {self.gripper_depth_max}")
        if self.fill_iterations < 0:
            raise ValueError(f"fill_iterations must be >= 0, got {self.fill_iterations}")
        if self.voxel_size < 0 or self.object_voxel_size < 0:
            raise ValueError("voxel sizes must be >= 0 (0 turns downsampling off)")
        if self.outlier_neighbors < 0 or (self.outlier_neighbors and self.outlier_std_ratio <= 0):
            raise ValueError("outlier_neighbors must be >= 0 and outlier_std_ratio > 0")
        if self.max_objects < 0:
            raise ValueError(f"max_objects must be >= 0, got {self.max_objects}")
        for name in ("plane_distance", "table_clearance", "cluster_eps", "max_object_height", "goal_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cluster_min_points < 1 or self.min_object_points < 1:
            raise ValueError("cluster_min_points and min_object_points must be >= 1")
        for box in ("gripper_box", "hand_box", "finger_box"):
            low, high = np.asarray(getattr(self, box + "_min"), float), np.asarray(getattr(self, box + "_max"), float)
            if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low) & np.isfinite(high)):
                raise ValueError(f"{box}_min and {box}_max need 3 finite numbers each")
            if np.any(low > high):
                raise ValueError(f"{box}_min must not exceed {box}_max")
        return self

    @property
    def object_state_dim(self) -> int:
        return osm.object_state_dim(self.max_objects, self.goal_in_state)

    @property
    def takes_goal(self) -> bool:
        """Whether an observation shows the task's goal (heightmap channel or state entries)."""
        return self.goal_channel or self.goal_in_state

    @property
    def heightmap_channels(self) -> int:
        """Channels of the heightmap: depth or heights, gripper aperture, and the goal if any."""
        return 3 if self.goal_channel else 2


@dataclass
class Observation:
    heightmap: np.ndarray               # (C, S, S) float32: heights or depths, gripper state[, goal]
    object_state: np.ndarray            # (D,) float32, layout in equimanip.perception.object_state
    objects: list = field(default_factory=list)  # DetectedObject, nearest the gripper first
    ee_pose: np.ndarray = None          # pose7 of the end effector in the base frame
    gripper_aperture: float = 0.0
    stamp: float = 0.0                  # seconds: when the robot state was taken
    cloud_stamp: float | None = None    # seconds: when the cloud was taken (None: same as stamp)
    points_in_workspace: int = 0        # valid points the heightmap is made of (0: the camera saw nothing there;
                                        # for the gripper view, nothing but the robot)
    points: np.ndarray | None = None    # those points (M, 3), base frame, after the optional filters
    goal_xy: np.ndarray | None = None   # the goal the goal channel shows (base frame, m); None without one


# ------------------------------------------------------------------------------------ the steps


def cloud_msg_to_base_points(msg, resolver) -> np.ndarray:
    """A PointCloud2 decoded to (H, W, 3) float32 base-frame points, NaN for invalid ones.

    Raises FrameError when ``resolver`` cannot place ``msg.header.frame_id`` and PointCloud2Error
    for a malformed cloud. The result is planar in memory (a transposed view of a (3, H, W) array),
    so each coordinate is contiguous for the vectorised crop and binning that follow."""
    T = resolver.lookup(msg.header.frame_id, msg.header.stamp)
    xyz = pointcloud2_to_xyz(msg)
    planes = xyz.transpose(2, 0, 1)                      # (3, H, W), contiguous (see pointcloud2_to_xyz)
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    base = np.matmul(R, planes.reshape(3, -1))           # one (3 x 3) @ (3 x N) product
    base += t[:, None]
    return base.reshape(planes.shape).transpose(1, 2, 0)


def crop_to_workspace(points: np.ndarray, lo, hi) -> np.ndarray:
    """Finite points inside the box [lo, hi], as (M, 3). NaN compares false, so it drops out too."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    inside = (x >= lo[0]) & (x <= hi[0])
    inside &= (y >= lo[1]) & (y <= hi[1])
    inside &= (z >= lo[2]) & (z <= hi[2])
    keep = np.flatnonzero(inside.reshape(-1))
    # Planar memory again (a transposed (3, M) block): the heightmap reads whole columns.
    return np.stack([x.reshape(-1)[keep], y.reshape(-1)[keep], z.reshape(-1)[keep]]).T


def filter_cloud(points: np.ndarray, config: ObservationConfig) -> np.ndarray:
    """The optional Open3D filters of step 2 on (M, 3) points; a no-op with the defaults."""
    if config.voxel_size <= 0 and config.outlier_neighbors <= 0:
        return points
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    if config.voxel_size > 0:
        cloud = cloud.voxel_down_sample(config.voxel_size)
    if config.outlier_neighbors > 0:
        cloud, _ = cloud.remove_statistical_outlier(config.outlier_neighbors, config.outlier_std_ratio)
    return np.asarray(cloud.points).astype(points.dtype)


def make_heightmap(points: np.ndarray, ee_pose, gripper_aperture: float, config: ObservationConfig,
                   device=None, goal_xy=None) -> np.ndarray:
    """(C, S, S) float32 heightmap of cropped base-frame points, centred on the gripper's (x, y)."""
    return _render_heightmap(heightmap_points(points, ee_pose, config), ee_pose, gripper_aperture, config, device,
                             _checked_goal(goal_xy, config))


def heightmap_points(points: np.ndarray, ee_pose, config: ObservationConfig) -> np.ndarray:
    """The cropped points channel 0 is made of: all of them for the table view; for the gripper
    view those that are not the robot's own (``config.robot_removal``, see ROBOT_REMOVALS)."""
    if config.heightmap_mode != "gripper":
        return points
    if config.robot_removal == "above_grasp_point":
        points = points[osm.outside_gripper(points, ee_pose, np.asarray(config.gripper_box_min),
                                            np.asarray(config.gripper_box_max))]
        return points[points[:, 2] < ee_pose[2]]
    keep = osm.outside_boxes(points, ee_pose, [(np.asarray(config.hand_box_min), np.asarray(config.hand_box_max)),
                                               (np.asarray(config.finger_box_min), np.asarray(config.finger_box_max))])
    # Above the grasp point and above every table-top object: the arm's other links.
    keep &= ~((points[:, 2] >= ee_pose[2]) & (points[:, 2] - config.table_z > config.max_object_height))
    return points[keep]


def _checked_goal(goal_xy, config: ObservationConfig) -> np.ndarray | None:
    """The goal as 2 finite float64 numbers when the configuration shows one, else None."""
    if not config.takes_goal:
        return None
    if goal_xy is None:
        raise ValueError("this observation configuration shows the goal (goal_channel or goal_in_state): "
                         "a goal (x, y) is needed")
    goal = np.asarray(goal_xy, dtype=np.float64).reshape(-1)
    if goal.shape != (2,) or not np.all(np.isfinite(goal)):
        raise ValueError(f"goal_xy must be 2 finite numbers (x, y in the base frame, m), "
                         f"got {np.ravel(goal_xy).tolist()}")
    if np.any(np.abs(goal) > MAX_COORDINATE_M):
        raise ValueError(f"goal {goal.tolist()} is beyond {MAX_COORDINATE_M:g} m: not in a robot's cell")
    return goal


def goal_pixels(ee_pose, goal_xy, size: int, side: float, radius: float) -> np.ndarray:
    """(S, S) mask of the pixels whose centre lies within ``radius`` of ``goal_xy``. Offsets are taken
    from the gripper first, so the mask turns with the scene about the gripper."""
    x, y = hm.pixel_centers((0.0, 0.0), size, side)
    dx, dy = goal_xy[0] - ee_pose[0], goal_xy[1] - ee_pose[1]
    return (x - dx) ** 2 + (y - dy) ** 2 <= radius ** 2


def _render_heightmap(points: np.ndarray, ee_pose, gripper_aperture: float, config: ObservationConfig,
                      device=None, goal_xy: np.ndarray | None = None) -> np.ndarray:
    S = config.heightmap_size
    heights, occupied = hm.project_heightmap(points, np.asarray(ee_pose[:2], dtype=np.float64), S,
                                             config.heightmap_side, config.table_z, device=device,
                                             return_occupied=True)
    if config.fill_empty:
        heights = hm.fill_empty_pixels(heights, occupied, config.fill_iterations)
        occupied = occupied | (heights > 0)
    image = np.empty((config.heightmap_channels, S, S), dtype=np.float32)
    if config.goal_channel:
        image[2] = goal_pixels(ee_pose, goal_xy, S, config.heightmap_side, config.goal_radius)
    if config.heightmap_mode == "gripper":
        above_table = np.float32(ee_pose[2] - config.table_z)
        depth = np.where(occupied, above_table - heights, above_table)
        depth = np.clip(depth, 0.0, config.gripper_depth_max)
        depth[_finger_pixels(ee_pose, gripper_aperture, S, config.heightmap_side)] = 0.0
        image[0] = depth
    else:
        image[0] = heights
    image[1] = gripper_aperture
    return image


def _finger_pixels(ee_pose, gripper_aperture: float, size: int, side: float) -> np.ndarray:
    """(S, S) mask of the pixels the two fingers cover, seen from above. The Panda's fingers open
    along the hand's local y axis, whose heading is the gripper's yaw plus 90 degrees."""
    from equimanip.action import PANDA_FINGER_OPEN_POSITION
    from equimanip.geometry import yaw_of_quat_xyzw

    x, y = hm.pixel_centers((0.0, 0.0), size, side)
    yaw = yaw_of_quat_xyzw(ee_pose[3:])
    along = -np.sin(yaw) * x + np.cos(yaw) * y           # along the finger axis
    across = np.cos(yaw) * x + np.sin(yaw) * y
    offset = gripper_aperture * PANDA_FINGER_OPEN_POSITION + FINGER_GAP_M
    return (np.abs(across) <= FINGER_HALF_SIZE_M) & (np.abs(np.abs(along) - offset) <= FINGER_HALF_SIZE_M)


def make_object_state(points: np.ndarray, ee_pose, gripper_aperture: float, config: ObservationConfig,
                      goal_xy=None):
    """``(state vector, detected objects)`` from cropped base-frame points (``goal_xy``: the task's
    goal, needed when ``config.goal_in_state``)."""
    goal = _checked_goal(goal_xy, config) if config.goal_in_state else None
    if not config.compute_object_state:
        return np.zeros(config.object_state_dim, dtype=np.float32), []
    objects = osm.detect_objects(
        points, ee_pose, table_z=config.table_z, plane_distance=config.plane_distance,
        table_clearance=config.table_clearance, gripper_box_min=config.gripper_box_min,
        gripper_box_max=config.gripper_box_max, voxel_size=config.object_voxel_size,
        cluster_eps=config.cluster_eps, cluster_min_points=config.cluster_min_points,
        min_object_points=config.min_object_points, max_object_height=config.max_object_height)
    return osm.object_state_vector(objects, ee_pose, gripper_aperture, config.max_objects, goal), objects


def build_observation(points_base, ee_pose, gripper_aperture: float, stamp: float,
                      config: ObservationConfig, cloud_stamp: float | None = None, device=None,
                      goal_xy=None) -> Observation:
    """The Observation of base-frame points (any shape (..., 3), NaN allowed) and the robot state.

    ``device``: a torch device for the heightmap's max-reduction ('cuda' where available); None
    uses numpy. Same result either way. ``goal_xy``: the task's goal (x, y) in the base frame,
    needed when ``config.goal_channel`` or ``config.goal_in_state`` is on and ignored otherwise."""
    ee_pose = np.asarray(ee_pose, dtype=np.float64)
    if ee_pose.shape != (7,) or not np.all(np.isfinite(ee_pose)):
        raise ValueError(f"ee_pose must be 7 finite numbers [x y z qx qy qz qw], got {ee_pose.tolist()}")
    if np.any(np.abs(ee_pose[:3]) > MAX_COORDINATE_M):
        raise ValueError(f"ee_pose position {ee_pose[:3].tolist()} is beyond {MAX_COORDINATE_M:g} m: not a robot's")
    goal = _checked_goal(goal_xy, config)
    points = np.asarray(points_base)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must be shaped (..., 3), got {points.shape}")
    cropped = crop_to_workspace(points, config.workspace_min, config.workspace_max)
    cropped = filter_cloud(cropped, config)
    seen = heightmap_points(cropped, ee_pose, config)
    image = _render_heightmap(seen, ee_pose, gripper_aperture, config, device, goal)
    state, objects = make_object_state(cropped, ee_pose, gripper_aperture, config, goal)
    return Observation(heightmap=image, object_state=state, objects=objects, ee_pose=ee_pose,
                       gripper_aperture=float(gripper_aperture), stamp=float(stamp),
                       cloud_stamp=None if cloud_stamp is None else float(cloud_stamp),
                       points_in_workspace=int(seen.shape[0]), points=cropped, goal_xy=goal)


__all__ = ["ObservationConfig", "Observation", "build_observation", "cloud_msg_to_base_points",
           "crop_to_workspace", "filter_cloud", "make_heightmap", "make_object_state", "PointCloud2Error"]
