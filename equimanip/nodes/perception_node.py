"""perception_node: the observation every learned controller sees, published for everyone.

It pairs each point cloud with the robot state of the same instant, builds the ``Observation``
(``equimanip.nodes.observation_input``, the code the policy nodes use too) and publishes its parts:
the gripper-centred heightmap as an image (view it in RViz or rqt_image_view), the
object-centric state vector, and the detected objects as poses. Useful to check on a real cell
that what a policy sees is right before a policy runs, and as a source for logging demonstrations.
"""
from __future__ import annotations

import array
import warnings

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, PointCloud2
from std_msgs.msg import Float32MultiArray, MultiArrayDimension

from equimanip.geometry import yaw_quat_xyzw
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.observation_input import ObservationInput
from equimanip.nodes.params import BASE_FRAME, ParamSpec, declare_parameters
from equimanip.nodes.spin import spin_node
from equimanip.nodes.sync import TimeSync
from equimanip.nodes.throttle import ReasonThrottle, reason_key
from equimanip.perception.frames import FrameError
from equimanip.perception.object_state import PerceptionLimitWarning, check_position, object_state_layout
from equimanip.perception.pointcloud2 import PointCloud2Error

PARAMS = [
    BASE_FRAME,
    ParamSpec("sync_slop", 0.0, "Largest stamp difference (s) between a cloud and the robot state "
              "it is paired with; 0 pairs equal stamps only (the simulation).", min=0.0, max=1.0,
              read_only=True),
]


class PerceptionNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("perception_node", **node_kwargs)
        declare_parameters(self, PARAMS)
        self._base_frame = self.get_parameter("base_frame").value
        self._log = ReasonThrottle(self.get_logger(), period_s=2.0)
        self.observations = ObservationInput(self, self._base_frame)
        self.last_observation = None
        self._pub_heightmap = self.create_publisher(Image, "~/heightmap", qos.SENSOR)
        self._pub_state = self.create_publisher(Float32MultiArray, "~/object_state", qos.RELIABLE)
        self._pub_objects = self.create_publisher(PoseArray, "~/objects", qos.RELIABLE)
        self._sync = TimeSync([topics.CLOUD, topics.EE_POSE, topics.JOINT_STATES], self._on_synced,
                              slop=self.get_parameter("sync_slop").value)
        self.create_subscription(PointCloud2, topics.CLOUD, lambda m: self._sync.add(topics.CLOUD, m), qos.SENSOR)
        self.create_subscription(PoseStamped, topics.EE_POSE, lambda m: self._sync.add(topics.EE_POSE, m),
                                 qos.RELIABLE)
        self.create_subscription(JointState, topics.JOINT_STATES,
                                 lambda m: self._sync.add(topics.JOINT_STATES, m), qos.RELIABLE)

    def _on_synced(self, messages: dict) -> None:
        try:
            # An absurd pose (1e39 m) would overflow the heightmap's and the state's float32.
            check_position(msgs.pose7(messages[topics.EE_POSE].pose)[:3], "end-effector position")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PerceptionLimitWarning)
                obs = self.observations.build(messages[topics.CLOUD], messages[topics.EE_POSE],
                                              messages[topics.JOINT_STATES])
        except (FrameError, PointCloud2Error, KeyError, ValueError) as e:
            self._log.warning(reason_key(str(e)), f"skipped a cloud: {e}")
            return
        stamp_s = msgs.seconds(messages[topics.CLOUD].header.stamp)
        for warning in caught:  # the cost bounds of object_state, or a cloud with nothing in view
            if issubclass(warning.category, PerceptionLimitWarning):
                self._log.warning(reason_key(str(warning.message)), f"cloud at {stamp_s:.3f} s: {warning.message}")
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        self.last_observation = obs
        stamp = messages[topics.CLOUD].header.stamp
        self._publish_heightmap(obs.heightmap[0], stamp)
        self._publish_state(obs.object_state)
        self._pub_objects.publish(msgs.pose_array(
            [np.concatenate([o.centroid, yaw_quat_xyzw(o.yaw)]) for o in obs.objects],
            self._base_frame, msgs.seconds(stamp)))

    def _publish_heightmap(self, heights: np.ndarray, stamp) -> None:
        # Row i runs along base -y and column j along base +x (equimanip.perception.heightmap), so
        # the image shows the workspace from above with +x to the right.
        image = Image(height=heights.shape[0], width=heights.shape[1], encoding="32FC1",
                      is_bigendian=0, step=heights.shape[1] * 4)
        image.header.stamp = stamp
        image.header.frame_id = self._base_frame
        # An array.array is taken as is; bytes would be checked element by element in Python.
        image.data = array.array("B", np.ascontiguousarray(heights, dtype="<f4").tobytes())
        self._pub_heightmap.publish(image)

    def _publish_state(self, state: np.ndarray) -> None:
        msg = Float32MultiArray()
        config = self.observations.config
        names = object_state_layout(config.max_objects, config.goal_in_state)
        msg.layout.dim = [MultiArrayDimension(label=",".join(names), size=len(state), stride=len(state))]
        msg.data = state.astype(np.float32).tolist()
        self._pub_state.publish(msg)


def main(args=None):
    spin_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
