"""The scaffolding every controller node shares: robot state in, safe actions out.

A controller (scripted expert, Equivariant SAC policy, BMIL policy, MPPI planner) subclasses
``ControllerNode`` and implements ``act(messages) -> action``. The base class

* subscribes to the robot state topics (plus any the subclass asks for) and hands ``act`` one
  consistent set, all stamped with the same instant (``TimeSync``);
* publishes the action the way a real cell takes it: the gripper aperture on ``/gripper_command``
  first, then the motion as a MoveIt Servo twist, stamped with the instant the action was computed
  from (so the arm side can tell a stale command);
* passes every action through the safety layer: a non-finite action or an exception in ``act``
  becomes a zero twist (the arm holds still) and one throttled log line, never a crash.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from equimanip.action import action_to_velocity, clip_action
from equimanip.nodes import qos, topics
from equimanip.nodes.params import ParamSpec, declare_parameters
from equimanip.nodes.sync import TimeSync

CONTROLLER_PARAMS = [
    ParamSpec("control_period", 0.1, "Seconds per control step; converts per-step displacements "
              "to the twist's m/s. Must match the arm's control period.", min=0.01, max=1.0,
              read_only=True),
    ParamSpec("base_frame", "base_link", "Frame of the commanded twists.", read_only=True),
]

# A state offered again this long after it was answered is answered again: the first answer
# was probably lost (a publisher not yet matched), and the simulation repeats a state once a second.
REANSWER_AFTER_S = 0.5

# The robot state every controller reads. Topic name -> (message type, QoS).
STATE_TOPICS = {topics.EE_POSE: (PoseStamped, qos.RELIABLE), topics.JOINT_STATES: (JointState, qos.RELIABLE)}


class ControllerNode(Node):
    def __init__(self, name: str, params: Sequence[ParamSpec] = (), extra_topics: dict | None = None,
                 **node_kwargs):
        """``extra_topics`` maps further topics to read in step with the state to (type, QoS)."""
        super().__init__(name, **node_kwargs)
        declare_parameters(self, [*CONTROLLER_PARAMS, *params])
        self.control_period = self.get_parameter("control_period").value
        self._base_frame = self.get_parameter("base_frame").value
        self._pub_gripper = self.create_publisher(Float64, topics.GRIPPER, qos.RELIABLE)
        self._pub_twist = self.create_publisher(TwistStamped, topics.TWIST, qos.RELIABLE)
        subscribed = {**STATE_TOPICS, **(extra_topics or {})}
        self._sync = TimeSync(list(subscribed), self._on_state)
        for topic, (msg_type, profile) in subscribed.items():
            self.create_subscription(msg_type, topic, lambda m, t=topic: self._sync.add(t, m), profile)
        self.actions_published = 0
        self._last_stamp_ns = -1      # the state last acted on, and when: one decision per state
        self._last_answer = -math.inf
        self._last_gripper = None     # the last aperture commanded, repeated when holding still

    def inputs_connected(self) -> bool:
        """Every topic this controller reads has a publisher (discovery is done)."""
        return all(self.count_publishers(t) > 0 for t in self._sync.topics)

    def act(self, messages: dict) -> np.ndarray:
        """Action [p, dx, dy, dz, dyaw] for one consistent set of messages (topic -> message)."""
        raise NotImplementedError

    def _on_state(self, messages: dict) -> None:
        stamp = messages[topics.EE_POSE].header.stamp
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if stamp_ns == self._last_stamp_ns and time.monotonic() - self._last_answer < REANSWER_AFTER_S:
            return  # the same state again, just answered (a republish that crossed our answer)
        self._last_stamp_ns = stamp_ns
        try:
            action = self.act(messages)
            action, clipped = clip_action(action)
            if clipped:
                self.get_logger().warning("action outside the limits was clipped", throttle_duration_sec=1.0)
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the arm must hold still
            self.get_logger().error(f"no valid action ({e}); holding the arm still",
                                    throttle_duration_sec=1.0)
            if self._last_gripper is not None:  # keep the gripper as it is, and the pair complete
                self._pub_gripper.publish(Float64(data=self._last_gripper))
            self._publish_twist(np.zeros(3), 0.0, stamp)
            return
        self._last_gripper = float(action[0])
        self._pub_gripper.publish(Float64(data=self._last_gripper))
        linear, yaw_rate = action_to_velocity(action, self.control_period)
        self._publish_twist(linear, yaw_rate, stamp)

    def _publish_twist(self, linear, yaw_rate: float, stamp) -> None:
        self._last_answer = time.monotonic()
        msg = TwistStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self._base_frame
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
        msg.twist.angular.z = float(yaw_rate)
        self._pub_twist.publish(msg)
        self.actions_published += 1
