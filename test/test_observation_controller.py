"""ObservationController, the base of learned controllers: it acts on the Observation of the newest
(cloud, pose, joint states) set, and bad clouds never turn into a non-zero command."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, PointCloud2

from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.controller import ObservationController
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
from equimanip.perception.synthetic import default_scene, render

# The empty and all-NaN clouds are meant to warn (nothing seen in the workspace).
pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings(
    "ignore::equimanip.perception.object_state.PerceptionLimitWarning")]

ACTION = np.array([1.0, 0.02, 0.0, 0.0, 0.0])
SCENE = default_scene(width=160, height=120)
CAMERA = "camera_depth_optical_frame"


class SeesBlocks(ObservationController):
    """Moves +x while it sees something above the table; records what it saw."""

    def __init__(self, **kw):
        super().__init__("sees_blocks", **kw)
        self.seen = []

    def act(self, observation):
        self.seen.append(observation)
        return ACTION


class Camera(Node):
    def __init__(self, **kw):
        super().__init__("camera", **kw)
        self.cloud = self.create_publisher(PointCloud2, topics.CLOUD, qos.SENSOR)
        self.ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self.joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
        self.twists = []
        self.create_subscription(TwistStamped, topics.TWIST, self.twists.append, qos.RELIABLE)
        points, colors = render(SCENE)
        self.good = xyz_rgb_to_pointcloud2(points, colors, msgs.header(CAMERA, 0.0))

    def publish(self, cloud, stamp_s):
        cloud = copy.copy(cloud)
        cloud.header = msgs.header(cloud.header.frame_id, stamp_s)
        self.cloud.publish(cloud)
        self.ee.publish(msgs.pose_stamped([0.45, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], "base_link", stamp_s))
        self.joints.publish(msgs.joint_state(["panda_finger_joint1", "panda_finger_joint2"], [0.04, 0.04],
                                             [0.0, 0.0], stamp_s))


def _malformed(good: PointCloud2) -> dict:
    def with_(**changes):
        msg = copy.copy(good)
        for k, v in changes.items():
            setattr(msg, k, v)
        return msg

    nan = np.full((SCENE.height, SCENE.width, 3), np.nan, dtype=np.float32)
    return {
        "truncated data": with_(data=good.data[: len(good.data) // 2]),
        "point_step too small": with_(point_step=4),
        "huge point_step": with_(point_step=4294967295),
        "no x field": with_(fields=[f for f in good.fields if f.name != "x"]),
        "unknown frame": with_(header=msgs.header("some_other_camera", 0.0)),
        "empty frame id": with_(header=msgs.header("", 0.0)),
        "all NaN": xyz_rgb_to_pointcloud2(nan, None, msgs.header(CAMERA, 0.0)),
        "empty": xyz_rgb_to_pointcloud2(np.zeros((0, 0, 3), np.float32), None, msgs.header(CAMERA, 0.0)),
    }


def test_malformed_clouds_never_move_the_arm_and_good_ones_do(ros):
    controller = ros.add(SeesBlocks(context=ros.context, parameter_overrides=[
        Parameter("camera_pose", value=[float(v) for v in SCENE.camera_pose]),
        Parameter("observation.heightmap_size", value=32),
        Parameter("observation_timeout", value=5.0)]))  # a loaded CI machine must not make inputs stale
    camera = ros.node(Camera)
    ros.spin_until(lambda: controller.inputs_connected() and camera.count_subscribers(topics.CLOUD) > 0
                   and camera.count_publishers(topics.TWIST) > 0, what="discovery")
    stamp = 1.0
    camera.publish(camera.good, stamp)
    ros.spin_until(lambda: len(camera.twists) == 1, what="the answer to a good cloud")
    assert camera.twists[0].twist.linear.x == pytest.approx(0.2)
    assert controller.seen[0].heightmap.shape == (2, 32, 32) and controller.seen[0].heightmap[0].max() > 0.03
    for name, cloud in _malformed(camera.good).items():
        stamp += 0.1
        n = len(camera.twists)
        camera.publish(cloud, stamp)
        ros.spin_until(lambda: len(camera.twists) > n, what=f"the answer to the {name} cloud")
        twist = camera.twists[-1].twist
        assert (twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z) == (0, 0, 0, 0), name
    assert len(controller.seen) == 1          # the policy never saw a bad observation
    stamp += 0.1
    camera.publish(camera.good, stamp)        # and a good cloud afterwards moves the arm again
    ros.spin_until(lambda: len(controller.seen) == 2 and camera.twists[-1].twist.linear.x > 0.1,
                   what="a good cloud after the bad ones")
