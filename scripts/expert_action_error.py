"""Diagnostic: does a SAC policy's imitation of the expert carry over to scenes it has not seen?

Replays the scripted expert on two sets of episodes: the run's own demonstration scenes (the
episode seeds its demonstrations were drawn from: the first N, since the experts succeed on nearly
every scene) and as many held-out test scenes. At every step of
the expert's trajectory the policy is asked what it would do (its deterministic action on the same
observation; the expert's action is what is executed), and the difference is taken per action
entry, as a fraction of the entry's half range (1.0: as far off as half the whole range). The
first step is reported apart: there the expert sets off towards where the task starts (the block
to pick, the spot behind the block to push from), the decision the rest depends on. A policy that
fits its demonstrations but not the held-out scenes has learnt those 20 scenes, not the skill.
docs/equivariant_sac.md quotes its results; appends no results row.

    python scripts/expert_action_error.py runs/push_c8_s0/last.pt runs/pick_c8_s0/last.pt --episodes 20
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def errors(policy, seeds) -> dict:
    """Mean |policy - expert| / half range per action entry along the expert's own trajectories."""
    from equimanip.learning.evaluate import policy_env

    # The run's own scenes: its cell and episode length, and its yaw sector where it was trained in one.
    sector = policy.metadata["sac_config"].get("yaw_sector")
    env = policy_env(policy, yaw_sector=tuple(sector) if sector else None)
    inner = env.unwrapped
    low, high = env.action_space.low, env.action_space.high
    half_range = (high - low) / 2.0
    every, first = [], []
    try:
        for seed in seeds:
            env.reset(seed=seed)
            terminated = truncated = False
            step = 0
            while not (terminated or truncated):
                expert = np.clip(inner.expert_action(), low, high)
                gap = np.abs(policy.act(inner.last_observation) - expert) / half_range
                every.append(gap)
                if step == 0:
                    first.append(gap)
                _, _, terminated, truncated, _ = env.step(expert.astype(np.float32))
                step += 1
    finally:
        env.close()
    return {"steps": len(every), "all_steps": np.mean(every, axis=0).round(3).tolist(),
            "first_step": np.mean(first, axis=0).round(3).tolist()}


def main(argv=None) -> int:
    from equimanip.action import ACTION_NAMES
    from equimanip.checkpoint import load_policy
    from equimanip.learning.evaluate import EVAL_SEED_BASE, training_seeds

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="SAC checkpoints (best.pt or last.pt)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes of each set (default: as many as the run's demonstrations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.checkpoints:
        policy = load_policy(path, device="cpu")
        sac = policy.metadata.get("sac_config")
        if sac is None:
            parser.error(f"{path} is not a SAC checkpoint (it records no sac_config)")
        demo_seed = training_seeds(sac["demos_from_seed"] if sac.get("demos_from_seed") is not None
                                   else sac["seed"])[1]
        episodes = args.episodes if args.episodes is not None else sac["demos"]
        print(json.dumps({"checkpoint": path, "task": policy.task, "entries": list(ACTION_NAMES),
                          "demonstration_scenes": errors(policy, range(demo_seed, demo_seed + episodes)),
                          "held_out_scenes": errors(policy, range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes))}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
