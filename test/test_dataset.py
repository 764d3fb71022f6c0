"""The dataset: episode bags -> synchronised (state, action, next state) samples, built with
build_observation; a cache that follows the data; gaps and mixed control periods reported."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from equimanip.action import PANDA_FINGER_JOINTS, PANDA_FINGER_OPEN_POSITION, gripper_aperture
from equimanip.data import episode as ep
from equimanip.data.bag import RELIABLE, BagWriter, read_bag
from equimanip.data.dataset import CACHE_DIR, DatasetConfig, DatasetError, dataset_info, load_dataset
from equimanip.data.sim_writer import record_expert_episodes
from equimanip.perception.observation import ObservationConfig, build_observation


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    record_expert_episodes(out, "block_picking", 2, seed=0)
    return out


def copy_bag(src, out_dir, name, skip=None, episode_update=None, extra=()):
    """A copy of a bag, leaving out the messages ``skip(topic, index_in_topic)`` selects and adding
    the ``extra`` (topic, message fields, log time ns) of episode topics."""
    bag = read_bag(src)
    seen = {}
    with BagWriter(out_dir, name) as w:
        for topic, info in bag.topics.items():
            w.add_topic(topic, info.type, ep.TOPICS_BY_NAME[topic].qos if topic in ep.TOPICS_BY_NAME else RELIABLE)
        for topic, _, _ in extra:
            w.add_topic(topic, ep.TOPICS_BY_NAME[topic].type, ep.TOPICS_BY_NAME[topic].qos)
        for topic, t, data in bag.raw_messages():
            k = seen[topic] = seen.get(topic, -1) + 1
            if skip is None or not skip(topic, k):
                w.write(topic, data, t)
        for topic, fields, t in extra:
            w.write(topic, fields, t)
        w.close({**bag.episode, **(episode_update or {})})


def test_episode_topic_names_are_the_ros_interfaces():
    from equimanip.nodes import topics
    same = {"CLOUD": ep.CLOUD, "CAMERA_POSE": ep.CAMERA_POSE, "JOINT_STATES": ep.JOINT_STATES,
            "EE_POSE": ep.EE_POSE, "TWIST": ep.TWIST, "GRIPPER": ep.GRIPPER, "SIM_OBJECT_POSES": ep.OBJECT_POSES,
            "ACTION": ep.ACTION, "SIM_EPISODE_EVENTS": ep.EPISODE_EVENTS, "SIM_METADATA": ep.SIM_METADATA,
            "GOAL": ep.GOAL}
    for name, value in same.items():
        if hasattr(topics, name):   # the last three arrive with the controller runtime (issue 7)
            assert getattr(topics, name) == value, name


def test_samples_pair_each_action_with_the_state_it_answers(demos):
    data = load_dataset(demos, use_cache=False)
    reports = data.used_episodes
    assert [r.name for r in reports] == ["episode_0000", "episode_0001"]
    steps = [read_bag(demos / r.name).episode["steps"] for r in reports]
    assert [r.transitions for r in reports] == steps and len(data) == sum(steps)
    assert data.control_period == 0.1 and data.states.shape == (len(data), 39)

    # The actions are the recorded ones, in order; next state k is state k + 1 of the same episode.
    messages = read_bag(demos / "episode_0000").messages([ep.ACTION])
    recorded = [np.asarray(m.position, np.float32) for _, _, m in messages]
    first = data.episode == 0
    np.testing.assert_array_equal(data.actions[first], np.stack(recorded))
    np.testing.assert_array_equal(data.next_states[first][:-1], data.states[first][1:])
    assert list(data.step[first]) == list(range(steps[0]))
    np.testing.assert_array_equal(data.next_ee_poses[first][:-1], data.ee_poses[first][1:])

    # The first state is what build_observation makes of the simulation's own first observation.
    from equimanip.sim.env import ManipulationEnv
    with ManipulationEnv(task="block_picking") as env:
        obs = env.reset(seed=0)
        direct = build_observation(obs.points, obs.ee_pose, obs.gripper_aperture, obs.time, ObservationConfig())
    np.testing.assert_allclose(data.states[0], direct.object_state, atol=1e-5)
    assert data.states[0][3] == 1.0          # the cube is seen


def test_cache_follows_the_episodes_and_the_settings(demos):
    load_dataset(demos)
    cache = demos / CACHE_DIR
    files = sorted(os.listdir(cache))
    assert len(files) == 2
    again = load_dataset(demos)                      # read from the cache: same arrays
    np.testing.assert_array_equal(again.states, load_dataset(demos, use_cache=False).states)
    # Other observation settings: another cache entry, other arrays.
    small = load_dataset(demos, DatasetConfig(observation=ObservationConfig(max_objects=1)))
    assert small.states.shape[1] == 12 and len(os.listdir(cache)) == 2 + 0 * len(files)
    assert sorted(os.listdir(cache)) != files
    # An episode re-recorded under the same name invalidates its entry.
    stamp = os.stat(demos / "episode_0001" / "episode_0001_0.mcap").st_mtime_ns
    os.utime(demos / "episode_0001" / "episode_0001_0.mcap", ns=(stamp + 10**9, stamp + 10**9))
    load_dataset(demos)
    names = sorted(os.listdir(cache))
    assert [n.split(".")[0] for n in names] == ["episode_0000", "episode_0001"]
    assert names[0] in files and names[1] not in files


def test_missing_messages_are_reported_not_mixed(demos, tmp_path):
    copy_bag(demos / "episode_0000", tmp_path, "episode_0000")
    copy_bag(demos / "episode_0001", tmp_path, "episode_0001", skip=lambda topic, k: topic == ep.CLOUD and k == 3)
    copy_bag(demos / "episode_0001", tmp_path, "episode_0002", skip=lambda topic, k: topic == ep.ACTION and k == 1)
    data = load_dataset(tmp_path)
    by_name = {r.name: r for r in data.reports}
    assert [r.name for r in data.used_episodes] == ["episode_0000"]
    assert "missing messages" in by_name["episode_0001"].reason
    assert "no action for the state" in by_name["episode_0002"].reason
    lenient = load_dataset(tmp_path, DatasetConfig(strict=False))
    full = by_name["episode_0000"].transitions
    assert len(lenient) == full + (by_name["episode_0001"].states - 1 - 2 + 1) + (by_name["episode_0002"].states - 2)
    info = dataset_info(tmp_path)
    assert info["episodes"] == 3 and info["usable_episodes"] == 1
    assert any("missing messages" in p for p in info["per_episode"][1]["problems"])


def test_a_stop_that_commanded_no_gripper_is_a_sample_with_the_aperture_it_kept(demos, tmp_path):
    """A controller's stop before any gripper command has a stamped action without ``p``
    (msgs.action_msg): its sample's p is the aperture the gripper had (and kept), not a problem."""
    src = demos / "episode_0000"
    _, log_ns, msg = list(read_bag(src).messages([ep.ACTION]))[2]
    stop = {"header": {"stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
                       "frame_id": msg.header.frame_id},
            "name": ["dx", "dy", "dz", "dyaw"], "position": [0.0, 0.0, 0.0, 0.0], "velocity": [], "effort": []}
    copy_bag(src, tmp_path, "episode_0000", skip=lambda topic, k: topic == ep.ACTION and k == 2,
             extra=[(ep.ACTION, stop, log_ns)])
    data = load_dataset(tmp_path, use_cache=False)
    original = load_dataset(demos, use_cache=False)
    assert data.reports[0].problems == [] and len(data) == original.used_episodes[0].transitions
    np.testing.assert_array_equal(data.actions[2, 1:], 0.0)
    # p: the aperture in the joint states of the state it answers
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    joints = next(m for _, _, m in read_bag(src).messages([ep.JOINT_STATES])
                  if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)
    fingers = [joints.position[list(joints.name).index(n)] for n in PANDA_FINGER_JOINTS]
    assert data.actions[2, 0] == pytest.approx(gripper_aperture(fingers, PANDA_FINGER_OPEN_POSITION))
    np.testing.assert_array_equal(data.actions[3:], original.actions[original.episode == 0][3:])


def test_other_control_period_and_unfinished_are_left_out(demos, tmp_path):
    copy_bag(demos / "episode_0000", tmp_path, "episode_0000")
    copy_bag(demos / "episode_0001", tmp_path, "episode_0001", episode_update={"finished": False})
    record_expert_episodes(tmp_path, "block_picking", 1, seed=0, first_index=2, control_period=0.05)
    with pytest.raises(DatasetError, match=r"different control periods \(0.05 s: 1 episodes, 0.1 s: 1 episodes\)"):
        load_dataset(tmp_path)
    data = load_dataset(tmp_path, DatasetConfig(control_period=0.1))
    reasons = {r.name: r.reason for r in data.reports}
    assert [r.name for r in data.used_episodes] == ["episode_0000"]
    assert reasons["episode_0001"].startswith("unfinished")
    assert reasons["episode_0002"] == "control period 0.05 s, not 0.1 s"
    info = dataset_info(tmp_path)
    assert info["control_periods"] == [0.05, 0.1] and "different control periods" in info["mixed_control_periods"]


def test_dataset_info_command(demos, capsys):
    from equimanip.cli_imitation import main
    assert main(["dataset", "info", str(demos), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["successful"] == 2
    assert summary["topics"]["/camera/points"]["rate_hz"] == pytest.approx(10.0, rel=0.02)
    assert "episode_0000" in out and "block_picking" in out
    assert main(["dataset", "info", str(demos / "nowhere")]) == 1


def test_heightmaps_and_a_subset_of_episodes(demos):
    from equimanip.data.dataset import select_episodes

    config = DatasetConfig(heightmaps=True, observation=ObservationConfig(heightmap_size=16))
    data = load_dataset(demos, config, use_cache=False)
    assert data.heightmaps.shape == (len(data), 2, 16, 16) and data.next_heightmaps.shape == data.heightmaps.shape
    first = data.episode == 0
    np.testing.assert_array_equal(data.next_heightmaps[first][:-1], data.heightmaps[first][1:])
    one = select_episodes(data, 1)
    assert len(one) == int(first.sum()) and [r.name for r in one.used_episodes] == ["episode_0000"]
    np.testing.assert_array_equal(one.heightmaps, data.heightmaps[first])
    with pytest.raises(DatasetError, match="asked for 3 demonstrations; 2 usable"):
        select_episodes(data, 3)


def test_a_goal_in_the_state_comes_from_the_recorded_object_poses(demos, tmp_path):
    """goal_in_state: each state ends with the task's goal minus the gripper (x, y), the goal read
    from the object poses recorded at the state's instant; an episode without them, or a task with
    no goal on the table, is reported rather than given a made-up goal."""
    pushing = tmp_path / "push"
    record_expert_episodes(pushing, "block_pushing", 1, seed=0)
    config = DatasetConfig(observation=ObservationConfig(goal_in_state=True))
    data = load_dataset(pushing, config, use_cache=False)
    assert data.states.shape == (len(data), 39 + 2)
    poses = [np.array([m.poses[1].position.x, m.poses[1].position.y])
             for _, _, m in read_bag(pushing / "episode_0000").messages([ep.OBJECT_POSES])]
    np.testing.assert_allclose(data.states[:, -2:], poses[0] - data.ee_poses[:, :2], atol=1e-5)   # the goal stays put
    without_goal = load_dataset(pushing, DatasetConfig(), use_cache=False)
    np.testing.assert_array_equal(without_goal.states, data.states[:, :-2])

    copy_bag(pushing / "episode_0000", tmp_path / "no_poses", "episode_0000",
             skip=lambda topic, k: topic == ep.OBJECT_POSES)
    with pytest.raises(DatasetError, match="record /equimanip/goal .a real cell. or /sim_node/object_poses"):
        load_dataset(tmp_path / "no_poses", config, use_cache=False)
    with pytest.raises(DatasetError, match="has none"):
        load_dataset(demos, config, use_cache=False)           # block_picking: no goal on the table


def goal_message(x, y, t_ns, frame="base_link"):
    stamp = {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}
    return {"header": {"stamp": stamp, "frame_id": frame},
            "pose": {"position": {"x": x, "y": y, "z": 0.0}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}}


def test_a_real_cells_goal_comes_from_the_goal_topic_in_effect_at_each_state(tmp_path):
    """A real cell records no object poses: its goal is whatever the recorder last got on
    /equimanip/goal before a state (latched, so the first one may predate the episode; its stamp
    does not matter, as for the nodes' ~/goal), and it is
    preferred over object poses. A goal in another frame or with NaN is a problem: the episode is
    left out (strict) or used with that goal skipped."""
    pushing = tmp_path / "push"
    record_expert_episodes(pushing, "block_pushing", 1, seed=3)
    config = DatasetConfig(observation=ObservationConfig(goal_in_state=True))
    stamps = sorted(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                    for _, _, m in read_bag(pushing / "episode_0000").messages([ep.EE_POSE]))
    half = len(stamps) // 2
    first, switch = stamps[0], stamps[half]
    assert first > 0
    goals = [(ep.GOAL, goal_message(0.1, -0.2, first // 2), first // 2),                   # before the states
             # a new goal sent by hand: no stamp, no frame (the base frame), as a node takes it
             (ep.GOAL, goal_message(-0.05, 0.15, 0, frame=""), switch)]
    copy_bag(pushing / "episode_0000", tmp_path / "cell", "episode_0000", extra=goals,
             skip=lambda topic, k: topic == ep.OBJECT_POSES)
    data = load_dataset(tmp_path / "cell", config, use_cache=False)
    assert len(data) == len(load_dataset(pushing, config, use_cache=False))
    expected = np.where((data.step >= half)[:, None], [-0.05, 0.15], [0.1, -0.2])
    np.testing.assert_allclose(data.states[:, -2:], expected - data.ee_poses[:, :2], atol=1e-5)

    bad = [(ep.GOAL, goal_message(0.3, 0.3, switch, frame="camera"), switch),
           (ep.GOAL, goal_message(float("nan"), 0.0, switch), switch)]
    copy_bag(pushing / "episode_0000", tmp_path / "bad", "episode_0000", extra=goals + bad,
             skip=lambda topic, k: topic == ep.OBJECT_POSES)
    with pytest.raises(DatasetError, match="frame 'camera', not the base frame 'base_link'"):
        load_dataset(tmp_path / "bad", config, use_cache=False)
    lenient = load_dataset(tmp_path / "bad", dataclasses.replace(config, strict=False), use_cache=False)
    np.testing.assert_array_equal(lenient.states, data.states)
    assert any("not finite" in p for p in lenient.reports[0].problems)

    # The goal topic wins over the simulation's object poses where an episode has both.
    copy_bag(pushing / "episode_0000", tmp_path / "both", "episode_0000", extra=goals[:1])
    both = load_dataset(tmp_path / "both", config, use_cache=False)
    np.testing.assert_allclose(both.states[:, -2:], np.array([0.1, -0.2]) - both.ee_poses[:, :2], atol=1e-5)

    # A goal published only after the states began: the earlier states have none, and say so.
    copy_bag(pushing / "episode_0000", tmp_path / "late", "episode_0000", extra=goals[1:],
             skip=lambda topic, k: topic == ep.OBJECT_POSES)
    with pytest.raises(DatasetError, match="has no goal yet"):
        load_dataset(tmp_path / "late", config, use_cache=False)
