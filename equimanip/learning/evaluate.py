"""Evaluation shared by every learner: run a policy in the simulation and count successes.

    equimanip eval --checkpoint runs/pick_c8/best.pt --task block_picking --episodes 50
    equimanip eval --checkpoint C --rotate-scene 90 --perturb-gripper 0.03 --json
    equimanip eval --expert --task block_pushing --rotate-scene 90     # the scripted expert, the same scenes

**Seeds.** Evaluation episodes (the test scenes) use the episode seeds ``EVAL_SEED_BASE + i`` (i = 0,
1, ...), the same set in every evaluation so that numbers are comparable across runs and checkpoints.
Training never uses them: a training run with seed r plays episode seeds in ``[r * 10**6, (r + 1) *
10**6)`` (its demonstrations from ``r * 10**6 + DEMO_SEED_OFFSET``), with r below ``MAX_RUN_SEED``,
all far below ``EVAL_SEED_BASE`` (see :func:`training_seeds`). A training run's periodic evaluations,
which choose its best checkpoint, play the validation scenes from ``VALIDATION_SEED_BASE`` instead, so
that the chosen checkpoint's score on the test scenes is not inflated by the choice.

A policy here is anything with ``act(observation) -> action``: an
:class:`~equimanip.perception.observation.Observation` in, a physical action ``[p, dx, dy, dz, dyaw]``
out, exactly as the ROS policy node calls it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

EVAL_SEED_BASE = 1_000_000_000
VALIDATION_SEED_BASE = 2_000_000_000    # below 2**31: every seed a simulator takes
RUN_SEED_STRIDE = 1_000_000
DEMO_SEED_OFFSET = 500_000
MAX_RUN_SEED = 1000


def training_seeds(run_seed: int) -> tuple[int, int]:
    """(first episode seed of training, first episode seed of its demonstrations) for a run seed."""
    if not 0 <= run_seed < MAX_RUN_SEED:
        raise ValueError(f"run seeds are 0 .. {MAX_RUN_SEED - 1} (their episodes must stay clear of the "
                         f"evaluation seeds), got {run_seed}")
    return run_seed * RUN_SEED_STRIDE, run_seed * RUN_SEED_STRIDE + DEMO_SEED_OFFSET


@dataclass
class EvalResult:
    success_rate: float
    episodes: int
    mean_steps: float
    wall_s: float
    per_episode: list = field(default_factory=list)   # {seed, success, steps}

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "per_episode"}


def run_episodes(act: Callable, env, episodes: int, seed: int = EVAL_SEED_BASE, progress: bool = False,
                 description: str = "evaluation") -> EvalResult:
    """``episodes`` episodes of ``env`` (a :class:`~equimanip.envs.ManipulationGymEnv`) from episode
    seeds ``seed, seed + 1, ...``, each action ``act(observation)`` on the full Observation."""
    from tqdm import tqdm

    inner = env.unwrapped          # for the full Observation; stepping goes through any wrappers (TimeLimit)
    start = time.perf_counter()
    per_episode = []
    bar = tqdm(range(seed, seed + episodes), desc=description, disable=not progress, leave=False)
    for episode_seed in bar:
        env.reset(seed=episode_seed)
        terminated = truncated = False
        steps = 0
        while not (terminated or truncated):
            action = np.asarray(act(inner.last_observation), dtype=np.float64)
            _, _, terminated, truncated, _ = env.step(np.clip(action, env.action_space.low, env.action_space.high))
            steps += 1
        per_episode.append({"seed": episode_seed, "success": bool(terminated), "steps": steps})
        bar.set_postfix(success=f"{np.mean([e['success'] for e in per_episode]):.0%}")
    return EvalResult(success_rate=float(np.mean([e["success"] for e in per_episode])) if per_episode else 0.0,
                      episodes=episodes,
                      mean_steps=float(np.mean([e["steps"] for e in per_episode])) if per_episode else 0.0,
                      wall_s=time.perf_counter() - start, per_episode=per_episode)


# ------------------------------------------------------------------------------------- the command


def cell_setup(params_files, trained):
    """The simulated cell's camera and the observation settings for a policy trained with
    ``trained``, from parameter files as ``equimanip run --params`` reads them: the files' camera
    (the default camera without files), their ``observation.*`` settings over ``trained`` except the
    ones the network's input depends on, which stay the checkpoint's (as policy_node does)."""
    from equimanip.config import cell_parameters, settings_from_parameters
    from equimanip.perception.observation import NETWORK_OBSERVATION_FIELDS
    from equimanip.sim.camera import CameraConfig

    params = cell_parameters(params_files)
    observation = settings_from_parameters(trained, params, "observation.", skip=NETWORK_OBSERVATION_FIELDS)
    return CameraConfig.from_parameters(params), observation.validate()



def policy_env(policy, params_files=None, **options):
    """The simulated environment a loaded policy (``checkpoint.load_policy``) runs in as it was
    trained: its task, its cell (``params_files`` for another one, as ``--params``), the observation it
    takes and its training episode length; ``options`` go to ``ManipulationGymEnv`` (perturbations,
    scene rotation, yaw sector, another ``max_episode_steps``)."""
    from equimanip.envs import ManipulationGymEnv

    if params_files is None:
        params_files = list(policy.metadata.get("cell_params") or [])
    camera, observation = cell_setup(params_files, policy.observation_config)
    # An object-state policy (bc, bmil) needs the environment to compute the state.
    mode = "state" if getattr(policy, "input_kind", "heightmap") == "object_state" else "heightmap"
    options.setdefault("max_episode_steps", policy.metadata.get("max_episode_steps"))
    return ManipulationGymEnv(policy.task, observation_config=observation, camera=camera, observation=mode, **options)

# Unperturbed, the number of scenes of SAC's final evaluation (so the two compare); from perturbed
# starts, the protocol asks for at least 100.
EPISODES = 50
PERTURBED_EPISODES = 100


def device_argument(value: str) -> str:
    """argparse type of ``--device``: auto, cpu, cuda or cuda:N, and only a GPU torch can see (as
    policy_node's ``device`` parameter)."""
    from equimanip.nodes.devices import check_device

    problem = check_device(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def non_negative_argument(text: str) -> float:
    """argparse type: a finite number >= 0 (the perturbations here, settings of `train sac`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):      # NaN and inf too
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equimanip eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint of any learner (checkpoint.load_policy)")
    source.add_argument("--expert", action="store_true",
                        help="run the task's scripted expert instead (it reads the simulation's ground truth): "
                             "how hard the scenes of these options are as such; needs --task")
    parser.add_argument("--task", default=None, help="task to run (default: the one the checkpoint was trained on)")
    parser.add_argument("--episodes", type=int, default=None,
                        help=f"episodes to run (default {EPISODES}, as SAC's final evaluation; {PERTURBED_EPISODES} "
                             "with --perturb-gripper or --perturb-objects, the perturbed-start protocol's)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED_BASE,
                        help=f"first episode seed (default {EVAL_SEED_BASE}: never used in training)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="episode step limit (default: the checkpoint's training limit, else the task's)")
    parser.add_argument("--rotate-scene", type=float, default=0.0, metavar="DEG",
                        help="turn every initial scene about the workspace centre by DEG degrees")
    parser.add_argument("--perturb-gripper", type=non_negative_argument, default=0.0, metavar="M",
                        help="shift the hand's start by U(-M, M) metres in x and y")
    parser.add_argument("--perturb-objects", type=non_negative_argument, default=0.0, metavar="M",
                        help="shift each object's start by U(-M, M) metres in x and y")
    parser.add_argument("--yaw-sector", type=float, nargs=2, default=None, metavar=("START", "WIDTH"),
                        help="only scenes whose scene yaw lies in [START, START + WIDTH) degrees")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="the cell's parameter file (a path or a name in config/, e.g. side_camera), as "
                             "`equimanip run --params` takes it: its camera, and its perception settings "
                             "other than those the network was trained with (default: the files a bc or bmil "
                             "policy was trained with, its cell_params, if any)")
    parser.add_argument("--device", type=device_argument, default="cpu",
                        help="cpu, cuda, cuda:N or auto (a GPU when torch sees one); default cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a busy 2-core machine more threads are much slower)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """build_parser's arguments with ``--episodes`` filled in when not given (more from perturbed starts)."""
    args = build_parser().parse_args(argv)
    if args.episodes is None:
        args.episodes = PERTURBED_EPISODES if args.perturb_gripper or args.perturb_objects else EPISODES
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from equimanip.checkpoint import load_policy
    from equimanip.envs import ManipulationGymEnv
    from equimanip.nodes.devices import resolve_device
    from equimanip.perception.observation import ObservationConfig
    from equimanip.sim.tasks import TASKS

    torch.set_num_threads(max(1, args.threads))
    if args.episodes < 1:
        print("equimanip eval: --episodes must be at least 1", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("equimanip eval: --seed must be >= 0", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    if args.expert:
        if args.task is None:
            print("equimanip eval: --expert needs --task", file=sys.stderr)
            return 2
        policy = None
    else:
        try:
            policy = load_policy(args.checkpoint, device=device)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
            print(f"equimanip eval: cannot load {args.checkpoint}: {e}", file=sys.stderr)
            return 1
    task = args.task or policy.task
    if task not in TASKS:
        print(f"equimanip eval: unknown task '{task}'; available: {', '.join(sorted(TASKS))}", file=sys.stderr)
        return 2
    metadata = policy.metadata if policy else {}
    max_steps = args.max_steps if args.max_steps is not None else metadata.get("max_episode_steps")
    params = args.params or list(metadata.get("cell_params") or [])
    if params and not args.params:
        print(f"note: evaluating in the cell the policy learnt in (--params {' '.join(params)}); "
              "--params sim for the default one", file=sys.stderr)
    try:
        camera, observation = cell_setup(params, policy.observation_config if policy else ObservationConfig())
    except (FileNotFoundError, OSError, ValueError, TypeError) as e:
        print(f"equimanip eval: --params: {e}", file=sys.stderr)
        return 2
    try:
        # An object-state policy (bc, bmil) needs the environment to compute the state.
        mode = "state" if getattr(policy, "input_kind", "heightmap") == "object_state" else "heightmap"
        env = ManipulationGymEnv(task, observation_config=observation, camera=camera, max_episode_steps=max_steps,
                                 observation=mode,
                                 rotate_scene=args.rotate_scene, perturb_gripper=args.perturb_gripper,
                                 perturb_objects=args.perturb_objects,
                                 yaw_sector=tuple(args.yaw_sector) if args.yaw_sector else None)
    except (ValueError, TypeError) as e:
        print(f"equimanip eval: {e}", file=sys.stderr)
        return 2
    if args.seed < EVAL_SEED_BASE:
        print(f"note: seeds below {EVAL_SEED_BASE} may be scenes the policy was trained on", file=sys.stderr)
    elif args.seed + args.episodes > VALIDATION_SEED_BASE:
        print(f"note: seeds from {VALIDATION_SEED_BASE} are the validation scenes a SAC run chose its best "
              "checkpoint on", file=sys.stderr)
    act = policy.act if policy else (lambda observation: env.expert_action())
    result = run_episodes(act, env, args.episodes, seed=args.seed, progress=not args.json)
    env.close()
    summary = {"checkpoint": "expert" if args.expert else str(args.checkpoint), "task": task, "seed": args.seed,
               "params": params, "rotate_scene": args.rotate_scene, "perturb_gripper": args.perturb_gripper,
               "perturb_objects": args.perturb_objects, "yaw_sector": args.yaw_sector,
               "max_steps": max_steps, **result.summary()}
    print(f"{task}: success rate {result.success_rate:.0%} over {result.episodes} episodes "
          f"(seeds {args.seed}..{args.seed + args.episodes - 1}), mean {result.mean_steps:.1f} steps, "
          f"{result.wall_s:.0f} s")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
