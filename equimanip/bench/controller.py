"""``equimanip bench controller``: what the controller runtime costs.

* ``safety_layer_ms``: the controller-side safety layer (``equimanip.safety.limit_action``: finite
  checks, speed scaling, the workspace slide) per decision, median over random actions around the
  workspace walls; next to it, in the same run, ``clip_action`` alone (the per-step action limits
  every controller applied before the layer existed). Goal: under 0.2 ms.
* ``timer_latency_p50_ms`` / ``timer_latency_p99_ms``: the expert node in timer mode (10 Hz), from
  the moment a complete set of inputs is in to the moment its command is published, against the
  simulation running in real time in a separate process (as under ``ros2 launch``); with the
  rate it achieved and the cycles it missed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from equimanip.bench.common import node_process, print_report, private_domain, time_ms


def safety_layer_ms(repeats: int) -> tuple[float, float]:
    """Median ms per call of limit_action and of clip_action on the same random inputs."""
    from equimanip.action import ACTION_HIGH, ACTION_LOW, clip_action
    from equimanip.safety import SafetyLimits, limit_action

    rng = np.random.default_rng(0)
    limits = SafetyLimits()
    actions = rng.uniform(2 * ACTION_LOW - 0.05, 2 * ACTION_HIGH + 0.05, size=(repeats, 5))
    positions = rng.uniform(np.array(limits.workspace_low) - 0.02, np.array(limits.workspace_high) + 0.02,
                            size=(repeats, 3))
    yaws = rng.uniform(-3.0, 3.0, repeats)
    poses = np.column_stack([positions, np.cos(yaws / 2), np.sin(yaws / 2), np.zeros((repeats, 2))])
    it = iter(range(10**9))

    def layer():
        k = next(it) % repeats
        limit_action(actions[k], poses[k], 0.1, limits)

    def clip():
        k = next(it) % repeats
        clip_action(actions[k])

    samples_layer, samples_clip = [], []
    for _ in range(5):                       # alternating blocks: both see the same load
        samples_layer += time_ms(layer, repeats // 5, warmup=50)
        samples_clip += time_ms(clip, repeats // 5, warmup=50)
    return statistics.median(samples_layer), statistics.median(samples_clip)


def timer_latency(seconds: float, task: str) -> dict:
    """The expert in timer mode against sim_node in real time in another process."""
    from equimanip.bringup import InProcessGraph, controller_summary, wait_until_ready
    from equimanip.config import config_file
    from equimanip.sim.expert_node import ExpertNode

    domain = private_domain()
    sim_args = ["--params-file", str(config_file("sim")), "-p", f"task:={task}", "-p", "sync:=false",
                "-p", "auto_reset:=true", "--log-level", "warn"]
    with node_process("sim_node", sim_args, domain), InProcessGraph(("sim",), domain_id=domain) as graph:
        expert = graph.node(ExpertNode, task=task, trigger="timer", rate_hz=10.0)
        wait_until_ready(graph, expert, 60.0, report=print)
        expert.stats.reset()             # count from here: discovery is not the runtime's cost
        graph.spin_for(seconds)
        summary = controller_summary(expert)
        summary["achieved_rate_hz"] = expert.stats.decisions / seconds
        return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench controller", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20000, help="safety-layer calls timed")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the timer-mode run")
    parser.add_argument("--task", default="block_picking")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    layer_ms, clip_ms = safety_layer_ms(args.repeats)
    t0 = time.monotonic()
    latency = timer_latency(args.seconds, args.task)
    results = {
        "safety_layer_ms": layer_ms, "clip_action_ms": clip_ms, "safety_layer_goal_ms": 0.2,
        "timer_latency_p50_ms": latency["decision_latency_p50_ms"],
        "timer_latency_p99_ms": latency["decision_latency_p99_ms"],
        "timer_rate_hz": latency["achieved_rate_hz"], "timer_missed_cycles": latency["missed_cycles"],
        "timer_decisions": latency["decisions"], "timer_run_s": time.monotonic() - t0,
    }
    rows = [
        ("safety layer per decision (median)", f"{layer_ms * 1000:.1f} us  (goal < 200 us; "
                                               f"clip_action alone {clip_ms * 1000:.1f} us)"),
        (f"expert, timer mode at 10 Hz, {args.seconds:.0f} s", f"latency p50 {results['timer_latency_p50_ms']:.2f} ms, "
                                                               f"p99 {results['timer_latency_p99_ms']:.2f} ms"),
        ("", f"{results['timer_rate_hz']:.2f} decisions/s, {results['timer_missed_cycles']} missed cycles"),
    ]
    print_report("controller runtime (torch not involved; one process for the controller, one for the simulation)",
                 rows, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
