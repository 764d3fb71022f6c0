"""Reaching with obstacles: the MPPI planner on the ``reach_obstacles`` task, counting collisions.

    python -m equimanip.bench.mppi_reach --episodes 100 --seed 5000                # mppi_node, ROS loop
    python -m equimanip.bench.mppi_reach --episodes 100 --seed 5000 --realtime     # 10 Hz wall clock
    python -m equimanip.bench.mppi_reach --episodes 100 --seed 5000 --through env  # no ROS
    ... --results docs/results/mppi_reach.csv --json
    python -m equimanip.bench.mppi_reach --table        # regenerate docs/mppi.md's table from the CSV

Every episode the target and two posts are placed anew (``equimanip.sim.tasks.reach_obstacles``);
the planner sees the posts only in the point cloud. After every control step the simulation is
asked whether any link of the robot touches a post (PyBullet contact points) and how close it
came (closest points); an episode with a contact is a collision, whether or not it reached.

* ``--through ros`` (default): ``sim_node`` and ``mppi_node`` (goal from the simulation's target,
  ``goal_source: object_poses``) talk over DDS. In sync mode (default) the simulation steps once per
  command, both nodes in this process; with ``--realtime`` the simulation steps on the wall clock
  at 10 Hz and ``mppi_node`` runs as its own process in timer mode at 10 Hz, as on an arm: a
  decision later than the runtime allows is a missed cycle, and the arm meanwhile keeps the last
  twist (for up to ``command_timeout``).
* ``--through env``: the same planner code (``EndEffectorPlanner``, the node's default settings) in
  ``ManipulationEnv`` with ``build_observation``, no ROS.

Decision latencies are the runtime's (inputs complete to command published) for the ROS paths and
the planner's cycle (cloud to action) for ``env``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

TASK = "reach_obstacles"
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "mppi_reach.csv"
DOC = Path(__file__).resolve().parents[2] / "docs" / "mppi.md"
FIELDS = ["through", "realtime", "arm", "episodes", "seed", "group", "samples", "horizon", "collision_cost", "success",
          "collisions", "min_clearance_mm", "mean_steps", "latency_p50_ms", "latency_p99_ms", "missed_cycles",
          "decisions", "wall_s", "load_average", "machine", "date", "revision", "command"]


@dataclass
class EpisodeRecord:
    seed: int
    success: bool = False
    steps: int = 0
    contacts: int = 0                  # contact points summed over the steps
    min_clearance: float = math.inf    # m, robot to posts

    @property
    def collided(self) -> bool:
        return self.contacts > 0


@dataclass
class Outcome:
    episodes: list = field(default_factory=list)
    latencies_ms: list = field(default_factory=list)
    missed_cycles: int = 0
    decisions: int = 0

    def summary(self) -> dict:
        eps = self.episodes
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([math.nan])
        return {"episodes": len(eps), "success": float(np.mean([e.success for e in eps])),
                "collisions": int(sum(e.collided for e in eps)),
                "min_clearance_mm": float(min(e.min_clearance for e in eps) * 1000.0),
                "mean_steps": float(np.mean([e.steps for e in eps])),
                "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
                "missed_cycles": self.missed_cycles, "decisions": self.decisions,
                "per_episode": [e.__dict__ for e in eps]}


def _watch(record: EpisodeRecord):
    """A step listener that counts robot-post contacts and the closest approach."""
    def on_step(env, _obs) -> None:
        record.contacts += env.task.obstacle_contacts(env.world)
        record.min_clearance = min(record.min_clearance, env.task.obstacle_clearance(env.world))
    return on_step


def _report(record: EpisodeRecord, k: int, total: int) -> None:
    outcome = "success" if record.success else "failure"
    collision = f"COLLISION ({record.contacts} contact points)" if record.collided else "no contact"
    print(f"episode {k:3d}/{total}  seed {record.seed:5d}  {outcome:7s}  {record.steps:2d} steps  {collision}, "
          f"closest {record.min_clearance * 1000:5.1f} mm", flush=True)


# ----------------------------------------------------------------------------------- without ROS


def run_env(args) -> Outcome:
    import torch

    from equimanip.perception.observation import ObservationConfig, build_observation
    from equimanip.planning.end_effector import EndEffectorPlanner, EndEffectorPlannerSettings, with_changes
    from equimanip.sim.env import ManipulationEnv

    torch.set_num_threads(1)
    base = EndEffectorPlannerSettings()
    settings = with_changes(base, mppi=base.mppi.replace(group=args.group, num_samples=args.samples,
                                                         horizon=args.horizon, seed=args.seed,
                                                         compile=args.compile),
                            obstacles=replace(base.obstacles, enabled=args.collision_cost,
                                              resolution=args.resolution or base.obstacles.resolution))
    planner = EndEffectorPlanner(settings)
    config = ObservationConfig(compute_object_state=False)
    outcome = Outcome()
    with ManipulationEnv(task=TASK) as env:
        for k in range(args.episodes):
            record = EpisodeRecord(args.seed + k)
            watch = _watch(record)
            obs, done = env.reset(record.seed), False
            planner.reset()
            goal = obs.object_poses[0, :3]
            yaw = float(obs.ee_yaw)            # held, as mppi_node holds the yaw it had when the goal appeared
            while not done:
                start = time.perf_counter()
                observation = build_observation(obs.points, obs.ee_pose, obs.gripper_aperture, obs.time, config)
                action = planner.plan(observation.ee_pose, observation.gripper_aperture, observation.points,
                                      goal, yaw).action.numpy().astype(np.float64)
                action[0] = 1.0                # gripper open, as mppi_node's default
                outcome.latencies_ms.append((time.perf_counter() - start) * 1000.0)
                obs, _, done, info = env.step(action)
                watch(env, obs)
            record.success, record.steps = bool(info["success"]), int(info["steps"])
            outcome.episodes.append(record)
            outcome.decisions += record.steps
            _report(record, k + 1, args.episodes)
    return outcome


# ----------------------------------------------------------------------------------- through ROS


def _mppi_parameters(args) -> dict:
    values = {"task": TASK, "goal_source": "object_poses", "group": args.group, "num_samples": args.samples,
              "horizon": args.horizon, "seed": args.seed, "obstacles.enabled": bool(args.collision_cost),
              "compile": bool(args.compile)}
    if args.resolution:
        values["obstacles.resolution"] = args.resolution
    if args.realtime:
        values.update({"trigger": args.trigger, "rate_hz": 10.0})
    return values


def run_ros(args) -> Outcome:
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from equimanip.bench.common import node_process, private_domain
    from equimanip.bringup import InProcessGraph, controller_summary, publishers, wait_until_ready
    from equimanip.nodes import topics
    from equimanip.nodes.mppi_node import MPPINode
    from equimanip.sim.sim_node import SimNode

    domain = private_domain()
    outcome = Outcome()
    with InProcessGraph(("sim",), domain_id=domain) as graph, contextlib.ExitStack() as stack:
        sim = graph.node(SimNode, task=TASK, seed=args.seed, sync=not args.realtime)
        monitor = graph.add(_monitor_class()(context=graph.context))
        controller = None
        if args.realtime:
            # The planner in a process of its own, as on an arm: its decisions do not wait for the
            # simulation's rendering, and the simulation does not wait for them.
            ros_args = ["--params-file", str(_config("sim"))]
            for name, value in _mppi_parameters(args).items():
                ros_args += ["-p", f"{name}:={value if isinstance(value, str) else json.dumps(value)}"]
            stack.enter_context(node_process("mppi_node", ros_args, domain))
        else:
            controller = graph.node(MPPINode, **_mppi_parameters(args))
        graph.spin_until(lambda: publishers(sim, topics.TWIST) > 0 and monitor.reset_client.service_is_ready()
                         and (controller is None or controller.inputs_connected()), 120.0, "discovery")
        if controller is not None:
            wait_until_ready(graph, controller, 120.0, print)
            controller.stats.reset()
        else:
            graph.spin_until(lambda: monitor.diagnostics is not None, 120.0, "mppi_node's first diagnostics")
        sim.set_parameters([Parameter("seed", value=args.seed)])
        for k in range(args.episodes):
            record = EpisodeRecord(args.seed + k)
            watch = _watch(record)
            sim.add_step_listener(watch)
            monitor.done = None
            future = monitor.reset_client.call_async(Trigger.Request())
            graph.spin_until(future.done, 30.0, "the simulation to reset")
            graph.spin_until(lambda: monitor.done is not None and sim.env.done, 300.0, f"episode {k + 1}")
            sim._step_listeners.remove(watch)
            record.success, record.steps = bool(sim.env.success), int(sim.env.steps)
            outcome.episodes.append(record)
            _report(record, k + 1, args.episodes)
        if controller is not None:
            stats = controller_summary(controller)
            outcome.latencies_ms = list(controller.stats.latencies_ms)
            outcome.missed_cycles, outcome.decisions = stats["missed_cycles"], stats["decisions"]
        else:
            graph.spin_for(1.5)                # one more diagnostics message with the final counts
            values = monitor.diagnostics
            outcome.latencies_ms = [float(values["decision_latency_p50_ms"]), float(values["decision_latency_p99_ms"])]
            outcome.missed_cycles, outcome.decisions = int(values["missed_cycles"]), int(values["decisions"])
    return outcome


def _config(name: str):
    from equimanip.config import config_file
    return config_file(name)


def _monitor_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger

    from equimanip.nodes import qos, topics

    class Monitor(Node):
        """Resets episodes, hears when they end, and keeps mppi_node's latest diagnostics."""

        def __init__(self, **kwargs):
            super().__init__("mppi_reach_experiment", **kwargs)
            self.reset_client = self.create_client(Trigger, topics.SIM_RESET)
            self.done = None
            self.diagnostics = None
            self.create_subscription(Bool, topics.SIM_EPISODE_DONE, self._on_done, qos.RELIABLE)
            self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, qos.RELIABLE)

        def _on_done(self, msg) -> None:
            self.done = bool(msg.data)

        def _on_diagnostics(self, msg) -> None:
            for status in msg.status:
                if status.name.startswith("mppi_node"):
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    return Monitor


# ----------------------------------------------------------------------------------- main


def results_row(args, summary: dict, wall_s: float, load: float) -> dict:
    from equimanip.learning.results import git_revision, machine_description, today
    from equimanip.sim.world import ARM_CONTROL_VERSION

    return {"through": args.through, "realtime": args.realtime, "arm": ARM_CONTROL_VERSION,
            "episodes": summary["episodes"], "seed": args.seed,
            "group": args.group, "samples": args.samples, "horizon": args.horizon,
            "collision_cost": args.collision_cost, "success": f"{summary['success']:.3f}",
            "collisions": summary["collisions"], "min_clearance_mm": f"{summary['min_clearance_mm']:.1f}",
            "mean_steps": f"{summary['mean_steps']:.1f}", "latency_p50_ms": f"{summary['latency_p50_ms']:.1f}",
            "latency_p99_ms": f"{summary['latency_p99_ms']:.1f}", "missed_cycles": summary["missed_cycles"],
            "decisions": summary["decisions"], "wall_s": f"{wall_s:.0f}", "load_average": f"{load:.1f}",
            "machine": machine_description(), "date": today(), "revision": git_revision(),
            "command": "python -m equimanip.bench.mppi_reach " + " ".join(sys.argv[1:])}


def results_table(rows: list[dict]) -> str:
    from equimanip.learning.results import markdown_table

    header = ["run through", "arm", "episodes (seeds)", "group", "K x T", "compiled", "field voxel (mm)",
              "collision cost",
              "success", "episodes with a collision", "closest approach (mm)", "mean steps",
              "decision latency p50 / p99 (ms)", "missed cycles / decisions", "load average", "date"]
    body = []
    for r in rows:
        words = r["command"].split()
        trigger = "state" if "--trigger" in words and words[words.index("--trigger") + 1] == "state" else "timer"
        through = f"ROS, real time 10 Hz ({trigger})" if r["through"] == "ros" and r["realtime"] == "True" else \
            "ROS, sync" if r["through"] == "ros" else "ManipulationEnv"
        first = int(r["seed"])
        voxel = float(words[words.index("--resolution") + 1]) if "--resolution" in words else 0.0075
        body.append([through, r["arm"], f"{r['episodes']} ({first}-{first + int(r['episodes']) - 1})", r["group"],
                     f"{r['samples']} x {r['horizon']}", "yes" if "--compile" in words else "no",
                     f"{voxel * 1000:g}",
                     "yes" if r["collision_cost"] == "True" else "no",
                     f"{float(r['success']):.0%}", r["collisions"], r["min_clearance_mm"], r["mean_steps"],
                     f"{r['latency_p50_ms']} / {r['latency_p99_ms']}", f"{r['missed_cycles']} / {r['decisions']}",
                     r["load_average"], r["date"]])
    machines = sorted({r["machine"] for r in rows})
    return "Machine: " + "; ".join(machines) + "\n\n" + markdown_table(header, body)


def regenerate_table(results: Path = RESULTS, doc: Path = DOC) -> str:
    from equimanip.learning.results import regenerate_section

    return regenerate_section(results, doc, "mppi_reach", results_table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equimanip.bench.mppi_reach", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5000, help="seed of the first episode (then seed + 1, ...)")
    parser.add_argument("--through", choices=("ros", "env"), default="ros")
    parser.add_argument("--realtime", action="store_true",
                        help="ROS only: wall-clock 10 Hz, the planner in its own process")
    parser.add_argument("--group", default="none", help="symmetric sampling group (none, c4, c8, d4, d8)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--trigger", choices=("timer", "state"), default="timer",
                        help="with --realtime: decide rate_hz times a second on the newest inputs (timer, as on an "
                             "arm) or once per new set of inputs (state)")
    parser.add_argument("--compile", action="store_true",
                        help="the planner's compile setting (torch.compile each cycle; see docs/mppi.md, Speed)")
    parser.add_argument("--resolution", type=float, default=None,
                        help="voxel of the distance field (m; default the planner's, 0.0075)")
    parser.add_argument("--no-collision-cost", dest="collision_cost", action="store_false",
                        help="plan without the point-cloud collision cost (the baseline)")
    parser.add_argument("--results", type=Path, default=None, help=f"append a row to this CSV (e.g. {RESULTS})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", action="store_true", help=f"only regenerate the table in {DOC} from {RESULTS}")
    args = parser.parse_args(argv)
    if args.table:
        print(regenerate_table())
        return 0
    if args.realtime and args.through != "ros":
        parser.error("--realtime needs --through ros")
    if args.results is not None:
        from equimanip.learning.results import git_revision
        git_revision()            # cached now: a row records the tree the run starts from
    start = time.monotonic()
    outcome = run_ros(args) if args.through == "ros" else run_env(args)
    wall = time.monotonic() - start
    load = os.getloadavg()[0]
    summary = outcome.summary()
    print(f"{TASK} through {args.through}{' (real time)' if args.realtime else ''}, group {args.group}: "
          f"success {summary['success']:.0%}, {summary['collisions']} episodes with a collision over "
          f"{summary['episodes']}, closest approach {summary['min_clearance_mm']:.1f} mm, decision latency "
          f"p50 {summary['latency_p50_ms']:.1f} ms p99 {summary['latency_p99_ms']:.1f} ms, "
          f"{summary['missed_cycles']} missed cycles; {wall:.0f} s, load average {load:.1f}")
    if args.results is not None:
        from equimanip.learning.results import append_row
        append_row(args.results, results_row(args, summary, wall, load), FIELDS)
        print(f"row appended to {args.results}")
    if args.json:
        print(json.dumps({**summary, "wall_s": wall, "load_average": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
