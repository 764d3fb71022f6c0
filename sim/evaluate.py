"""Run a task's scripted expert through the simulation API and measure its success rate.

    equimanip bench experts --task block_picking --episodes 100
    python -m equimanip.sim.evaluate --task block_picking --episodes 100   (the same)
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from equimanip.sim.env import ManipulationEnv, expert_input
from equimanip.sim.tasks import TASKS


def run_expert(task: str, episodes: int, seed: int = 0, render: bool = False, progress: bool = False) -> dict:
    """Episodes ``seed .. seed + episodes - 1`` of ``task`` driven by its expert.

    Returns success_rate, episodes, mean_steps and per_episode (seed, success, steps).
    """
    per_episode = []
    with ManipulationEnv(task=task, render=render) as env:
        expert = env.make_expert()
        for episode_seed in tqdm(range(seed, seed + episodes), desc=task, disable=not progress):
            observation = env.reset(episode_seed)
            expert.reset()
            info = {"success": env.success, "steps": 0}
            while not env.done:
                observation, _, _, info = env.step(expert.act(expert_input(observation)))
            per_episode.append({"seed": episode_seed, "success": bool(info["success"]), "steps": int(info["steps"])})
    successes = [e["success"] for e in per_episode]
    return {
        "task": task,
        "success_rate": float(np.mean(successes)) if per_episode else 0.0,
        "episodes": episodes,
        "mean_steps": float(np.mean([e["steps"] for e in per_episode])) if per_episode else 0.0,
        "per_episode": per_episode,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench experts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), nargs="+", default=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with one JSON object of all tasks' results")
    args = parser.parse_args(argv)
    summary = {}
    for task in args.task:
        result = run_expert(task, args.episodes, seed=args.seed, progress=not args.json)
        failures = [e["seed"] for e in result["per_episode"] if not e["success"]]
        summary[task] = {k: v for k, v in result.items() if k != "per_episode"} | {"failed_seeds": failures}
        print(f"{task}: success {result['success_rate']:.1%} over {result['episodes']} episodes, "
              f"mean steps {result['mean_steps']:.1f}, failed seeds {failures}", flush=True)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
