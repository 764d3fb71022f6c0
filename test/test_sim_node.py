"""sim_node over real DDS: what it publishes, what it accepts, and what it refuses."""
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from equimanip.geometry import pose7_to_matrix, transform_points
from equimanip.nodes import msgs, qos, topics
from equimanip.perception.pointcloud2 import pointcloud2_to_xyz
from equimanip.sim.sim_node import SimNode

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

    def send_trajectory(self, names, points):
        msg = JointTrajectory(joint_names=list(names))
        for positions, t in points:
            msg.points.append(JointTrajectoryPoint(
                positions=list(positions), time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9))))
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


@pytest.mark.parametrize("offset,reason", [(-0.25, "older than command_timeout"), (1e6, "in the future")])
def test_real_time_mode_rejects_stale_and_future_stamps(ros, capfd, offset, reason):
    sim = ros.node(SimNode, sync=False, publish_cloud=False)
    probe = ros.node(Probe)
    _connect(ros, sim, probe)
    ros.spin_until(lambda: probe.ee, what="state")
    ros.spin_for(0.5)  # let simulated time pass so that a stamp can be old
    start = probe.ee_position()
    for _ in range(5):
        probe.send_twist((0.3, 0.0, 0.0), stamp_s=sim.env.time + offset)
        ros.spin_for(0.1)
    ros.spin_for(0.3)
    assert np.linalg.norm(probe.ee_position() - start) < 0.003
    assert reason in capfd.readouterr().err


def test_sync_mode_drops_a_command_for_an_earlier_state(loop, capfd):
    """A late or repeated decision must not execute on a later state (it would shift every later
    step by one); the command for the current state then steps as usual."""
    ros, sim, probe = loop
    _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    earlier = msgs.seconds(probe.ee[-2].header.stamp)
    steps, start = sim.env.steps, probe.ee_position()
    probe.send_twist((0.3, 0.0, 0.0), stamp_s=earlier)
    ros.spin_for(0.3)
    assert sim.env.steps == steps
    assert "ignored a twist for the state at" in capfd.readouterr().err
    now = msgs.seconds(probe.ee[-1].header.stamp)
    end = _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0), stamp_s=now))
    assert sim.env.steps == steps + 1 and np.linalg.norm(end - start) < 0.002


@pytest.mark.parametrize("motion_first", [True, False], ids=["motion_first", "gripper_first"])
def test_sync_step_waits_for_both_halves_of_a_command_in_any_order(ros, motion_first):
    sim, probe = _bring_up(ros, publish_cloud=False, seed=3, sync_gripper=True)
    steps = sim.env.steps
    halves = [lambda: probe.send_twist((0.0, 0.0, 0.0)), lambda: probe.gripper.publish(Float64(data=0.0))]
    first, second = halves if motion_first else halves[::-1]
    first()
    ros.spin_for(0.3)
    assert sim.env.steps == steps             # half a command: no step yet
    n = len(probe.joints)
    second()                                  # the other half: one step, already closing
    ros.spin_until(lambda: len(probe.joints) > n, what="the step")
    assert sim.env.steps == steps + 1
    fingers = msgs.joint_positions(probe.joints[-1], ["panda_finger_joint1", "panda_finger_joint2"])
    assert fingers.sum() < 0.07


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
])
def test_bad_trajectories_hold_the_arm_and_say_why(loop, capfd, names, points, reason):
    ros, sim, probe = loop
    start = probe.ee_position()
    for _ in range(3):
        end = _step(ros, probe, lambda: probe.send_trajectory(names, points))
    assert np.linalg.norm(end - start) < 0.002
    assert reason in capfd.readouterr().err


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
    probe.send_twist((0.2, 0.0, 0.0))
    ros.spin_for(0.4)
    after_command = probe.ee_position()
    ros.spin_for(0.6)  # no further command: the arm must have stopped
    assert np.linalg.norm(probe.ee_position() - after_command) < 0.005


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
    with pytest.raises(Exception, match="juggling"):
        ros.node(SimNode, task="juggling")


def test_max_steps_applies_at_the_next_reset(loop):
    ros, sim, probe = loop
    assert sim.set_parameters([Parameter("max_steps", value=2)])[0].successful
    future = probe.reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    for _ in range(2):
        _step(ros, probe, lambda: probe.send_twist((0.0, 0.0, 0.0)))
    assert sim.env.done and sim.env.steps == 2 and not sim.env.success
