"""The imitation half of the ``equimanip`` command: ``dataset info``, ``record``, ``train bc|bmil``.

Kept apart from ``equimanip/cli.py`` so that the main command module only registers them::

    equimanip dataset info DIR [--json]
    equimanip record --task T --episodes N --source expert|keyboard --out DIR [--on-interrupt keep|discard]
    equimanip train bc|bmil --demos DIR [options]   (options: equimanip train bmil --help)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# ------------------------------------------------------------------------------------ dataset


def add_dataset_parser(sub) -> None:
    dataset = sub.add_parser("dataset", help="inspect a directory of recorded episodes")
    verbs = dataset.add_subparsers(dest="dataset_command", required=True)
    info = verbs.add_parser("info", help="episodes, steps, success, topics and rates, and every problem")
    info.add_argument("directory", type=Path)
    info.add_argument("--max-objects", type=int, default=4, help="object slots of the state (observation setting)")
    info.add_argument("--json", action="store_true", help="end with one JSON line")


def cmd_dataset(args) -> int:
    from equimanip.data.bag import BagReadError
    from equimanip.data.dataset import DatasetConfig, dataset_info
    from equimanip.perception.observation import ObservationConfig

    try:
        info = dataset_info(args.directory, DatasetConfig(observation=ObservationConfig(max_objects=args.max_objects)))
    except (BagReadError, OSError, ValueError) as e:
        print(f"equimanip dataset info: {e}", file=sys.stderr)
        return 1
    print(f"{info['directory']}: {info['episodes']} episodes ({info['successful']} successful, "
          f"{info['unfinished']} unfinished), {info['steps']} steps; usable: {info['usable_episodes']} "
          f"episodes, {info['usable_steps']} steps; tasks {', '.join(info['tasks']) or '-'}; "
          f"control period {', '.join(f'{p} s' for p in info['control_periods']) or 'unknown'}")
    if info["mixed_control_periods"]:
        print(f"  WARNING: {info['mixed_control_periods']}")
    if info["partial"]:
        print(f"  {len(info['partial'])} half-written recording(s) left by an interrupted recorder, not "
              f"used: {', '.join(info['partial'])}")
    print(f"  {'episode':16s} {'task':15s} {'success':7s} {'steps':>5s} {'period':>6s} {'secs':>6s}  used")
    for r in info["per_episode"]:
        used = "yes" if r["used"] else f"no: {r['reason']}"
        print(f"  {r['name']:16s} {r['task']:15s} {str(r['success']).lower():7s} {r['transitions']:5d} "
              f"{r['control_period'] or 0:6.3f} {r['duration_s']:6.2f}  {used}")
    print(f"  {'topic':32s} {'type':36s} {'messages':>8s} {'rate Hz':>8s}")
    for name, t in info["topics"].items():
        print(f"  {name:32s} {t['type']:36s} {t['count']:8d} {t['rate_hz']:8.2f}")
    if args.json:
        print(json.dumps(info))
    return 0


# ------------------------------------------------------------------------------------ record


def add_record_parser(sub) -> None:
    record = sub.add_parser("record", help="record demonstrations in the simulation through ROS "
                            "(sim_node + expert or teleop_keyboard + recorder_node, in this process)")
    record.add_argument("--task", default="block_picking")
    record.add_argument("--episodes", type=int, default=10)
    record.add_argument("--source", choices=("expert", "keyboard"), default="expert",
                        help="the scripted expert, or you at this terminal (teleop_keyboard, real time)")
    record.add_argument("--out", type=Path, default=Path("demos"), help="directory of the episode bags")
    record.add_argument("--seed", type=int, default=0, help="scene seed of the first episode (then seed+1, ...)")
    record.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="extra parameter file (a path or a name in config/, e.g. side_camera)")
    record.add_argument("--note", default="", help="operator note stored with every episode")
    # The recorder's on_interrupt parameter (choices and default: test_recorder checks they agree).
    record.add_argument("--on-interrupt", choices=("keep", "discard"), default="keep",
                        help="what Ctrl-C or SIGTERM does to the episode being recorded: keep it, marked "
                        "unfinished (default), or discard it; earlier episodes are never touched")
    record.add_argument("--json", action="store_true", help="end with one JSON line")


def cmd_record(args) -> int:
    from equimanip.data.bag import BagWriteError, list_bags
    from equimanip.nodes.recorder_node import Interrupted, RecordConfig, record_demonstrations
    from equimanip.sim.tasks import TASKS

    if args.task not in TASKS:
        print(f"unknown task '{args.task}'; available: {', '.join(sorted(TASKS))}", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("--episodes must be at least 1", file=sys.stderr)
        return 2
    config = RecordConfig(task=args.task, episodes=args.episodes, source=args.source, out=args.out, seed=args.seed,
                          params_files=("sim", *args.params), note=args.note, on_interrupt=args.on_interrupt)
    results = []

    def report(k, path, success, steps) -> None:
        results.append({"path": str(path), "success": bool(success), "steps": int(steps)})
        print(f"episode {k + 1:3d}/{args.episodes}  {'success' if success else 'failure':7s}  {steps:3d} steps  "
              f"{path}", flush=True)

    try:
        record_demonstrations(config, on_episode=report)
    except Interrupted as e:
        in_flight = "kept, marked unfinished" if args.on_interrupt == "keep" else "discarded"
        print(f"equimanip record: {e}; {len(list_bags(args.out))} episode bags in {args.out} "
              f"(one in flight is {in_flight})", file=sys.stderr)
        return 0
    except (BagWriteError, TimeoutError, RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"equimanip record: {e}", file=sys.stderr)
        return 1
    successes = sum(r["success"] for r in results)
    print(f"{len(results)} episodes of {args.task} recorded into {args.out} ({successes} successful)")
    if args.json:
        print(json.dumps({"out": str(args.out), "episodes": results}))
    return 0


def register(sub) -> dict:
    """Add this module's subcommands to the ``equimanip`` parser; returns command -> handler."""
    add_dataset_parser(sub)
    add_record_parser(sub)
    return {"dataset": cmd_dataset, "record": cmd_record}


def main(argv=None) -> int:
    """Stand-alone entry for these commands (the same as through ``equimanip``)."""
    parser = argparse.ArgumentParser(prog="equimanip")
    handlers = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return handlers[args.command](args)
