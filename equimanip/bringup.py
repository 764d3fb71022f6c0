"""In-process bringup: the simulated arm and a controller in one process, one executor.

This is how the pip path (no ``ros2 launch``) starts a graph. The nodes talk over real DDS topics
exactly as they do in separate processes; the runner only resets episodes through the simulation's
``~/reset`` service and waits for ``~/episode_done``. For bookkeeping (step count, outcome) it reads
the simulation object it owns.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from equimanip.config import config_file
from equimanip.nodes import qos, topics


def _expert_node():
    from equimanip.sim.expert_node import ExpertNode
    return ExpertNode


@dataclass(frozen=True)
class ControllerEntry:
    node_name: str           # the ROS node name, which `-p node_name:param:=value` refers to
    node_class: Callable     # returns the node class (imported on demand: torch only when needed)
    # Parameters for the simulated cell (over the node's defaults, which are a real cell's; `-p`
    # still wins): the goal of the learned controllers is the simulation's own (its object poses).
    sim_parameters: dict = field(default_factory=dict)


SIM_GOAL = {"goal_source": "object_poses"}


def _policy_node():
    from equimanip.nodes.policy_node import PolicyNode
    return PolicyNode


def _mppi_node():
    from equimanip.nodes.mppi_node import MPPINode
    return MPPINode


CONTROLLERS = {"expert": ControllerEntry("expert_node", _expert_node),
               "policy": ControllerEntry("policy_node", _policy_node, SIM_GOAL),
               "mppi": ControllerEntry("mppi_node", _mppi_node, SIM_GOAL)}
SIM_NODE_NAME = "sim_node"
# Seconds of waiting for a controller to become ready before saying what it waits for.
READINESS_REPORT_AFTER_S = 5.0


def parse_param_override(text: str) -> tuple[Optional[str], str, object]:
    """``[node:]name:=value`` (the ``ros2 run ... -p`` form, with an optional node name as in
    ``--ros-args -p``) -> (node or None for every node, name, value). The value is read as YAML,
    as ROS does: ``true`` is a bool, ``3`` an int, ``[1.0, 2.0]`` a list."""
    import yaml

    if ":=" not in text:
        raise ValueError(f"parameter override '{text}' must look like name:=value or node:name:=value")
    target, raw = text.split(":=", 1)
    node, _, name = target.rpartition(":")
    if not name or not raw:
        raise ValueError(f"parameter override '{text}' must look like name:=value or node:name:=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"parameter override '{text}': value is not valid YAML ({e})") from None
    return (node or None), name, value


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
    # `-p` overrides: (node name or None for every node, parameter, value), applied last.
    param_overrides: Sequence[tuple] = ()
    # Topic remappings for every node started ({"/ee_pose": "/cell/tool_pose"}), e.g. to check that
    # nothing depends on the default names.
    remappings: dict = field(default_factory=dict)
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
    graph_topics: list = field(default_factory=list)   # topic names of the graph once it was up
    controller_stats: dict = field(default_factory=dict)  # the controller's health at the end

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
            "controller_stats": self.controller_stats,
        }


def _overrides(values: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


class _EpisodeMonitor(Node):
    """Resets episodes through the simulation's service and hears when they end. Before each
    reset it calls the controller's ``~/reset``, so that the controller starts the episode with a
    clear memory whatever order the simulation's episode event and first state arrive in."""

    def __init__(self, controller_name: str, **node_kwargs):
        super().__init__("equimanip_run", **node_kwargs)
        self.reset_client = self.create_client(Trigger, topics.SIM_RESET)
        self.controller_reset_client = self.create_client(Trigger, f"{controller_name}/reset")
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


class InProcessGraph:
    """A private rclpy context with one executor, for nodes that run in this process.

    Parameter files apply to every node of the graph, as ``--params-file`` does for a process.
    Closing (or leaving the ``with`` block) destroys the nodes and shuts the context down.
    """

    def __init__(self, params_files: Sequence[str] = (), domain_id: Optional[int] = None, threads: int = 1):
        """``threads`` > 1 runs callbacks on a multi-threaded executor, so that callback groups
        work as on a real cell (a controller's slow decision does not hold up its e-stop)."""
        args = ["--ros-args"]
        for name in params_files:
            args += ["--params-file", str(config_file(name))]
        self.context = Context()
        rclpy.init(args=args, context=self.context, domain_id=domain_id)
        self.executor = (SingleThreadedExecutor(context=self.context) if threads <= 1
                         else MultiThreadedExecutor(num_threads=threads, context=self.context))
        self.nodes: list[Node] = []

    def node(self, node_class, remappings: Optional[dict] = None, **parameters):
        """Create ``node_class`` in this graph with parameter overrides (over the files) and topic
        remappings ({"/ee_pose": "/cell/tool_pose"}, as ``--ros-args -r`` gives them)."""
        cli_args = None
        if remappings:
            cli_args = ["--ros-args"] + [a for old, new in remappings.items() for a in ("-r", f"{old}:={new}")]
        node = node_class(context=self.context, parameter_overrides=_overrides(parameters), cli_args=cli_args)
        return self.add(node)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "a condition"):
        spin_until(self.executor, condition, timeout_s, what)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.nodes.clear()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> "InProcessGraph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def controller_summary(controller) -> dict:
    """Decisions, failures, reductions, missed cycles and latency percentiles of a controller."""
    stats = controller.stats
    p50, p99 = stats.latency_percentiles()
    return {"trigger": controller.trigger, "decisions": stats.decisions, "failures": stats.failures,
            "commands_reduced": stats.reduced, "missed_cycles": stats.missed_cycles,
            "decision_latency_p50_ms": p50, "decision_latency_p99_ms": p99}


def publishers(node: Node, topic: str) -> int:
    """Publishers of ``topic`` as ``node`` sees it (after the node's remappings)."""
    return node.count_publishers(node.resolve_topic_name(topic))


def check_alone(sim: Node, controller: Node, domain_id: Optional[int] = None) -> None:
    """RuntimeError when another arm or controller is on this ROS domain (``domain_id``, None:
    ROS_DOMAIN_ID's): its commands would step our simulation and ours its (seen: two ``equimanip
    run`` at once on one machine answered each other's states, and both runs' results were wrong)."""
    crowded = [f"{topic} has {n} publishers" for topic, n in
               ((topics.TWIST, publishers(sim, topics.TWIST)), (topics.GRIPPER, publishers(sim, topics.GRIPPER)),
                (topics.EE_POSE, publishers(controller, topics.EE_POSE))) if n > 1]
    if crowded:
        domain = domain_id if domain_id is not None else os.environ.get("ROS_DOMAIN_ID", "0")
        raise RuntimeError(f"another arm or controller is running on ROS domain {domain} ({'; '.join(crowded)}, "
                           "one expected): stop it, or give this run a domain of its own "
                           "(ROS_DOMAIN_ID=<0-101> equimanip run ...). A process killed a moment ago "
                           "stays visible until its DDS lease runs out (about 20 s)")


def node_overrides(config: RunConfig, node_name: str) -> dict:
    """The `-p` overrides that apply to ``node_name`` (those for every node first)."""
    out = {name: value for node, name, value in config.param_overrides if node is None}
    out.update({name: value for node, name, value in config.param_overrides if node == node_name})
    return out


def _check_overrides_exist(config: RunConfig, nodes: dict) -> None:
    """A `-p` for a parameter no node of the run declares would be dropped silently (rclpy ignores
    overrides of undeclared parameters): refuse it, naming the node."""
    for node_name, name, _ in config.param_overrides:
        targets = [nodes[node_name]] if node_name is not None else list(nodes.values())
        if not any(node.has_parameter(name) for node in targets):
            where = node_name or " or ".join(sorted(nodes))
            raise ValueError(f"-p {name}: {where} has no parameter '{name}' (`ros2 param list` or the README's "
                             "tables name them)")


def wait_until_ready(graph: "InProcessGraph", controller, timeout_s: float,
                     report: Optional[Callable[[str], None]] = None) -> None:
    """Spin until the controller says it is ready (inputs, first observation, warmed-up model);
    after a few seconds say what it is still waiting for, once."""
    start, reported = time.monotonic(), False
    while True:
        ready, waiting = controller.readiness()
        if ready:
            return
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise TimeoutError(f"{controller.get_name()} was not ready after {timeout_s:.0f} s: waiting for {waiting}")
        if not reported and waited > READINESS_REPORT_AFTER_S and report is not None:
            report(f"{controller.get_name()} is waiting for {waiting}")
            reported = True
        graph.executor.spin_once(timeout_sec=0.05)


def run(config: RunConfig, on_episode: Optional[Callable[[EpisodeResult], None]] = None,
        report: Optional[Callable[[str], None]] = None) -> RunResult:
    """Bring up sim_node + controller in this process and run ``config.episodes`` episodes."""
    from equimanip.sim.sim_node import SimNode

    entry = CONTROLLERS[config.controller]
    known = {SIM_NODE_NAME, entry.node_name}
    unknown = sorted({node for node, _, _ in config.param_overrides if node is not None} - known)
    if unknown:
        raise ValueError(f"-p names node(s) {unknown} that this run does not start; nodes: {', '.join(sorted(known))}")
    # One thread: in one Python process a multi-threaded executor only adds contention for the
    # interpreter lock (measured: more late decisions, not fewer). Separate processes (ros2 launch,
    # the node executables) get the controller's callback groups on threads of their own.
    with InProcessGraph(config.params_files, config.domain_id) as graph:
        common = {"task": config.task}
        sim = graph.node(SimNode, config.remappings,
                         **{**common, "seed": config.seed, "sync": config.sync, **config.sim_overrides,
                            **node_overrides(config, SIM_NODE_NAME)})
        # In real time the controller decides on a timer, as on a real arm.
        trigger = {} if config.sync else {"trigger": "timer"}
        controller = graph.node(entry.node_class(), config.remappings,
                                **{**common, **trigger, **entry.sim_parameters, **config.controller_overrides,
                                   **node_overrides(config, entry.node_name)})
        _check_overrides_exist(config, {SIM_NODE_NAME: sim, entry.node_name: controller})
        monitor = graph.add(_EpisodeMonitor(controller.get_fully_qualified_name(), context=graph.context))

        # Discovery: start only when the loop is closed both ways and the reset service answers.
        graph.spin_until(lambda: (
            publishers(sim, topics.TWIST) > 0 and publishers(sim, topics.GRIPPER) > 0
            and controller.inputs_connected() and monitor.reset_client.service_is_ready()
            and monitor.controller_reset_client.service_is_ready()),
            30.0, "the nodes to discover each other")
        check_alone(sim, controller, config.domain_id)
        # Readiness: no episode step is spent on a controller that cannot decide yet.
        wait_until_ready(graph, controller, 120.0, report)

        recorder = _FrameRecorder(config.record_size)
        if config.record is not None:
            sim.add_step_listener(recorder.on_step)
        result = RunResult(config, graph_topics=sorted(name for name, _ in monitor.get_topic_names_and_types()))
        # Setting the seed restarts the simulation's seed sequence: episode k gets seed + k.
        sim.set_parameters([Parameter("seed", value=config.seed)])
        for k in range(config.episodes):
            monitor.done = None
            cleared = monitor.controller_reset_client.call_async(Trigger.Request())
            graph.spin_until(cleared.done, 30.0, "the controller to clear its memory")
            future = monitor.reset_client.call_async(Trigger.Request())
            graph.spin_until(future.done, 30.0, "the simulation to reset")
            if not future.result().success:
                raise RuntimeError(future.result().message)
            recorder.active = config.record is not None and k == 0
            if recorder.active:
                recorder.capture(sim.env)
            t0 = time.monotonic()
            # The topic wakes us; the simulation object we own says which episode ended, so a
            # late message from the previous scene cannot end this one.
            graph.spin_until(lambda: monitor.done is not None and sim.env.done, config.episode_timeout_s,
                             f"episode {k + 1} to end")
            episode = EpisodeResult(k + 1, config.seed + k, sim.env.success, sim.env.steps,
                                    time.monotonic() - t0)
            # Another run started since: this episode is not counted (the start was checked above).
            check_alone(sim, controller, config.domain_id)
            result.episodes.append(episode)
            if on_episode is not None:
                on_episode(episode)
        result.controller_stats = controller_summary(controller)
        if config.record is not None:
            write_animation(config.record, recorder.frames, fps=int(round(1.0 / sim.control_period)))
        return result


@dataclass
class Snapshot:
    """One observation of a simulated scene, taken through the ROS graph, and the ground truth."""
    observation: object            # equimanip.perception.observation.Observation
    config: object                 # the ObservationConfig it was built with
    scene_rgb: np.ndarray          # oblique view of the scene
    object_poses: np.ndarray       # ground truth (K, 7), the task's order


def observe(task: str = "block_picking", seed: int = 0, params_files: Sequence[str] = ("sim",),
            domain_id: Optional[int] = None) -> Snapshot:
    """Bring up sim_node and perception_node in this process and take one observation: what a
    policy would see of this scene with these parameters (e.g. a side camera)."""
    from equimanip.nodes.perception_node import PerceptionNode
    from equimanip.sim.sim_node import SimNode

    with InProcessGraph(params_files, domain_id) as graph:
        sim = graph.node(SimNode, task=task, seed=seed, sync=True, publish_cloud=True)
        perception = graph.node(PerceptionNode)
        graph.spin_until(lambda: perception.count_publishers(topics.CLOUD) > 0
                         and perception.observations.can_resolve(sim.camera_frame), 30.0,
                         "discovery and the latched camera pose")
        sim.republish()
        graph.spin_until(lambda: perception.last_observation is not None, 30.0, "an observation")
        return Snapshot(perception.last_observation, perception.observations.config,
                        sim.env.render_rgb(320, 240), sim.env.observe(render=False).object_poses)


def write_animation(path: Path, frames: list, fps: int = 10) -> Path:
    """Write frames (H x W x 3 uint8) as an animated GIF (Pillow; no ffmpeg needed)."""
    import imageio.v2 as imageio
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animations are written as .gif, not '{path.suffix}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)  # ms per frame
    return path
