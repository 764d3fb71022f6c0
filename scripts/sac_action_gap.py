"""Diagnostic: how much does a SAC run's critic care about the action?

Runs the run's greedy policy on held-out episodes and, at every step, sweeps each action entry
over its whole range (the others at the policy's mean) through the critic, min(Q1, Q2). The
spread of Q along a sweep is the critic's *action gap* for that entry: the most the actor can gain
by changing it. Where it is a small fraction of Q itself, the actor's gradient from the critic is
mostly noise, and a greedy policy can stall (for example holding a block just above the table
with dz at zero, while its noisy training-time samples still drift up to success).
docs/equivariant_sac.md quotes its results.

    python scripts/sac_action_gap.py runs/pick_c8_s1 --episodes 5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from equimanip.action import ACTION_NAMES
from equimanip.envs import ManipulationGymEnv
from equimanip.learning.evaluate import EVAL_SEED_BASE
from equimanip.learning.replay import unnormalize_action
from equimanip.learning.sac import SAC, TRAIN_STATE, build_networks, load_run_config

SWEEP = np.linspace(-1.0, 1.0, 9)


def action_gaps(learner: SAC, obs: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
    """(Q of the greedy action, the spread of Q along each entry's sweep (5,)) at one observation."""
    n = len(SWEEP)
    actions = np.repeat(u[None, None], len(u), 0).repeat(n, 1)            # (entry, sweep, 5)
    for i in range(len(u)):
        actions[i, :, i] = SWEEP
    x = torch.as_tensor(obs[None], dtype=torch.float32, device=learner.device)
    batch = torch.as_tensor(np.concatenate([u[None], actions.reshape(-1, len(u))]), dtype=torch.float32,
                            device=learner.device)
    with torch.no_grad():
        q1, q2 = learner.critic(x.expand(len(batch), *x.shape[1:]), batch)
    q = torch.min(q1, q2).squeeze(1).cpu().numpy()
    swept = q[1:].reshape(len(u), n)
    return float(q[0]), swept.max(1) - swept.min(1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory of `equimanip train sac` (its train_state.pt)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="first held-out episode seed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.run / TRAIN_STATE).exists():
        print(f"{args.run / TRAIN_STATE} not found: not a SAC run directory", file=sys.stderr)
        return 1
    config = load_run_config(args.run)
    learner = SAC(*build_networks(config), config)
    learner.load_state_dict(torch.load(args.run / TRAIN_STATE, map_location="cpu", weights_only=False)["learner"])
    env = ManipulationGymEnv(config.task, **config.env_options())

    q_values, gaps, successes = [], [], []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        terminated = truncated = False
        while not (terminated or truncated):
            u = learner.act(obs[None], deterministic=True)[0]
            q, gap = action_gaps(learner, obs, u)
            q_values.append(q)
            gaps.append(gap)
            obs, _, terminated, truncated, _ = env.step(unnormalize_action(u))
        successes.append(bool(terminated))
    env.close()
    gap_median = np.median(np.array(gaps), 0)
    q_median = float(np.median(np.abs(q_values)))
    report = {"run": str(args.run), "episodes": args.episodes, "success": float(np.mean(successes)),
              "steps": len(q_values), "median_abs_q": q_median,
              "median_gap": dict(zip(ACTION_NAMES, gap_median.round(4).tolist())),
              "median_gap_over_q": dict(zip(ACTION_NAMES, (gap_median / max(q_median, 1e-9)).round(4).tolist()))}
    print(f"{args.run}: greedy success {report['success']:.0%} over {args.episodes} episodes, "
          f"{len(q_values)} steps, median |Q| {q_median:.3f}")
    print("entry   median spread of Q over the entry's range   as a fraction of |Q|")
    for name in ACTION_NAMES:
        print(f"{name:6s}  {report['median_gap'][name]:.4f}{'':33s}{report['median_gap_over_q'][name]:.1%}")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
