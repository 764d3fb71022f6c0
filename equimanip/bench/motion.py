"""``equimanip bench motion``: do the motion limits hold for the measured pose, and what does the
largest accepted message cost the control rate?

Two parts:

* **soak** (``--sequences``, ``--task``): random and adversarial command sequences through the
  simulation API, as test/test_motion_limits.py drives them but many more: twists with components at, inside and
  three times beyond the limits, held for 1-8 steps; joint targets anywhere inside the joint
  limits or at the adversarial configurations of issue 6, followed for 1-8 steps; gripper
  commands, holds and resets. The measured grasp point is checked after every control step:
  worst excursion outside the workspace box, largest per-axis step, largest tilt from pointing down,
  apart for the steps that end with the arm touching something (a task object or the table). The
  default task, reach, has nothing to touch but the table; block_picking has a 4 cm cube to
  press on.
* **rate** (``--rate-seconds``, 0 skips it): sim_node as its own process in real-time mode (10 Hz,
  128 x 128 cloud), and the control rate it holds (``/ee_pose`` messages per wall-clock second,
  median over windows) with nothing sent, under a trajectory of ``MAX_TRAJECTORY_POINTS`` points
  (the largest accepted) every 0.5 s, under a 50,000-point trajectory every 0.5 s (refused before
  it is decoded), and with the largest accepted camera (640 x 480) and no messages.

    equimanip bench motion --sequences 2000 --json
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from equimanip.bench.common import print_report

# The adversarial joint configurations of test/test_motion_limits.py.
ADVERSARIAL_JOINTS = np.array([
    [1.2, 1.0, 0.0, -1.2, 0.0, 2.2, 0.785],
    [0.0, 1.7, 0.0, -0.1, 0.0, 2.26, 0.785],
    [-2.8, -1.7, -2.8, -3.0, -2.8, 0.0, -2.8],
    [2.8, 1.7, 2.8, -0.1, 2.8, 3.7, 2.8],
    [0.0, 0.41, 0.0, -1.85, 2.5, 2.26, 0.785],
])


def touching(env) -> bool:
    """Whether the arm touches another body (a task object, the table) right now."""
    from equimanip.sim.bullet import p

    world = env.world
    return any(contact[2] != world.robot
               for contact in p.getContactPoints(bodyA=world.robot, physicsClientId=world.client))


@dataclass
class LimitStats:
    """The worst of the measured poses seen."""
    steps: int = 0
    worst_excursion: float = -math.inf   # m outside the workspace box (<= 0: inside)
    largest_step: float = 0.0            # m along one axis in one control step
    largest_tilt: float = 0.0            # rad from pointing down

    def update(self, excursion: float, step: float, tilt: float) -> None:
        self.steps += 1
        self.worst_excursion = max(self.worst_excursion, excursion)
        self.largest_step = max(self.largest_step, step)
        self.largest_tilt = max(self.largest_tilt, tilt)

    def summary(self) -> dict:
        return {"steps": self.steps, "worst_excursion_m": self.worst_excursion, "largest_step_m": self.largest_step,
                "largest_tilt_deg": math.degrees(self.largest_tilt)}


class MotionRecord:
    """The measured pose after every control step, against the motion limits: apart for the steps
    that end in free motion and those that end touching something."""

    def __init__(self):
        self.free, self.contact = LimitStats(), LimitStats()
        self._previous = None

    def restart(self, ee_pose) -> None:
        """After a reset: a teleport, not a step."""
        self._previous = np.asarray(ee_pose[:3], dtype=np.float64)

    def add(self, ee_pose, in_contact: bool = False) -> tuple[float, float, float]:
        """Record one step's measured pose; returns its (excursion, step, tilt)."""
        from equimanip.sim.world import WORKSPACE, tilt_of_quat_xyzw

        position = np.asarray(ee_pose[:3], dtype=np.float64)
        excursion = float(np.max(np.maximum(WORKSPACE.low_array - position, position - WORKSPACE.high_array)))
        step = float(np.max(np.abs(position - self._previous)))
        tilt = tilt_of_quat_xyzw(ee_pose[3:])
        self._previous = position
        (self.contact if in_contact else self.free).update(excursion, step, tilt)
        return excursion, step, tilt


def soak(sequences: int, seed: int = 0, task: str = "reach") -> dict:
    """Random and adversarial command sequences through the simulation API (see the module doc)."""
    from tqdm import tqdm

    from equimanip.action import ACTION_HIGH
    from equimanip.sim.env import ManipulationEnv

    rng = np.random.default_rng(seed)
    record = MotionRecord()
    start = time.perf_counter()
    with ManipulationEnv(task=task, render=False) as env:
        lower, upper = (limits[:7] for limits in env.joint_limits)
        for _ in tqdm(range(sequences), desc="sequences", disable=sequences < 50):
            record.restart(env.reset(int(rng.integers(0, 10_000))).ee_pose)
            for _ in range(int(rng.integers(5, 17))):
                kind = rng.choice(["twist", "joints", "gripper", "hold", "reset"], p=[0.45, 0.35, 0.08, 0.08, 0.04])
                if kind == "twist":
                    extreme = rng.choice([-3.0, -1.0, 0.0, 1.0, 3.0], size=4) * ACTION_HIGH[1:]
                    inside = rng.uniform(-1.0, 1.0, size=4) * ACTION_HIGH[1:]
                    motion = np.where(rng.random(4) < 0.5, extreme, inside)
                    action = np.concatenate([[rng.random()], motion])
                    for _ in range(int(rng.integers(1, 9))):
                        record.add(env.step(action)[0].ee_pose, touching(env))
                elif kind == "joints":
                    target = (ADVERSARIAL_JOINTS[rng.integers(len(ADVERSARIAL_JOINTS))] if rng.random() < 0.3
                              else lower + rng.random(7) * (upper - lower))
                    gripper = None if rng.random() < 0.5 else float(rng.random())
                    for _ in range(int(rng.integers(1, 9))):
                        record.add(env.step_joints(np.clip(target, lower, upper), gripper)[0].ee_pose, touching(env))
                elif kind == "gripper":
                    record.add(env.step([rng.random(), 0.0, 0.0, 0.0, 0.0])[0].ee_pose, touching(env))
                elif kind == "hold":
                    record.add(env.hold()[0].ee_pose, touching(env))
                else:
                    record.restart(env.reset(int(rng.integers(0, 10_000))).ee_pose)
    return {"task": task, "sequences": sequences, "seconds": time.perf_counter() - start,
            "free_motion": record.free.summary(), "touching": record.contact.summary()}


def _trajectory_message(points: int):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    home = [0.0, 0.2, 0.0, -2.0, 0.0, 2.2, 0.785, 0.04, 0.04]
    msg = JointTrajectory(joint_names=names)
    msg.points = [JointTrajectoryPoint(positions=home, velocities=[0.0] * 9, accelerations=[0.0] * 9,
                                       effort=[0.0] * 9,  # all fields: the most bytes a point takes
                                       time_from_start=Duration(sec=k // 100, nanosec=k % 100 * 10_000_000))
                  for k in range(1, points + 1)]
    return msg


def control_rate(seconds: float, windows: int = 3) -> dict:
    """Control rate of a real-time sim_node process under each load (see the module doc)."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from trajectory_msgs.msg import JointTrajectory

    from equimanip.nodes import qos, topics
    from equimanip.sim.sim_node import MAX_TRAJECTORY_POINTS

    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    loads = {
        "nothing": ([], None),
        f"trajectory_{MAX_TRAJECTORY_POINTS}_points_at_2hz": ([], MAX_TRAJECTORY_POINTS),
        "trajectory_50000_points_at_2hz_refused": ([], 50_000),
        "camera_640x480": (["-p", "camera.width:=640", "-p", "camera.height:=480"], None),
    }
    sim_node = str(Path(sys.executable).parent / "sim_node")
    context = Context()
    rclpy.init(context=context)
    results = {}
    try:
        node = Node("rate_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        stamps = []
        node.create_subscription(PoseStamped, topics.EE_POSE, lambda _: stamps.append(time.monotonic()), qos.RELIABLE)
        publisher = node.create_publisher(JointTrajectory, topics.JOINT_TRAJECTORY, qos.RELIABLE)
        messages = {n: _trajectory_message(n) for n in (MAX_TRAJECTORY_POINTS, 50_000)}
        for name, (args, points) in loads.items():
            proc = subprocess.Popen([sim_node, "--ros-args", "-p", "task:=reach", "-p", "max_steps:=100000",
                                     "-p", "command_timeout:=10.0", *args],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while node.count_publishers(topics.EE_POSE) == 0 or publisher.get_subscription_count() == 0:
                    executor.spin_once(timeout_sec=0.1)
                    if time.monotonic() > deadline:
                        raise TimeoutError("sim_node did not come up")
                settle_end = time.monotonic() + 1.0
                while time.monotonic() < settle_end:
                    executor.spin_once(timeout_sec=0.05)
                rates, next_send = [], time.monotonic()
                for _ in range(windows):
                    stamps.clear()
                    window_end = time.monotonic() + seconds / windows
                    while time.monotonic() < window_end:
                        if points is not None and time.monotonic() >= next_send:
                            msg = messages[points]
                            msg.header.stamp.sec = msg.header.stamp.nanosec = 0  # "now"
                            publisher.publish(msg)
                            next_send += 0.5
                        executor.spin_once(timeout_sec=0.01)
                    rates.append(len(stamps) / (seconds / windows))
                results[name] = statistics.median(rates)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench motion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1000, help="random command sequences in the soak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="reach", help="scene of the soak (reach: nothing to touch but the table)")
    parser.add_argument("--rate-seconds", type=float, default=9.0,
                        help="wall-clock seconds of rate measurement per load (0: skip)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    results = {"soak": soak(args.sequences, args.seed, args.task)}
    s = results["soak"]
    rows = [("task / sequences", f"{s['task']} / {s['sequences']} ({s['seconds']:.0f} s)")]
    for part in ("free_motion", "touching"):
        r = s[part]
        rows += [(f"{part}: control steps", f"{r['steps']}"),
                 (f"{part}: worst excursion outside the box", f"{r['worst_excursion_m'] * 1000:.2f} mm"),
                 (f"{part}: largest step along an axis", f"{r['largest_step_m'] * 1000:.1f} mm (limit 50)"),
                 (f"{part}: largest tilt from pointing down", f"{r['largest_tilt_deg']:.2f} deg (limit 10)")]
    if args.rate_seconds > 0:
        results["control_rate_hz"] = control_rate(args.rate_seconds)
        rows += [(f"control rate, {name}", f"{hz:.1f} Hz") for name, hz in results["control_rate_hz"].items()]
    print_report("equimanip bench motion (measured grasp point; real-time control rate at 10 Hz)", rows, results,
                 args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
