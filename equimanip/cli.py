"""The ``equimanip`` command.

    equimanip run --task block_picking --controller expert --episodes 10 [--seed S] [--json]
    equimanip bench sim|perception|experts [--json]
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = {
    "sim": "equimanip.bench.sim",
    "perception": "equimanip.bench.perception",
    "experts": "equimanip.sim.evaluate",
}


def _task_names() -> list[str]:
    from equimanip.sim.tasks import TASKS
    return sorted(TASKS)


def _cmd_run(args) -> int:
    from equimanip.bringup import CONTROLLERS, RunConfig, run

    if args.task not in _task_names():
        print(f"unknown task '{args.task}'; available: {', '.join(_task_names())}", file=sys.stderr)
        return 2
    if args.controller not in CONTROLLERS:
        print(f"unknown controller '{args.controller}'; available: {', '.join(CONTROLLERS)}",
              file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("--episodes must be at least 1", file=sys.stderr)
        return 2
    if args.record is not None and args.record.suffix.lower() != ".gif":
        print(f"--record writes a .gif; got '{args.record}'", file=sys.stderr)
        return 2
    config = RunConfig(task=args.task, controller=args.controller, episodes=args.episodes,
                       seed=args.seed, sync=not args.realtime,
                       params_files=["sim", *args.params], record=args.record)

    def report(ep) -> None:
        outcome = "success" if ep.success else "failure"
        print(f"episode {ep.index:3d}/{args.episodes}  seed {ep.seed:5d}  {outcome:7s}  "
              f"{ep.steps:3d} steps  {ep.wall_s:5.2f} s", flush=True)

    try:
        result = run(config, on_episode=report)
    except (TimeoutError, RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"equimanip run: {e}", file=sys.stderr)
        return 1
    summary = result.summary()
    print(f"{args.task} / {args.controller}: success rate {summary['success_rate']:.0%} over "
          f"{summary['episodes']} episodes, mean {summary['mean_steps']:.1f} steps")
    if args.record is not None:
        print(f"animation of episode 1 written to {args.record}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _cmd_bench(args, rest: list[str]) -> int:
    module = importlib.import_module(BENCHMARKS[args.target])
    return module.main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equimanip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run episodes of a task with a controller, through ROS topics")
    run.add_argument("--task", default="block_picking", help="reach, block_picking, block_pushing, drawer_opening")
    run.add_argument("--controller", default="expert")
    run.add_argument("--episodes", type=int, default=10)
    run.add_argument("--seed", type=int, default=0, help="seed of the first episode (then seed+1, ...)")
    run.add_argument("--realtime", action="store_true",
                     help="step on the wall clock at the control rate instead of once per command")
    run.add_argument("--params", action="append", default=[], metavar="YAML",
                     help="extra parameter file (a path or a name in config/, e.g. side_camera)")
    run.add_argument("--record", type=Path, default=None, metavar="PATH",
                     help="write an animated GIF of the first episode")
    run.add_argument("--json", action="store_true", help="end with one JSON line of results")

    bench = sub.add_parser("bench", help="benchmarks (see each one's --help)", add_help=False)
    bench.add_argument("target", choices=sorted(BENCHMARKS))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _cmd_bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return _cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
