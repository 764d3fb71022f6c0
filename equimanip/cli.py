"""The ``equimanip`` command.

    equimanip run --task block_picking --controller expert --episodes 10 [--seed S] [--json]
    equimanip observe --task block_picking [--params side_camera] [--out observation.png]
    equimanip bench sim|perception|experts [--json]
    equimanip train sac --task block_picking --group c8 --demos 20 --steps 5000 --out runs/pick_c8
    equimanip eval --checkpoint runs/pick_c8/best.pt --episodes 50 [--rotate-scene DEG] [--json]
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = {
    "controller": "equimanip.bench.controller",
    "latency": "equimanip.bench.latency",
    "tracking": "equimanip.bench.tracking",
    "recorder": "equimanip.bench.recorder",
    "sim": "equimanip.bench.sim",
    "perception": "equimanip.bench.perception",
    "experts": "equimanip.sim.evaluate",
    "motion": "equimanip.bench.motion",
    "policy": "equimanip.bench.policy",
    "mppi": "equimanip.bench.mppi",
}

# `equimanip train <learner> ...`: each module has main(argv) and its own --help.
TRAINERS = {
    "sac": "equimanip.learning.sac",
    "bc": "equimanip.learning.bc",
    "bmil": "equimanip.learning.bmil",
    "dynamics": "equimanip.learning.dynamics",
}


def _task_names() -> list[str]:
    from equimanip.sim.tasks import TASKS
    return sorted(TASKS)


def _cmd_run(args) -> int:
    from equimanip.bringup import CONTROLLERS, RunConfig, parse_param_override, run

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
    try:
        overrides = [parse_param_override(text) for text in args.param]
    except ValueError as e:
        print(f"equimanip run: {e}", file=sys.stderr)
        return 2
    config = RunConfig(task=args.task, controller=args.controller, episodes=args.episodes,
                       seed=args.seed, sync=not args.realtime,
                       params_files=["sim", *args.params], record=args.record, param_overrides=overrides)

    def report(ep) -> None:
        outcome = "success" if ep.success else "failure"
        print(f"episode {ep.index:3d}/{args.episodes}  seed {ep.seed:5d}  {outcome:7s}  "
              f"{ep.steps:3d} steps  {ep.wall_s:5.2f} s", flush=True)

    try:
        result = run(config, on_episode=report, report=lambda text: print(text, flush=True))
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


def _cmd_observe(args) -> int:
    import numpy as np
    from PIL import Image

    from equimanip.bringup import observe
    from equimanip.viz import observation_figure

    if args.task not in _task_names():
        print(f"unknown task '{args.task}'; available: {', '.join(_task_names())}", file=sys.stderr)
        return 2
    try:
        snap = observe(args.task, args.seed, ["sim", *args.params])
    except (TimeoutError, FileNotFoundError, ValueError) as e:
        print(f"equimanip observe: {e}", file=sys.stderr)
        return 1
    obs, truth = snap.observation, snap.object_poses
    print(f"{args.task}, seed {args.seed}: heightmap {obs.heightmap.shape[1]} x {obs.heightmap.shape[2]} "
          f"around the gripper, {len(obs.objects)} object(s) found")
    for k, o in enumerate(obs.objects):
        nearest = truth[np.argmin(np.linalg.norm(truth[:, :2] - o.centroid[:2], axis=1))]
        error = np.linalg.norm(nearest[:2] - o.centroid[:2]) * 1000
        print(f"  object {k}: centre ({o.centroid[0]:.3f}, {o.centroid[1]:.3f}, {o.centroid[2]:.3f}) m, "
              f"extents {o.extents[0] * 100:.1f} x {o.extents[1] * 100:.1f} x {o.extents[2] * 100:.1f} cm, "
              f"{error:.1f} mm from the nearest true object")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(observation_figure(snap.scene_rgb, obs, snap.config)).save(args.out)
    print(f"picture written to {args.out}")
    return 0


def _cmd_bench(args, rest: list[str]) -> int:
    module = importlib.import_module(BENCHMARKS[args.target])
    return module.main(rest)


def _cmd_train(args, rest: list[str]) -> int:
    module = importlib.import_module(TRAINERS[args.learner])
    return module.main(rest)


def _cmd_eval(rest: list[str]) -> int:
    from equimanip.learning import evaluate
    return evaluate.main(rest)


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
    run.add_argument("--params", "--params-file", action="append", default=[], metavar="YAML",
                     help="extra parameter file (a path or a name in config/, e.g. side_camera)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="[NODE:]NAME:=VALUE",
                     help="set a parameter, of one node (sim_node:enforce_limits:=false) or of every "
                          "node (control_period:=0.1); the value is read as YAML, as ROS does")
    run.add_argument("--record", type=Path, default=None, metavar="PATH",
                     help="write an animated GIF of the first episode")
    run.add_argument("--json", action="store_true", help="end with one JSON line of results")

    observe = sub.add_parser("observe", help="take one observation of a simulated scene through the "
                             "ROS graph and save a picture of what a policy sees")
    observe.add_argument("--task", default="block_picking")
    observe.add_argument("--seed", type=int, default=0)
    observe.add_argument("--params", action="append", default=[], metavar="YAML",
                         help="extra parameter file (a path or a name in config/, e.g. side_camera)")
    observe.add_argument("--out", type=Path, default=Path("artifacts/observation.png"))

    bench = sub.add_parser("bench", help="benchmarks (see each one's --help)", add_help=False)
    bench.add_argument("target", choices=sorted(BENCHMARKS))

    train = sub.add_parser("train", help="train a learner in the simulation (see equimanip train sac --help)",
                           add_help=False)
    train.add_argument("learner", choices=sorted(TRAINERS))
    sub.add_parser("eval", help="run a checkpoint in the simulation and report its success rate "
                   "(see equimanip eval --help)", add_help=False)
    from equimanip import cli_imitation  # record, dataset
    parser.set_defaults(imitation_handlers=cli_imitation.register(sub))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _cmd_bench(args, rest)
    if args.command == "train":
        return _cmd_train(args, rest)
    if args.command == "eval":
        return _cmd_eval(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in args.imitation_handlers:
        return args.imitation_handlers[args.command](args)
    return _cmd_observe(args) if args.command == "observe" else _cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
