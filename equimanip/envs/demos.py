"""Expert demonstrations: episodes of a task driven by its scripted expert, successful ones only.

The expert reads the ground-truth object poses (``ManipulationGymEnv.expert_action``); what is
recorded is what a learner sees: the observations the environment returns, the expert's action
(clipped to the action space, as the simulation executes it), reward, terminated and truncated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .manipulation import ManipulationGymEnv


@dataclass
class Demonstration:
    """One successful episode: ``observations`` has one more entry than ``actions``."""

    episode_seed: int
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    truncated: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)

    def transitions(self):
        """(obs, action, reward, next_obs, terminated, truncated) per step."""
        for t in range(len(self.actions)):
            yield (self.observations[t], self.actions[t], self.rewards[t], self.observations[t + 1],
                   self.terminated[t], self.truncated[t])


def collect_demonstrations(env: ManipulationGymEnv, episodes: int, seed: int, max_attempts: int | None = None,
                           progress: bool = False) -> list[Demonstration]:
    """``episodes`` successful expert episodes from episode seeds ``seed, seed + 1, ...`` (failed
    ones are skipped; at most ``max_attempts`` episodes are tried, default 2 x episodes + 10).
    Raises RuntimeError when too few succeed."""
    from tqdm import tqdm

    inner = env.unwrapped          # for the expert; stepping goes through any wrappers (TimeLimit)
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    max_attempts = 2 * episodes + 10 if max_attempts is None else max_attempts
    demos: list[Demonstration] = []
    low, high = env.action_space.low, env.action_space.high
    with tqdm(total=episodes, desc="expert demonstrations", disable=not progress, leave=False) as bar:
        for attempt in range(max_attempts):
            if len(demos) == episodes:
                break
            obs, info = env.reset(seed=seed + attempt)
            demo = Demonstration(episode_seed=info["episode_seed"], observations=[obs])
            terminated = truncated = False
            while not (terminated or truncated):
                action = np.clip(inner.expert_action(), low, high).astype(np.float32)
                obs, reward, terminated, truncated, info = env.step(action)
                demo.observations.append(obs)
                demo.actions.append(action)
                demo.rewards.append(reward)
                demo.terminated.append(terminated)
                demo.truncated.append(truncated)
            if terminated:
                demos.append(demo)
                bar.update(1)
    if len(demos) < episodes:
        raise RuntimeError(f"the expert succeeded in only {len(demos)} of {max_attempts} episodes of "
                           f"{inner.config.task} from seed {seed}; {episodes} were asked for")
    return demos


__all__ = ["Demonstration", "collect_demonstrations"]
