"""Diagnostic: can the SAC actor, on its heightmap view, imitate a task's scripted expert?

Behaviour cloning (MSE of the actor's tanh mean against the expert's normalised actions, with
buffer augmentation's random turns) on expert episodes, then the deterministic policy on held-out
episodes. No reinforcement learning: it separates "the network cannot see or represent the task"
from "SAC does not find it". docs/equivariant_sac.md quotes its results.

    python scripts/clone_expert_heightmap.py --task block_pushing --goal-channel on --demos 60 --steps 3000
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from equimanip.action import normalize_action, unnormalize_action
from equimanip.envs import ManipulationGymEnv
from equimanip.envs.demos import collect_demonstrations
from equimanip.learning.evaluate import EVAL_SEED_BASE, run_episodes
from equimanip.learning.replay import rotate_transition
from equimanip.learning.sac import SACConfig
from equimanip.models import make_actor
from equimanip.symmetry import GroupElement


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="block_pushing")
    parser.add_argument("--group", default="c8")
    parser.add_argument("--n-hidden", type=int, default=None, help="override the CPU preset's width (8)")
    parser.add_argument("--goal-channel", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--demos", type=int, default=60)
    parser.add_argument("--steps", type=int, default=3000, help="gradient steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=30, help="held-out evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.demos < 1 or args.episodes < 1:
        parser.error("--steps, --demos and --episodes must be positive")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    config = SACConfig(task=args.task, group=args.group, seed=args.seed, n_hidden=args.n_hidden,
                       goal_channel={"auto": None, "on": True, "off": False}[args.goal_channel]).validate()
    env = ManipulationGymEnv(config.task, **config.env_options())
    started = time.perf_counter()
    demos = collect_demonstrations(env, episodes=args.demos, seed=500_000 + args.seed * 1000, progress=True)
    observations = np.stack([o for d in demos for o in d.observations[:-1]])
    actions = np.stack([normalize_action(a) for d in demos for a in d.actions]).astype(np.float32)
    actor = make_actor(config.network_config())
    optimiser = torch.optim.Adam(actor.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    bar = tqdm(range(args.steps), desc="cloning")
    for _ in bar:
        index = rng.integers(len(actions), size=args.batch_size)
        obs, act = [], []
        for i in index:                       # each sample turned by a random angle, as the buffer does
            o, a, _ = rotate_transition(GroupElement(rng.uniform(0, 2 * np.pi)), observations[i], actions[i],
                                        observations[i])
            obs.append(o)
            act.append(torch.as_tensor(a, dtype=torch.float32))
        mean, _ = actor(torch.stack(obs))
        loss = torch.nn.functional.mse_loss(torch.tanh(mean), torch.stack(act))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    actor.eval()

    def act(observation):
        with torch.no_grad():
            mean, _ = actor(torch.as_tensor(observation.heightmap[None]))
        return unnormalize_action(torch.tanh(mean)[0].numpy())

    result = run_episodes(act, env, args.episodes, seed=EVAL_SEED_BASE, progress=True)
    summary = {"task": args.task, "group": args.group, "n_hidden": config.network_config().n_hidden,
               "goal_channel": config.shows_goal(), "demos": len(demos),
               "samples": len(actions), "steps": args.steps, "final_loss": loss.item(),
               "success": result.success_rate, "episodes": result.episodes,
               "wall_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
