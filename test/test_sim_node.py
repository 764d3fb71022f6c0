"""sim_node over real DDS: what it publishes, what it accepts, and what it refuses."""
import json
import math
import re

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from equimanip.action import ACTION_NAMES, MAX_STEP_M
from equimanip.geometry import pose7_to_matrix, transform_points
from equimanip.nodes import msgs, qos, topics
from equimanip.perception.pointcloud2 import pointcloud2_to_xyz
from equimanip.sim.sim_node import MAX_TRAJECTORY_POINTS, SimNode
from equimanip.sim.world import WORKSPACE

pytestmark = pytest.mark.ros


class Probe(Node):
    """Plays the controller: keeps the latest state, sends raw (possibly bad) commands."""

    def __init__(self, **kw):
        super().__init__("probe", **kw)
        self.ee: list[PoseStamped] = []
        self.joints: list[JointState] = []
        self.clouds: list[PointCloud2] = []
        self.camera_pose: list[PoseStamped] = []
        self.create_subscription(PoseStamped, topics.EE_POSE, self.ee.append, qos.RELIABLE)
        self.create_subscription(JointState, topics.JOINT_STATES, self.joints.append, qos.RELIABLE)
        self.create_subscription(PointCloud2, topics.CLOUD, self.clouds.append, qos.SENSOR)
        self.create_subscription(PoseStamped, topics.CAMERA_POSE, self.camera_pose.append, qos.LATCHED)
        self.camera_infos: list[CameraInfo] = []
        self.create_subscription(CameraInfo, topics.CAMERA_INFO, self.camera_infos.append, qos.SENSOR)
        self.events: list[DiagnosticArray] = []
        self.create_subscription(DiagnosticArray, topics.SIM_EPISODE_EVENTS, self.events.append, qos.RELIABLE)
        self.metadata: list[dict] = []
        self.create_subscription(String, topics.SIM_METADATA, lambda m: self.metadata.append(json.loads(m.data)),
                                 qos.LATCHED)
        self.twist = self.create_publisher(TwistStamped, topics.TWIST, qos.RELIABLE)
        self.gripper = self.create_publisher(Float64, topics.GRIPPER, qos.RELIABLE)
        self.trajectory = self.create_publisher(JointTrajectory, topics.JOINT_TRAJECTORY, qos.RELIABLE)
        self.reset = self.create_client(Trigger, topics.SIM_RESET)

    def send_twist(self, linear, yaw_rate=0.0, frame="base_link", stamp_s=None):
        msg = TwistStamped()
        msg.header.frame_id = frame
        if stamp_s is not None:
            msg.header.stamp = msgs.time_msg(stamp_s)
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = linear
        msg.twist.angular.z = yaw_rate
        self.twist.publish(msg)

    def send_trajectory(self, names, points, velocities=None):
        msg = JointTrajectory(joint_names=list(names))
        for k, (positions, t) in enumerate(points):
            msg.points.append(JointTrajectoryPoint(
                positions=list(positions), time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9)),
                velocities=list(velocities[k]) if velocities is not None else []))
        self.trajectory.publish(msg)

    def ee_position(self):
        return msgs.pose7(self.ee[-1].pose)[:3]


def _bring_up(ros, **parameters):
    """A sync-mode simulation with ``parameters`` and a probe, connected, first state received.
    The probe sends motion commands alone, so a step does not wait for a gripper command unless
    a test asks for it."""
    sim = ros.node(SimNode, **{"sync": True, "sync_gripper": False, **parameters})
    probe = ros.node(Probe)
    _connect(ros, sim, probe)
    sim.republish()
    ros.spin_until(lambda: probe.ee and probe.joints, what="the first state")
    return sim, probe


@pytest.fixture
def loop(ros):
    """block_picking without the point cloud (most tests need only the robot state)."""
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3)
    return ros, sim, probe


def _connect(ros, sim, probe):
    """Wait until every command topic and state topic is matched both ways (a message sent
    before its subscription matched would be lost, and the test would wait for nothing)."""
    ros.spin_until(lambda: all(sim.count_publishers(t) > 0 for t in (topics.TWIST, topics.GRIPPER,
                                                                      topics.JOINT_TRAJECTORY))
                   and all(probe.count_publishers(t) > 0 for t in (topics.EE_POSE, topics.JOINT_STATES,
                                                                     topics.CLOUD, topics.CAMERA_POSE,
                                                                     topics.CAMERA_INFO))
                   and probe.reset.service_is_ready(), what="discovery")


def _step(ros, probe, send):
    """Send a command and wait for the state of the step it triggers."""
    n = len(probe.ee)
    send()
    ros.spin_until(lambda: len(probe.ee) > n, what="the next state")
    return probe.ee_position()


def _delivered(ros, sim, topic: str, count: int):
    """Wait until the simulation has received ``count`` messages on a command topic in all: the
    barrier before checking that something did NOT happen (no fixed wall-clock wait)."""
    ros.spin_until(lambda: sim.received[topic] >= count, what=f"{count} {topic} messages to arrive")


def _reset(ros, probe):
    future = probe.reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    assert future.result().success, future.result().message
    return future.result().message


def _log_lines(capfd, seen: list, expected: str) -> bool:
    seen.append(capfd.readouterr().err)
    return expected in "".join(seen)


def test_a_twist_moves_the_gripper_by_velocity_times_period(loop):
    ros, sim, probe = loop
    start = probe.ee_position()
    for _ in range(3):
        end = _step(ros, probe, lambda: probe.send_twist((0.2, 0.0, 0.0)))
    # 3 steps of 0.2 m/s x 0.1 s; the arm tracks to within a few millimetres.
    assert end[0] - start[0] == pytest.approx(0.06, abs=0.008)
    assert abs(end[1] - start[1]) < 0.005


@pytest.mark.parametrize("linear,yaw_rate,frame,reason", [
    ((math.nan, 0.0, 0.0), 0.0, "base_link", "non-finite"),
    ((0.0, math.inf, 0.0), 0.0, "base_link", "non-finite"),
    ((0.0, 0.0, 0.0), math.nan, "base_link", "twist.angular has non-finite"),
    ((0.0, 0.0, 0.0), -math.inf, "base_link", "twist.angular has non-finite"),
    ((0.1, 0.0, 0.0), 0.0, "camera_link", "frame 'camera_link'"),
])
def test_bad_twists_hold_the_arm_and_say_why(loop, capfd, linear, yaw_rate, frame, reason):
    ros, sim, probe = loop
    start = probe.ee_position()
    for _ in range(3):
        end = _step(ros, probe, lambda: probe.send_twist(linear, yaw_rate, frame=frame))
    assert np.linalg.norm(end - start) < 0.002
    assert reason in capfd.readouterr().err


@pytest.mark.parametrize("offset,reason", [(-0.5, "more than command_timeout (0.25 s) before"),
                                           (1e6, "in the future")])
def test_real_time_mode_rejects_stale_and_future_stamps(ros, capfd, offset, reason):
    sim = ros.node(SimNode, sync=False, publish_cloud=False)
    probe = ros.node(Probe)
    _connect(ros, sim, probe)
    ros.spin_until(lambda: sim.env.time >= 0.6, what="simulated time to pass (a stamp can then be old)")
    start = probe.ee_position()
    for k in range(5):
        probe.send_twist((0.3, 0.0, 0.0), stamp_s=sim.env.time + offset)
        _delivered(ros, sim, "twist", k + 1)
    steps = sim.env.steps
    ros.spin_until(lambda: sim.env.steps >= steps + 2 and len(probe.ee) > 0
                   and msgs.seconds(probe.ee[-1].header.stamp) >= sim.env.time - 1e-9, what="two more steps")
    assert np.linalg.norm(probe.ee_position() - start) < 0.003
    assert reason in capfd.readouterr().err


def test_real_time_mode_accepts_a_reply_one_control_step_late(ros, capfd):
    """The default command_timeout (0.25 s) leaves room for a controller that answers a state
    after the next one has come out; the refusal message and the default agree."""
    sim = ros.node(SimNode, sync=False, publish_cloud=False)
    probe = ros.node(Probe)
    _connect(ros, sim, probe)
    ros.spin_until(lambda: sim.env.time >= 0.3, what="simulated time to pass")
    start = probe.ee_position()
    late = sim.env.time - sim.control_period
    for k in range(3):
        probe.send_twist((0.3, 0.0, 0.0), stamp_s=late)
        _delivered(ros, sim, "twist", k + 1)
    steps = sim.env.steps
    ros.spin_until(lambda: sim.env.steps >= steps + 2, what="two more steps")
    ros.spin_until(lambda: probe.ee_position()[0] - start[0] > 0.02, what="the arm to move")
    assert "rejected twist" not in capfd.readouterr().err


def test_sync_mode_drops_a_command_for_an_earlier_state(loop, capfd):
    """A late or repeated decision must not execute on a later state (it would shift every later
    step by one); the command for the current state then steps as usual."""
    ros, sim, probe = loop
    _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    earlier = msgs.seconds(probe.ee[-2].header.stamp)
    steps, start = sim.env.steps, probe.ee_position()
    probe.send_twist((0.3, 0.0, 0.0), stamp_s=earlier)
    _delivered(ros, sim, "twist", sim.received["twist"] + 1)
    assert sim.env.steps == steps
    assert "ignored a twist for the state at" in capfd.readouterr().err
    now = msgs.seconds(probe.ee[-1].header.stamp)
    end = _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0), stamp_s=now))
    assert sim.env.steps == steps + 1 and np.linalg.norm(end - start) < 0.002


@pytest.mark.parametrize("motion_first", [True, False], ids=["motion_first", "gripper_first"])
def test_sync_step_waits_for_both_halves_of_a_command_in_any_order(ros, motion_first):
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, sync_gripper=True)
    steps = sim.env.steps
    halves = [("twist", lambda: probe.send_twist((0.0, 0.0, 0.0))),
              ("gripper", lambda: probe.gripper.publish(Float64(data=0.0)))]
    (first_topic, first), (_, second) = halves if motion_first else halves[::-1]
    first()
    _delivered(ros, sim, first_topic, sim.received[first_topic] + 1)
    assert sim.env.steps == steps             # half a command: no step yet
    n = len(probe.joints)
    second()                                  # the other half: one step, already closing
    ros.spin_until(lambda: len(probe.joints) > n, what="the step")
    assert sim.env.steps == steps + 1
    fingers = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"])
    assert fingers.sum() < 0.07


def test_sync_takes_the_gripper_from_the_stamped_action_of_this_state(ros):
    """A controller that sends stamped actions (equimanip's) has each step's gripper paired with
    the state by the action's stamp: the unstamped gripper command of an answer to an earlier state
    (dropped as stale, its gripper command late) never counts for this one, and an action for an
    earlier state is no half of this step."""
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, sync_gripper=True)
    action = probe.create_publisher(JointState, topics.ACTION, qos.RELIABLE)
    ros.spin_until(lambda: sim.count_publishers(topics.ACTION) > 0, what="discovery of the action topic")
    # One step first, answered with its action as equimanip's controllers do (which makes the
    # simulation pair grippers by stamp from then on), so that the earlier state below has a stamp.
    first = msgs.seconds(probe.ee[-1].header.stamp)
    _step(ros, probe, lambda: (probe.gripper.publish(Float64(data=1.0)), probe.send_twist((0.0, 0.0, 0.0)),
                               action.publish(msgs.action_msg([1.0, 0, 0, 0, 0], msgs.time_msg(first),
                                                              "base_link"))))
    now = msgs.seconds(probe.ee[-1].header.stamp)
    earlier = now - sim.control_period
    steps = sim.env.steps
    # An earlier state's answer arriving late: its twist and action are dropped, its gripper
    # command (closing) is the latched value but no half of this step.
    probe.gripper.publish(Float64(data=0.0))
    probe.send_twist((0.0, 0.0, 0.0), stamp_s=earlier)
    action.publish(msgs.action_msg([0.0, 0, 0, 0, 0], msgs.time_msg(earlier), "base_link"))
    _delivered(ros, sim, "action", 2)
    # This state's answer: the twist, then its action (the gripper command it sends is late).
    probe.send_twist((0.0, 0.0, 0.0), stamp_s=now)
    _delivered(ros, sim, "twist", 2)
    assert sim.env.steps == steps              # the twist alone: waits for this state's action
    n = len(probe.joints)
    action.publish(msgs.action_msg([1.0, 0, 0, 0, 0], msgs.time_msg(now), "base_link"))
    ros.spin_until(lambda: len(probe.joints) > n, what="the step")
    assert sim.env.steps == steps + 1
    fingers = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"])
    assert fingers.sum() > 0.075               # open, as this state's action said (not the stale close)


def test_sync_a_stop_that_commands_no_gripper_leaves_it_closed(ros):
    """A controller's stop before it ever commanded the gripper (restarted in mid-episode, its
    first decision failed) sends a stamped action without ``p``: the step keeps the gripper the
    last step had, not an open one (which would drop a held block) nor a stale command's."""
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, sync_gripper=True)
    action = probe.create_publisher(JointState, topics.ACTION, qos.RELIABLE)
    ros.spin_until(lambda: sim.count_publishers(topics.ACTION) > 0, what="discovery of the action topic")

    def answer(p, gripper=True):
        now = msgs.seconds(probe.ee[-1].header.stamp)
        probe.send_twist((0.0, 0.0, 0.0), stamp_s=now)
        action.publish(msgs.action_msg([p, 0, 0, 0, 0], msgs.time_msg(now), "base_link", gripper=gripper))

    for _ in range(10):                       # close the gripper
        _step(ros, probe, lambda: answer(0.0))
    closed = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"]).sum()
    assert closed < 0.01
    probe.gripper.publish(Float64(data=1.0))  # a stale "open" on the unstamped topic
    for _ in range(5):
        _step(ros, probe, lambda: answer(1.0, gripper=False))
    fingers = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"])
    assert fingers.sum() < 0.01


def test_sync_an_earlier_states_action_does_not_make_steps_wait_for_actions(ros):
    """Only an action for the current state (or the one just answered) switches the simulation
    to pairing the gripper by stamp: one for another state (a recording played back) must not
    leave a controller that sends no actions waiting forever."""
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, sync_gripper=True)
    action = probe.create_publisher(JointState, topics.ACTION, qos.RELIABLE)
    ros.spin_until(lambda: sim.count_publishers(topics.ACTION) > 0, what="discovery of the action topic")
    for _ in range(3):
        _step(ros, probe, lambda: (probe.gripper.publish(Float64(data=1.0)), probe.send_twist((0.0, 0.0, 0.0))))
    earlier = msgs.seconds(probe.ee[-1].header.stamp) - 3 * sim.control_period
    action.publish(msgs.action_msg([0.0, 0, 0, 0, 0], msgs.time_msg(earlier), "base_link"))
    _delivered(ros, sim, "action", 1)
    # Twist and gripper command, no action: a step (not a republish of the state after a wait).
    steps = sim.env.steps
    probe.gripper.publish(Float64(data=1.0))
    probe.send_twist((0.0, 0.0, 0.0))
    ros.spin_until(lambda: sim.env.steps > steps, timeout_s=5.0, what="the step")


def test_a_ros1_style_frame_name_is_the_same_frame(loop):
    ros, sim, probe = loop
    start = probe.ee_position()
    end = _step(ros, probe, lambda: probe.send_twist((0.2, 0.0, 0.0), frame="/base_link"))
    assert end[0] - start[0] > 0.01


@pytest.mark.parametrize("bad,reason", [(1.5, "outside [0, 1]"), (-0.2, "outside [0, 1]"),
                                        (math.nan, "not finite"), (math.inf, "not finite")])
def test_bad_gripper_commands_are_ignored(loop, capfd, bad, reason):
    ros, sim, probe = loop
    probe.gripper.publish(Float64(data=bad))
    for _ in range(5):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    fingers = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"])
    assert fingers.sum() > 0.07  # still open
    assert reason in capfd.readouterr().err


@pytest.mark.parametrize("names,points,reason", [
    (["panda_joint1", "no_such_joint"], [([0.0, 0.0], 1.0)], "unknown joints"),
    (["panda_joint1", "panda_joint2"], [([0.1], 1.0)], "1 positions for 2 joints"),
    (["panda_joint1"], [([math.nan], 1.0)], "non-finite"),
    (["panda_joint1", "panda_joint1"], [([0.1, 0.1], 1.0)], "names a joint twice"),
    (["panda_joint1"], [], "no points"),
    (["panda_joint1"], [([0.1], -1.0)], "increasing"),
    (["panda_joint1"], [([0.1], 1.0), ([0.2], 0.5)], "increasing"),
    (["panda_joint1"], [([9.0], 1.0)], "joint limits"),
    (["panda_joint1"], [([0.1], 1.0, [math.nan])], "velocities has non-finite"),
    (["panda_joint1"], [([0.1], 1.0, [0.1, 0.2])], "2 velocities for 1 joints"),
    (["panda_joint1"], [([0.1], 1.0, [50.0])], "beyond the joints' limits"),
    # Home with the wrist bent by 0.6 rad: valid joint positions, the hand 34 degrees off vertical.
    ([f"panda_joint{i}" for i in range(1, 8)], [([0.0, -0.183, 0.0, -2.491, 0.0, 2.907, 0.785], 2.0)],
     "point 0 tilts the gripper 34 degrees"),
])
def test_bad_trajectories_hold_the_arm_and_say_why(loop, capfd, names, points, reason):
    ros, sim, probe = loop
    start = probe.ee_position()
    velocities = [p[2] for p in points] if points and len(points[0]) > 2 else None
    points = [p[:2] for p in points]
    for _ in range(3):
        end = _step(ros, probe, lambda: probe.send_trajectory(names, points, velocities))
    assert np.linalg.norm(end - start) < 0.002
    assert reason in capfd.readouterr().err


def test_a_trajectory_too_long_to_decode_is_refused_undecoded(loop, capfd):
    ros, sim, probe = loop
    start = probe.ee_position()
    points = [([0.01 * (k % 10)], 0.01 * (k + 1)) for k in range(MAX_TRAJECTORY_POINTS + 1)]
    end = _step(ros, probe, lambda: probe.send_trajectory(["panda_joint1"], points))
    assert np.linalg.norm(end - start) < 0.002
    reason = f"trajectory has {MAX_TRAJECTORY_POINTS + 1} points; at most {MAX_TRAJECTORY_POINTS} are accepted"
    assert reason in capfd.readouterr().err
    end = _step(ros, probe, lambda: probe.send_trajectory(["panda_joint1"], points[:MAX_TRAJECTORY_POINTS]))
    assert sim.env.steps == 2  # the longest accepted one is taken (and steps like any other)


def test_every_kind_of_rejected_command_gets_its_own_log_line(loop, capfd):
    """Per reason, not per call site: in sync mode (many commands a second) each kind of problem
    is still reported, within the same second."""
    ros, sim, probe = loop
    bad = [
        (lambda: probe.send_twist((math.nan, 0.0, 0.0)), "twist.linear has non-finite"),
        (lambda: probe.send_twist((0.1, 0.0, 0.0), frame="camera_link"), "frame 'camera_link'"),
        (lambda: probe.send_trajectory(["no_such_joint"], [([0.0], 1.0)]), "unknown joints"),
        (lambda: probe.send_trajectory(["panda_joint1"], []), "no points"),
        (lambda: probe.send_trajectory(["panda_joint1"], [([9.0], 1.0)]), "joint limits"),
        (lambda: probe.send_twist((2.0, 0.0, 0.0)), "scaled to the limit"),
    ]
    for send, _ in bad:
        _step(ros, probe, send)
        _step(ros, probe, send)  # the same reason again: held back
    err = capfd.readouterr().err
    for _, reason in bad:
        assert err.count(reason) == 1, (reason, err)


def test_absurd_numbers_are_logged_readably(loop, capfd):
    ros, sim, probe = loop
    _step(ros, probe, lambda: probe.send_twist((1.7e308, 0.0, 0.0)))
    err = capfd.readouterr().err
    assert "scaled to the limit" in err and not re.search(r"\d{30}", err)


def test_a_trajectory_moves_the_joint(loop):
    ros, sim, probe = loop
    q0 = msgs.joint_positions(probe.joints[-1], ["panda_joint1"])[0]
    target = q0 + 0.2
    for _ in range(10):
        _step(ros, probe, lambda: probe.send_trajectory(["panda_joint1"], [([target], 0.5)]))
    q1 = msgs.joint_positions(probe.joints[-1], ["panda_joint1"])[0]
    assert q1 == pytest.approx(target, abs=0.02)


def test_real_time_mode_halts_a_silent_controller(ros):
    sim = ros.node(SimNode, sync=False, publish_cloud=False, command_timeout=0.1)
    probe = ros.node(Probe)
    _connect(ros, sim, probe)
    ros.spin_until(lambda: probe.ee, what="state")
    start = probe.ee_position()
    probe.send_twist((0.2, 0.0, 0.0))
    ros.spin_until(lambda: probe.ee_position()[0] - start[0] > 0.01, what="the twist to move the arm")
    ros.spin_for(0.4)  # longer than command_timeout: the twist has run out by now
    after_command = probe.ee_position()
    steps = sim.env.steps
    ros.spin_until(lambda: sim.env.steps >= steps + 4, what="four more steps without a command")
    assert np.linalg.norm(probe.ee_position() - after_command) < 0.005


def test_real_time_mode_says_when_it_cannot_keep_up(ros, capfd):
    """A control step longer than the control period (here: rendering a 320 x 240 cloud, tens of
    milliseconds, at a 10 ms period) is reported, per reason, not once per step."""
    ros.node(SimNode, sync=False, control_period=0.01, **{"camera.width": 320, "camera.height": 240})
    seen = []
    ros.spin_until(lambda: _log_lines(capfd, seen, "more than the control period of 10 ms"), what="the overrun warning")
    ros.spin_for(0.3)
    assert "".join(seen + [capfd.readouterr().err]).count("more than the control period") == 1


def test_cloud_and_camera_pose_show_the_block(ros):
    sim, probe = _bring_up(ros, publish_cloud=True, seed=5)
    ros.spin_until(lambda: probe.clouds and probe.camera_pose, what="a cloud and the camera pose")
    cloud = probe.clouds[-1]
    assert cloud.header.frame_id == "camera_depth_optical_frame"
    assert (cloud.height, cloud.width) == (sim.get_parameter("camera.height").value,
                                           sim.get_parameter("camera.width").value)
    T = pose7_to_matrix(msgs.pose7(probe.camera_pose[-1].pose))
    assert np.allclose(msgs.pose7(probe.camera_pose[-1].pose), sim.get_parameter("camera_pose").value)
    points = transform_points(T, pointcloud2_to_xyz(cloud).reshape(-1, 3))
    points = points[np.isfinite(points).all(axis=1)]
    block = sim.env.observe(render=False).object_poses[0][:3]
    # Below the gripper (which hovers above the scene), around the block's centre: its top face.
    near = points[(np.linalg.norm(points[:, :2] - block[:2], axis=1) < 0.012) & (points[:, 2] < 0.15)]
    assert len(near) >= 3
    assert np.median(near[:, 2]) == pytest.approx(2 * block[2], abs=0.005)


def test_republish_sends_the_same_state_again_not_a_new_rendering(ros):
    """republish() (what wakes a controller that missed a state) sends the state as it was: with
    depth noise, a second rendering would give the same stamp another cloud and shift every later
    cloud's noise, so a sync-mode run would depend on whether a controller was ever late."""
    sim, probe = _bring_up(ros, publish_cloud=True, seed=5, **{"camera.depth_noise_std": 0.002,
                                                              "camera.width": 64, "camera.height": 48})
    ros.spin_until(lambda: probe.clouds, what="a cloud")
    first = probe.clouds[-1]
    sim.republish()
    ros.spin_until(lambda: len(probe.clouds) >= 2, what="the cloud again")
    again = probe.clouds[-1]
    assert again.header.stamp == first.header.stamp and bytes(again.data) == bytes(first.data)
    _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    ros.spin_until(lambda: len(probe.clouds) >= 3, what="the next step's cloud")
    assert bytes(probe.clouds[-1].data) != bytes(first.data)      # a new state: a new rendering


def test_camera_info_projects_each_point_onto_its_own_pixel(ros):
    sim, probe = _bring_up(ros, publish_cloud=True, **{"camera.width": 64, "camera.height": 48})
    ros.spin_until(lambda: probe.clouds and probe.camera_infos, what="a cloud and its camera info")
    info, cloud = probe.camera_infos[-1], probe.clouds[-1]
    assert info.header == cloud.header and (info.width, info.height) == (64, 48)
    xyz = pointcloud2_to_xyz(cloud)
    K = np.array(info.k).reshape(3, 3)
    rows, cols = np.nonzero(np.isfinite(xyz[..., 2]))
    p = xyz[rows, cols].astype(np.float64)
    u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
    v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
    assert np.allclose(u, cols, atol=1e-3) and np.allclose(v, rows, atol=1e-3)


def test_reset_service_follows_the_seed_sequence(loop):
    ros, sim, probe = loop
    sim.set_parameters([Parameter("seed", value=10)])
    poses = []
    for _ in range(2):
        future = probe.reset.call_async(Trigger.Request())
        ros.spin_until(future.done, what="reset")
        assert future.result().success and "seed" in future.result().message
        poses.append(sim.env.observe(render=False).object_poses.copy())
    sim.set_parameters([Parameter("seed", value=10)])
    future = probe.reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    again = sim.env.observe(render=False).object_poses
    assert not np.allclose(poses[0], poses[1])
    assert np.allclose(poses[0], again, atol=1e-4)  # same scene (physics settling differs by um)


@pytest.mark.parametrize("name,value,reason", [
    ("task", "juggling", "must be one of"),
    ("control_period", -0.1, "read-only"),
    ("camera.width", -5, "out of range"),
    ("command_timeout", -1.0, "out of range"),
    ("camera_pose", [0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0], "quaternion"),
    ("camera_pose", [0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0], "unit"),
])
def test_bad_parameters_are_rejected_at_set_time(loop, name, value, reason):
    ros, sim, probe = loop
    result = sim.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason


def test_inconsistent_camera_is_rejected(loop):
    ros, sim, probe = loop
    result = sim.set_parameters([Parameter("camera.near", value=5.0)])[0]  # beyond far (2 m)
    assert not result.successful and "invalid camera" in result.reason
    assert sim.get_parameter("camera.near").value == pytest.approx(0.1)
    assert sim.set_parameters([Parameter("camera.height", value=480)])[0].successful
    result = sim.set_parameters([Parameter("camera.width", value=1280)])[0]
    assert not result.successful and "1280 x 480 pixels is more than the 307200 (640 x 480)" in result.reason


def test_task_change_applies_at_reset_and_time_keeps_running(loop):
    ros, sim, probe = loop
    for _ in range(3):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    before = msgs.seconds(probe.ee[-1].header.stamp)
    assert sim.set_parameters([Parameter("task", value="drawer_opening")])[0].successful
    assert sim.env.task.name == "block_picking"  # not in the middle of an episode
    future = probe.reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    assert sim.env.task.name == "drawer_opening"
    ros.spin_until(lambda: msgs.seconds(probe.ee[-1].header.stamp) != before, what="the new scene")
    assert msgs.seconds(probe.ee[-1].header.stamp) > before  # /clock never goes backwards
    assert len(sim.env.observe(render=False).object_poses) == 2


def test_unknown_task_refuses_to_start(ros):
    with pytest.raises(ValueError, match="juggling"):
        ros.node(SimNode, task="juggling")


def test_a_camera_too_large_refuses_to_start(ros):
    with pytest.raises(ValueError, match="invalid camera: 1280 x 960 pixels is more than"):
        ros.node(SimNode, **{"camera.width": 1280, "camera.height": 960})


def test_max_steps_applies_at_the_next_reset(loop):
    ros, sim, probe = loop
    assert sim.set_parameters([Parameter("max_steps", value=2)])[0].successful
    future = probe.reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    for _ in range(2):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    assert sim.env.done and sim.env.steps == 2 and not sim.env.success


def _event(array: DiagnosticArray) -> tuple[str, dict]:
    (status,) = array.status
    return status.name, {kv.key: kv.value for kv in status.values}


def test_episode_events_and_metadata(loop):
    ros, sim, probe = loop
    ros.spin_until(lambda: probe.metadata, what="the latched metadata")
    metadata = probe.metadata[-1]
    assert metadata["task"] == "block_picking" and metadata["action_names"] == list(ACTION_NAMES)
    assert metadata["workspace_low"] == list(WORKSPACE.low) and metadata["enforce_limits"] is True
    assert metadata["sync"] is True and metadata["control_period"] == sim.control_period
    assert sim.set_parameters([Parameter("max_steps", value=2)])[0].successful
    n = len(probe.events)
    _reset(ros, probe)
    ros.spin_until(lambda: len(probe.events) > n, what="episode_start")
    name, values = _event(probe.events[-1])
    assert name == "episode_start" and values["task"] == "block_picking"
    episode, seed = int(values["episode"]), int(values["seed"])
    for _ in range(2):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    ros.spin_until(lambda: _event(probe.events[-1])[0] == "episode_end", what="episode_end")
    name, values = _event(probe.events[-1])
    assert values == {"task": "block_picking", "seed": str(seed), "episode": str(episode), "success": "false",
                      "steps": "2", "truncated": "true"}
    assert probe.events[-1].header.stamp == probe.ee[-1].header.stamp  # the simulated instant it ended
    assert sim.set_parameters([Parameter("enforce_limits", value=False)])[0].successful
    ros.spin_until(lambda: probe.metadata[-1]["enforce_limits"] is False, what="metadata republished")


def test_auto_reset_in_sync_mode_starts_the_next_episode(ros):
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, max_steps=2, auto_reset=True)
    _reset(ros, probe)  # max_steps applies from this episode on
    first = sim.env.observe(render=False).object_poses
    for _ in range(2):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    assert sim.env.done
    _step(ros, probe, lambda: probe.send_twist((0.3, 0.0, 0.0)))  # answers the last state: resets
    assert not sim.env.done and sim.env.steps == 0
    assert not np.allclose(sim.env.observe(render=False).object_poses, first)  # the next seed's scene
    _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    assert sim.env.steps == 1


def test_without_limits_the_arm_executes_what_it_is_told(ros, capfd):
    """enforce_limits false: a twist beyond the speed limit is executed as given (no scaling, no
    workspace clipping); NaN is still refused."""
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, enforce_limits=False)
    start = probe.ee_position()
    end = _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, -1.0)))  # 10 cm down in one step
    assert start[2] - end[2] > MAX_STEP_M + 0.02
    for _ in range(3):
        end = _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, -1.0)))
    assert end[2] < WORKSPACE.low[2] - 0.005   # below the workspace floor, as told
    assert "scaled" not in capfd.readouterr().err
    _step(ros, probe, lambda: probe.send_twist((math.nan, 0.0, 0.0)))
    assert "non-finite" in capfd.readouterr().err
    assert np.all(np.isfinite(sim.env.observe(render=False).joint_positions))
