"""mppi_node: planner parameters refused with a reason (the planner keeps its settings), goals from
~/goal checked, the planned path published, and the node reaching targets past posts in the ROS
loop without touching them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.node import Node
from rclpy.parameter import Parameter

from equimanip.bringup import publishers
from equimanip.nodes import msgs, qos, topics

pytestmark = pytest.mark.ros


@pytest.fixture
def node(ros):
    from equimanip.nodes.mppi_node import MPPINode

    torch.set_num_threads(1)
    return ros.node(MPPINode, num_samples=64, horizon=5, seed=0)


def _set(node, **values):
    return node.set_parameters([Parameter(k, value=v) for k, v in values.items()])


@pytest.mark.parametrize("values, reason", [
    ({"group": "c8", "noise_sigma": [0.3, 0.01, 0.02, 0.015, 0.1]}, "equal on the two entries"),
    ({"group": "d8", "num_samples": 20}, "too small"),
    ({"obstacles.min_height": 0.5}, "min_height < max_height"),
    ({"horizon": 0}, "out of range"),                   # the descriptor's range
    ({"cost.safety_margin": 0.0}, "out of range"),
    ({"temperature": math.nan}, "out of range"),
    ({"noise_sigma": [0.3, 0.01, 0.01]}, "noise_sigma"),
    ({"group": "so2"}, "finite group"),
])
def test_invalid_settings_are_refused_with_a_reason_and_change_nothing(node, values, reason):
    before = node.planner.settings
    before_values = {name: node.get_parameter(name).value for name in values}
    results = node.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])
    assert not results.successful and reason in results.reason, results.reason
    node._apply_pending()
    assert node.planner.settings == before
    assert {name: node.get_parameter(name).value for name in values} == before_values


def test_cuda_refused_where_torch_sees_no_gpu(node):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    result = _set(node, device="cuda")[0]
    assert not result.successful and "GPU" in result.reason


def test_valid_settings_apply_at_the_next_decision_and_keep_the_warm_start_shape(node):
    assert all(r.successful for r in _set(node, horizon=8, group="c4", temperature=0.5, **{"cost.collision": 2.0}))
    assert node.planner.settings.mppi.horizon == 5                  # not under a running plan
    node._apply_pending()
    s = node.planner.settings
    assert (s.mppi.horizon, s.mppi.group, s.mppi.temperature, s.cost.collision) == (8, "c4", 0.5, 2.0)
    assert node.planner.mppi.nominal.shape == (8, 5)
    assert _set(node, torch_threads=1)[0].successful


def test_goals_on_the_topic_are_checked(ros, node):
    sender = ros.add(Node("goal_sender", context=ros.context))
    pub = sender.create_publisher(PoseStamped, "/mppi_node/goal", qos.LATCHED)
    ros.spin_until(lambda: publishers(node, "/mppi_node/goal") > 0, 10.0, "discovery")

    def send(position, quaternion=(1.0, 0.0, 0.0, 0.0), frame="base_link"):
        pub.publish(msgs.pose_stamped([*position, *quaternion], frame, 1.0))
        ros.spin_for(0.3)

    send((0.5, 0.0, 0.1), frame="camera_depth_optical_frame")        # another frame
    send((0.5, math.nan, 0.1))                                       # NaN
    send((1.5, 0.0, 0.1))                                            # outside the workspace box
    send((0.5, 0.0, 0.1), quaternion=(0.0, 0.0, 0.0, 0.0))           # no orientation
    assert node.goals.topic_goal is None
    yaw = 0.4
    send((0.55, 0.05, 0.12), quaternion=(math.cos(yaw / 2), math.sin(yaw / 2), 0.0, 0.0))   # gripper down, turned
    position, goal_yaw = node.goals.topic_goal
    np.testing.assert_allclose(position, [0.55, 0.05, 0.12])
    assert goal_yaw == pytest.approx(yaw)


class Loop:
    """The simulated reach_obstacles cell (sync mode) and mppi_node, contacts counted at the arm."""

    def __init__(self, ros, **params):
        from equimanip.nodes.mppi_node import MPPINode
        from equimanip.sim.sim_node import SimNode

        self.ros = ros
        self.sim = ros.node(SimNode, task="reach_obstacles", sync=True, seed=5000)
        self.node = ros.node(MPPINode, task="reach_obstacles", goal_source="object_poses", seed=0, **params)
        self.paths = []
        listener = ros.add(Node("path_listener", context=ros.context))
        listener.create_subscription(Path, "/mppi_node/planned_path", self.paths.append, qos.RELIABLE)
        self.contacts = 0
        self.sim.add_step_listener(self._count)
        ros.spin_until(lambda: publishers(self.sim, topics.TWIST) > 0 and self.node.inputs_connected()
                       and listener.count_publishers("/mppi_node/planned_path") > 0, 30.0, "discovery")

    def _count(self, env, _obs) -> None:
        self.contacts += env.task.obstacle_contacts(env.world)

    def episode(self, seed: int) -> tuple[bool, int]:
        from std_srvs.srv import Trigger

        self.sim.set_parameters([Parameter("seed", value=seed)])
        client = self.sim.create_client(Trigger, topics.SIM_RESET)
        self.ros.spin_until(client.service_is_ready, 10.0, "the reset service")
        future = client.call_async(Trigger.Request())
        self.ros.spin_until(future.done, 30.0, "the reset")
        self.ros.spin_until(lambda: self.sim.env.done, 120.0, "the episode to end")
        return self.sim.env.success, self.sim.env.steps


def test_reaches_targets_past_the_posts_without_touching_them_then_forgets_the_episode(ros):
    loop = Loop(ros)
    for seed in (5000, 5002):
        success, steps = loop.episode(seed)
        assert success and steps < 50, (seed, steps)
    assert loop.contacts == 0
    assert loop.node.stats.failures == 0 and loop.node.stats.decisions > 10
    path = loop.paths[-1]
    assert path.header.frame_id == "base_link" and len(path.poses) == loop.node.planner.settings.mppi.horizon + 1
    values = {kv.key: kv.value for kv in loop.node.diagnostics().values}
    assert values["goal_source"] == "object_poses" and float(values["plan_ms_p50"]) > 0
    assert int(values["obstacle_points"]) > 50                        # the posts are in the cloud
    # a new episode drops the warm start, the goal and the old scene's poses
    loop.node.on_episode_start()
    rest = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    assert torch.equal(loop.node.planner.mppi.nominal, rest.expand(loop.node.planner.settings.mppi.horizon, 5))
    assert loop.node._goal is None and len(loop.node.goals._object_poses) == 0


def test_a_decision_waits_for_its_own_poses_but_not_for_a_state_of_the_episode_before(ros):
    """goal_source object_poses: the poses follow the state, so a decision waits for those of its
    own instant (a late delivery must not turn into a held step: sync runs would stop being
    repeatable). A state from before the last reset (the last one of the previous episode,
    decided after the reset) has no poses any more, and waits for nothing."""
    import threading
    import time

    from geometry_msgs.msg import Pose, PoseArray

    from equimanip.nodes.mppi_node import MPPINode

    goals = ros.node(MPPINode, num_samples=64, horizon=5, seed=0, goal_source="object_poses").goals

    def poses(stamp_s, x):
        msg = PoseArray(header=msgs.header("base_link", stamp_s))
        msg.poses = [Pose()]
        msg.poses[0].position.x, msg.poses[0].orientation.w = x, 1.0
        return msg

    goals._on_object_poses(poses(1.0, 0.4))
    assert goals.goal_at(1.0)[0][0] == pytest.approx(0.4)
    goals.reset()                                                    # a new episode
    start = time.monotonic()
    assert goals.goal_at(1.0, wait_s=5.0) is None                    # the old episode's last state
    assert time.monotonic() - start < 2.0
    assert goals.from_earlier_episode(1.0) and not goals.from_earlier_episode(1.1)   # (no warning for it)
    late = threading.Timer(0.2, goals._on_object_poses, args=(poses(1.1, 0.5),))
    late.start()
    try:
        assert goals.goal_at(1.1, wait_s=5.0)[0][0] == pytest.approx(0.5)   # waited for its poses
    finally:
        late.join()
    # The new scene's first poses can come before its start event is handled: those stamped at or
    # after the event's stamp are the new episode's and are kept.
    goals._on_object_poses(poses(2.0, 0.6))
    goals._on_object_poses(poses(2.1, 0.7))
    goals.reset(start_ns=2_100_000_000)
    start = time.monotonic()
    assert goals.goal_at(2.1, wait_s=5.0)[0][0] == pytest.approx(0.7)
    assert goals.goal_at(2.0, wait_s=5.0) is None and goals.from_earlier_episode(2.0)
    assert time.monotonic() - start < 2.0
    # The old scene's last poses can also come after the event: they are dropped, not taken as
    # a restarted cell's.
    goals._on_object_poses(poses(2.05, 0.9))
    assert [s for s, _ in goals._object_poses] == [2_100_000_000]
    # Far older than the start (more than JUMP_BACK_S): a cell whose clock restarted, its start
    # event missed; its poses are taken from then on.
    goals._on_object_poses(poses(0.05, 0.25))
    goals._on_object_poses(poses(0.15, 0.3))
    assert goals.goal_at(0.15, wait_s=5.0)[0][0] == pytest.approx(0.3)
    goals.reset(start_ns=2_100_000_000)                              # (as before, for what follows)
    # A restarted cell: its clock went back, and its states are waited for again.
    goals.reset()
    goals._on_object_poses(poses(0.1, 0.3))
    late = threading.Timer(0.2, goals._on_object_poses, args=(poses(0.2, 0.35),))
    late.start()
    try:
        assert goals.goal_at(0.2, wait_s=5.0)[0][0] == pytest.approx(0.35)
    finally:
        late.join()
