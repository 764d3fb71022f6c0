"""``equimanip bench latency``: the policy node on a camera-rate stream, as on a real cell.

A publisher in this process sends 640 x 480 organized x/y/z/rgb clouds (a synthetic tabletop seen
by a tilted camera) at 30 Hz, each with the end-effector pose and joint states of the same
instant, for ``--seconds``. ``policy_node`` runs in a process of its own (the executable, as under
``ros2 launch``) in timer mode at 10 Hz with the Equivariant SAC actor of the CPU configuration,
then of the paper configuration. Reported, per configuration:

* ``latency_p50_ms`` / ``latency_p99_ms``: inside the node, from the moment the set completed by a
  cloud came in to the moment its twist was published (the node's own /diagnostics figures; the
  publisher sends the cloud last, so the set completes with the cloud);
* ``end_to_end_p50_ms`` / ``end_to_end_p99_ms``: from the publisher's send to the twist's arrival
  back here (adds serialising and moving a 4.9 MB cloud between processes);
* ``missed_cycles``, ``rate_hz``: whether the 10 Hz rate held (the rate from the twists that came
  back, from a second after the first one to the end of the stream; ``decisions`` counts them all).

Both processes use the Fast DDS profile shipped in config/fastdds_large_messages.xml (shared memory
that holds whole clouds) unless ``--transport default`` (Fast DDS's own settings, under which a
4.9 MB cloud crosses by UDP in fragments) or FASTDDS_DEFAULT_PROFILES_FILE says otherwise.

The actors are untrained (random weights at the trained networks' shapes): their cost is the
same. Torch runs on one thread (``torch_threads`` 1) unless told otherwise, and the network on
the CPU unless ``--device cuda`` (the node's ``device`` parameter) puts it on the GPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from equimanip.bench.common import node_process, print_report, private_domain

RATE_HZ = 30.0


def _checkpoint(path: Path, paper: bool) -> Path:
    import torch

    from equimanip.checkpoint import save_checkpoint
    from equimanip.models import NetworkConfig, make_actor, make_critic
    from equimanip.perception.observation import ObservationConfig

    torch.manual_seed(0)
    cfg = NetworkConfig.paper() if paper else NetworkConfig.cpu()
    return save_checkpoint(path, "sac", actor=make_actor(cfg), critic=make_critic(cfg), network_config=cfg,
                           observation_config=ObservationConfig(heightmap_size=cfg.heightmap_size),
                           task="block_picking", command="equimanip bench latency (untrained, for timing)")


def _measure(checkpoint: Path, seconds: float, threads: int, domain: int, reliable: bool, device: str) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.node import Node
    from sensor_msgs.msg import JointState, PointCloud2

    from equimanip.bringup import InProcessGraph
    from equimanip.nodes import msgs, qos, topics
    from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
    from equimanip.perception.synthetic import default_scene, render

    scene = default_scene(width=640, height=480)
    points, colors = render(scene)
    cloud = xyz_rgb_to_pointcloud2(points, colors, msgs.header("camera_depth_optical_frame", 0.0))
    camera_pose = "[" + ", ".join(f"{v:.6f}" for v in scene.camera_pose) + "]"
    node_args = ["-p", f"checkpoint:={checkpoint}", "-p", "trigger:=timer", "-p", "rate_hz:=10.0",
                 "-p", "sync_slop:=0.02", "-p", f"camera_pose:={camera_pose}",
                 "-p", f"sensor_reliability:={'reliable' if reliable else 'best_effort'}",
                 "-p", "arm_metadata_topic:=''", "-p", "episode_events_topic:=''", "-p", f"torch_threads:={threads}",
                 "-p", f"device:={device}", "-p", "equivariance_check:=false", "--log-level", "warn",
                 # The actor reads the heightmap alone, so the node's decisions skip the object-centric
                 # state anyway; off here it is also skipped in the start-up warm-up (Open3D's DBSCAN).
                 "-p", "observation.compute_object_state:=false"]
    profile = qos.RELIABLE_SENSOR if reliable else qos.SENSOR

    class Camera(Node):
        def __init__(self, **kw):
            super().__init__("latency_camera", **kw)
            self.cloud = self.create_publisher(PointCloud2, topics.CLOUD, profile)
            self.ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
            self.joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
            self.sent: dict[int, float] = {}
            self.end_to_end_ms: list[float] = []
            self.twist_times: list[float] = []
            self.diagnostics = None
            self.create_subscription(TwistStamped, topics.TWIST, self._on_twist, qos.RELIABLE)
            self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, qos.RELIABLE)

        def send(self, stamp_s: float) -> None:
            self.joints.publish(msgs.joint_state(["panda_finger_joint1", "panda_finger_joint2"], [0.04, 0.04],
                                                 [0.0, 0.0], stamp_s))
            self.ee.publish(msgs.pose_stamped([0.45, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], "base_link", stamp_s))
            cloud.header = msgs.header("camera_depth_optical_frame", stamp_s)
            self.sent[round(stamp_s * 1e6)] = time.monotonic()
            self.cloud.publish(cloud)                      # last: the cloud completes the set

        def _on_twist(self, msg) -> None:
            self.twist_times.append(time.monotonic())
            sent = self.sent.get(round(msgs.seconds(msg.header.stamp) * 1e6))
            if sent is not None:
                self.end_to_end_ms.append((time.monotonic() - sent) * 1e3)

        def _on_diagnostics(self, msg) -> None:
            for status in msg.status:
                if status.name.startswith("policy_node"):
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    with node_process("policy_node", node_args, domain) as node, InProcessGraph(domain_id=domain) as graph:
        camera = graph.add(Camera(context=graph.context))
        graph.spin_until(lambda: node.poll() is not None or (camera.count_subscribers(topics.CLOUD) > 0
                         and camera.count_publishers(topics.TWIST) > 0), 120.0, "policy_node to start")
        if node.poll() is not None:
            raise RuntimeError(f"policy_node exited with code {node.returncode} (its error is above)")
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            due = start + k / RATE_HZ
            # Spin only until the frame is due (spin_until's 50 ms steps would send late frames in
            # bursts, which a real camera never does).
            while (wait := due - time.monotonic()) > 0:
                graph.executor.spin_once(timeout_sec=wait)
            camera.send(1000.0 + k / RATE_HZ)
            k += 1
        stop = time.monotonic()
        graph.spin_for(2.0)                          # the last diagnostics of the run
        d = camera.diagnostics or {}
        # The rate once running: twists from a second after the first one to the end of the stream
        # (the first second is discovery and the transport's start, not the node's rate).
        steady_from = (camera.twist_times or [stop])[0] + 1.0
        steady = [t for t in camera.twist_times if steady_from <= t <= stop]
        e2e = camera.end_to_end_ms or [float("nan")]
        return {
            "latency_p50_ms": float(d.get("decision_latency_p50_ms", "nan")),
            "latency_p99_ms": float(d.get("decision_latency_p99_ms", "nan")),
            "missed_cycles": int(d.get("missed_cycles", -1)),
            "decisions": int(d.get("decisions", 0)),
            "rate_hz": len(steady) / (stop - steady_from) if stop > steady_from else 0.0,
            "end_to_end_p50_ms": statistics.median(e2e),
            "end_to_end_p99_ms": float(np.percentile(e2e, 99)),
            "clouds_sent": k,
        }


def _choose_transport(choice: str) -> str:
    """Set the Fast DDS profile of this process and of the node it starts; what it is, in words."""
    import os

    from equimanip.config import fastdds_profile

    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return f"profile {os.environ['FASTDDS_DEFAULT_PROFILES_FILE']} (from the environment)"
    if choice == "default":
        return "defaults"
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
    return f"profile {fastdds_profile().name}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the policy node")
    parser.add_argument("--skip-paper", action="store_true", help="only the CPU configuration")
    parser.add_argument("--best-effort", action="store_true",
                        help="publish and subscribe the clouds best effort (the sensor-data QoS); by default "
                             "both sides are reliable, as most losses of a 4.9 MB cloud happen otherwise")
    parser.add_argument("--transport", default="shipped", choices=["shipped", "default"],
                        help="Fast DDS settings of both processes: 'shipped' = config/fastdds_large_messages.xml "
                             "(shared memory that holds whole clouds; the setting recommended for a cell), "
                             "'default' = Fast DDS's own. FASTDDS_DEFAULT_PROFILES_FILE, when set, wins over both")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the policy node runs its network (the goal is for the CPU)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            parser.error("--device cuda: no GPU is visible to torch here")

    transport = _choose_transport(args.transport)
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        configs = [("cpu", False)] + ([] if args.skip_paper else [("paper", True)])
        for name, paper in configs:
            checkpoint = _checkpoint(Path(tmp) / f"{name}.pt", paper)
            r = _measure(checkpoint, args.seconds, args.threads, private_domain(), not args.best_effort,
                         args.device)
            prefix = "" if name == "cpu" else "paper_"
            results.update({prefix + k: v for k, v in r.items()})
            rows.append((f"{name} configuration", f"cloud in -> twist out p50 {r['latency_p50_ms']:.1f} ms, "
                                                  f"p99 {r['latency_p99_ms']:.1f} ms (goal 15 / 30 ms)"))
            rows.append(("", f"{r['rate_hz']:.2f} decisions/s, {r['missed_cycles']} missed cycles; end to end "
                             f"p50 {r['end_to_end_p50_ms']:.1f} ms, p99 {r['end_to_end_p99_ms']:.1f} ms"))
    print_report(f"policy_node, timer mode at 10 Hz, 640 x 480 clouds at {RATE_HZ:.0f} Hz for {args.seconds:.0f} s, "
                 f"{args.threads} torch thread(s), {'best effort' if args.best_effort else 'reliable'}, "
                 f"network on {args.device}, Fast DDS {transport}", rows,
                 {**results, "threads": args.threads, "seconds": args.seconds, "device": args.device,
                  "transport": transport,
                  "reliable": not args.best_effort}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
