"""Diagnostic: how do the imitation policies fail at block_pushing?

Trains BC and BMIL as `python -m equimanip.learning.bmil_experiments run --task block_pushing`
does (same demonstrations, side camera, goal given, push preset, demo repeat 1), runs each on the
same held-out episodes (perturbed starts by default) and sorts every failure by what the block
did, read from the simulation's ground truth (which the policies never see):

* ``untouched``: the block moved less than 1 cm: the gripper never got to it (or went past);
* ``pushed, short``: it moved, and ended closer to the goal than it started, but not within
  the success distance when the episode ran out of steps;
* ``pushed, astray``: it moved and ended no closer to the goal than it started.

Prints one JSON line per method; appends no results row. docs/imitation.md quotes it.

    python scripts/push_failures.py --seed 0 --episodes 50
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from equimanip.learning import bmil_experiments as experiments

MOVED = 0.01        # m: the block counts as touched once it moved this far


def outcomes(policy, episodes: int, perturb: float) -> dict:
    from equimanip.envs import ManipulationGymEnv
    from equimanip.learning.evaluate import EVAL_SEED_BASE
    from equimanip.sim.task_names import TABLE_GOAL_ROWS

    camera, observation = experiments.side_camera("block_pushing", "given")
    env = ManipulationGymEnv("block_pushing", observation_config=observation, camera=camera, observation="state",
                             max_episode_steps=experiments.MAX_STEPS, perturb_gripper=perturb)
    inner = env.unwrapped
    goal_row = TABLE_GOAL_ROWS["block_pushing"]
    counts = {"success": 0, "untouched": 0, "pushed, short": 0, "pushed, astray": 0}
    closest, final_distance = [], []
    try:
        for seed in range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes):
            env.reset(seed=seed)
            start = inner.sim.observe(render=False).object_poses
            block0, goal = start[0, :2].copy(), start[goal_row, :2].copy()
            nearest = np.inf
            terminated = truncated = False
            while not (terminated or truncated):
                action = np.clip(policy.act(inner.last_observation), env.action_space.low, env.action_space.high)
                _, _, terminated, truncated, _ = env.step(action)
                sim = inner.sim.observe(render=False)
                nearest = min(nearest, float(np.linalg.norm(sim.ee_pose[:2] - sim.object_poses[0, :2])))
            block = inner.sim.observe(render=False).object_poses[0, :2]
            closest.append(nearest)
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
            "median_final_block_goal_m_of_failures": round(float(np.median(final_distance)), 3) if final_distance
            else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--perturb", type=float, default=experiments.PERTURB,
                        help="gripper offset (m); 0: in distribution")
    parser.add_argument("--methods", nargs="+", default=["bc", "bmil"], choices=("bc", "bmil", "equi_bc", "equi_bmil"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = experiments.demonstrations("block_pushing", args.seed, args.demos, "given")
    for method in args.methods:
        policy, _, _ = experiments.train("block_pushing", method, data, args.seed, demo_repeat=1)
        print(json.dumps({"method": method, "seed": args.seed, "demos": args.demos, "perturb": args.perturb,
                          **outcomes(policy, args.episodes, args.perturb)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
