"""Equivariant SAC (Wang, Walters, Platt, ICLR 2022; REFERENCES section 1), readable top to bottom.

    equimanip train sac --task block_picking --group c8 --demos 20 --steps 5000 --out runs/pick_c8

What happens, in order:

1. **Configuration**: one :class:`SACConfig` (equi_rl's defaults: Adam lr 1e-3, gamma 0.99, batch 64,
   tau 0.01, initial alpha 0.01, target entropy -5, one update per environment step).
2. **Networks** from ``equimanip.models`` (``make_actor`` / ``make_critic`` of a ``NetworkConfig``:
   group, width, heightmap size, relaxed): the actor gives the mean and log-std of a Gaussian over
   the pre-tanh action; the critic gives two Q values. Target critic = a copy, updated by Polyak
   averaging.
3. **Environment**: ``equimanip.envs`` (Gymnasium, vector API: ``num_envs`` copies, in subprocesses
   with ``async_envs``) with the heightmap the networks take; no ROS in the loop.
4. **Demonstrations**: ``demos`` successful episodes of the scripted expert pre-loaded in the
   replay buffer and flagged as expert data (SACfD).
5. **Loop**: act (sampled from the policy), store the transition with its 4 rotated copies
   (``replay.ReplayBuffer``), one SAC update per environment step, evaluate every ``eval_every``
   steps on held-out validation scenes (``evaluate``), log, keep the best checkpoint.
6. **End**: a final evaluation of the last policy and of the best checkpoint on the held-out test
   scenes, checkpoints (best and last), CSV logs, a learning-curve PNG, and with ``--json`` one
   JSON line.

One update (:meth:`SAC.update`) is the CleanRL-style SAC step plus SACfD's term:

* critic: ``y = r + gamma (1 - terminated) (min Q_target(s', a') - alpha log pi(a'|s'))`` with
  ``a' ~ pi(s')``; loss ``w (Q1 - y)^2 + w (Q2 - y)^2`` (w = importance weights, 1 without PER);
* actor: ``alpha log pi(a|s) - min Q(s, a)`` with ``a ~ pi(s)`` (reparameterised), plus
  ``sacfd_weight`` times the squared distance between ``tanh(mean)`` (``sacfd_target`` "mean") or
  the sampled action ("sample") and the expert's action (clamped to ``sacfd_action_bound``) on
  expert samples; plus the relaxed networks' regulariser toward equivariance when they have one;
* temperature: ``-log alpha (log pi + target_entropy)`` (automatic entropy tuning).

Actions live in [-1, 1]^5 for the networks (tanh-squashed) and are scaled to the physical limits
of ``equimanip.action`` for the environment (``equimanip.action.normalize_action``).

**Threads.** ``threads`` (default 1) is passed to ``torch.set_num_threads``: on a busy 2-core
machine torch's default of one intra-op thread per core made a small conv net 10 to 100 times
slower (REFERENCES section 7: 69 ms against 0.6 ms per forward), because the threads wait for
cores that the simulation and other processes hold. On a GPU the setting hardly matters.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import json
import math
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from equimanip.sim.task_names import TABLE_GOAL_ROWS, TASK_NAMES

from .evaluate import (
    EVAL_SEED_BASE,
    VALIDATION_SEED_BASE,
    EvalResult,
    non_negative_argument,
    run_episodes,
    training_seeds,
)
from .replay import Batch, ReplayBuffer, normalize_action, unnormalize_action


@dataclass
class SACConfig:
    # --- what to learn
    task: str = "block_picking"
    max_episode_steps: int | None = 50          # None: the task's own limit (100)
    yaw_sector: tuple[float, float] | None = None  # train only on scenes in this sector (degrees)
    # The task's goal on the table as heightmap channel 2 (ObservationConfig.goal_channel). None: on
    # for the tasks that have such a goal (block_pushing), whose 2 mm goal patch the depth camera
    # hardly sees.
    goal_channel: bool | None = None
    # The cell's parameter files, as `equimanip run --params` and `equimanip eval --params` read them
    # (a name in config/ such as side_camera, or a path): their camera, and their observation.*
    # settings other than the ones the networks' input depends on. (): the default simulated camera,
    # overhead and tilted, whose view of the table right beside the hand, on the robot's side, the
    # hand and wrist hide at the start of an episode (scripts/pick_failures.py).
    cell_params: tuple[str, ...] = ()
    # --- networks (equimanip.models.NetworkConfig; 'cpu' or 'paper' preset, then overrides)
    network: str = "auto"                       # cpu | paper | auto (paper on a GPU)
    group: str = "c8"
    n_hidden: int | None = None                 # None: the preset's
    heightmap_size: int | None = None           # None: the preset's
    relaxed: bool = False
    # The relaxed networks' regulariser toward equivariance and their kernel banks per layer, the
    # SO(2) networks' nonlinearity, the encoder's top. None: NetworkConfig's (the preset's top).
    relaxed_strength: float | None = None
    relaxed_banks: int | None = None
    so2_nonlinearity: str | None = None
    top: str | None = None
    center_inputs: bool = False                 # NetworkConfig.center_inputs
    # The resolved NetworkConfig (as a dict), filled when a run starts, so that a resumed run
    # rebuilds exactly its networks even if the presets have changed since.
    network_settings: dict | None = None
    # --- SAC (equi_rl's values)
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    tau: float = 0.01
    init_alpha: float = 0.01
    target_entropy: float = -5.0
    # Updates per environment step; a fraction makes one update every 1 / f steps. equi_rl steps 5
    # environments per update (0.2 here, with --num-envs 5): its curves count updates.
    updates_per_step: float = 1.0
    learning_starts: int = 100                  # buffer items before the first update
    # The actor's loss reuses the critic encoder's features of the batch (computed for the critic's
    # loss, before its step) instead of running the encoder again: measured 511 -> 356 ms per update
    # at the CPU configuration (C8). The encoder is one Adam step staler there; False recomputes, as
    # equi_rl does.
    reuse_critic_features: bool = True
    # Evaluate and save an exponential moving average of the actor's weights, updated at this rate
    # after every actor step (0: the actor itself, as equi_rl). Exploration still samples the live
    # actor. Why: at the CPU width the greedy policy of one run flips between 85-100% and 0% from one
    # evaluation to the next (stop 24), so the policy a run ends with is a coin flip.
    actor_average: float = 0.0
    buffer_size: int = 100_000                  # items (transitions and their copies)
    # --- demonstrations (SACfD)
    demos: int = 20
    sacfd_weight: float = 1.0
    # What the SACfD term pulls toward the expert's action: the policy's mean ("mean", equi_rl's
    # sacfd_mean) or its reparameterised sample ("sample", equi_rl's sacfd default, which also
    # shrinks the policy's spread on the demonstrations' states).
    sacfd_target: str = "mean"
    # The expert's normalised actions are clamped to [-b, b] as the SACfD term's targets. The
    # experts' gripper commands (and most of their dz) lie exactly on the limits, +-1, which a
    # tanh-squashed policy reaches only as its pre-tanh mean grows without bound: its log-density
    # there, and with it the entropy the temperature is tuned on, then runs away (-9 against a
    # target of -5, seen in runs that later collapsed). 1: equi_rl's targets, unclamped.
    sacfd_action_bound: float = 1.0
    # SAC updates on the demonstrations alone before the first environment step (equi_rl's
    # pre_train_step, 0 there by default): the actor starts from a cloned expert, the critic from
    # the demonstrations' returns.
    pretrain_steps: int = 0
    # Fraction of every update's batch drawn from the demonstrations (and their rotated copies),
    # the rest from the whole buffer. 0 (equi_rl): uniform over the buffer, where the
    # demonstrations shrink to a few percent of the items and the SACfD term with them; a fixed
    # share keeps the actor near the expert through the whole run (DDPGfD's separate demo buffer).
    demo_fraction: float = 0.0
    # Collect the demonstrations of this run seed instead of the run's own (None): separates what
    # the demonstrations do from the rest of a run's randomness (network initialisation, its
    # episodes, its minibatches), which the run seed keeps.
    demos_from_seed: int | None = None
    # --- replay
    augment_copies: int = 4                     # rotated copies stored with every transition
    prioritized: bool = False
    per_alpha: float = 0.6
    per_beta_start: float = 0.4
    per_beta_end: float = 1.0
    per_eps: float = 1e-6
    per_expert_bonus: float = 1.0
    # --- the run
    steps: int = 5000                           # environment steps (demonstrations not counted)
    seed: int = 0
    num_envs: int = 1
    # Step the num_envs environments in subprocesses, one simulation each (Gymnasium's
    # AsyncVectorEnv), instead of one after the other in this process. The same episodes; faster only
    # where there are cores to spare for them.
    async_envs: bool = False
    eval_every: int = 500
    eval_episodes: int = 20
    final_eval_episodes: int = 50
    log_every: int = 50
    device: str = "auto"                        # cpu | cuda | auto
    threads: int = 1
    # Stop taking environment steps this many minutes after this training command started
    # (demonstrations included), then run the final evaluation and write everything as for a
    # finished run (its summary and results row give the steps reached). For a machine lent for a
    # fixed time; None: no limit.
    time_limit_min: float | None = None

    def validate(self) -> "SACConfig":
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASK_NAMES)}")
        if self.network not in ("cpu", "paper", "auto"):
            raise ValueError(f"network must be cpu, paper or auto, got {self.network!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        positive = ("lr", "batch_size", "steps", "num_envs", "eval_every", "eval_episodes", "log_every",
                    "threads", "buffer_size", "updates_per_step")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (0 <= self.gamma <= 1 and 0 < self.tau <= 1 and self.init_alpha > 0):
            raise ValueError("gamma must be in [0, 1], tau in (0, 1], init_alpha > 0")
        if self.pretrain_steps < 0 or (self.pretrain_steps and not self.demos):
            raise ValueError("pretrain_steps must be >= 0, and pre-training needs demonstrations (--demos)")
        if not 0 <= self.demo_fraction < 1 or (self.demo_fraction and not self.demos):
            raise ValueError(f"demo_fraction must be in [0, 1) and needs demonstrations (--demos), got "
                             f"{self.demo_fraction}")
        if self.time_limit_min is not None and not self.time_limit_min > 0:
            raise ValueError(f"time_limit_min must be positive, got {self.time_limit_min}")
        if not 0 <= self.actor_average < 1:
            raise ValueError(f"actor_average must be in [0, 1), got {self.actor_average}")
        if not 0 < self.sacfd_action_bound <= 1:
            raise ValueError(f"sacfd_action_bound must be in (0, 1], got {self.sacfd_action_bound}")
        if self.sacfd_target not in ("mean", "sample"):
            raise ValueError(f"sacfd_target must be mean or sample, got {self.sacfd_target!r}")
        if self.demos < 0 or self.augment_copies < 0 or self.final_eval_episodes < 0 or self.sacfd_weight < 0:
            raise ValueError("demos, augment_copies, final_eval_episodes and sacfd_weight must be >= 0")
        # Settings that would change nothing are refused: a user who gives one expects an effect.
        if (self.relaxed_strength is not None or self.relaxed_banks is not None) and not self.relaxed:
            raise ValueError("relaxed_strength and relaxed_banks set the relaxed networks: they need --relaxed")
        if self.so2_nonlinearity is not None and self.group != "so2":
            raise ValueError(f"so2_nonlinearity sets the SO(2) networks: it needs --group so2, not {self.group!r}")
        if self.async_envs and self.num_envs < 2:
            raise ValueError(f"async_envs steps several environments in subprocesses: it needs num_envs > 1, "
                             f"got {self.num_envs}")
        if self.goal_channel and self.task not in TABLE_GOAL_ROWS:
            raise ValueError(f"--goal-channel on: {self.task} has no goal on the table (tasks with one: "
                             f"{', '.join(TABLE_GOAL_ROWS)})")
        training_seeds(self.seed)                 # run seeds must stay clear of evaluation seeds
        if self.demos_from_seed is not None:
            if not self.demos:
                raise ValueError("demos_from_seed needs demonstrations (--demos)")
            training_seeds(self.demos_from_seed)
        self.network_config()                     # group, width and size checked by the models
        if self.cell_params:
            self.env_options()                    # the files exist and hold a valid camera
        return self

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def network_config(self):
        from equimanip.models import NetworkConfig

        if self.network_settings is not None:
            return NetworkConfig.from_dict(self.network_settings)
        overrides = {"group": self.group, "relaxed": self.relaxed, "center_inputs": self.center_inputs,
                     "in_channels": 3 if self.shows_goal() else 2}
        # Settings given explicitly win over the preset's.
        for name in ("n_hidden", "heightmap_size", "top", "relaxed_strength", "relaxed_banks", "so2_nonlinearity"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        preset = self.network if self.network != "auto" else ("paper" if self.resolved_device() == "cuda" else "cpu")
        return NetworkConfig.paper(**overrides) if preset == "paper" else NetworkConfig.cpu(**overrides)

    def shows_goal(self) -> bool:
        """Whether the networks see the goal channel (by default: the task has a goal on the table)."""
        return self.task in TABLE_GOAL_ROWS if self.goal_channel is None else self.goal_channel

    def observation_config(self):
        from equimanip.perception.observation import ObservationConfig

        # The policies' view: depths below the grasp point, the robot left out, fingers drawn in
        # (equi_rl's; perception/observation.py). With the table view (the robot's own arm hiding what
        # is under the hand) even cloning the expert failed: 1 of 30 episodes against 25 of 30.
        net = self.network_config()
        return ObservationConfig(heightmap_size=net.heightmap_size, heightmap_mode="gripper",
                                 compute_object_state=False, goal_channel=net.in_channels == 3)

    def env_options(self, **changes) -> dict:
        """Keyword arguments of ``equimanip.envs.ManipulationGymEnv`` for this run."""
        options = dict(observation_config=self.observation_config(), max_episode_steps=self.max_episode_steps,
                       yaw_sector=tuple(self.yaw_sector) if self.yaw_sector else None)
        if self.cell_params:
            from .evaluate import cell_setup

            options["camera"], options["observation_config"] = cell_setup(list(self.cell_params),
                                                                          options["observation_config"])
        return options | changes


# ------------------------------------------------------------------------------------ the policy


def squashed_gaussian(mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False,
                      log_std_bounds: tuple[float, float] = (-20.0, 2.0)):
    """Sample ``u = tanh(x)``, ``x ~ N(mean, exp(log_std))`` (or ``x = mean``). Returns ``(u, log pi(u),
    tanh(mean))``; the log-probability includes the tanh's change of variables."""
    log_std = log_std.clamp(*log_std_bounds)
    std = log_std.exp()
    x = mean if deterministic else mean + std * torch.randn_like(mean)
    u = torch.tanh(x)
    log_prob = torch.distributions.Normal(mean, std).log_prob(x).sum(-1, keepdim=True)
    log_prob = log_prob - torch.log(1.0 - u.pow(2) + 1e-6).sum(-1, keepdim=True)
    return u, log_prob, torch.tanh(mean)


@torch.no_grad()
def _polyak(average: torch.nn.Module, module: torch.nn.Module, rate: float) -> None:
    """``average``'s weights move ``rate`` of the way to ``module``'s; its buffers (escnn's sampled
    kernel bases) are copied."""
    for a, p in zip(average.parameters(), module.parameters()):
        a.lerp_(p, rate)
    for a, b in zip(average.buffers(), module.buffers()):
        a.copy_(b)


def relaxation_penalty(module: torch.nn.Module) -> torch.Tensor | None:
    """The regulariser toward equivariance of a relaxed network (its ``regularization_loss()``,
    already scaled by its strength), or None for exactly equivariant and plain networks."""
    loss = getattr(module, "regularization_loss", None)
    return loss() if callable(loss) else None


class SAC:
    """Actor, twin critic with its target copy, temperature, their optimisers, and one update."""

    def __init__(self, actor: torch.nn.Module, critic: torch.nn.Module, config: SACConfig, device="cpu",
                 log_std_bounds: tuple[float, float] = (-20.0, 2.0)):
        self.config, self.device, self.log_std_bounds = config, torch.device(device), log_std_bounds
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # The weights' moving average (config.actor_average), or None: then the actor is the policy.
        self.actor_average = (copy.deepcopy(self.actor).requires_grad_(False) if config.actor_average > 0
                              else None)
        self.log_alpha = torch.tensor(math.log(config.init_alpha), device=self.device, requires_grad=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.lr)
        self.updates = 0

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    @property
    def policy_actor(self) -> torch.nn.Module:
        """The actor that is evaluated and saved as the policy: the moving average, where kept."""
        return self.actor if self.actor_average is None else self.actor_average

    def policy(self, obs: torch.Tensor, deterministic: bool = False, actor: torch.nn.Module | None = None):
        mean, log_std = (actor if actor is not None else self.actor)(obs)
        return squashed_gaussian(mean, log_std, deterministic, self.log_std_bounds)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, actor: torch.nn.Module | None = None) -> np.ndarray:
        """Normalised actions (B, 5) in [-1, 1] for heightmaps (B, C, S, S), by ``actor`` (default:
        the live actor, the one that explores)."""
        u, _, mean_u = self.policy(torch.as_tensor(obs, dtype=torch.float32, device=self.device), deterministic,
                                   actor)
        return (mean_u if deterministic else u).cpu().numpy()

    def update(self, batch: Batch) -> dict:
        cfg = self.config
        alpha = self.alpha.detach()

        # --- critic: soft Bellman target from the target critic and a fresh next action
        with torch.no_grad():
            next_u, next_log_prob, _ = self.policy(batch.next_obs)
            q1_next, q2_next = self.critic_target(batch.next_obs, next_u)
            soft_value = torch.min(q1_next, q2_next) - alpha * next_log_prob
            target = batch.reward + cfg.gamma * (1.0 - batch.terminated) * soft_value
        reuse = cfg.reuse_critic_features and hasattr(self.critic, "heads") and hasattr(self.critic, "encoder")
        if reuse:
            features = self.critic.encoder(batch.obs)
            q1, q2 = self.critic.heads(features, batch.action)
        else:
            q1, q2 = self.critic(batch.obs, batch.action)
        critic_loss = (batch.weights * ((q1 - target).pow(2) + (q2 - target).pow(2))).mean()
        critic_penalty = relaxation_penalty(self.critic)
        if critic_penalty is not None:
            critic_loss = critic_loss + critic_penalty
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        td_errors = (0.5 * ((q1 - target).abs() + (q2 - target).abs())).detach().squeeze(1).cpu().numpy()

        # --- actor: maximise the soft value of its own (reparameterised) actions
        u, log_prob, mean_u = self.policy(batch.obs)
        q1_pi, q2_pi = self.critic.heads(features.detach(), u) if reuse else self.critic(batch.obs, u)
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        # SACfD: stay close to the expert's action where the sample is a demonstration
        if batch.is_expert.any() and cfg.sacfd_weight > 0:
            pulled = mean_u if cfg.sacfd_target == "mean" else u
            bound = cfg.sacfd_action_bound
            sacfd_loss = F.mse_loss(pulled[batch.is_expert], batch.action[batch.is_expert].clamp(-bound, bound))
        else:
            sacfd_loss = torch.zeros((), device=self.device)
        actor_total = actor_loss + cfg.sacfd_weight * sacfd_loss
        actor_penalty = relaxation_penalty(self.actor)
        if actor_penalty is not None:
            actor_total = actor_total + actor_penalty
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_total.backward()
        self.actor_optimizer.step()
        # (the critic's gradients from this step are discarded: zero_grad before its next step)
        if self.actor_average is not None:
            _polyak(self.actor_average, self.actor, cfg.actor_average)

        # --- temperature: keep the policy's entropy near the target
        alpha_loss = -(self.log_alpha * (log_prob.detach() + cfg.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        # --- target critic: Polyak averaging
        _polyak(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "sacfd_loss": sacfd_loss.item(),
                "alpha": self.alpha.item(), "entropy": -log_prob.mean().item(), "q": q1.mean().item(),
                "td_errors": td_errors}

    # ---------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict:
        average = {} if self.actor_average is None else {"actor_average": self.actor_average.state_dict()}
        return {"actor": self.actor.state_dict(), **average, "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().cpu(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "alpha_optimizer": self.alpha_optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        if self.actor_average is not None:
            self.actor_average.load_state_dict(state["actor_average"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].to(self.device))
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.updates = int(state["updates"])


# ------------------------------------------------------------------------------------ logging


class RunLog:
    """CSV files in the run directory (``train.csv`` every ``log_every`` steps, ``eval.csv`` at
    every evaluation) and TensorBoard scalars when ``tensorboard`` is installed. Appends, so a
    resumed run continues the same files."""

    def __init__(self, out: Path):
        self.out = out
        self._writers: dict[str, tuple] = {}
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        except ImportError:           # tensorboard is optional
            self.tensorboard = None

    def write(self, name: str, row: dict) -> None:
        if name not in self._writers:
            path = self.out / f"{name}.csv"
            new = not path.exists() or path.stat().st_size == 0
            handle = path.open("a", newline="")
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            self._writers[name] = (handle, writer)
        handle, writer = self._writers[name]
        writer.writerow(row)
        handle.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{name}/{key}", value, row["step"])

    def close(self) -> None:
        for handle, _ in self._writers.values():
            handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _percent(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0%}"


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def plot_learning_curve(out: Path, title: str) -> Path:
    """``learning_curve.png`` from the run's CSV logs: evaluation and training success against
    environment steps, and the losses and temperature."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows, eval_rows = read_csv(out / "train.csv"), read_csv(out / "eval.csv")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if eval_rows:
        top.plot([r["step"] for r in eval_rows], [r["success_rate"] for r in eval_rows], "o-",
                 label=f"evaluation ({int(eval_rows[-1]['episodes'])} held-out validation episodes)")
    if train_rows:
        top.plot([r["step"] for r in train_rows], [r["train_success"] for r in train_rows], alpha=0.6,
                 label="training episodes (last 20)")
        steps = [r["step"] for r in train_rows]
        bottom.plot(steps, [r["critic_loss"] for r in train_rows], label="critic loss")
        bottom.plot(steps, [r["actor_loss"] for r in train_rows], label="actor loss")
        bottom.plot(steps, [r["alpha"] for r in train_rows], label="alpha")
        bottom.set_yscale("symlog", linthresh=1e-2)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("success rate")
    top.set_title(title)
    if eval_rows or train_rows:
        top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_xlabel("environment steps")
    if train_rows:
        bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "learning_curve.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ training


@dataclass
class Progress:
    """Counters that a resumed run continues from."""

    step: int = 0
    episodes: int = 0
    next_episode_seed: int = 0
    best_success: float = -1.0
    best_step: int = 0
    wall_s: float = 0.0
    recent_success: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)    # (step, success_rate)
    update_credit: float = 0.0      # updates owed by the steps taken (updates_per_step below 1)


def build_networks(config: SACConfig):
    """Actor and critic of the run's NetworkConfig (``equimanip.models``)."""
    from equimanip.models import make_actor, make_critic

    net = config.network_config()
    return make_actor(net), make_critic(net)


def train(config: SACConfig, out: Path, resume: bool = False, progress: bool = True, networks=None,
          command: str = "") -> dict:
    """Run SAC as configured, writing everything into ``out``; returns the summary (the JSON line).

    ``resume``: continue the run in ``out`` from its last checkpoint and replay buffer.
    ``networks``: an (actor, critic) pair to use instead of ``build_networks(config)``."""
    from tqdm import tqdm

    from equimanip import checkpoint
    from equimanip.envs import ManipulationGymEnv, make_vector_env
    from equimanip.envs.demos import collect_demonstrations

    command_start = time.perf_counter()
    # The revision is asked once per process: asked now, the checkpoints and the results row name
    # the tree this run started from, not a commit made while it trained.
    checkpoint.git_revision()
    config.validate()
    if config.network_settings is None:
        config = dataclasses.replace(config, network_settings=config.network_config().to_dict())
    torch.set_num_threads(config.threads)
    device = config.resolved_device()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train_seed, demo_seed = training_seeds(config.seed)
    if config.demos_from_seed is not None:
        demo_seed = training_seeds(config.demos_from_seed)[1]

    actor, critic = networks if networks is not None else build_networks(config)
    net_config = config.network_config()
    learner = SAC(actor, critic, config, device, (net_config.log_std_min, net_config.log_std_max))
    state = Progress(next_episode_seed=train_seed)
    obs_shape = (net_config.in_channels, net_config.heightmap_size, net_config.heightmap_size)
    max_steps_per_episode = config.max_episode_steps or 100
    capacity = min(config.buffer_size // (1 + config.augment_copies) + 1,
                   config.steps + config.num_envs + config.demos * max_steps_per_episode)
    buffer = ReplayBuffer(capacity, obs_shape, copies=config.augment_copies, prioritized=config.prioritized,
                          alpha=config.per_alpha, eps=config.per_eps, expert_bonus=config.per_expert_bonus,
                          seed=config.seed)

    if resume:
        state = _load_training_state(out, learner, buffer, config)
        print(f"resuming {out} at step {state.step} ({len(buffer)} buffer items)", flush=True)
    else:
        for stale in ("train.csv", "eval.csv"):
            (out / stale).unlink(missing_ok=True)
        demo_env = ManipulationGymEnv(config.task, **config.env_options())
        demos = collect_demonstrations(demo_env, config.demos, demo_seed, progress=progress)
        demo_env.close()
        for demo in demos:
            for obs, action, reward, next_obs, terminated, _ in demo.transitions():
                buffer.add(obs, normalize_action(action), reward, next_obs, terminated, is_expert=True)
        seeds = f" (episode seeds {demos[0].episode_seed} .. {demos[-1].episode_seed})" if demos else ""
        print(f"{len(demos)} expert demonstrations{seeds}, {sum(len(d) for d in demos)} transitions "
              f"({len(buffer)} buffer items with the rotated copies)", flush=True)
        state.wall_s += pretrain(learner, buffer, config, device, progress)   # counted in the run's time

    log = RunLog(out)
    envs = make_vector_env(config.task, config.num_envs, asynchronous=config.async_envs, **config.env_options())
    eval_env = None
    try:
        eval_env = ManipulationGymEnv(config.task, **config.env_options())
        obs, _ = envs.reset(seed=state.next_episode_seed)
        recent = deque(state.recent_success, maxlen=20)
        stats_window: list[dict] = []
        last_eval = state.evaluations[-1][1] if state.evaluations else float("nan")

        def evaluate_now(episodes: int, env, seed: int = EVAL_SEED_BASE, act=None) -> tuple[float, EvalResult]:
            """The deterministic policy (the learner's, or ``act``) on ``episodes`` scenes from ``seed``:
            the validation scenes for the periodic evaluations, the test scenes for the final ones."""
            act = act or (lambda o: unnormalize_action(learner.act(o.heightmap[None], True, learner.policy_actor)[0]))
            result = run_episodes(act, env, episodes, seed=seed)
            return result.success_rate, result

        bar = tqdm(total=config.steps, initial=state.step, desc=f"sac {config.task} {config.group}",
                   disable=not progress, dynamic_ncols=True)
        session_start = time.perf_counter()
        wall_before = state.wall_s
        stopped_by_time = False
        while state.step < config.steps:
            if config.time_limit_min is not None and time.perf_counter() - command_start >= 60 * config.time_limit_min:
                stopped_by_time = True
                tqdm.write(f"time limit of {config.time_limit_min:g} min reached at step {state.step} of "
                           f"{config.steps}: final evaluation")
                break
            # --- act in every environment, store what happened
            u = learner.act(obs)
            next_obs, rewards, terminated, truncated, infos = envs.step(np.stack([unnormalize_action(a) for a in u]))
            for i in range(config.num_envs):
                done = bool(terminated[i] or truncated[i])
                final = infos["final_obs"][i] if done else next_obs[i]
                buffer.add(obs[i], u[i], rewards[i], final, bool(terminated[i]))
                if done:
                    state.episodes += 1
                    recent.append(float(terminated[i]))
            state.next_episode_seed = int(max(envs.get_attr("episode_seed"))) + 1
            obs = next_obs
            state.step += config.num_envs

            # --- learn: updates_per_step updates per environment step
            if len(buffer) >= config.learning_starts:
                state.update_credit += config.num_envs * config.updates_per_step
                while state.update_credit > 1.0 - 1e-9:
                    state.update_credit -= 1.0
                    fraction = min(1.0, state.step / config.steps)
                    beta = config.per_beta_start + fraction * (config.per_beta_end - config.per_beta_start)
                    stats_window.append(learn_step(learner, buffer, config.batch_size, beta, device,
                                                   config.demo_fraction))

            # --- log, evaluate, checkpoint
            state.wall_s = wall_before + time.perf_counter() - session_start
            train_success = float(np.mean(recent)) if recent else float("nan")
            if stats_window and (state.step % config.log_every < config.num_envs or state.step >= config.steps):
                means = {k: float(np.mean([s[k] for s in stats_window])) for k in stats_window[0]}
                log.write("train", {"step": state.step, "episodes": state.episodes, "train_success": train_success,
                                    **means, "buffer_items": len(buffer), "wall_s": round(state.wall_s, 1)})
                bar.set_postfix(success=_percent(train_success), eval=_percent(last_eval),
                                q_loss=f"{means['critic_loss']:.3g}", pi_loss=f"{means['actor_loss']:.3g}",
                                alpha=f"{means['alpha']:.3g}")
                stats_window = []
            if state.step % config.eval_every < config.num_envs or state.step >= config.steps:
                last_eval, result = evaluate_now(config.eval_episodes, eval_env, seed=VALIDATION_SEED_BASE)
                state.evaluations.append((state.step, last_eval))
                log.write("eval", {"step": state.step, "success_rate": last_eval, "episodes": result.episodes,
                                   "mean_steps": result.mean_steps, "eval_s": round(result.wall_s, 1),
                                   "wall_s": round(state.wall_s, 1),
                                   "first_seed": str(result.per_episode[0]["seed"])})   # text: no TensorBoard curve
                if last_eval > state.best_success:
                    state.best_success, state.best_step = last_eval, state.step
                    save_checkpoint(out / "best.pt", learner, config, state, command)
                state.recent_success = list(recent)
                save_checkpoint(out / "last.pt", learner, config, state, command, buffer=buffer)
                tqdm.write(f"step {state.step:6d}  eval success {last_eval:.0%} ({result.episodes} episodes)  "
                           f"training success {_percent(train_success)}  {state.episodes} episodes  "
                           f"{state.wall_s / 60:.1f} min")
            bar.update(config.num_envs)
        bar.close()
    except BaseException:
        # The subprocess workers (async_envs) end with the run, not outlive it: terminated, since a
        # step that failed or was interrupted may still be pending there, and a polite close waits on it.
        # A failure while closing must not hide the one that ended the run.
        with contextlib.suppress(Exception):
            envs.close(terminate=True)
        if eval_env is not None:
            with contextlib.suppress(Exception):
                eval_env.close()
        raise
    envs.close()

    # --- final evaluation of the last policy and the best checkpoint on more held-out episodes
    from equimanip.sim.world import ARM_CONTROL_VERSION

    from .results import git_revision, machine_description, today

    observation_config = config.observation_config()
    summary = {"arm_control": ARM_CONTROL_VERSION,
               "task": config.task, "group": config.group, "relaxed": config.relaxed, "seed": config.seed,
               "steps": state.step, "demos": config.demos, "network": net_config.to_dict(),
               "yaw_sector": list(config.yaw_sector) if config.yaw_sector else None,
               "heightmap_mode": observation_config.heightmap_mode,
               "robot_removal": observation_config.robot_removal,
               "goal_channel": observation_config.goal_channel, "pretrain_steps": config.pretrain_steps,
               "demo_fraction": config.demo_fraction, "demos_from_seed": config.demos_from_seed,
               "sacfd_weight": config.sacfd_weight, "gamma": config.gamma, "prioritized": config.prioritized,
               "num_envs": config.num_envs, "async_envs": config.async_envs,
               "updates_per_step": config.updates_per_step, "updates": learner.updates,
               "sacfd_target": config.sacfd_target, "sacfd_action_bound": config.sacfd_action_bound,
               "actor_average": config.actor_average, "cell_params": list(config.cell_params),
               "best_success": state.best_success, "best_step": state.best_step,
               "stopped_by_time_limit": stopped_by_time}
    if config.final_eval_episodes:
        # The last policy, and the best checkpoint (chosen on the validation scenes) as a user
        # would load it, both on the test scenes.
        best_act = None
        if (out / "best.pt").exists() and state.best_step != state.step:
            from equimanip.checkpoint import load_policy

            best_act = load_policy(out / "best.pt", device=str(device), optimize=False).act

        def last_and_best(env) -> tuple[float, float, EvalResult]:
            """Success of the last policy and of best.pt on ``env``'s test scenes (one figure when
            best.pt is the last policy)."""
            last, result = evaluate_now(config.final_eval_episodes, env)
            best = evaluate_now(config.final_eval_episodes, env, act=best_act)[0] if best_act else last
            return last, best, result

        success, best_checkpoint_success, result = last_and_best(eval_env)
        summary |= {"success": success, "eval_episodes": result.episodes,
                    "best_checkpoint_success": best_checkpoint_success}
        if config.yaw_sector is not None:
            # The symmetry-generalisation test: the same policies on scenes over the whole circle.
            everywhere = ManipulationGymEnv(config.task, **config.env_options(yaw_sector=None))
            summary["success_all_yaw"], summary["best_checkpoint_success_all_yaw"], _ = last_and_best(everywhere)
            everywhere.close()
    eval_env.close()
    state.wall_s = wall_before + time.perf_counter() - session_start
    summary |= {"wall_s": round(state.wall_s, 1), "machine": machine_description(), "date": today(),
                "revision": git_revision(), "command": command, "curve": state.evaluations, "out": str(out),
                "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt")}
    save_checkpoint(out / "last.pt", learner, config, state, command, buffer=buffer, summary=summary)
    log.close()
    plot_learning_curve(out, f"SAC {config.group}{' relaxed' if config.relaxed else ''} on {config.task}, "
                             f"seed {config.seed}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------ saving and resuming

TRAIN_STATE = "train_state.pt"    # optimisers, target critic, temperature, counters, random states
REPLAY = "replay.npz"             # the replay buffer


def save_checkpoint(path: Path, learner: SAC, config: SACConfig, state: Progress, command: str,
                    buffer: ReplayBuffer | None = None, summary: dict | None = None) -> None:
    """The policy checkpoint at ``path`` (``equimanip.checkpoint``, kind 'sac': what ``load_policy``,
    ``equimanip eval`` and the policy node read); with ``buffer``, also everything a resumed run
    needs (``train_state.pt`` and ``replay.npz`` beside it)."""
    from equimanip.checkpoint import save_checkpoint as save_policy

    metadata = {"sac_config": asdict(config), "step": state.step, "best_success": state.best_success,
                "best_step": state.best_step, "evaluations": state.evaluations,
                "max_episode_steps": config.max_episode_steps, "cell_params": list(config.cell_params)}
    if summary is not None:
        metadata["summary"] = {k: v for k, v in summary.items() if k != "curve"}
    save_policy(path, kind="sac", actor=learner.policy_actor, critic=learner.critic,
                network_config=config.network_config(), observation_config=config.observation_config(),
                task=config.task, command=command, metadata=metadata)
    if buffer is not None:
        out = path.parent
        torch.save({"learner": learner.state_dict(), "config": asdict(config), "progress": asdict(state),
                    "torch_rng": torch.get_rng_state()}, out / (TRAIN_STATE + ".tmp"))
        (out / (TRAIN_STATE + ".tmp")).replace(out / TRAIN_STATE)
        buffer.save(out / (REPLAY + ".tmp.npz"))
        (out / (REPLAY + ".tmp.npz")).replace(out / REPLAY)


def load_run_config(out: Path) -> SACConfig:
    """The configuration a run in ``out`` was started with."""
    path = out / TRAIN_STATE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: nothing to resume in {out}")
    saved = torch.load(path, map_location="cpu", weights_only=False)["config"]
    saved.setdefault("reuse_critic_features", False)     # runs from before the option recomputed
    if saved.get("yaw_sector") is not None:
        saved["yaw_sector"] = tuple(saved["yaw_sector"])
    saved["cell_params"] = tuple(saved.get("cell_params", ()))
    return SACConfig(**saved)


def _load_training_state(out: Path, learner: SAC, buffer: ReplayBuffer, config: SACConfig) -> Progress:
    saved = torch.load(out / TRAIN_STATE, map_location=learner.device, weights_only=False)
    learner.load_state_dict(saved["learner"])
    torch.set_rng_state(saved["torch_rng"].cpu())   # loaded onto the learner's device with the rest
    buffer.load(out / REPLAY)
    progress = Progress(**saved["progress"])
    progress.evaluations = [tuple(e) for e in progress.evaluations]
    # Logged rows past the checkpoint describe steps that are now redone: drop them.
    # The kept rows are written back as they were read, text for text (a seed stays an integer).
    for name in ("train", "eval"):
        path = out / f"{name}.csv"
        if not path.exists():
            continue
        with path.open() as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, [r for r in reader if float(r["step"]) <= progress.step]
        if rows:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
    return progress


def learn_step(learner: "SAC", buffer: ReplayBuffer, batch_size: int, beta: float, device: str,
               demo_fraction: float = 0.0) -> dict:
    """One SAC update on a batch sampled from ``buffer`` (``demo_fraction`` of it from the
    demonstrations), whose priorities it then updates; the update's statistics."""
    batch = buffer.sample(batch_size, beta=beta, device=device, expert_fraction=demo_fraction)
    stats = learner.update(batch)
    buffer.update_priorities(batch.indices, stats.pop("td_errors"))
    return stats


def pretrain(learner: "SAC", buffer: ReplayBuffer, config: SACConfig, device: str, progress: bool) -> float:
    """``config.pretrain_steps`` SAC updates on the buffer while it holds only demonstrations;
    returns the seconds they took."""
    from tqdm import tqdm

    if not config.pretrain_steps:
        return 0.0
    started = time.perf_counter()
    losses = []
    for _ in tqdm(range(config.pretrain_steps), desc="pre-training on the demonstrations", disable=not progress,
                  leave=False):
        losses.append(learn_step(learner, buffer, config.batch_size, config.per_beta_start, device)["sacfd_loss"])
    print(f"pre-trained on the demonstrations: {config.pretrain_steps} updates in "
          f"{time.perf_counter() - started:.0f} s, SACfD loss {np.mean(losses[:50]):.3g} -> "
          f"{np.mean(losses[-50:]):.3g}", flush=True)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------ the command


def _at_least_one(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from equimanip.models.config import SO2_NONLINEARITIES, TOPS, NetworkConfig

    d, net = SACConfig(), NetworkConfig()
    parser = argparse.ArgumentParser(prog="equimanip train sac", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run directory (logs, checkpoints, plot)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (its configuration; "
                             "--steps may raise the budget)")
    parser.add_argument("--task", default=d.task)
    parser.add_argument("--group", default=d.group, help="c4 c8 c16 d4 d8 so2, or none (plain CNN)")
    parser.add_argument("--relaxed", action="store_true", help="approximately equivariant (relaxed) convolutions")
    parser.add_argument("--network", default=d.network, choices=["cpu", "paper", "auto"],
                        help="network preset: cpu (64 x 64, narrow), paper (equi_rl's), auto (paper on a GPU)")
    parser.add_argument("--n-hidden", type=int, default=None, help="override the preset's width")
    parser.add_argument("--heightmap-size", type=int, default=None, help="override the preset's heightmap size")
    parser.add_argument("--top", choices=TOPS, default=None,
                        help="override the preset's encoder top: compact (the cpu preset's, 4 x 4 to 1 x 1) or "
                             "paper (equi_rl's, 8 x 8 to 1 x 1)")
    parser.add_argument("--relaxed-strength", type=non_negative_argument, default=None, metavar="S",
                        help=f"strength of the relaxed networks' regulariser toward equivariance (default "
                             f"{net.relaxed_strength:g}; 0: none; with --relaxed)")
    parser.add_argument("--relaxed-banks", type=_at_least_one, default=None, metavar="K",
                        help=f"kernel banks per relaxed convolution (default {net.relaxed_banks}; with --relaxed)")
    parser.add_argument("--so2-nonlinearity", choices=SO2_NONLINEARITIES, default=None,
                        help=f"nonlinearity of the SO(2) networks' hidden fields (default {net.so2_nonlinearity}; "
                             "with --group so2)")
    parser.add_argument("--center-inputs", action="store_true",
                        help="centre and scale the heightmap channels to about -1..1 before the first convolution "
                             "(NetworkConfig.center_inputs)")
    parser.add_argument("--demos", type=int, default=d.demos, help="expert episodes pre-loaded (successful ones)")
    parser.add_argument("--steps", type=int, default=None, help=f"environment steps (default {d.steps})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"run seed, 0 .. 999 (evaluation seeds are "
                                                                  f"{EVAL_SEED_BASE} and up)")
    parser.add_argument("--max-episode-steps", type=int, default=d.max_episode_steps,
                        help="episode step limit in training and evaluation (0: the task's own)")
    parser.add_argument("--yaw-sector", type=float, nargs=2, default=None, metavar=("START", "WIDTH"),
                        help="train (and evaluate) only on scenes whose scene yaw lies in [START, START + WIDTH) "
                             "degrees; the final evaluation is repeated over the whole circle")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="the cell's parameter file (a path or a name in config/, e.g. side_camera), as "
                             "`equimanip run --params` takes it: train with its camera (default: the default "
                             "simulated camera); repeatable, later files win")
    parser.add_argument("--goal-channel", choices=["auto", "on", "off"], default="auto",
                        help="the task's goal on the table as a heightmap channel (auto: on for the tasks "
                             "with one, block_pushing)")
    parser.add_argument("--pretrain-steps", type=int, default=d.pretrain_steps,
                        help="SAC updates on the demonstrations before the first environment step (equi_rl's "
                             "pre_train_step)")
    parser.add_argument("--demo-fraction", type=float, default=d.demo_fraction,
                        help="fraction of every batch drawn from the demonstrations (0: uniform over the "
                             "buffer, as equi_rl)")
    parser.add_argument("--demos-from-seed", type=int, default=None, metavar="SEED",
                        help="collect the demonstrations run seed SEED would (default: this run's own), to tell "
                             "a run's demonstrations from the rest of its randomness")
    parser.add_argument("--sacfd-weight", type=float, default=d.sacfd_weight,
                        help="weight of the SACfD term (the actor's L2 toward the expert's actions; 0: plain SAC)")
    parser.add_argument("--sacfd-target", choices=["mean", "sample"], default=d.sacfd_target,
                        help="what the SACfD term pulls toward the expert: the policy's mean (equi_rl's "
                             "sacfd_mean) or its sample (equi_rl's sacfd)")
    parser.add_argument("--sacfd-action-bound", type=float, default=d.sacfd_action_bound, metavar="B",
                        help="clamp the expert's normalised actions to [-B, B] as SACfD targets (1: unclamped, "
                             "as equi_rl)")
    parser.add_argument("--actor-average", type=float, default=d.actor_average, metavar="RATE",
                        help="evaluate and save a moving average of the actor's weights, moved RATE of the way "
                             "after every update (e.g. 0.01; 0: the actor itself, as equi_rl)")
    parser.add_argument("--prioritized", action="store_true", help="prioritized replay (alpha 0.6, beta 0.4 -> 1)")
    parser.add_argument("--recompute-critic-features", action="store_true",
                        help="run the critic's encoder again for the actor's loss (equi_rl; about 30%% slower)")
    parser.add_argument("--augment-copies", type=int, default=d.augment_copies)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--learning-starts", type=int, default=d.learning_starts,
                        help="buffer items (copies included) before the first update")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--gamma", type=float, default=d.gamma, help="discount (equi_rl: 0.99)")
    parser.add_argument("--num-envs", type=int, default=d.num_envs, help="environments stepped in parallel")
    parser.add_argument("--async-envs", action="store_true",
                        help="step the --num-envs environments in subprocesses, one simulation each (Gymnasium's "
                             "AsyncVectorEnv; the same episodes, faster with cores to spare; needs --num-envs > 1)")
    parser.add_argument("--updates-per-step", type=float, default=d.updates_per_step,
                        help="SAC updates per environment step; 0.2 with --num-envs 5 is equi_rl's one update "
                             "per 5 transitions")
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    parser.add_argument("--final-eval-episodes", type=int, default=d.final_eval_episodes)
    parser.add_argument("--log-every", type=int, default=d.log_every, help="steps between train.csv rows")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"],
                        help=f"where the networks learn (default {d.device}); with --resume, where the run "
                             "goes on (a run started on a GPU can continue on a CPU, and the other way)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default {d.threads}: see the module docstring); with "
                             "--resume, the continued run's")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                        help="stop taking steps MIN minutes after this command started, then evaluate and "
                             "write everything as for a finished run (the steps reached are recorded)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line (the run's summary)")
    return parser


def config_from_args(args) -> SACConfig:
    return SACConfig(task=args.task, group=args.group, relaxed=args.relaxed, center_inputs=args.center_inputs,
                     network=args.network, top=args.top, relaxed_strength=args.relaxed_strength,
                     relaxed_banks=args.relaxed_banks, so2_nonlinearity=args.so2_nonlinearity,
                     n_hidden=args.n_hidden, heightmap_size=args.heightmap_size, demos=args.demos,
                     steps=args.steps if args.steps is not None else SACConfig.steps,
                     seed=args.seed, max_episode_steps=args.max_episode_steps or None,
                     yaw_sector=tuple(args.yaw_sector) if args.yaw_sector else None, prioritized=args.prioritized,
                     goal_channel={"auto": None, "on": True, "off": False}[args.goal_channel],
                     cell_params=tuple(args.params),
                     pretrain_steps=args.pretrain_steps, demo_fraction=args.demo_fraction,
                     demos_from_seed=args.demos_from_seed, sacfd_weight=args.sacfd_weight,
                     sacfd_target=args.sacfd_target, sacfd_action_bound=args.sacfd_action_bound,
                     actor_average=args.actor_average,
                     reuse_critic_features=not args.recompute_critic_features,
                     augment_copies=args.augment_copies, batch_size=args.batch_size,
                     learning_starts=args.learning_starts, lr=args.lr, gamma=args.gamma,
                     num_envs=args.num_envs, async_envs=args.async_envs, updates_per_step=args.updates_per_step,
                     eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                     final_eval_episodes=args.final_eval_episodes, log_every=args.log_every,
                     device=SACConfig.device if args.device is None else args.device,
                     threads=SACConfig.threads if args.threads is None else args.threads,
                     time_limit_min=args.time_limit)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = "equimanip train sac " + " ".join(argv)
    try:
        if args.resume:
            config = load_run_config(args.out)
            if args.steps is not None:
                config = dataclasses.replace(config, steps=args.steps)
            # A resumed run gets this command's limit, not the one it was started with, and its
            # device and threads where given (a lease ends: the run goes on on the CPU).
            given = {k: v for k, v in (("device", args.device), ("threads", args.threads)) if v is not None}
            if args.async_envs:             # how the environments are stepped, not which episodes
                given["async_envs"] = True
            config = dataclasses.replace(config, time_limit_min=args.time_limit, **given)
        else:
            config = config_from_args(args)
        config.validate()
    except (ValueError, FileNotFoundError) as e:
        print(f"equimanip train sac: {e}", file=sys.stderr)
        return 2
    summary = train(config, args.out, resume=args.resume, progress=not args.json, command=command)
    line = f"{config.task} / {config.group}{' relaxed' if config.relaxed else ''}: "
    if "success" in summary:
        line += f"success {summary['success']:.0%} over {summary['eval_episodes']} held-out episodes, "
    if summary.get("stopped_by_time_limit"):
        line += f"stopped by the time limit at step {summary['steps']} of {config.steps}, "
    line += f"best evaluation {summary['best_success']:.0%} at step {summary['best_step']}"
    if "best_checkpoint_success" in summary:
        line += f" (that checkpoint: {summary['best_checkpoint_success']:.0%} over the held-out episodes)"
    line += f", {summary['wall_s'] / 60:.1f} min; logs and checkpoints in {args.out}"
    print(line)
    if "success_all_yaw" in summary:
        print(f"whole circle: success {summary['success_all_yaw']:.0%} (in the training sector "
              f"{summary['success']:.0%})")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
