"""ControllerNode, the base of every controller: one decision per state, safe output always."""
import math

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.controller import REANSWER_AFTER_S, ControllerNode

pytestmark = pytest.mark.ros


class Scripted(ControllerNode):
    """Returns the next item of a script: an action, or an exception to raise."""

    def __init__(self, script, **kw):
        super().__init__("scripted", **kw)
        self.script = list(script)
        self.calls = 0

    def act(self, messages):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class Arm(Node):
    """Publishes robot states and records the commands that come back."""

    def __init__(self, **kw):
        super().__init__("arm", **kw)
        self.ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self.joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
        self.twists, self.grippers = [], []
        self.create_subscription(TwistStamped, topics.TWIST, self.twists.append, qos.RELIABLE)
        self.create_subscription(Float64, topics.GRIPPER, lambda m: self.grippers.append(m.data), qos.RELIABLE)

    def state(self, stamp_s):
        self.ee.publish(msgs.pose_stamped([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], "base_link", stamp_s))
        self.joints.publish(msgs.joint_state(["j"], [0.0], [0.0], stamp_s))


def _bring_up(ros, script):
    controller = ros.add(Scripted(script, context=ros.context))
    arm = ros.node(Arm)
    ros.spin_until(lambda: controller.count_publishers(topics.EE_POSE) > 0
                   and controller.count_publishers(topics.JOINT_STATES) > 0
                   and arm.count_publishers(topics.TWIST) > 0 and arm.count_publishers(topics.GRIPPER) > 0,
                   what="discovery")
    return controller, arm


def test_one_decision_per_state_and_safe_output_on_failure(ros):
    good = np.array([0.3, 0.01, -0.02, 0.0, 0.1])
    controller, arm = _bring_up(ros, [good, RuntimeError("policy blew up"),
                                      np.array([0.5, math.nan, 0, 0, 0]), np.array([2.0, 1.0, 0, 0, 0])])
    for stamp, expected in [(1.0, 1), (1.0, 1), (1.1, 2), (1.2, 3), (1.3, 4)]:  # 1.0 twice: a republish
        arm.state(stamp)
        ros.spin_until(lambda: len(arm.twists) >= expected, what=f"the twist for {stamp}")
        ros.spin_for(0.1)
        assert controller.calls == expected
    first, failed, nan, clipped = arm.twists
    assert msgs.seconds(first.header.stamp) == pytest.approx(1.0) and first.header.frame_id == "base_link"
    assert (first.twist.linear.x, first.twist.linear.y, first.twist.angular.z) == pytest.approx((0.1, -0.2, 1.0))
    for held in (failed, nan):  # an exception or a NaN: the arm holds still, the gripper stays
        assert (held.twist.linear.x, held.twist.linear.y, held.twist.linear.z, held.twist.angular.z) == (0, 0, 0, 0)
    assert clipped.twist.linear.x == pytest.approx(0.5)   # 5 cm per step at 10 Hz
    assert arm.grippers == pytest.approx([0.3, 0.3, 0.3, 1.0])  # one per twist, the same when holding


def test_a_state_offered_again_later_is_answered_again(ros):
    """The simulation repeats a state once a second when no command came: the first answer was
    probably lost, so the controller answers again (but not when the repeat crossed its answer)."""
    action = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    controller, arm = _bring_up(ros, [action] * 3)
    arm.state(2.0)
    ros.spin_until(lambda: len(arm.twists) == 1, what="the first answer")
    arm.state(2.0)                       # at once: already answered
    ros.spin_for(0.2)
    assert controller.calls == 1
    ros.spin_for(REANSWER_AFTER_S)
    arm.state(2.0)                       # later: answered again
    ros.spin_until(lambda: len(arm.twists) == 2, what="the second answer")
    assert controller.calls == 2
