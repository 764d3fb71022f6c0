"""policy_node: a checkpoint on the arm through ROS, swapped while running, refused when bad."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter

from equimanip.bringup import publishers
from equimanip.checkpoint import load_policy, save_checkpoint
from equimanip.models import NetworkConfig, make_actor, make_critic
from equimanip.nodes import topics
from equimanip.perception.observation import ObservationConfig

pytestmark = pytest.mark.ros

SIZE = 32


def tiny_checkpoint(path, group="c4", seed=0, poison=False, task="reach", goal_channel=False):
    """A real (untrained) Equivariant SAC actor: what `equimanip train sac` writes, only smaller."""
    torch.manual_seed(seed)
    cfg = NetworkConfig.cpu(group=group, n_hidden=8, heightmap_size=SIZE, in_channels=3 if goal_channel else 2)
    actor, critic = make_actor(cfg), make_critic(cfg)
    if poison:
        with torch.no_grad():
            for p in actor.parameters():
                p.fill_(math.nan)
    return save_checkpoint(path, "sac", actor=actor, critic=critic, network_config=cfg,
                           observation_config=ObservationConfig(heightmap_size=SIZE, goal_channel=goal_channel),
                           task=task,
                           command="test_policy_node.tiny_checkpoint")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkpoints")
    torch.set_num_threads(1)
    return {"a": tiny_checkpoint(d / "a.pt", seed=0), "b": tiny_checkpoint(d / "b.pt", seed=1),
            "cnn": tiny_checkpoint(d / "cnn.pt", group="none"), "nan": tiny_checkpoint(d / "nan.pt", poison=True),
            "not_a_checkpoint": _write(d / "junk.pt", b"not a checkpoint")}


def _write(path, data):
    path.write_bytes(data)
    return path


class Loop:
    """The simulation (sync mode) and a policy node in one graph; twists recorded at the arm."""

    def __init__(self, ros, checkpoint, task="reach", **params):
        from geometry_msgs.msg import TwistStamped

        from equimanip.nodes import qos
        from equimanip.nodes.policy_node import PolicyNode
        from equimanip.sim.sim_node import SimNode

        self.ros = ros
        # A small camera: the policy sees a 32 x 32 heightmap, rendering 128 x 128 would only cost time.
        self.sim = ros.node(SimNode, task=task, sync=True, max_steps=1000,
                            **{"camera.width": 64, "camera.height": 64})
        self.policy = ros.node(PolicyNode, task=task, checkpoint=str(checkpoint), observation_timeout=5.0,
                               **{"observation.heightmap_size": 64, **params})
        self.twists = []
        self.sim.create_subscription(TwistStamped, topics.TWIST, self.twists.append, qos.RELIABLE)
        ros.spin_until(lambda: self.policy.inputs_connected() and publishers(self.sim, topics.TWIST) > 0
                       and publishers(self.sim, topics.GRIPPER) > 0, 30.0, "discovery")
        self.sim.republish()

    def steps(self, n):
        start = len(self.twists)
        self.ros.spin_until(lambda: len(self.twists) >= start + n, 60.0, f"{n} decisions")
        return self.twists[start:]


def test_the_policy_drives_the_simulated_arm_and_reports_its_symmetry(ros, checkpoints):
    loop = Loop(ros, checkpoints["a"])
    # the checkpoint's heightmap size replaces the node's 64
    assert loop.policy.get_parameter("observation.heightmap_size").value == SIZE
    twists = loop.steps(5)
    assert any(abs(t.twist.linear.x) + abs(t.twist.linear.y) + abs(t.twist.linear.z) > 0 for t in twists)
    assert loop.policy.stats.failures == 0
    ros.spin_until(lambda: loop.policy._equivariance_error is not None, 10.0, "the equivariance check")
    values = {kv.key: kv.value for kv in loop.policy.diagnostics().values}
    assert float(values["equivariance_error"]) < 1e-4          # C4 is exact under a quarter turn
    assert values["checkpoint"] == str(checkpoints["a"])


def test_a_plain_cnn_is_measurably_not_equivariant(ros, checkpoints):
    loop = Loop(ros, checkpoints["cnn"])
    loop.steps(3)
    ros.spin_until(lambda: loop.policy._equivariance_error is not None, 10.0, "the equivariance check")
    assert loop.policy._equivariance_error > 1e-3


def test_a_heightmap_imitation_policy_drives_the_arm_and_keeps_its_symmetry(ros, tmp_path):
    """BC/BMIL on heightmaps (`train bmil --input heightmap`): the checkpoint's view and network are
    rebuilt by the node, which decides through ROS and finds it exactly equivariant."""
    from equimanip.learning.bc import save_policy
    from equimanip.learning.heightmap_imitation import HeightmapConfig, HeightmapImitationPolicy, heightmap_observation
    from equimanip.models.heightmap_policy import HeightmapPolicyNet

    torch.manual_seed(0)
    config = HeightmapConfig(n_hidden=8, heightmap_size=SIZE, features=2)
    observation = heightmap_observation(ObservationConfig(), config)
    policy = HeightmapImitationPolicy(HeightmapPolicyNet(config.network("c4", 2), features=2, hidden=32, depth=3),
                                      observation)
    loop = Loop(ros, save_policy(tmp_path / "bmil.pt", policy, "bmil", "reach"))
    assert loop.policy.get_parameter("observation.heightmap_mode").value == "gripper"
    loop.steps(3)
    assert loop.policy.stats.failures == 0
    ros.spin_until(lambda: loop.policy._equivariance_error is not None, 10.0, "the equivariance check")
    assert loop.policy._equivariance_error < 1e-4


def test_hot_swap_keeps_the_loop_running_and_changes_the_policy(ros, checkpoints):
    loop = Loop(ros, checkpoints["a"])
    loop.steps(2)
    result = loop.policy.set_parameters([Parameter("checkpoint", value=str(checkpoints["b"]))])[0]
    assert result.successful, result.reason
    decided = loop.policy.stats.decisions
    ros.spin_until(lambda: loop.policy._loaded.path == checkpoints["b"], 60.0, "the swap")
    # the loop never waited for the load: the arm kept being commanded while it ran
    assert loop.policy.stats.decisions > decided and loop.policy.stats.failures == 0
    loop.steps(2)
    observation = loop.policy.last_observation
    policy_a = load_policy(checkpoints["a"])
    assert not np.allclose(loop.policy.policy.act(observation), policy_a.act(observation))


def test_a_bad_checkpoint_is_refused_when_set_and_the_old_one_keeps_running(ros, checkpoints, tmp_path):
    loop = Loop(ros, checkpoints["a"])
    for path, reason in [(tmp_path / "missing.pt", "no checkpoint at"),
                         (checkpoints["not_a_checkpoint"], "not an equimanip checkpoint")]:
        result = loop.policy.set_parameters([Parameter("checkpoint", value=str(path))])[0]
        assert not result.successful and reason in result.reason
        assert loop.policy.get_parameter("checkpoint").value == str(checkpoints["a"])
    loop.steps(2)


def test_a_network_answering_nan_is_never_swapped_in(ros, checkpoints):
    loop = Loop(ros, checkpoints["a"])
    assert loop.policy.set_parameters([Parameter("checkpoint", value=str(checkpoints["nan"]))])[0].successful
    ros.spin_until(lambda: loop.policy._load_error is not None, 60.0, "the failed load")
    assert "blank observation" in loop.policy._load_error
    ros.spin_until(lambda: loop.policy.get_parameter("checkpoint").value == str(checkpoints["a"]), 10.0,
                   "the parameter to go back")
    assert loop.policy._loaded.path == checkpoints["a"]
    for twist in loop.steps(3):
        v = twist.twist
        assert all(np.isfinite([v.linear.x, v.linear.y, v.linear.z, v.angular.z]))


def test_a_nan_network_at_start_up_is_a_configuration_error(ros, checkpoints):
    from equimanip.nodes.policy_node import PolicyNode

    with pytest.raises(ValueError, match="blank observation"):
        ros.node(PolicyNode, task="reach", checkpoint=str(checkpoints["nan"]))


def test_the_view_a_policy_was_trained_on_comes_from_its_checkpoint(ros, tmp_path):
    """A checkpoint from before `robot_removal` existed (the shipped picking policy is one) was
    trained on the older gripper view: the node must build that view for it, whatever the
    parameter's default, and refuse to change it."""
    from equimanip.nodes.policy_node import PolicyNode, shipped_checkpoint

    raw = torch.load(shipped_checkpoint("block_picking"), weights_only=True)
    settings = ("robot_removal", "hand_box_min", "hand_box_max", "finger_box_min", "finger_box_max")
    raw["observation"] = {k: v for k, v in raw["observation"].items() if k not in settings}
    torch.save(raw, tmp_path / "before.pt")
    node = ros.node(PolicyNode, task="block_picking", checkpoint=str(tmp_path / "before.pt"))
    assert node.get_parameter("observation.robot_removal").value == "above_grasp_point"
    node._deciding_with = node._loaded
    assert node.observation_config().robot_removal == "above_grasp_point"
    result = node.set_parameters([Parameter("observation.robot_removal", value="hand_boxes")])[0]
    assert not result.successful and "in the checkpoint" in result.reason


def test_a_task_without_a_shipped_policy_is_a_clear_start_up_error(ros, tmp_path, monkeypatch):
    """Every task ships a policy today; a package installed with only some of them (or a new task)
    must say which ones it has instead of failing somewhere in torch.load."""
    import shutil

    from equimanip.nodes import policy_node

    shutil.copy(policy_node.shipped_checkpoint("block_picking"), tmp_path / "block_picking.pt")
    monkeypatch.setattr(policy_node, "SHIPPED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="no policy is shipped for task 'reach'.*shipped: block_picking\\)"):
        ros.node(policy_node.PolicyNode, task="reach")


def test_a_policy_with_a_goal_channel_waits_for_its_goal_and_sees_it_where_it_is(ros, tmp_path):
    """A pushing policy trained with the goal channel: from ~/goal it holds the arm (and says why)
    until a goal comes, then decides with the goal drawn where it is; from the simulation's object
    poses (what `equimanip run` and sim.launch.py set) it sees the scene's own goal."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node

    from equimanip.nodes import msgs, qos

    checkpoint = tiny_checkpoint(tmp_path / "push.pt", task="block_pushing", goal_channel=True)
    loop = Loop(ros, checkpoint, task="block_pushing", goal_source="topic")
    ros.spin_until(lambda: loop.policy._waiting_for_goal >= 3, 20.0, "decisions without a goal")
    ready, waiting = loop.policy.readiness()
    assert not ready and "~/goal" in waiting
    assert all(t.twist.linear.x == t.twist.linear.y == t.twist.linear.z == 0.0 for t in loop.twists)
    assert loop.policy.stats.failures == 0

    sender = ros.add(Node("goal_sender", context=ros.context))
    pub = sender.create_publisher(PoseStamped, "/policy_node/goal", qos.LATCHED)
    ros.spin_until(lambda: publishers(loop.policy, "/policy_node/goal") > 0, 10.0, "discovery")
    pub.publish(msgs.pose_stamped([0.8, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0], "base_link", 0.0))   # beyond x 0.7
    ros.spin_for(0.5)
    assert loop.policy.goals.topic_goal is None
    pub.publish(msgs.pose_stamped([0.6, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0], "base_link", 0.0))   # on the table
    ros.spin_until(lambda: loop.policy.goals.topic_goal is not None, 10.0, "the goal")
    loop.sim.republish()
    ros.spin_until(lambda: loop.policy.last_observation is not None, 30.0, "a decision with the goal")
    observation = loop.policy.last_observation
    np.testing.assert_allclose(observation.goal_xy, [0.6, 0.1])
    assert observation.heightmap.shape == (3, SIZE, SIZE) and observation.heightmap[2].sum() > 0
    assert loop.policy.stats.failures == 0

    from_sim = Loop(ros, checkpoint, task="block_pushing", goal_source="object_poses")
    ros.spin_until(lambda: from_sim.policy.last_observation is not None, 30.0, "a decision with the goal")
    goal = from_sim.sim.env.observe(render=False).object_poses[1, :2]
    np.testing.assert_allclose(from_sim.policy.last_observation.goal_xy, goal, atol=1e-6)


def test_an_imitation_policy_with_the_goal_in_its_state_sees_the_scenes_goal(ros, tmp_path):
    """A BC policy trained with goal_in_state (the block_pushing imitation runs) takes the goal
    like a goal-channel network: the node's object state ends with the goal's offset from the hand."""
    from equimanip.learning.bc import ImitationPolicy, PolicySpec, save_policy

    torch.manual_seed(0)
    observation = ObservationConfig(heightmap_size=SIZE, max_objects=2, goal_in_state=True)
    policy = ImitationPolicy(PolicySpec(hidden=16, depth=2, max_objects=2, observation=observation))
    checkpoint = save_policy(tmp_path / "push_bc.pt", policy, "bc", "block_pushing")
    loop = Loop(ros, checkpoint, task="block_pushing", goal_source="object_poses")
    ros.spin_until(lambda: loop.policy.last_observation is not None, 30.0, "a decision with the goal")
    seen = loop.policy.last_observation
    goal = loop.sim.env.observe(render=False).object_poses[1, :2]
    assert seen.object_state.shape == (3 + 2 * 9 + 2,)
    np.testing.assert_allclose(seen.object_state[-2:], goal - seen.ee_pose[:2], atol=1e-5)
    assert loop.policy.stats.failures == 0


@pytest.mark.parametrize("trained_with", ["default camera", "side_camera pose", "side_camera cell"])
def test_a_camera_far_from_the_policys_training_camera_is_named_once(ros, tmp_path, capfd, trained_with):
    """The node compares the live camera (the simulation's default here) with the one the policy's
    demonstrations were recorded with: from the checkpoint's camera_pose, or from its cell_params
    files; a warning with both poses when they differ (the shipped pushing policy's trap)."""
    from equimanip.config import cell_parameters
    from equimanip.learning.bc import ImitationPolicy, PolicySpec, save_policy
    from equimanip.sim.camera import CameraConfig

    side = cell_parameters(["side_camera"])["camera_pose"]
    metadata = {"default camera": {"camera_pose": list(CameraConfig().pose)},
                "side_camera pose": {"camera_pose": side},
                "side_camera cell": {"cell_params": ["side_camera"]}}[trained_with]
    torch.manual_seed(0)
    policy = ImitationPolicy(PolicySpec(hidden=16, depth=2, max_objects=2,
                                        observation=ObservationConfig(heightmap_size=SIZE, max_objects=2)))
    loop = Loop(ros, save_policy(tmp_path / "bc.pt", policy, "bc", "reach", metadata=metadata))
    loop.steps(3)
    distance, angle = loop.policy.camera_offset
    warnings = capfd.readouterr().err.count("from where this policy's data was recorded")
    if trained_with == "default camera":
        assert distance < 1e-6 and angle < 1e-3 and warnings == 0
    else:
        assert distance > 0.3 and angle > 30 and warnings == 1        # once, not at every decision
    assert any(v.key == "camera_offset" for v in loop.policy.diagnostics().values)


def test_out_of_range_parameters_are_refused_with_a_reason(ros, checkpoints):
    loop = Loop(ros, checkpoints["a"])
    cuda = "" if torch.cuda.is_available() else "torch sees no GPU"
    for name, value, reason in [("device", "gpu", "device must be auto, cpu, cuda"), ("device", "cuda:0", cuda),
                                ("torch_threads", 0, "torch_threads"),
                                ("observation.heightmap_size", 64, "is 32 in the checkpoint"),
                                ("safety.max_linear_speed", -0.1, "max_linear_speed")]:
        if name == "device" and not reason:
            continue                           # a GPU is here: cuda:0 is fine
        result = loop.policy.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and reason in result.reason, (name, result.reason)


def test_a_limit_change_shows_in_the_next_command(ros, checkpoints):
    loop = Loop(ros, checkpoints["a"])
    loop.steps(2)
    assert loop.policy.set_parameters([Parameter("safety.max_linear_speed", value=0.01)])[0].successful
    for twist in loop.steps(3):
        v = twist.twist.linear
        assert max(abs(v.x), abs(v.y), abs(v.z)) <= 0.01 + 1e-9


def test_the_shipped_policy_picks_blocks_through_ros():
    """`equimanip run --controller policy` without a checkpoint: the Equivariant SAC policy shipped
    for block_picking (make checkpoints) drives the simulated arm through the ROS topics. Seeds 0
    and 1 are scenes it solves (it solved 25 of seeds 30000-30029 the same way)."""
    from equimanip.bringup import RunConfig, run
    from equimanip.nodes.policy_node import shipped_checkpoint

    assert shipped_checkpoint("block_picking").is_file()
    result = run(RunConfig(task="block_picking", controller="policy", episodes=2, seed=0,
                           sim_overrides={"max_steps": 30}))
    assert [e.success for e in result.episodes] == [True, True], result.summary()
    assert result.controller_stats["failures"] == 0
