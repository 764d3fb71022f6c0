"""From ROS messages to the one ``Observation`` every learned controller consumes.

A node that needs observations (the perception node, the policy nodes) owns an
``ObservationInput``: it declares the perception parameters, keeps the camera's pose (tf2 when
tf2_ros is importable, else or where tf2 does not know the frame: the ``camera_pose`` parameter or
the ``/camera/pose`` topic) and turns a (cloud, end-effector pose, joint states) set into an
``Observation`` with ``equimanip.perception.build_observation``, the same function training
uses. A cloud whose frame cannot be resolved, or that is malformed, raises; the node logs and skips.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import numpy as np
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from equimanip.action import PANDA_FINGER_JOINTS, PANDA_FINGER_OPEN_POSITION, gripper_aperture
from equimanip.geometry import normalize_frame_id
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import ParamSpec, check_pose7, declare_parameters, param_values
from equimanip.perception.frames import CameraPoseResolver, ChainResolver, FrameError, Tf2Resolver, make_resolver
from equimanip.perception.observation import (
    ROBOT_REMOVALS,
    Observation,
    ObservationConfig,
    build_observation,
    cloud_msg_to_base_points,
)

_D = ObservationConfig()


def _check_optional_pose7(value) -> Optional[str]:
    """All zeros means "not given" (tf2 or the /camera/pose topic provides the pose)."""
    return None if not any(value) else check_pose7(value)


# The perception settings users tune, as node parameters; ObservationConfig holds the rest.
OBSERVATION_PARAMS = [
    ParamSpec("observation.workspace_min", list(_D.workspace_min), "Crop box lower corner in the base frame (m).",
              length=3),
    ParamSpec("observation.workspace_max", list(_D.workspace_max), "Crop box upper corner in the base frame (m).",
              length=3),
    ParamSpec("observation.heightmap_size", _D.heightmap_size, "Heightmap pixels per side (even).", min=2, max=1024),
    ParamSpec("observation.heightmap_side", _D.heightmap_side, "Heightmap side length (m).", min=0.01, max=5.0),
    ParamSpec("observation.table_z", _D.table_z, "Height of the table top in the base frame (m).", min=-2.0, max=2.0),
    ParamSpec("observation.fill_empty", _D.fill_empty, "Fill empty heightmap pixels from their neighbours."),
    ParamSpec("observation.heightmap_mode", _D.heightmap_mode, "Heightmap channel 0: 'table' heights above the "
              "table of every point, robot included; 'gripper' depths below the grasp point without the "
              "robot, fingers drawn in (what Equivariant SAC policies see; a policy's checkpoint sets it).",
              choices=("table", "gripper")),
    ParamSpec("observation.robot_removal", _D.robot_removal, "'gripper' heightmaps: which points are the "
              "robot's own: 'hand_boxes' (the hand and finger boxes, and the arm above every table-top "
              "object) or 'above_grasp_point' (everything above the grasp point; checkpoints before "
              "2026-11-26). A policy's checkpoint sets it.", choices=ROBOT_REMOVALS),
    ParamSpec("observation.gripper_depth_max", _D.gripper_depth_max, "'gripper' heightmaps: depths are "
              "clipped to this (m).", min=0.01, max=2.0),
    ParamSpec("observation.voxel_size", _D.voxel_size, "Voxel downsampling before everything (m); 0 = off.",
              min=0.0, max=0.1),
    ParamSpec("observation.outlier_neighbors", _D.outlier_neighbors,
              "Statistical outlier removal: neighbours considered; 0 = off.", min=0, max=200),
    ParamSpec("observation.max_objects", _D.max_objects, "Object slots in the object-centric state.", min=0, max=32),
    ParamSpec("observation.cluster_eps", _D.cluster_eps, "DBSCAN neighbourhood radius (m); raise it "
              "for sparse clouds (low-resolution or distant cameras).", min=0.001, max=0.2),
    ParamSpec("observation.cluster_min_points", _D.cluster_min_points, "DBSCAN core-point neighbours.",
              min=1, max=1000),
    ParamSpec("observation.min_object_points", _D.min_object_points, "Smaller clusters are noise, not objects.",
              min=1, max=100000),
    ParamSpec("observation.compute_object_state", _D.compute_object_state,
              "Compute the object-centric state (costs about 10 ms per 640 x 480 cloud)."),
    ParamSpec("observation.device", "cpu", "Where the heightmap projection runs: cpu or cuda.",
              choices=("cpu", "cuda")),
    ParamSpec("camera_pose", [0.0] * 7, "Fallback pose of the cloud's frame in the base frame "
              "[x y z qx qy qz qw] where tf2 and /camera/pose give none; all zeros = not set.",
              length=7, validate=_check_optional_pose7),
    ParamSpec("camera_frame", "camera_depth_optical_frame", "Frame the camera_pose parameter is for.",
              read_only=True),
    ParamSpec("gripper_joints", list(PANDA_FINGER_JOINTS),
              "Finger joints whose mean position gives the aperture.", read_only=True),
    ParamSpec("gripper_open_position", PANDA_FINGER_OPEN_POSITION, "Finger joint position of a fully open gripper (m).",
              min=1e-4, max=1.0, read_only=True),
]


def _config_from(values: dict) -> ObservationConfig:
    return replace(
        _D,
        workspace_min=tuple(values["observation.workspace_min"]),
        workspace_max=tuple(values["observation.workspace_max"]),
        heightmap_size=values["observation.heightmap_size"],
        heightmap_side=values["observation.heightmap_side"],
        table_z=values["observation.table_z"],
        fill_empty=values["observation.fill_empty"],
        heightmap_mode=values["observation.heightmap_mode"],
        gripper_depth_max=values["observation.gripper_depth_max"],
        robot_removal=values["observation.robot_removal"],
        voxel_size=values["observation.voxel_size"],
        outlier_neighbors=values["observation.outlier_neighbors"],
        max_objects=values["observation.max_objects"],
        cluster_eps=values["observation.cluster_eps"],
        cluster_min_points=values["observation.cluster_min_points"],
        min_object_points=values["observation.min_object_points"],
        compute_object_state=values["observation.compute_object_state"],
    )


class ObservationInput:
    def __init__(self, node: Node, base_frame: str = "base_link"):
        self._node = node
        declare_parameters(node, OBSERVATION_PARAMS)
        values = param_values(node, OBSERVATION_PARAMS)
        self.config = _config_from(values).validate()
        self._device = self._pick_device(values["observation.device"])
        self._camera_frame = values["camera_frame"]
        self._gripper_joints = list(values["gripper_joints"])
        self._open_position = values["gripper_open_position"]
        self._camera_poses = CameraPoseResolver(base_frame)
        if any(v != 0.0 for v in values["camera_pose"]):
            self._camera_poses.set_pose(self._camera_frame, values["camera_pose"])
        tf2 = make_resolver(node, base_frame)  # a Tf2Resolver only where tf2_ros imports
        self.resolver = ChainResolver(tf2 if isinstance(tf2, Tf2Resolver) else None, self._camera_poses)
        node.create_subscription(PoseStamped, topics.CAMERA_POSE, self._on_camera_pose, qos.LATCHED)
        # Cross-parameter checks (e.g. the crop box's corners) need the whole candidate config.
        node.add_on_set_parameters_callback(self._validate_together)
        node.add_post_set_parameters_callback(self._on_set)

    def _pick_device(self, device: str) -> Optional[str]:
        if device == "cpu":
            return None  # numpy
        import torch
        if not torch.cuda.is_available():
            self._node.get_logger().warning("observation.device is cuda but torch sees no GPU; using the CPU")
            return None
        return device

    def _validate_together(self, params) -> SetParametersResult:
        values = param_values(self._node, OBSERVATION_PARAMS)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            _config_from(values).validate()
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _on_set(self, params) -> None:
        values = param_values(self._node, OBSERVATION_PARAMS)
        self.config = _config_from(values)
        if any(p.name == "observation.device" for p in params):
            self._device = self._pick_device(values["observation.device"])
        if any(p.name == "camera_pose" for p in params) and any(v != 0.0 for v in values["camera_pose"]):
            self._camera_poses.set_pose(self._camera_frame, values["camera_pose"])

    def _on_camera_pose(self, msg: PoseStamped) -> None:
        if normalize_frame_id(msg.header.frame_id) != self._camera_poses.base_frame:
            self._node.get_logger().warning(
                f"ignored /camera/pose in frame '{msg.header.frame_id}': it must be in "
                f"'{self._camera_poses.base_frame}'", throttle_duration_sec=5.0)
            return
        try:
            self._camera_poses.set_pose(self._camera_frame, msgs.pose7(msg.pose))
        except ValueError as e:
            self._node.get_logger().warning(f"ignored /camera/pose: {e}", throttle_duration_sec=5.0)

    def awaiting_camera_pose(self) -> bool:
        """True while no camera pose has come from any source (parameter, /camera/pose) and no
        tf2 is there to ask: at start-up, before the latched pose is delivered."""
        return len(self.resolver.resolvers) == 1 and len(self._camera_poses.known_frames()) == 1

    def can_resolve(self, frame_id: str) -> bool:
        """Whether clouds in ``frame_id`` can be placed in the base frame yet."""
        try:
            self.resolver.lookup(frame_id)
            return True
        except FrameError:
            return False

    def aperture(self, joint_states) -> float:
        fingers = msgs.joint_positions(joint_states, self._gripper_joints)
        if not np.all(np.isfinite(fingers)):
            raise ValueError(f"non-finite gripper joint positions {fingers.tolist()}")
        return gripper_aperture(fingers, self._open_position)

    def build(self, cloud, ee_pose: PoseStamped, joint_states, config: Optional[ObservationConfig] = None,
              goal_xy=None) -> Observation:
        """Observation of one (cloud, end-effector pose, joint states) set, with the node's settings
        or ``config`` (and the goal its goal channel shows, if it has one). Raises FrameError,
        PointCloud2Error, KeyError (missing joints) or ValueError (NaN state) for bad input."""
        points = cloud_msg_to_base_points(cloud, self.resolver)
        pose = msgs.pose7(ee_pose.pose)
        stamp = msgs.seconds(ee_pose.header.stamp)
        cloud_stamp = msgs.seconds(cloud.header.stamp)
        if not math.isfinite(stamp):
            raise ValueError("the end-effector pose has a non-finite stamp")
        return build_observation(points, pose, self.aperture(joint_states), stamp, config or self.config,
                                 cloud_stamp=cloud_stamp, device=self._device, goal_xy=goal_xy)
