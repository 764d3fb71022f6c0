"""The arm keeps its motion limits for the MEASURED pose, whatever it is sent.

A property-based test drives random and adversarial sequences of accepted commands (twists with
components at and beyond the limits, joint targets anywhere inside the joint limits, gripper
commands, holds and resets) through the real simulation and checks the measured grasp point after
every control step: inside the workspace box, at most the step limit per axis from the previous
step, and the gripper within the tilt limit of pointing down; then the same through ROS, in sync
and in real-time mode. The scene is the reach task's, whose target is a marker that nothing
touches: the limits are promised for the arm's own motion. Pressing the fingers on a solid object
can tilt the hand further (the 12 N m wrist yields); `equimanip bench motion --task block_picking`
measures how far. `equimanip bench motion` runs the same kinds of sequences by the thousand.
The adversarial joint configurations (equimanip.bench.motion.ADVERSARIAL_JOINTS) broke the limits
before they held for the measured pose: a valid trajectory target that tilted the hand 60-130
degrees and left the box (issue 6), a dive at the table, and the joint limits' corners.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equimanip.action import MAX_STEP_M, MAX_STEP_YAW
from equimanip.bench.motion import ADVERSARIAL_JOINTS, MotionRecord
from equimanip.sim.env import ManipulationEnv
from equimanip.sim.world import MOTION_LIMITS

# What the measured pose may exceed the limits by (the limits hold for the targets exactly): the
# tracking error of the position-controlled arm, and, for the step, the arm's momentum when a
# full-speed motion goes on (`equimanip bench motion`, 2,400 sequences and 95,000 steps with three
# seeds: at most 3.5 mm outside the box, 7.7 mm beyond the step, 0.05 degrees beyond the tilt).
POSITION_TOLERANCE_M = 0.005
STEP_TOLERANCE_M = 0.01
TILT_TOLERANCE = math.radians(2.0)


class LimitRecord(MotionRecord):
    """The measured pose after every step, checked against the limits as it comes in."""

    def check(self, ee_pose, what: str) -> None:
        excursion, step, tilt = self.add(ee_pose)
        assert excursion <= POSITION_TOLERANCE_M, f"{what}: {ee_pose[:3]} is {excursion:.4f} m outside the workspace"
        assert step <= MAX_STEP_M + STEP_TOLERANCE_M, f"{what}: moved {step:.4f} m along an axis in one step"
        assert tilt <= MOTION_LIMITS.max_tilt + TILT_TOLERANCE, f"{what}: tilted {math.degrees(tilt):.1f} deg"


@pytest.fixture(scope="module")
def env():
    env = ManipulationEnv(task="reach", render=False)
    yield env
    env.close()


def _axis_value(limit: float):
    """At, beyond and inside the limit: where clipping and workspace walls are tested hardest."""
    return st.one_of(st.sampled_from([-3 * limit, -limit, 0.0, limit, 3 * limit]), st.floats(-limit, limit))


twists = st.tuples(st.just("twist"), st.floats(0.0, 1.0), _axis_value(MAX_STEP_M), _axis_value(MAX_STEP_M),
                   _axis_value(MAX_STEP_M), _axis_value(MAX_STEP_YAW), st.integers(1, 8))
joint_targets = st.tuples(st.just("joints"),
                          st.one_of(st.sampled_from(ADVERSARIAL_JOINTS.tolist()),
                                    st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7).map(lambda u: ("unit", u))),
                          st.one_of(st.none(), st.floats(0.0, 1.0)), st.integers(1, 8))
others = st.one_of(st.tuples(st.just("gripper"), st.floats(0.0, 1.0)), st.tuples(st.just("hold")),
                   st.tuples(st.just("reset"), st.integers(0, 1000)))
command_sequences = st.lists(st.one_of(twists, joint_targets, others), min_size=5, max_size=16)


def run_sequence(env, seed: int, commands, record: LimitRecord) -> None:
    """Apply ``commands`` from a fresh scene; every control step is checked."""
    record.restart(env.reset(seed).ee_pose)
    lower, upper = (limits[:7] for limits in env.joint_limits)
    for command in commands:
        kind = command[0]
        if kind == "twist":
            _, p, dx, dy, dz, dyaw, repeat = command
            for _ in range(repeat):  # a twist held for several steps, as in real-time mode
                record.check(env.step([p, dx, dy, dz, dyaw])[0].ee_pose, f"twist {command}")
        elif kind == "joints":
            _, target, gripper, repeat = command
            if isinstance(target, tuple):  # unit coordinates inside the joint limits
                target = lower + np.asarray(target[1]) * (upper - lower)
            for _ in range(repeat):  # a joint trajectory towards one point, step after step
                record.check(env.step_joints(np.clip(target, lower, upper), gripper)[0].ee_pose,
                             f"joints {command}")
        elif kind == "gripper":
            record.check(env.step([command[1], 0.0, 0.0, 0.0, 0.0])[0].ee_pose, f"gripper {command}")
        elif kind == "hold":
            record.check(env.hold()[0].ee_pose, "hold")
        else:
            record.restart(env.reset(command[1]).ee_pose)


# The same 60 sequences in every run (derandomize): a test that passes or fails by the draw would
# flake in CI; `equimanip bench motion` draws thousands of fresh ones (README: 5.02 mm outside the
# box at worst over 2,000 sequences, so a random draw of 60 can, rarely, reach the 5 mm tolerance).
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), commands=command_sequences)
def test_measured_pose_keeps_the_limits_under_any_command_sequence(env, seed, commands):
    run_sequence(env, seed, commands, LimitRecord())


# ----------------------------------------------------------------------------- through ROS

@pytest.mark.ros
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "real_time"])
def test_measured_pose_keeps_the_limits_through_ros(ros, sync):
    """The same limits for what /ee_pose reports, in both timing modes: twists at ten times the
    speed limit into the corners of the box, a joint trajectory through tilting configurations,
    then a twist from wherever that left the arm (which swung it by 19-30 cm before)."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.node import Node
    from std_msgs.msg import Float64
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from equimanip.nodes import msgs, qos, topics
    from equimanip.sim.sim_node import SimNode

    class CarelessController(Node):
        def __init__(self, **kw):
            super().__init__("careless_controller", **kw)
            self.poses = []
            self.create_subscription(PoseStamped, topics.EE_POSE, self.poses.append, qos.RELIABLE)
            self.twist = self.create_publisher(TwistStamped, topics.TWIST, qos.RELIABLE)
            self.gripper = self.create_publisher(Float64, topics.GRIPPER, qos.RELIABLE)
            self.trajectory = self.create_publisher(JointTrajectory, topics.JOINT_TRAJECTORY, qos.RELIABLE)

        def send_twist(self, x, y, z, yaw_rate):
            msg = TwistStamped()
            msg.header.frame_id = "base_link"
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z, msg.twist.angular.z = x, y, z, yaw_rate
            self.twist.publish(msg)

        def send_trajectory(self, arm_positions):
            self.trajectory.publish(JointTrajectory(
                joint_names=[f"panda_joint{i}" for i in range(1, 8)],
                points=[JointTrajectoryPoint(positions=list(arm_positions), time_from_start=Duration(sec=1))]))

    sim = ros.node(SimNode, task="reach", sync=sync, sync_gripper=False, publish_cloud=False, seed=2)
    controller = ros.node(CarelessController)
    ros.spin_until(lambda: all(sim.count_publishers(t) for t in (topics.TWIST, topics.GRIPPER, topics.JOINT_TRAJECTORY))
                   and controller.count_publishers(topics.EE_POSE), what="discovery")
    record = LimitRecord()
    record.restart(sim.env.observe(render=False).ee_pose)  # the arm holds still until told otherwise

    def run(send, steps: int):
        """``steps`` control steps: in sync mode one command each; in real time the command is
        sent once a step, as a 10 Hz controller would, and the wall clock steps the arm."""
        for _ in range(steps):
            n = len(controller.poses)
            send()
            ros.spin_until(lambda: len(controller.poses) > n, what="the next state")
            for pose in controller.poses[n:]:
                record.check(msgs.pose7(pose.pose), "through ROS")

    run(lambda: controller.send_twist(0.5, 0.5, -0.5, math.pi), 12)
    run(lambda: controller.send_twist(-0.5, -0.5, 0.5, -math.pi), 6)
    controller.gripper.publish(Float64(data=0.0))
    run(lambda: controller.send_trajectory(ADVERSARIAL_JOINTS[0]), 15)
    run(lambda: controller.send_twist(0.5, -0.5, -0.5, 0.0), 8)
    assert record.free.steps + record.contact.steps >= 41
