"""equimanip bench recorder: does recorder_node keep up with a 640 x 480 cloud at 15 Hz?

A camera stand-in in another process publishes organized 640 x 480 x/y/z/rgb PointCloud2 messages
(4.9 MB each) at ``--rate`` Hz with the sensor-data QoS, plus joint states and the end-effector
pose at the same instants, for ``--seconds``; recorder_node (this process) records one episode of
it. Reported: clouds published, received and written (received == written means nothing it got
was dropped; best-effort DDS may lose some before that, which is reported separately), the
recorder's callback time per cloud (median, p95), the bag's size and the write throughput.

    equimanip bench recorder [--rate 15] [--seconds 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PUBLISHER = r"""
import json, sys, time
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import PointCloud2
from equimanip.nodes import msgs, qos, topics
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2

rate, seconds, reliable = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "reliable"
rclpy.init()
node = Node("camera_standin")
pub_cloud = node.create_publisher(PointCloud2, topics.CLOUD, qos.RELIABLE if reliable else qos.SENSOR)
pub_joints = node.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
pub_ee = node.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
rng = np.random.default_rng(0)
xyz = rng.uniform(-1, 1, (480, 640, 3)).astype(np.float32)
rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
cloud = xyz_rgb_to_pointcloud2(xyz, rgb, msgs.header("camera_depth_optical_frame", 0.0))
deadline = time.monotonic() + 20
while (node.count_subscribers(topics.CLOUD) == 0 and time.monotonic() < deadline):
    rclpy.spin_once(node, timeout_sec=0.05)
print("ready", flush=True)
sys.stdin.readline()          # go
period, sent = 1.0 / rate, 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    t = time.time()
    cloud.header = msgs.header("camera_depth_optical_frame", t)
    pub_cloud.publish(cloud)
    pub_joints.publish(msgs.joint_state(["j"], [0.0], [0.0], t))
    pub_ee.publish(msgs.pose_stamped([0.5, 0, 0.2, 0, 0, 0, 1], "base_link", t))
    sent += 1
    time.sleep(max(0.0, start + sent * period - time.monotonic()))
print(json.dumps({"published": sent, "seconds": time.monotonic() - start}), flush=True)
node.destroy_node()
rclpy.shutdown()
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench recorder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--compression", default="none", choices=("none", "zstd", "lz4"))
    parser.add_argument("--reliable", action="store_true",
                        help="publish and record the cloud reliably (default: best effort, the sensor-data QoS)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from equimanip.bringup import InProcessGraph
    from equimanip.data.bag import read_bag
    from equimanip.nodes import topics
    from equimanip.nodes.recorder_node import RecorderNode

    with tempfile.TemporaryDirectory() as tmp, InProcessGraph() as graph:
        recorder = graph.node(RecorderNode, output_dir=tmp, compression=args.compression,
                              sensor_reliability="reliable" if args.reliable else "best_effort",
                              topics=[topics.CLOUD, topics.JOINT_STATES, topics.EE_POSE], record_metadata_topics=False)
        # Time the recorder's cloud callback (receive -> written), wrapped around the real one.
        costs = []
        original = recorder._on_message

        def timed(topic, data):
            t0 = time.perf_counter()
            original(topic, data)
            if topic == topics.CLOUD:
                costs.append(time.perf_counter() - t0)
        recorder._on_message = timed
        env = dict(os.environ)
        proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(args.rate), str(args.seconds),
                                 "reliable" if args.reliable else "best_effort"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout.readline().strip() == "ready"
            graph.spin_until(lambda: recorder.count_publishers(topics.CLOUD) > 0, 20.0, "the camera stand-in")
            recorder.start_episode()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            graph.spin_until(lambda: proc.poll() is not None, args.seconds + 60, "the publisher to finish")
            graph.spin_for(1.0)       # the last messages in flight
            published = json.loads(proc.stdout.readline())
        finally:
            if proc.poll() is None:
                proc.kill()
        path = recorder.stop_episode(True)
        stats = recorder.stats[topics.CLOUD]
        bag = read_bag(path)
        size = sum(f.stat().st_size for f in Path(path).iterdir())
        costs_ms = np.array(costs) * 1000
        result = {
            "rate_hz": args.rate, "seconds": round(published["seconds"], 2), "compression": args.compression,
            "reliable": args.reliable,
            "clouds_published": published["published"], "clouds_received": stats.received,
            "clouds_written": stats.written, "clouds_in_bag": bag.topics[topics.CLOUD].count,
            "dropped_after_receipt": stats.received - bag.topics[topics.CLOUD].count,
            "callback_ms_median": round(float(np.median(costs_ms)), 2) if costs else None,
            "callback_ms_p95": round(float(np.percentile(costs_ms, 95)), 2) if costs else None,
            "bag_mb": round(size / 1e6, 1), "write_mb_per_s": round(size / 1e6 / published["seconds"], 1),
        }
    print(f"{result['clouds_published']} clouds of 640 x 480 published at {args.rate:g} Hz for "
          f"{result['seconds']} s: {result['clouds_received']} received, {result['clouds_in_bag']} in the bag "
          f"({result['dropped_after_receipt']} dropped after receipt); recorder callback median "
          f"{result['callback_ms_median']} ms, p95 {result['callback_ms_p95']} ms; {result['bag_mb']} MB "
          f"({result['write_mb_per_s']} MB/s)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
