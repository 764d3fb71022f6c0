"""Episodes as rosbag2 bags: written by equimanip.data.bag, read back by the project, by rosbags
(an independent implementation of rosbag2) and by the plain mcap reader; failures never leave a
half-written bag under a final name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rclpy.serialization import serialize_message

from equimanip.data.bag import (
    LATCHED,
    SENSOR,
    BagReadError,
    BagWriteError,
    BagWriter,
    check_writable,
    list_bags,
    list_partial,
    read_bag,
)
from equimanip.data.msgdefs import MessageDefinitionError, schema_text
from equimanip.nodes import msgs
from equimanip.perception.pointcloud2 import pointcloud2_to_xyz, xyz_rgb_to_pointcloud2

T0 = 1_700_000_000_000_000_000


def write_episode(out: Path, name: str, steps: int = 5, size=(24, 32)) -> dict:
    """A small episode with a cloud (rclpy CDR bytes), joint states (objects) and latched JSON."""
    rng = np.random.default_rng(0)
    xyz = rng.random((*size, 3)).astype(np.float32)
    xyz[0, 0] = np.nan
    rgb = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    with BagWriter(out, name) as bag:
        bag.add_topic("/camera/points", "sensor_msgs/msg/PointCloud2", SENSOR)
        bag.add_topic("/joint_states", "sensor_msgs/JointState")
        bag.add_topic("/sim_node/metadata", "std_msgs/msg/String", LATCHED)
        bag.write("/sim_node/metadata", {"data": json.dumps({"control_period": 0.1})}, T0)
        for k in range(steps):
            stamp = 0.1 * k
            cloud = xyz_rgb_to_pointcloud2(xyz, rgb, msgs.header("camera_depth_optical_frame", stamp))
            bag.write("/camera/points", serialize_message(cloud), T0 + k * 100_000_000 + 1)
            bag.write("/joint_states", msgs.joint_state(["j1", "j2"], [k, -k], [0.0, 0.0], stamp),
                      T0 + k * 100_000_000 + 2)
        path = bag.close({"task": "block_picking", "success": True, "note": "first try", "finished": True,
                          "run_metadata": {"control_period": 0.1}})
    return {"path": path, "xyz": xyz, "steps": steps}


def test_schema_text_comes_from_the_installed_definitions():
    text = schema_text("sensor_msgs/msg/PointCloud2")
    assert text.startswith("# This message holds a collection of N-dimensional points")
    for dep in ("std_msgs/Header", "builtin_interfaces/Time", "sensor_msgs/PointField"):
        assert f"\nMSG: {dep}\n" in text
        assert text.count(f"MSG: {dep}\n") == 1
    with pytest.raises(MessageDefinitionError, match="no definition of nonexistent_msgs/msg/Foo"):
        schema_text("nonexistent_msgs/msg/Foo")


def test_episode_round_trip_by_the_project(tmp_path):
    ep = write_episode(tmp_path, "episode_0000", steps=5)
    assert ep["path"] == tmp_path / "episode_0000"
    assert sorted(os.listdir(ep["path"])) == ["episode_0000_0.mcap", "metadata.yaml"]
    assert list_bags(tmp_path) == [ep["path"]] and list_partial(tmp_path) == []

    bag = read_bag(ep["path"])
    assert {t: i.count for t, i in bag.topics.items()} == {
        "/camera/points": 5, "/joint_states": 5, "/sim_node/metadata": 1}
    assert bag.topics["/camera/points"].type == "sensor_msgs/msg/PointCloud2"
    assert bag.episode == {"task": "block_picking", "success": True, "note": "first try", "finished": True,
                           "run_metadata": {"control_period": 0.1}}
    assert bag.start_ns == T0 and bag.end_ns == T0 + 4 * 100_000_000 + 2 and bag.message_count == 11

    clouds = [(t, m) for _, t, m in bag.messages(["/camera/points"])]
    assert [t for t, _ in clouds] == [T0 + k * 100_000_000 + 1 for k in range(5)]
    decoded = pointcloud2_to_xyz(clouds[3][1])
    np.testing.assert_array_equal(decoded, ep["xyz"])           # NaN in the same place too
    assert clouds[3][1].header.stamp.sec == 0 and clouds[3][1].header.stamp.nanosec == 300_000_000
    joints = [m for _, _, m in bag.messages(["/joint_states"])]
    assert [list(j.position) for j in joints] == [[k, -k] for k in range(5)]


def test_metadata_yaml_is_rosbag2_version_5(tmp_path):
    ep = write_episode(tmp_path, "ep", steps=3)
    info = yaml.safe_load((ep["path"] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5 and info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["ep_0.mcap"]
    assert info["message_count"] == 7 and info["files"][0]["message_count"] == 7
    assert info["starting_time"]["nanoseconds_since_epoch"] == T0
    assert info["duration"]["nanoseconds"] == 2 * 100_000_000 + 2
    assert "custom_data" not in info and "ros_distro" not in info      # v6+ keys break Humble
    qos = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])[0]
           for t in info["topics_with_message_count"]}
    # Enums as the rmw integers (what Humble writes and every later release reads for v < 9).
    assert qos["/camera/points"]["reliability"] == 2 and qos["/camera/points"]["depth"] == 5
    assert qos["/sim_node/metadata"]["durability"] == 1 and qos["/joint_states"]["reliability"] == 1
    assert "&" not in (ep["path"] / "metadata.yaml").read_text()        # no YAML anchors


def test_independent_readers_rosbags_and_mcap(tmp_path):
    from rosbags.highlevel import AnyReader

    ep = write_episode(tmp_path, "ep", steps=4)
    with AnyReader([ep["path"]]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert counts == {"/camera/points": ("sensor_msgs/msg/PointCloud2", 4),
                          "/joint_states": ("sensor_msgs/msg/JointState", 4),
                          "/sim_node/metadata": ("std_msgs/msg/String", 1)}
        stamps, positions = [], []
        for connection, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/joint_states":
                stamps.append((timestamp, msg.header.stamp.sec, msg.header.stamp.nanosec))
                positions.append(msg.position.tolist())
            elif connection.topic == "/camera/points":
                cloud = msg
        assert [s[0] for s in stamps] == [T0 + k * 100_000_000 + 2 for k in range(4)]
        assert [s[2] for s in stamps] == [0, 100_000_000, 200_000_000, 300_000_000]
        assert positions == [[k, -k] for k in range(4)]
        assert (cloud.height, cloud.width, len(cloud.data)) == (24, 32, 24 * 32 * cloud.point_step)

    with open(ep["path"] / "ep_0.mcap", "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        records = {m.name: m.metadata for m in reader.iter_metadata()}
        schemas = {s.name: s.encoding for s in reader.get_summary().schemas.values()}
    assert json.loads(records["equimanip.episode"]["success"]) is True
    assert json.loads(records["equimanip.episode"]["note"]) == "first try"
    assert "version: 5" in records["rosbag2"]["serialized_metadata"]
    assert schemas == {"sensor_msgs/msg/PointCloud2": "ros2msg", "sensor_msgs/msg/JointState": "ros2msg",
                       "std_msgs/msg/String": "ros2msg"}
    # The bare .mcap file opens too, with the same episode record.
    assert read_bag(ep["path"] / "ep_0.mcap").episode["task"] == "block_picking"


def test_an_exception_while_recording_leaves_nothing(tmp_path):
    write_episode(tmp_path, "keep", steps=2)
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path, "lost") as bag:
            bag.add_topic("/x", "std_msgs/msg/String")
            bag.write("/x", {"data": "a"}, 1)
            raise RuntimeError("operator pressed the wrong key")
    assert sorted(os.listdir(tmp_path)) == ["keep"]
    bag = BagWriter(tmp_path, "dropped")
    bag.add_topic("/x", "std_msgs/msg/String")
    bag.discard()
    assert sorted(os.listdir(tmp_path)) == ["keep"]
    with pytest.raises(BagWriteError, match="already exists"):
        BagWriter(tmp_path, "keep")
    with pytest.raises(BagWriteError, match="not a bag name"):
        BagWriter(tmp_path, "../escape")


def test_a_killed_writer_leaves_a_hidden_partial_that_readers_skip(tmp_path):
    write_episode(tmp_path, "episode_0000", steps=2)
    # A writer in another process killed mid-episode: no close(), no rename.
    code = textwrap.dedent(f"""
        import os, signal
        from equimanip.data.bag import BagWriter
        bag = BagWriter({str(tmp_path)!r}, "episode_0001")
        bag.add_topic("/x", "std_msgs/msg/String")
        for k in range(2000):
            bag.write("/x", {{"data": "x" * 1000}}, k)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert list_bags(tmp_path) == [tmp_path / "episode_0000"]
    assert [p.name for p in list_partial(tmp_path)] == [".episode_0001.partial"]
    with pytest.raises(BagReadError, match="not a bag"):
        read_bag(list_partial(tmp_path)[0])
    read_bag(tmp_path / "episode_0000")
    # The next writer of that name clears the leftover.
    write_episode(tmp_path, "episode_0001", steps=1)
    assert list_partial(tmp_path) == []


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(BagWriteError, match=f"cannot record into {blocker}/episodes"):
        BagWriter(blocker / "episodes", "episode_0000")
    with pytest.raises(BagWriteError, match="cannot record into"):
        check_writable(blocker / "episodes")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):          # root ignores permission bits: use a read-only fs
        read_only = Path("/sys/equimanip-test")
    with pytest.raises(BagWriteError, match="cannot record into"):
        check_writable(read_only)
    with pytest.raises(BagWriteError, match="cannot record into"):
        BagWriter(read_only, "episode_0000")


def test_a_full_disk_fails_clearly_and_keeps_earlier_episodes(tmp_path):
    # A file-size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC), for real.
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        from equimanip.data.bag import BagWriter, BagWriteError
        with BagWriter({str(tmp_path)!r}, "episode_0000") as bag:
            bag.add_topic("/x", "std_msgs/msg/String")
            bag.write("/x", {{"data": "small"}}, 1)
            bag.close({{"success": True}})
        bag = BagWriter({str(tmp_path)!r}, "episode_0001", chunk_size=10_000)
        bag.add_topic("/x", "std_msgs/msg/String")
        try:
            for k in range(1000):
                bag.write("/x", {{"data": "y" * 1000}}, k)
            bag.close()
        except BagWriteError as e:
            print("ERROR:", e)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "recording" in result.stdout and "episode_0001" in result.stdout and "discarded" in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["episode_0000"]
    assert read_bag(tmp_path / "episode_0000").episode == {"success": True}


def test_not_a_bag(tmp_path):
    with pytest.raises(BagReadError, match="neither a bag directory"):
        read_bag(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagReadError, match="no metadata.yaml"):
        read_bag(tmp_path / "empty")
    truncated = tmp_path / "cut.mcap"
    ep = write_episode(tmp_path, "whole", steps=2)
    truncated.write_bytes((ep["path"] / "whole_0.mcap").read_bytes()[:3000])
    with pytest.raises(BagReadError):
        read_bag(truncated)
