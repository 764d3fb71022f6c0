"""``equimanip bench sim``: what a simulated control step costs.

Reports medians over repeated runs, in one process, of

* ``control_step_ms``: one control step of block_pushing without rendering (IK + physics substeps
  + state read-out), next to panda-gym's PandaPush-v3 step measured in the same run, the two in
  alternating blocks;
* ``cloud_128_ms`` / ``cloud_640_ms``: rendering the depth camera to an organized point cloud at
  128 x 128 and 640 x 480 (PyBullet's TinyRenderer on the CPU), next to panda-gym's own RGB
  render at the same sizes;
* ``closed_loop_step_ms``: a full step through ROS: the simulation node steps in sync mode,
  renders and publishes a 128 x 128 cloud with the robot state; a controller node receives and
  decodes it and answers with a command, which triggers the next step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.bench.common import print_report, time_ms

REFERENCE_PANDA_GYM_MS = 1.29   # REFERENCES.md section 7, measured on the project's build machine
REFERENCE_TINYRENDER_128_MS = 18.6


class _PushingSteps:
    """Control steps of block_pushing with random actions, without rendering."""

    def __init__(self, seed: int = 0):
        from equimanip.sim.env import ManipulationEnv
        self.env = ManipulationEnv(task="block_pushing", render=False)
        self.rng = np.random.default_rng(seed)
        self.env.reset(seed)

    def run(self, steps: int) -> list[float]:
        samples = []
        for _ in range(steps):
            action = self.rng.uniform(ACTION_LOW, ACTION_HIGH)
            t0 = time.perf_counter()
            _, _, done, _ = self.env.step(action)
            samples.append((time.perf_counter() - t0) * 1e3)
            if done:
                self.env.reset()
        return samples

    def close(self):
        self.env.close()


class _PandaGymSteps:
    """panda-gym's PandaPush-v3 with random actions (physics only, no rendering)."""

    def __init__(self, seed: int = 0):
        import gymnasium as gym
        import panda_gym  # noqa: F401 - registers the Panda environments
        self.env = gym.make("PandaPush-v3")
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)

    def run(self, steps: int) -> list[float]:
        samples = []
        for _ in range(steps):
            action = self.env.action_space.sample()
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = self.env.step(action)
            samples.append((time.perf_counter() - t0) * 1e3)
            if terminated or truncated:
                self.env.reset()
        return samples

    def render_samples(self, width: int, height: int, repeats: int) -> list[float]:
        """panda-gym's own camera image (RGB, TinyRenderer) at the given size."""
        sim = self.env.unwrapped.sim
        return time_ms(lambda: sim.render(width=width, height=height), repeats, warmup=1)

    def close(self):
        self.env.close()


def panda_gym_render_samples(width: int, height: int, repeats: int) -> list[float] | None:
    try:
        env = _PandaGymSteps()
    except ImportError:
        return None
    try:
        return env.render_samples(width, height, repeats)
    finally:
        env.close()


def control_step_samples(steps: int, blocks: int = 10) -> tuple[list[float], list[float] | None]:
    """Step times of ours and panda-gym's, measured in alternating blocks so that both see the
    same machine load (a shared machine's load drifts over a run)."""
    ours = _PushingSteps()
    try:
        theirs = _PandaGymSteps()
    except ImportError:
        theirs = None
    ours_ms, theirs_ms = [], []
    per_block = max(1, steps // blocks)
    try:
        for _ in range(blocks):
            ours_ms += ours.run(per_block)
            if theirs is not None:
                theirs_ms += theirs.run(per_block)
    finally:
        ours.close()
        if theirs is not None:
            theirs.close()
    return ours_ms, (theirs_ms if theirs is not None else None)


def cloud_samples(width: int, height: int, repeats: int) -> list[float]:
    from equimanip.sim.camera import CameraConfig
    from equimanip.sim.env import ManipulationEnv

    env = ManipulationEnv(task="block_picking", camera=CameraConfig(width=width, height=height))
    env.reset(0)
    try:
        return time_ms(lambda: env.observe(render=True), repeats, warmup=1)
    finally:
        env.close()


def closed_loop_samples(steps: int) -> list[float]:
    """Wall time between consecutive clouds received by a controller that answers each one."""
    from sensor_msgs.msg import PointCloud2

    from equimanip.bringup import InProcessGraph
    from equimanip.nodes import qos, topics
    from equimanip.nodes.controller import ControllerNode
    from equimanip.perception.pointcloud2 import pointcloud2_to_xyz
    from equimanip.sim.sim_node import SimNode

    class CloudEcho(ControllerNode):
        """Decodes each cloud and answers with a zero action (a stand-in for a policy's I/O)."""

        def __init__(self, **kw):
            super().__init__("cloud_echo", extra_topics={topics.CLOUD: (PointCloud2, qos.SENSOR)}, **kw)
            self.received: list[float] = []

        def act(self, messages):
            pointcloud2_to_xyz(messages[topics.CLOUD])
            self.received.append(time.perf_counter())
            return np.array([1.0, 0.0, 0.0, 0.0, 0.0])

    with InProcessGraph() as graph:
        sim = graph.node(SimNode, sync=True, task="block_pushing", max_steps=100000)
        echo = graph.add(CloudEcho(context=graph.context))
        graph.spin_until(lambda: sim.count_publishers(topics.TWIST) > 0
                         and echo.count_publishers(topics.CLOUD) > 0, 30.0, "discovery")
        sim.republish()
        graph.spin_until(lambda: len(echo.received) >= steps + 5, 120.0, "closed-loop steps")
        return list(np.diff(echo.received[5:]) * 1e3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=20, help="renders per cloud measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    ours_ms, gym_ms = control_step_samples(args.steps)
    step = statistics.median(ours_ms)
    gym = statistics.median(gym_ms) if gym_ms else None
    cloud_128 = statistics.median(cloud_samples(128, 128, args.repeats))
    cloud_640 = statistics.median(cloud_samples(640, 480, max(5, args.repeats // 4)))
    gym_128 = panda_gym_render_samples(128, 128, args.repeats)
    gym_640 = panda_gym_render_samples(640, 480, max(5, args.repeats // 4))
    gym_128 = statistics.median(gym_128) if gym_128 else None
    gym_640 = statistics.median(gym_640) if gym_640 else None
    loop = statistics.median(closed_loop_samples(min(args.steps, 200)))

    from equimanip.sim.env import ManipulationEnv
    env = ManipulationEnv(task="block_pushing", render=False)
    substeps = env.substeps
    env.close()
    results = {
        "control_step_ms": step,
        "control_substeps": substeps,
        "control_substep_ms": step / substeps,
        "panda_gym_step_ms": gym,
        "control_step_vs_panda_gym": (step / gym) if gym else None,
        "cloud_128_ms": cloud_128,
        "cloud_640_ms": cloud_640,
        "clouds_per_s_128": 1e3 / cloud_128,
        "clouds_per_s_640": 1e3 / cloud_640,
        "panda_gym_render_128_ms": gym_128,
        "panda_gym_render_640_ms": gym_640,
        "closed_loop_step_ms": loop,
    }
    gym_row = (f"{gym:.2f} ms (20 substeps at 500 Hz); ours / theirs = {step / gym:.2f}x (goal <= 1.5x)"
               if gym else "panda-gym not installed (pip install -e .[bench])")
    rows = [
        ("control step, no rendering", f"{step:.2f} ms = {1e3 / step:.0f} steps/s "
                                       f"({substeps} substeps at {env.config.physics_hz:.0f} Hz)"),
        ("panda-gym PandaPush-v3 step", gym_row),
        ("point cloud 128 x 128", f"{cloud_128:.1f} ms = {1e3 / cloud_128:.1f} clouds/s"),
        ("point cloud 640 x 480", f"{cloud_640:.1f} ms = {1e3 / cloud_640:.1f} clouds/s"),
        ("panda-gym RGB render 128 x 128", f"{gym_128:.1f} ms = {1e3 / gym_128:.1f} images/s" if gym_128 else "-"),
        ("panda-gym RGB render 640 x 480", f"{gym_640:.1f} ms = {1e3 / gym_640:.1f} images/s" if gym_640 else "-"),
        ("closed-loop step via ROS (128 x 128 cloud)", f"{loop:.1f} ms (goal < 40 ms)"),
    ]
    print_report("equimanip bench sim (medians)", rows, results, args.json)
    return 0
