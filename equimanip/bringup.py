"""In-process bringup: the simulated arm and a controller in one process, one executor.

This is how the pip path (no ``ros2 launch``) starts a graph. The nodes talk over real DDS topics
exactly as they do in separate processes; the runner only resets episodes through the simulation's
``~/reset`` service and waits for ``~/episode_done``. For bookkeeping (step count, outcome) it reads
the simulation object it owns.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from equimanip.config import config_file
from equimanip.nodes import qos, topics

CONTROLLERS = ("expert",)


def make_controller(name: str, **node_kwargs) -> Node:
    if name == "expert":
        from equimanip.sim.expert_node import ExpertNode
        return ExpertNode(**node_kwargs)
    raise ValueError(f"unknown controller '{name}'; available: {', '.join(CONTROLLERS)}")


@dataclass
class RunConfig:
    task: str = "block_picking"
    controller: str = "expert"
    episodes: int = 10
    seed: int = 0
    sync: bool = True                       # deterministic and as fast as the controller
    params_files: Sequence[str] = ("sim",)  # names in config/ or paths, applied in order
    sim_overrides: dict = field(default_factory=dict)
    controller_overrides: dict = field(default_factory=dict)
    record: Optional[Path] = None           # write a GIF of the first episode
    record_size: tuple[int, int] = (320, 240)
    episode_timeout_s: float = 300.0        # wall-clock guard against a stalled loop
    domain_id: Optional[int] = None


@dataclass
class EpisodeResult:
    index: int
    seed: int
    success: bool
    steps: int
    wall_s: float


@dataclass
class RunResult:
    config: RunConfig
    episodes: list = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_steps(self) -> float:
        return float(np.mean([e.steps for e in self.episodes])) if self.episodes else 0.0

    def summary(self) -> dict:
        c = self.config
        return {
            "task": c.task, "controller": c.controller, "seed": c.seed, "sync": c.sync,
            "episodes": len(self.episodes), "success_rate": self.success_rate,
            "mean_steps": self.mean_steps,
            "mean_wall_s": float(np.mean([e.wall_s for e in self.episodes])) if self.episodes else 0.0,
            "per_episode": [e.__dict__ for e in self.episodes],
        }


def _overrides(values: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


class _EpisodeMonitor(Node):
    """Resets episodes through the simulation's service and hears when they end."""

    def __init__(self, **node_kwargs):
        super().__init__("equimanip_run", **node_kwargs)
        self.reset_client = self.create_client(Trigger, topics.SIM_RESET)
        self.done: Optional[bool] = None
        self.create_subscription(Bool, topics.SIM_EPISODE_DONE, self._on_done, qos.RELIABLE)

    def _on_done(self, msg: Bool) -> None:
        self.done = bool(msg.data)


class _FrameRecorder:
    """Collects rendered frames of the episodes it is active for."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.active = False
        self.frames: list = []

    def capture(self, env) -> None:
        self.frames.append(env.render_rgb(*self.size))

    def on_step(self, env, _obs) -> None:
        if self.active:
            self.capture(env)


def spin_until(executor, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)


def run(config: RunConfig, on_episode: Optional[Callable[[EpisodeResult], None]] = None) -> RunResult:
    """Bring up sim_node + controller in this process and run ``config.episodes`` episodes."""
    from equimanip.sim.sim_node import SimNode

    args = ["--ros-args"]
    for name in config.params_files:
        args += ["--params-file", str(config_file(name))]
    context = Context()
    rclpy.init(args=args, context=context, domain_id=config.domain_id)
    nodes = []
    try:
        common = {"task": config.task}
        sim = SimNode(context=context, parameter_overrides=_overrides(
            {**common, "seed": config.seed, "sync": config.sync, **config.sim_overrides}))
        nodes.append(sim)
        controller = make_controller(config.controller, context=context, parameter_overrides=_overrides(
            {**common, **config.controller_overrides}))
        nodes.append(controller)
        monitor = _EpisodeMonitor(context=context)
        nodes.append(monitor)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)

        # Discovery: start only when the loop is closed both ways and the reset service answers.
        spin_until(executor, lambda: (
            sim.count_publishers(topics.TWIST) > 0 and controller.count_publishers(topics.EE_POSE) > 0
            and monitor.reset_client.service_is_ready()), 30.0, "the nodes to discover each other")

        recorder = _FrameRecorder(config.record_size)
        if config.record is not None:
            sim.add_step_listener(recorder.on_step)
        result = RunResult(config)
        # Setting the seed restarts the simulation's seed sequence: episode k gets seed + k.
        sim.set_parameters([Parameter("seed", value=config.seed)])
        for k in range(config.episodes):
            monitor.done = None
            future = monitor.reset_client.call_async(Trigger.Request())
            spin_until(executor, future.done, 30.0, "the simulation to reset")
            if not future.result().success:
                raise RuntimeError(future.result().message)
            recorder.active = config.record is not None and k == 0
            if recorder.active:
                recorder.capture(sim.env)
            t0 = time.monotonic()
            # The topic wakes us; the simulation object we own says which episode ended, so a
            # late message from the previous scene cannot end this one.
            spin_until(executor, lambda: monitor.done is not None and sim.env.done, config.episode_timeout_s,
                       f"episode {k + 1} to end")
            episode = EpisodeResult(k + 1, config.seed + k, sim.env.success, sim.env.steps,
                                    time.monotonic() - t0)
            result.episodes.append(episode)
            if on_episode is not None:
                on_episode(episode)
        if config.record is not None:
            write_animation(config.record, recorder.frames, fps=int(round(1.0 / sim.control_period)))
        return result
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def write_animation(path: Path, frames: list, fps: int = 10) -> Path:
    """Write frames (H x W x 3 uint8) as an animated GIF (Pillow; no ffmpeg needed)."""
    import imageio.v2 as imageio
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animations are written as .gif, not '{path.suffix}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)  # ms per frame
    return path
