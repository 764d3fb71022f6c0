"""Diagnostic: how do block_pushing policies fail?

Trains BC and BMIL as `python -m equimanip.learning.bmil_experiments run --task block_pushing`
does (same demonstrations, side camera, goal given, push preset, demo repeat 1), or loads a
checkpoint (`--checkpoint`: SAC's best.pt or last.pt, run in the cell it was trained in and on its
own episode length), runs each on the same held-out episodes (perturbed starts by default for the
imitation policies, none for a checkpoint unless --perturb says) and sorts every failure by what
the block did, read from the simulation's ground truth (which the policies never see):

* ``untouched``: the block moved less than 1 cm: the gripper never got to it (or went past);
* ``pushed, short``: it moved, and ended closer to the goal than it started, but not within
  the success distance when the episode ran out of steps;
* ``pushed, astray``: it moved and ended no closer to the goal than it started.

Prints one JSON line per method or checkpoint; appends no results row. docs/imitation.md and
docs/equivariant_sac.md quote it.

    python scripts/push_failures.py --seed 0 --episodes 50
    python scripts/push_failures.py --checkpoint runs/push_c8_s0/last.pt --episodes 50
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from equimanip.learning import bmil_experiments as experiments

MOVED = 0.01        # m: the block counts as touched once it moved this far


def imitation_env(perturb: float):
    """The environment bmil_experiments evaluates the imitation policies in."""
    from equimanip.envs import ManipulationGymEnv

    camera, observation = experiments.side_camera("block_pushing", "given")
    return ManipulationGymEnv("block_pushing", observation_config=observation, camera=camera, observation="state",
                              max_episode_steps=experiments.MAX_STEPS, perturb_gripper=perturb)


def outcomes(policy, env, episodes: int) -> dict:
    """Runs `policy` in `env` (closed afterwards) on the held-out episodes and sorts the failures."""
    from equimanip.learning.evaluate import EVAL_SEED_BASE
    from equimanip.sim.task_names import TABLE_GOAL_ROWS

    inner = env.unwrapped
    goal_row = TABLE_GOAL_ROWS["block_pushing"]
    counts = {"success": 0, "untouched": 0, "pushed, short": 0, "pushed, astray": 0}
    closest, lowest, final_distance = [], [], []
    try:
        for seed in range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes):
            env.reset(seed=seed)
            start = inner.sim.observe(render=False).object_poses
            block0, goal = start[0, :2].copy(), start[goal_row, :2].copy()
            nearest, low = np.inf, np.inf
            terminated = truncated = False
            while not (terminated or truncated):
                action = np.clip(policy.act(inner.last_observation), env.action_space.low, env.action_space.high)
                _, _, terminated, truncated, _ = env.step(action)
                sim = inner.sim.observe(render=False)
                nearest = min(nearest, float(np.linalg.norm(sim.ee_pose[:2] - sim.object_poses[0, :2])))
                low = min(low, float(sim.ee_pose[2]))
            block = inner.sim.observe(render=False).object_poses[0, :2]
            closest.append(nearest)
            lowest.append(low)
            if terminated:
                counts["success"] += 1
                continue
            final_distance.append(float(np.linalg.norm(block - goal)))
            if np.linalg.norm(block - block0) < MOVED:
                counts["untouched"] += 1
            elif np.linalg.norm(block - goal) < np.linalg.norm(block0 - goal):
                counts["pushed, short"] += 1
            else:
                counts["pushed, astray"] += 1
    finally:
        env.close()
    return {"episodes": episodes, **counts,
            "median_closest_gripper_block_m": round(float(np.median(closest)), 3),
            # The expert pushes with the end effector at half the block's height (2 cm).
            "median_lowest_gripper_m": round(float(np.median(lowest)), 3),
            "median_final_block_goal_m_of_failures": round(float(np.median(final_distance)), 3) if final_distance
            else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PT",
                        help="a block_pushing checkpoint to run instead of training BC and BMIL (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="imitation: the run seed (default 0)")
    parser.add_argument("--demos", type=int, default=None, help="imitation: demonstrations (default 10)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--perturb", type=float, default=None,
                        help=f"gripper offset (m); 0: in distribution (default {experiments.PERTURB:g} for the "
                             "imitation policies, 0 for a checkpoint)")
    parser.add_argument("--methods", nargs="+", default=None, choices=("bc", "bmil", "equi_bc", "equi_bmil"),
                        help="imitation: the methods to train (default bc bmil)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.checkpoint:
        if args.seed is not None or args.demos is not None or args.methods is not None:
            parser.error("--seed, --demos and --methods choose the imitation policies to train; a checkpoint "
                         "is run as it is")
        from equimanip.checkpoint import load_policy
        from equimanip.learning.evaluate import policy_env

        for path in args.checkpoint:
            policy = load_policy(path, device="cpu")
            if policy.task != "block_pushing":
                parser.error(f"{path} was trained on {policy.task}, not block_pushing")
            env = policy_env(policy, perturb_gripper=args.perturb or 0.0)    # its own cell and episode length
            print(json.dumps({"checkpoint": path, "perturb": args.perturb or 0.0,
                              **outcomes(policy, env, args.episodes)}), flush=True)
        return 0
    seed = args.seed if args.seed is not None else 0
    demos = args.demos if args.demos is not None else 10
    perturb = args.perturb if args.perturb is not None else experiments.PERTURB
    data = experiments.demonstrations("block_pushing", seed, demos, "given")
    for method in args.methods or ["bc", "bmil"]:
        policy, _, _ = experiments.train("block_pushing", method, data, seed, demo_repeat=1)
        print(json.dumps({"method": method, "seed": seed, "demos": demos, "perturb": perturb,
                          **outcomes(policy, imitation_env(perturb), args.episodes)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
