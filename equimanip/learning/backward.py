"""Backwards models for BMIL: where could the demonstrator have come from?

Two Gaussian models, as in the reference code (jypark0/bmil, ``src/dynamics/backward.py``):

* the **action model** p(a_t | s_{t+1}): which action led into state s_{t+1};
* the **state model** p(s_t - s_{t+1} | s_{t+1}, a_t): the state before, as a change from the state after.

Each is one MLP (4 hidden layers of 256) with a mean head and a log-variance head; the log-variance
is soft-clamped between learnable bounds (initialised at 0.5 and -10) and the loss per model is
``mean((mu - y)^2 exp(-logvar)) + mean(logvar) + 0.01 (sum max_logvar - sum min_logvar)``. Both
share one Adam (lr 1e-3, weight decay 1e-5, batch 200) and are refit on the demonstrations before
every policy epoch until the held-out (20 %) error stops improving by 1e-3 for 3 epochs.

:meth:`BackwardModels.imagine` walks back from demonstration states: sample a_t from the action
model, sample the change from the state model, s_t = s_{t+1} + change, record (s_t, a_t, s_{t+1}),
continue from s_t. The action's spread follows the reference's "entropy" rule, variance
``scale_coef * (-logvar) * exp(logvar)``.

**Equivariance.** With a group other than ``none`` both means are ``EquivariantMLP`` s (the action
model from the state layout to the action layout, the state model from state + action to the
state layout: a change of state transforms as a state) and every log-variance is *one invariant
number per field*, shared by the field's entries. The noise is then isotropic within each field
and commutes with the group: sampling ``a = mu + sigma * eps`` for a rotated start with the
rotated noise ``g . eps`` gives exactly the rotated sample, so the imagined traces of a rotated
demonstration are the rotated traces (in distribution for any noise; sample by sample with the
noise transformed alike, which is what :meth:`imagine` accepts ``noise`` for and the tests check).

**Imagined actions inside the limits.** The reference clamps only the action model's mean; its
policy's output is squashed by tanh, so samples beyond the limits only saturate it. Our policy's
output is linear (tanh per entry is not rotation-equivariant), and a sample far outside the limits
(the spread early in training, when the models are poor, reaches several times the range) would
pull it towards actions the arm cannot take; ``clip_imagined_actions`` (default) keeps samples in
the limits with the same equivariant clamp as the mean.

**The reference's lower clamp.** Its ``ProbabilisticNet`` computes ``min_logvar - softplus(logvar -
min_logvar)``, which is never above ``min_logvar`` (initialised at -10): the log-variance is about
-10 whatever the input, and the loss weighs every squared error by about e^10. On our few
demonstrations that does not train: after 20 refits on 10 block-picking demonstrations (each
repeated 10 times, as the reference does) the held-out error of both means was 1.0 against 0.09
with the soft clamp ``min_logvar + softplus(...)`` of PETS and MBPO that the reference cites. The
soft clamp is the default; ``logvar_clamp='reference'`` reproduces the original. (With the soft
clamp the log-variances are the real residuals, about -6 for the in-plane step, so the reference's
"entropy" spread ``30 * 6 * e^-6`` is 2.6 times the action range: see ``noise_mode``.)

**The reference's scale.** Its ``dist_fn`` is ``Normal(mu, var)``: the variance is passed where
torch expects a standard deviation. ``noise_scale='variance'`` (default) keeps that behaviour,
which its ``scale_coef`` values were tuned with; ``'std'`` samples with the standard deviation.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from equimanip import symmetry as sym

LOGVAR_MAX_INIT = 0.5
LOGVAR_MIN_INIT = -10.0


@dataclass
class BackwardConfig:
    """The backwards models; defaults are the reference's (conf/dynamics/backward.yaml, Fetch)."""

    hidden: int = 256
    depth: int = 5                   # linear layers: 4 hidden layers of 256, then the heads
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 200
    holdout: float = 0.2             # fraction held out to decide convergence
    improvement: float = 1e-3        # relative held-out improvement that counts
    patience: int = 3                # stop after more than this many epochs without it
    max_fit_epochs: int = 1000       # safety cap on one refit
    bounds_weight: float = 0.01      # weight of the log-variance bounds term
    bound_action: bool = True        # clamp the action model's mean to the action limits (bounded_act)
    clip_imagined_actions: bool = True   # imagined actions inside the limits too (see the module doc)
    noise_mode: str = "entropy"      # 'entropy' (reference) or 'plain' (var = exp(logvar))
    scale_coef: float = 30.0         # entropy spread: pick-and-place 30, push 3
    noise_scale: str = "variance"    # 'variance' (reference: var passed as std) or 'std'
    logvar_clamp: str = "soft"       # "soft": min + softplus(x - min); "reference": min - softplus(x - min)

    def validate(self) -> "BackwardConfig":
        if self.noise_mode not in ("entropy", "plain"):
            raise ValueError(f"noise_mode must be 'entropy' or 'plain', got '{self.noise_mode}'")
        if self.logvar_clamp not in ("soft", "reference"):
            raise ValueError(f"logvar_clamp must be 'soft' or 'reference', got '{self.logvar_clamp}'")
        if self.noise_scale not in ("variance", "std"):
            raise ValueError(f"noise_scale must be 'variance' or 'std', got '{self.noise_scale}'")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        for name in ("hidden", "depth", "batch_size", "max_fit_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0 or self.scale_coef <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("patience >= 0, scale_coef > 0, lr > 0 and weight_decay >= 0 are required")
        if not (self.bounds_weight >= 0 and math.isfinite(self.bounds_weight)):
            raise ValueError(f"bounds_weight must be a finite number >= 0, got {self.bounds_weight}")
        return self


def _field_index(layout: sym.Layout) -> torch.Tensor:
    """For each entry of the layout, the index of its field (entries of a vector share one)."""
    return torch.tensor([i for i, f in enumerate(layout.fields) for _ in range(f.size)])


class GaussianModel(nn.Module):
    """x -> (mean, log-variance per entry). One network; its output layout is the mean's layout
    followed by one invariant scalar per field of it (the field's log-variance)."""

    def __init__(self, in_layout: sym.Layout, out_layout: sym.Layout, group: str, hidden: int, depth: int,
                 logvar_clamp: str = "soft"):
        super().__init__()
        from equimanip.models.mlp import EquivariantMLP

        self.out_layout = out_layout
        self.logvar_clamp = logvar_clamp
        n_fields = len(out_layout.fields)
        logvar_fields = tuple(sym.scalar(f"logvar{i}") for i in range(n_fields))
        self.net = EquivariantMLP(in_layout, sym.Layout(out_layout.fields + logvar_fields), group=group,
                                  hidden=hidden, depth=depth)
        self.register_buffer("field_of_entry", _field_index(out_layout), persistent=False)
        self.max_logvar = nn.Parameter(torch.full((n_fields,), LOGVAR_MAX_INIT))
        self.min_logvar = nn.Parameter(torch.full((n_fields,), LOGVAR_MIN_INIT))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        mean, logvar = out[:, :self.out_layout.size], out[:, self.out_layout.size:]
        # Soft clamp between the learnt bounds (differentiable, so the bounds learn too).
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        if self.logvar_clamp == "soft":
            logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        else:   # the reference's sign: the result never rises above min_logvar (see the module doc)
            logvar = self.min_logvar - F.softplus(logvar - self.min_logvar)
        return mean, logvar[:, self.field_of_entry]

    def bounds_term(self) -> torch.Tensor:
        return self.max_logvar.sum() - self.min_logvar.sum()


def gaussian_loss(model: GaussianModel, mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor,
                  bounds_weight: float) -> torch.Tensor:
    return (torch.mean((mean - target) ** 2 * torch.exp(-logvar)) + torch.mean(logvar)
            + bounds_weight * model.bounds_term())


def bound_normalised_action(action: torch.Tensor, group: str, layout: sym.Layout = sym.ACTION_LAYOUT) -> torch.Tensor:
    """Actions kept inside the normalised limits [-1, 1]: per entry for the plain model, as the
    reference clamps; for an equivariant model each vector field (the in-plane step) is shortened
    to length sqrt 2 (the box's corner) instead, a clamp that commutes with rotations, and the
    other entries per entry (their limits are invariant)."""
    clamped = action.clamp(-1.0, 1.0)
    if group == "none":
        return clamped
    parts, start = [], 0
    for f in layout.fields:
        piece = action[:, start:start + f.size]
        if f.kind == "vector":
            norm = piece.norm(dim=1, keepdim=True).clamp_min(1e-12)
            parts.append(piece * torch.clamp(math.sqrt(2.0) / norm, max=1.0))
        else:
            parts.append(clamped[:, start:start + f.size])
        start += f.size
    return torch.cat(parts, dim=1)


@dataclass
class Traces:
    """Imagined transitions, [length, starts, ...]: step 0 ends at the demonstration states."""

    states: torch.Tensor        # s_t
    actions: torch.Tensor       # a_t (normalised)
    next_states: torch.Tensor   # s_{t+1}

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        D, A = self.states.shape[-1], self.actions.shape[-1]
        return self.states.reshape(-1, D), self.actions.reshape(-1, A), self.next_states.reshape(-1, D)


class BackwardModels(nn.Module):
    """The action and state models, their shared optimiser, refitting and imagining."""

    def __init__(self, state_layout: sym.Layout, action_layout: sym.Layout, group: str = "none",
                 config: Optional[BackwardConfig] = None):
        super().__init__()
        self.config = (config or BackwardConfig()).validate()
        self.group = group
        self.state_layout, self.action_layout = state_layout, action_layout
        c = self.config
        self.action_model = GaussianModel(state_layout, action_layout, group, c.hidden, c.depth, c.logvar_clamp)
        self.state_model = GaussianModel(sym.Layout(state_layout.fields + action_layout.fields), state_layout,
                                         group, c.hidden, c.depth, c.logvar_clamp)
        self.optimiser = torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    # ---------------------------------------------------------------------------------- fitting
    def predict_action(self, next_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.action_model(next_states)
        if self.config.bound_action:
            mean = bound_normalised_action(mean, self.group, self.action_layout)
        return mean, logvar

    def predict_change(self, next_states: torch.Tensor, actions: torch.Tensor):
        return self.state_model(torch.cat([next_states, actions], dim=1))

    def loss(self, states, actions, next_states) -> torch.Tensor:
        c = self.config
        a_mean, a_logvar = self.predict_action(next_states)
        s_mean, s_logvar = self.predict_change(next_states, actions)
        return (gaussian_loss(self.action_model, a_mean, a_logvar, actions, c.bounds_weight)
                + gaussian_loss(self.state_model, s_mean, s_logvar, states - next_states, c.bounds_weight))

    @torch.no_grad()
    def heldout_error(self, states, actions, next_states) -> float:
        """Plain mean squared error of both means (what decides convergence)."""
        a_mean, _ = self.predict_action(next_states)
        s_mean, _ = self.predict_change(next_states, actions)
        return float(torch.mean((a_mean - actions) ** 2) + torch.mean((s_mean - (states - next_states)) ** 2))

    def fit(self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor,
            generator: Optional[torch.Generator] = None) -> dict:
        """Train on the transitions until the held-out error stops improving (not reinitialised:
        each call continues from the last fit). Returns {epochs, steps, train_loss, heldout}."""
        c = self.config
        n = len(states)
        order = torch.randperm(n, generator=generator)
        n_train = max(1, min(n - 1, int(round(n * (1 - c.holdout))))) if n > 1 else 1
        train, test = order[:n_train], order[n_train:] if n > 1 else order
        best, since, steps, epoch, losses = math.inf, 0, 0, 0, []
        self.train()
        for epoch in itertools.count(1):
            perm = train[torch.randperm(len(train), generator=generator)]
            batches = list(perm.split(c.batch_size))
            if len(batches) > 1 and len(batches[-1]) < c.batch_size:   # merge the short last batch
                last = batches.pop()
                batches[-1] = torch.cat([batches[-1], last])
            for idx in batches:
                loss = self.loss(states[idx], actions[idx], next_states[idx])
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
                losses.append(loss.item())
                steps += 1
            error = self.heldout_error(states[test], actions[test], next_states[test])
            if best == math.inf or (best - error) / max(abs(best), 1e-12) > c.improvement:
                best, since = error, 0
            else:
                since += 1
            if since > c.patience or epoch >= c.max_fit_epochs:
                break
        self.eval()
        return {"epochs": epoch, "steps": steps, "train_loss": float(losses[-1]), "heldout": best}

    # ---------------------------------------------------------------------------------- imagining
    def _action_spread(self, logvar: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.noise_mode == "entropy":
            var = torch.clamp(c.scale_coef * (-logvar) * torch.exp(logvar), min=1e-12)
        else:
            var = torch.exp(logvar)
        return var if c.noise_scale == "variance" else torch.sqrt(var)

    def _state_spread(self, logvar: torch.Tensor) -> torch.Tensor:
        var = torch.exp(logvar)
        return var if self.config.noise_scale == "variance" else torch.sqrt(var)

    @torch.no_grad()
    def imagine(self, starts: torch.Tensor, length: int, generator: Optional[torch.Generator] = None,
                noise: Optional[list] = None) -> Traces:
        """Traces of ``length`` steps back from each start state. ``noise``: optional list of
        ``(action_noise [N, A], state_noise [N, D])`` per step (standard normal draws), else drawn
        from ``generator``."""
        if length < 1:
            raise ValueError(f"trace length must be >= 1, got {length}")
        self.eval()
        states, actions, nexts = [], [], []
        current = starts
        for t in range(length):
            if noise is not None:
                eps_a, eps_s = noise[t]
            else:
                eps_a = torch.randn(current.shape[0], self.action_layout.size, generator=generator)
                eps_s = torch.randn(current.shape, generator=generator)
            a_mean, a_logvar = self.predict_action(current)
            action = a_mean + self._action_spread(a_logvar) * eps_a
            if self.config.clip_imagined_actions:
                action = bound_normalised_action(action, self.group, self.action_layout)
            s_mean, s_logvar = self.predict_change(current, action)
            previous = current + s_mean + self._state_spread(s_logvar) * eps_s
            states.append(previous)
            actions.append(action)
            nexts.append(current)
            current = previous
        return Traces(torch.stack(states), torch.stack(actions), torch.stack(nexts))


def trace_length(epoch: int, epochs: tuple[int, int], lengths: tuple[int, int]) -> int:
    """The reference's ``threshold_linear_fn``: the length grows linearly from ``lengths[0]`` at
    epoch ``epochs[0]`` to ``lengths[1]`` at ``epochs[1]``, rounded down, clamped to the range.
    (With epochs counted from 0 to n - 1 and the schedule (1, n), the last length is reached only
    at epoch n, i.e. never: pick-and-place's 1 -> 3 runs 1 and 2. We keep that arithmetic.)"""
    e0, e1 = epochs
    if e1 == e0:                     # a step: the first length before that epoch, the last from it on
        return lengths[1] if epoch >= e0 else lengths[0]
    frac = (epoch - e0) / (e1 - e0)
    value = lengths[0] + frac * (lengths[1] - lengths[0])
    return int(min(max(value, lengths[0]), lengths[1]))
