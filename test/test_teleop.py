"""teleop_keyboard: keys -> actions, published like every controller's (twist, gripper, stamped
action) over real ROS, and keys read from a pipe as from a terminal."""
from __future__ import annotations

import numpy as np
import pytest

from equimanip.action import MAX_STEP_M, MAX_STEP_YAW
from equimanip.nodes.teleop_keyboard import KeyState


def test_keys_make_actions():
    keys = KeyState(speed=0.5, hold_time=0.3)
    np.testing.assert_array_equal(keys.action(now=0.0), [1.0, 0, 0, 0, 0])
    keys.press("w", now=0.0)
    keys.press("d", now=0.0)
    keys.press("q", now=0.1)
    np.testing.assert_allclose(keys.action(now=0.2), [1.0, 0.5 * MAX_STEP_M, -0.5 * MAX_STEP_M, 0, 0.5 * MAX_STEP_YAW])
    np.testing.assert_allclose(keys.action(now=0.35), [1.0, 0, 0, 0, 0.5 * MAX_STEP_YAW])  # w, d released
    keys.press("s", now=0.36)            # the opposite key replaces, never adds
    keys.press("w", now=0.37)
    assert keys.action(now=0.38)[1] == pytest.approx(0.5 * MAX_STEP_M)
    keys.press(" ")
    assert keys.action()[0] == 0.0        # space closes, again opens
    keys.press(" ")
    assert keys.action()[0] == 1.0
    keys.press("r", now=1.0)
    keys.press("x", now=1.0)              # stop
    np.testing.assert_array_equal(keys.action(now=1.0)[1:], 0.0)
    keys.press("?", now=1.0)              # unknown keys do nothing
    np.testing.assert_array_equal(keys.action(now=1.0)[1:], 0.0)


def test_teleop_publishes_like_a_controller(ros):
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64

    from equimanip.nodes import msgs, qos, topics
    from equimanip.nodes.teleop_keyboard import TeleopKeyboard

    teleop = ros.add(TeleopKeyboard(read_terminal=False, context=ros.context))
    arm = ros.add(Node("arm", context=ros.context))
    pub_ee = arm.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
    pub_joints = arm.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
    heard = {"action": [], "twist": [], "gripper": []}
    arm.create_subscription(JointState, topics.ACTION, heard["action"].append, qos.RELIABLE)
    arm.create_subscription(TwistStamped, topics.TWIST, heard["twist"].append, qos.RELIABLE)
    arm.create_subscription(Float64, topics.GRIPPER, heard["gripper"].append, qos.RELIABLE)
    ros.spin_until(lambda: teleop.inputs_connected() and arm.count_subscribers(topics.EE_POSE) > 0
                   and teleop.count_subscribers(topics.ACTION) > 0, 20.0, "discovery")

    def state(t):
        pub_ee.publish(msgs.pose_stamped([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], "base_link", t))
        pub_joints.publish(msgs.joint_state(["panda_finger_joint1", "panda_finger_joint2"], [0.04, 0.04],
                                            [0.0, 0.0], t))

    teleop.keys.press("w")
    teleop.keys.press(" ")
    for k in range(20):
        state(1.0 + 0.1 * k)
        teleop.keys.press("w")            # held: the terminal repeats it
        ros.spin_for(0.1)
        if any(m.position[1] > 0 for m in heard["action"]):
            break
    moving = [m for m in heard["action"] if m.position[1] > 0]
    assert moving, "no action with +x came out"
    action = moving[-1]
    assert list(action.name) == ["p", "dx", "dy", "dz", "dyaw"] and action.header.frame_id == "base_link"
    assert action.position[0] == 0.0 and action.position[1] == pytest.approx(0.5 * MAX_STEP_M, rel=1e-6)
    stamp = action.header.stamp.sec + action.header.stamp.nanosec * 1e-9
    assert any(abs(t.header.stamp.sec + t.header.stamp.nanosec * 1e-9 - stamp) < 1e-9 and t.twist.linear.x > 0
               for t in heard["twist"])             # the twist of the same state, in m/s
    assert heard["gripper"][-1].data == 0.0


def test_keys_from_a_pipe(ros):
    """Characters on stdin are keys (a terminal gives them one by one in cbreak mode)."""
    import os

    from equimanip.nodes.teleop_keyboard import TeleopKeyboard

    read_fd, write_fd = os.pipe()
    try:
        teleop = ros.add(TeleopKeyboard(key_fd=read_fd, context=ros.context))
        os.write(write_fd, b"e ")
        ros.spin_until(lambda: teleop.keys.gripper == 0.0, 5.0, "the keys to be read")
        assert teleop.keys.action()[4] < 0
    finally:
        os.close(write_fd)
