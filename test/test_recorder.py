"""recorder_node through real ROS: episodes recorded from the simulation and the expert read back
intact by the project and by rosbags; a killed recorder leaves earlier episodes readable and
nothing half-written under a final name; an unwritable directory stops it with the reason; and
the whole path: record, train BMIL, run the policy in the ROS loop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from equimanip.data import episode as ep
from equimanip.data.bag import list_bags, list_partial, read_bag
from equimanip.data.dataset import load_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from equimanip.nodes.recorder_node import RecordConfig, record_demonstrations
    out = tmp_path_factory.mktemp("recorded")
    paths = record_demonstrations(RecordConfig(task="block_picking", episodes=3, out=out, seed=0, note="unit test"))
    return out, paths


def test_recorded_episodes_read_back_intact(recorded):
    from rosbags.highlevel import AnyReader

    out, paths = recorded
    assert [p.name for p in paths] == ["episode_0000", "episode_0001", "episode_0002"]
    assert list_bags(out) == paths and list_partial(out) == []
    for path in paths:
        bag = read_bag(path)
        info = bag.episode
        assert info["task"] == "block_picking" and info["success"] is True and info["finished"] is True
        assert info["source"] == "expert" and info["note"] == "unit test"
        assert info["run_metadata"]["control_period"] == 0.1
        assert "/expert_node/metadata" in info["controllers"]
        assert info["recorder"]["output_dir"] == str(out)
        # Actions answer states: one per state but the last, with the states' stamps 0.1 s apart.
        action_stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, _, m in bag.messages([ep.ACTION])]
        state_stamps = sorted({m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                               for _, _, m in bag.messages([ep.EE_POSE])})
        # (the expert also answers the final state, which the simulation no longer executes)
        assert info["steps"] + 1 == len(action_stamps) == len(state_stamps) and info["steps"] >= 5
        assert action_stamps == state_stamps
        assert np.allclose(np.diff(state_stamps), 1e8)
        assert bag.topics[ep.CLOUD].count == bag.topics[ep.EE_POSE].count == bag.topics[ep.JOINT_STATES].count
        assert bag.topics[ep.CAMERA_POSE].count == 1 and bag.topics[ep.SIM_METADATA].count == 1
        # rosbags reads the same counts and stamps.
        with AnyReader([path]) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            assert counts == {t: i.count for t, i in bag.topics.items()}
            stamps = []
            for connection, _, raw in reader.messages([c for c in reader.connections if c.topic == ep.ACTION]):
                msg = reader.deserialize(raw, connection.msgtype)
                stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
                assert list(msg.name) == ["p", "dx", "dy", "dz", "dyaw"]
            assert stamps == action_stamps
    data = load_dataset(out)
    assert len(data.used_episodes) == 3 and len(data) == sum(read_bag(p).episode["steps"] for p in paths)


def _record_process(out: Path, episodes: int = 50, extra: tuple = ()) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "equimanip.cli", "record", "--task", "block_picking",
                             "--episodes", str(episodes), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_episodes(out: Path, count: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until ``count`` episodes are closed and the next one is being written."""
    deadline = time.monotonic() + timeout
    while not out.exists() or len(list_bags(out)) < count or not list_partial(out):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no episode recorded in time"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, on_interrupt", [
    (signal.SIGKILL, None), (signal.SIGTERM, None), (signal.SIGINT, "keep"), (signal.SIGTERM, "discard")],
    ids=["SIGKILL", "SIGTERM-keep-default", "SIGINT-keep", "SIGTERM-discard"])
def test_a_killed_recorder_keeps_every_earlier_episode(tmp_path, sig, on_interrupt):
    """``on_interrupt`` None: ``equimanip record`` without ``--on-interrupt`` (the node's default, keep)."""
    out = tmp_path / "demos"
    proc = _record_process(out, extra=("--on-interrupt", on_interrupt) if on_interrupt else ())
    try:
        _wait_for_episodes(out, 2, proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    finals = list_bags(out)
    assert len(finals) >= 2
    for path in finals:                               # every episode under a final name is whole
        bag = read_bag(path)
        assert bag.topics[ep.CLOUD].count > 0
    finished = [p for p in finals if read_bag(p).episode["finished"]]
    assert len(finished) >= 2 and all(read_bag(p).episode["success"] for p in finished)
    if sig == signal.SIGKILL:
        # No clean-up ran: at most the episode in flight is left, hidden, and never read.
        assert len(list_partial(out)) == 1 and len(finished) == len(finals)
    elif on_interrupt == "discard":
        # The episode in flight (the next index after the closed ones) is gone, under any name:
        # nothing but the earlier, finished episodes is left in the directory.
        assert proc.returncode == 0, output
        assert finished == finals and list_partial(out) == []
        assert sorted(os.listdir(out)) == [p.name for p in finals]
        assert f"episode {len(finals)} discarded" in output and "(one in flight is discarded)" in output
        assert [p.name for p in finals] == [f"episode_{k:04d}" for k in range(len(finals))]
    else:
        # SIGTERM or Ctrl-C closes the episode in flight properly, kept and marked unfinished (on_interrupt).
        assert proc.returncode == 0 and list_partial(out) == [], output
        assert "(one in flight is kept, marked unfinished)" in output
        unfinished = [p for p in finals if not read_bag(p).episode["finished"]]
        assert len(unfinished) == 1
        data = load_dataset(out)
        cut = [r for r in data.reports if r.name == unfinished[0].name]
        assert not cut[0].used and cut[0].reason      # reported, not mixed in


def test_record_on_interrupt_flag_is_the_recorder_parameter():
    """``equimanip record --on-interrupt`` offers the node parameter's choices, with its default."""
    import argparse

    from equimanip.cli_imitation import add_record_parser
    from equimanip.nodes.recorder_node import ON_INTERRUPT, RecordConfig

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_record_parser(sub)
    flag = next(a for a in sub.choices["record"]._actions if "--on-interrupt" in a.option_strings)
    assert tuple(flag.choices) == tuple(ON_INTERRUPT.choices) and flag.default == ON_INTERRUPT.default
    assert RecordConfig().on_interrupt == ON_INTERRUPT.default
    assert parser.parse_args(["record", "--on-interrupt", "discard"]).on_interrupt == "discard"


def test_following_episode_events_without_diagnostic_msgs_says_so(tmp_path):
    """Without diagnostic_msgs (made unimportable in a process of its own) a recorder told to
    follow the episode events says at start-up that it cannot, and why; it still starts (the
    services work). Without follow_episode_events it says nothing about it."""
    script = ("import sys; sys.modules['diagnostic_msgs'] = None\n"
              "import rclpy\n"
              "from rclpy.parameter import Parameter\n"
              "from equimanip.nodes.recorder_node import RecorderNode\n"
              "rclpy.init(args=sys.argv)\n"
              "node = RecorderNode()\n"
              "print('STARTED', file=sys.stderr, flush=True)\n"
              "node.set_parameters([Parameter('follow_episode_events', value=True)])\n"
              "node.destroy_node(); rclpy.shutdown()\n")
    unavailable = "following the simulation's episode events is unavailable"
    for follow in ("true", "false"):
        result = subprocess.run([sys.executable, "-c", script, "--ros-args", "-p", f"output_dir:={tmp_path}",
                                 "-p", f"follow_episode_events:={follow}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        start_up, later = result.stderr.split("STARTED")
        assert (unavailable in start_up) == (follow == "true"), result.stderr
        assert "recording" in start_up and "topics into" in start_up     # it starts all the same
        if follow == "true":   # and says why, at error level
            assert "[ERROR]" in start_up and "diagnostic_msgs/DiagnosticArray cannot be imported (" in start_up
        else:                  # turned on later: said then
            assert unavailable in later, result.stderr


def test_unwritable_output_directory_stops_the_node(tmp_path, ros):
    from equimanip.nodes.recorder_node import RecorderNode

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=f"cannot record into {blocker}/demos"):
        ros.node(RecorderNode, output_dir=str(blocker / "demos"))
    result = subprocess.run([sys.executable, "-m", "equimanip.nodes.recorder_node", "--ros-args", "-p",
                             f"output_dir:={blocker}/demos"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "RecorderNode did not start: cannot record into" in result.stderr


def test_services_start_stop_discard(tmp_path, ros):
    """Episodes through the services, with a publisher standing in for the arm (and for whatever
    sets a real cell's goal: a latched goal published before the episode goes into it)."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from std_srvs.srv import SetBool, Trigger

    from equimanip.nodes import msgs, qos
    from equimanip.nodes.recorder_node import RecorderNode

    recorder = ros.node(RecorderNode, output_dir=str(tmp_path), task="reach", source="test", note="by hand")
    arm = ros.add(Node("fake_arm", context=ros.context))
    pub_joints = arm.create_publisher(JointState, ep.JOINT_STATES, qos.RELIABLE)
    pub_meta = arm.create_publisher(String, ep.SIM_METADATA, qos.LATCHED)
    pub_meta.publish(String(data=json.dumps({"control_period": 0.1, "task": "reach"})))
    pub_goal = arm.create_publisher(PoseStamped, ep.GOAL, qos.LATCHED)
    goal = PoseStamped()
    goal.header.frame_id, goal.pose.position.x, goal.pose.orientation.w = "base_link", 0.42, 1.0
    pub_goal.publish(goal)
    clients = {name: arm.create_client(kind, f"/recorder_node/{name}") for name, kind in
               (("start_episode", Trigger), ("stop_episode", SetBool), ("discard_episode", Trigger))}
    ros.spin_until(lambda: all(c.service_is_ready() for c in clients.values()) and recorder.count_publishers(
        ep.JOINT_STATES) > 0 and {ep.SIM_METADATA, ep.GOAL} <= set(recorder._latched), 20.0, "discovery")

    def call(name, request):
        future = clients[name].call_async(request)
        ros.spin_until(future.done, 10.0, name)
        return future.result()

    def publish(k):
        pub_joints.publish(msgs.joint_state(["j"], [float(k)], [0.0], 0.1 * k))

    assert call("stop_episode", SetBool.Request(data=True)).success is False     # none open
    assert call("start_episode", Trigger.Request()).success
    for k in range(5):
        publish(k)
    ros.spin_until(lambda: recorder.stats[ep.JOINT_STATES].written == 5, 10.0, "five messages")
    answer = call("stop_episode", SetBool.Request(data=True))
    assert answer.success and answer.message.endswith("episode_0000")
    assert call("start_episode", Trigger.Request()).success
    publish(9)
    ros.spin_until(lambda: recorder.stats[ep.JOINT_STATES].written == 6, 10.0, "one more")
    assert call("discard_episode", Trigger.Request()).success
    assert [p.name for p in list_bags(tmp_path)] == ["episode_0000"] and list_partial(tmp_path) == []
    bag = read_bag(tmp_path / "episode_0000")
    assert bag.topics[ep.JOINT_STATES].count == 5 and bag.topics[ep.SIM_METADATA].count == 1
    assert [m.pose.position.x for _, _, m in bag.messages([ep.GOAL])] == [0.42]
    assert bag.episode["task"] == "reach" and bag.episode["note"] == "by hand" and bag.episode["success"] is True
    assert recorder.get_parameter("note").value == ""            # a note goes with one episode
    positions = [m.position[0] for _, _, m in bag.messages([ep.JOINT_STATES])]
    assert positions == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_record_train_bmil_and_run_it_in_the_ros_loop(recorded, tmp_path, ros, capsys):
    """Record (above), train a small BMIL policy with ``equimanip train bmil``, load its checkpoint
    as any controller would, and let it drive the simulated arm through the ROS topics."""
    from equimanip.checkpoint import load_policy
    from equimanip.cli import main as cli
    from equimanip.nodes import topics
    from equimanip.nodes.policy_node import PolicyNode
    from equimanip.sim.sim_node import SimNode

    out, _ = recorded
    assert cli(["train", "bmil", "--demos", str(out), "--out", str(tmp_path / "bmil"), "--epochs", "2",
                "--steps-per-epoch", "10", "--hidden", "32", "--backward-hidden", "32", "--backward-depth", "3",
                "--demo-repeat", "1", "--params", "sim", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["config"]["demo_repeat"] == 1 and summary["task"] == "block_picking"
    assert summary["cell_params"] == ["sim"]           # what `equimanip eval` sets up by default
    # The recorded /camera/pose, which policy_node compares with its live camera.
    recorded_pose = [m.pose for _, _, m in read_bag(out / "episode_0000").messages([ep.CAMERA_POSE])][0]
    np.testing.assert_allclose(summary["camera_pose"][:3], [recorded_pose.position.x, recorded_pose.position.y,
                                                           recorded_pose.position.z], atol=1e-6)
    path = Path(summary["checkpoint"])
    assert path == tmp_path / "bmil" / "policy.pt" and (tmp_path / "bmil" / "log.csv").is_file()
    loaded = load_policy(path)
    assert loaded.task == "block_picking" and loaded.input_kind == "object_state"
    assert loaded.metadata["command"].startswith(f"equimanip train bmil --demos {out} ")

    # The product's own way to run a checkpoint on an arm: policy_node, over the ROS topics.
    sim = ros.node(SimNode, task="block_picking", seed=7, sync=True, max_steps=5)
    controller = ros.node(PolicyNode, task="block_picking", checkpoint=str(path), observation_timeout=5.0)
    ros.spin_until(lambda: controller.inputs_connected() and controller.readiness()[0]
                   and sim.count_publishers(topics.TWIST) > 0, 30.0, "the loop to close")
    ros.spin_until(lambda: sim.env.done, 60.0, "an episode driven by the BMIL policy")
    assert sim.env.steps >= 1 and controller.stats.decisions >= sim.env.steps
    assert controller.stats.failures == 0 and controller.last_observation.object_state.any()
    assert controller.camera_offset[0] < 1e-6        # the camera it was recorded with
