"""Model predictive path integral control (MPPI), batched in PyTorch, with symmetric sampling.

One planning cycle (Williams et al. 2017, "Information theoretic MPC"):

1. Draw perturbations: white or time-correlated Gaussian noise, ``(T, N, nu)``.
2. Symmetric sampling (``group`` other than ``none``): transform every perturbation by every element
   g of the planar group, N -> N |G| = K sequences (REFERENCES.md section 4).
3. Centre them: most around the previous plan shifted by one step (the warm start), a share around
   the rest action (zero motion), which lets the planner drop a plan that has gone stale. With
   ``include_nominal`` the first perturbation of each share is zero, so the previous plan and the
   rest sequence are themselves candidates.
4. Project onto the action bounds, roll every sequence through the dynamics (the only loop, over
   the horizon), add up the costs.
5. Average the sequences with weights ``softmax(-cost / lambda)``: that is the new plan; its first
   action is the command.

Why the plan is equivariant, exactly: a sequence is ``centre + rho(h) eps`` and the set
``{rho(h) eps : h in G}`` is closed under G. If the state is transformed by g and the previous plan
with it (which holds by induction from a reset, since the rest action is invariant), the candidates
at ``g.s`` are ``rho(g)`` times the candidates at ``s``, in another order. The bounds commute with g
(:meth:`ActionBounds.check_invariant`), the dynamics are equivariant and the cost invariant, so each
candidate keeps its cost and weight, and the weighted average is ``rho(g)`` times the old one. The
control-cost term ``lambda U^T Sigma^-1 eps`` is invariant because Sigma is (equal spread on both
entries of a vector, checked). This needs the same random draw: give both planners the same seed.

Callables (the pytorch-mppi convention, so existing models plug in):

* ``dynamics(state (K, nx), action (K, nu)) -> next state (K, nx)``;
* ``running_cost(state (M, nx), action (M, nu)) -> (M,)``, the state being the one *after* the
  action. It is called on several steps at once (M = K x steps, see ``MPPI.evaluate``), so it
  must treat rows independently (a step-dependent cost belongs in ``trajectory_cost``);
* ``terminal_cost(state (K, nx)) -> (K,)`` on the last state;
* ``trajectory_cost(states (K, T + 1, nx), actions (K, T, nu)) -> (K,)`` on whole rollouts,
  ``states[:, 0]`` being the current state: for costs that look at consecutive steps (smoothness,
  swept volumes).

With ``compile`` the callables are traced into the compiled cycle: keep what changes from cycle to
cycle (a goal, an obstacle field) in tensors. torch.compile takes a Python number it reads as a
constant, so a new value would compile the cycle again (``EndEffectorCost.goal_yaw`` is stored in a
tensor for this reason).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional

import numpy as np
import torch

from equimanip.action import ACTION_HIGH, ACTION_LOW, MAX_STEP_M, MAX_STEP_YAW
from equimanip.planning.sampling import ActionBounds, ar1_matrix, finite_group, orbit_matrix, representation_matrices
from equimanip.symmetry import Layout

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RunningCost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TerminalCost = Callable[[torch.Tensor], torch.Tensor]
TrajectoryCost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Rows (sample-steps) per running-cost call; see MPPI.evaluate.
COST_ROWS = 16384
# torch.compile options of MPPIConfig.compile: inductor's C++ wrapper calls the compiled kernels
# without a Python wrapper in between (about 10 % of a cycle at K = 1000, T = 20 on a CPU).
COMPILE_OPTIONS = {"cpp_wrapper": True}


@dataclass
class MPPIConfig:
    """Every setting of the planner. Actions have ``len(action_low)`` entries."""

    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    noise_sigma: tuple[float, ...]       # standard deviation of each action entry's perturbation
    num_samples: int = 1000              # K, sequences evaluated per cycle (orbit included)
    horizon: int = 20                    # T, steps per sequence
    temperature: float = 1.0             # lambda: lower follows the best sample more greedily
    noise_correlation: float = 0.0       # AR(1) coefficient over time: 0 white, towards 1 smoother
    vector_norm_max: Optional[float] = None   # length limit of the layout's in-plane vectors (a disc)
    rest_action: Optional[tuple[float, ...]] = None   # "do nothing"; zeros when None
    rest_share: float = 0.1              # share of samples centred on the rest action
    include_nominal: bool = True         # the previous plan and the rest sequence as candidates
    control_cost_scale: float = 1.0      # weight of MPPI's lambda U^T Sigma^-1 eps term (0: off)
    iterations: int = 1                  # optimisation passes per cycle (the later ones not shifted)
    group: str = "none"                  # symmetric sampling: none, c4, c8, c16, d4, d8
    seed: Optional[int] = None           # of the planner's own random generator
    device: str = "cpu"
    compile: bool = False                # torch.compile each cycle after the random draw (docs/mppi.md, Speed)

    @property
    def action_dim(self) -> int:
        return len(self.action_low)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        nu = self.action_dim
        if nu < 1:
            raise ValueError("action_low must have at least one entry")
        for name in ("num_samples", "horizon", "iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("include_nominal", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("action_high", "noise_sigma") + (("rest_action",) if self.rest_action is not None else ()):
            value = getattr(self, name)
            if len(value) != nu:
                raise ValueError(f"{name} has {len(value)} entries, action_low {nu}")
        vectors = {"action_low": self.action_low, "action_high": self.action_high,
                   "noise_sigma": self.noise_sigma, "rest_action": self.rest_action or (0.0,) * nu}
        for name, value in vectors.items():
            if not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} must be finite, got {list(value)}")
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high)):
            raise ValueError(f"action_low {list(self.action_low)} exceeds action_high {list(self.action_high)}")
        if any(s <= 0 for s in self.noise_sigma):
            raise ValueError(f"noise_sigma must be positive, got {list(self.noise_sigma)}")
        rest = self.rest_action or (0.0,) * nu
        if any(not lo <= r <= hi for r, lo, hi in zip(rest, self.action_low, self.action_high)):
            raise ValueError(f"rest_action {list(rest)} is outside the action bounds")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {self.num_samples}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {self.horizon}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature (lambda) must be positive and finite, got {self.temperature}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(f"noise_correlation must be in [0, 1), got {self.noise_correlation}")
        if self.vector_norm_max is not None and not self.vector_norm_max > 0:
            raise ValueError(f"vector_norm_max must be positive, got {self.vector_norm_max}")
        if not 0.0 <= self.rest_share < 1.0:
            raise ValueError(f"rest_share must be in [0, 1), got {self.rest_share}")
        if not self.control_cost_scale >= 0:
            raise ValueError(f"control_cost_scale must be >= 0, got {self.control_cost_scale}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        order = finite_group(self.group).order
        if self.num_samples < 2 * order:
            raise ValueError(f"num_samples {self.num_samples} is too small for group {self.group}: "
                             f"at least 2 base sequences of {order} each are needed")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device '{self.device}': {e}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device '{self.device}': no GPU is visible to torch here")

    @classmethod
    def for_end_effector(cls, **changes) -> "MPPIConfig":
        """Settings for actions ``[p, dx, dy, dz, dyaw]`` (``equimanip.action``) with the kinematic
        end-effector model: the action limits, the in-plane step limited to a disc of MAX_STEP_M (so
        that every planar group keeps it; the simulation's per-axis clip never bites inside it), an
        open gripper holding still as the rest action, and no control cost (with a share of samples
        around the rest action, MPPI's importance-sampling term would favour those). Temperature,
        sigma and horizon were chosen by trial on reaching a point 25 cm away with the kinematic
        model; the reach experiments are where they get tuned. ``changes`` override any setting."""
        base = cls(action_low=tuple(float(v) for v in ACTION_LOW),
                   action_high=tuple(float(v) for v in ACTION_HIGH),
                   noise_sigma=(0.3, 0.3 * MAX_STEP_M, 0.3 * MAX_STEP_M, 0.3 * MAX_STEP_M, 0.3 * MAX_STEP_YAW),
                   vector_norm_max=MAX_STEP_M, rest_action=(1.0, 0.0, 0.0, 0.0, 0.0),
                   num_samples=1000, horizon=15, temperature=0.3, control_cost_scale=0.0)
        return base.replace(**changes)

    def replace(self, **changes) -> "MPPIConfig":
        """A validated copy with some settings changed (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown MPPI setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        new = MPPIConfig(**{**values, **changes})
        new.validate()
        return new


class Plan:
    """The result of one planning cycle: the optimised sequence and, computed when asked, how the
    samples scored (so that a caller who only wants the action pays nothing for statistics)."""

    def __init__(self, actions: torch.Tensor, weights: torch.Tensor, costs: torch.Tensor):
        self.actions = actions        # (T, nu); actions[0] is the command
        self.weights = weights        # (K,) softmax weights of the samples
        self.costs = costs            # (K,) task cost of each sample (dynamics + cost callables)

    @property
    def action(self) -> torch.Tensor:
        return self.actions[0]

    @property
    def samples(self) -> int:
        return int(self.costs.shape[0])

    @property
    def best_cost(self) -> float:
        return float(self.costs.min())

    @property
    def cost(self) -> float:
        """Weighted mean task cost of the samples (samples of infinite cost have zero weight)."""
        finite = torch.isfinite(self.costs)
        return float(self.weights[finite] @ self.costs[finite])

    @property
    def effective_samples(self) -> float:
        """1 / sum(w^2): about how many samples really shaped the plan (1 = greedy, K = uniform)."""
        return float(1.0 / (self.weights * self.weights).sum())


class MPPI:
    """Batched MPPI over plain callables; see the module docstring. ``action_layout`` (an
    :class:`equimanip.symmetry.Layout`) says how the action transforms, needed for symmetric sampling
    and for ``vector_norm_max``."""

    def __init__(self, dynamics: Dynamics, config: MPPIConfig, running_cost: Optional[RunningCost] = None,
                 terminal_cost: Optional[TerminalCost] = None, trajectory_cost: Optional[TrajectoryCost] = None,
                 action_layout: Optional[Layout] = None):
        if running_cost is None and terminal_cost is None and trajectory_cost is None:
            raise ValueError("MPPI needs a cost: running_cost, terminal_cost or trajectory_cost")
        self.dynamics = dynamics
        self.running_cost = running_cost
        self.terminal_cost = terminal_cost
        self.trajectory_cost = trajectory_cost
        self.action_layout = action_layout
        self._apply_config(config)
        self._make_generator()
        self.reset()

    # ------------------------------------------------------------------------------ configuration

    def _checked(self, config: MPPIConfig):
        """(group, bounds, representation matrices) of ``config`` after every check that the
        planner runs on a configuration; ValueError naming the first problem. Changes nothing."""
        config.validate()
        group = finite_group(config.group)
        bounds = ActionBounds(config.action_low, config.action_high, config.vector_norm_max, self.action_layout)
        matrices = representation_matrices(group, self.action_layout, config.action_dim)
        if not group.is_trivial:
            bounds.check_invariant(group)
            _check_invariant_vectors(config, matrices, self.action_layout)
        return group, bounds, matrices

    def _apply_config(self, config: MPPIConfig) -> None:
        """Check ``config`` completely, then (only then) take it over."""
        group, bounds, matrices = self._checked(config)
        nu, T = config.action_dim, config.horizon

        self.config, self.group, self.bounds = config, group, bounds
        self.device, self.dtype = torch.device(config.device), torch.float32
        order = group.order
        self.num_base = config.num_samples // order                  # N perturbations drawn
        self.num_rollouts = self.num_base * order                    # K = N |G| sequences evaluated
        self.num_rest = min(self.num_base - 1, round(config.rest_share * self.num_base))
        self.num_around_plan = self.num_base - self.num_rest

        def tensor(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

        sigma = np.asarray(config.noise_sigma)
        rest = np.asarray(config.rest_action or (0.0,) * nu)
        self._rest = tensor(rest)
        self._sigma_inv2 = tensor(1.0 / sigma ** 2)
        self._eye = tensor(np.eye(nu))
        self._time_mixing = None if config.noise_correlation == 0.0 else tensor(
            ar1_matrix(T, config.noise_correlation))
        # Sampling in (at most) two matrix products, which on a CPU beat the broadcasting
        # element-wise ops they replace several times over:
        # centres (T, K nu) = [plan | 1] @ centre_map: the plan for the samples around it, the rest
        # action for the others; then the perturbations are scaled by sigma and, for a group, mapped
        # to their orbit (scaled_orbit = diag(sigma) [rho(g_1)^T ... rho(g_|G|)^T]) and added.
        split = self.num_around_plan * order
        centre_map = np.zeros((nu + 1, self.num_rollouts, nu))
        centre_map[:nu, :split] = np.eye(nu)[:, None, :]
        centre_map[nu, split:] = rest
        self._centre_map = tensor(centre_map.reshape(nu + 1, -1))
        self._ones = torch.ones(T, 1, dtype=self.dtype, device=self.device)
        # the device of a tensor, as ActionBounds keys it ("cuda" is "cuda:0" there)
        self.bounds.prepare((T, self.num_rollouts, nu), self._ones.device, self.dtype)
        if group.is_trivial:
            self._scaled_orbit = None
            self._sigma_full = tensor(sigma).expand(T, self.num_base, nu).contiguous()
        else:
            self._scaled_orbit = tensor(np.diag(sigma) @ orbit_matrix(matrices))
        # With ``compile`` the whole cycle after the random draw (centring, bounds, rollout, costs,
        # weights, average) is one compiled function: inductor fuses the element-wise steps into a few
        # loops over the samples, and the C++ wrapper (COMPILE_OPTIONS) calls them without Python in
        # between. Measured on a 2-core CPU (equimanip bench mppi) it plans 1.4-3.2x faster than eager;
        # the first cycle of every new shape compiles for seconds (a C++ compiler must be installed).
        # So it is the user's choice, off by default.
        options = COMPILE_OPTIONS if self.device.type == "cpu" else None
        self._cycle = (torch.compile(self._cycle_body, dynamic=False, options=options)
                       if config.compile else self._cycle_body)

    def _make_generator(self) -> None:
        self._generator = torch.Generator(device=self.device)
        if self.config.seed is not None:
            self._generator.manual_seed(self.config.seed)
        else:
            self._generator.seed()

    def check_update(self, **changes) -> MPPIConfig:
        """The configuration ``update_config(**changes)`` would give, after all of its checks, without
        changing anything: ValueError naming the problem otherwise (for a ROS parameter callback,
        which must validate without side effects)."""
        config = self.config.replace(**changes)
        self._checked(config)
        return config

    def update_config(self, **changes) -> None:
        """Change settings while running. Invalid values raise ValueError and leave the planner as
        it was. The warm start survives changes that keep its shape and device; the random stream
        restarts only when the seed or the device changes."""
        old_plan = self._plan
        self._apply_config(self.config.replace(**changes))   # checks everything before changing anything
        if "seed" in changes or "device" in changes:
            self._make_generator()
        if old_plan.shape == (self.config.horizon, self.config.action_dim) and old_plan.device == self.device:
            self._plan = self.bounds.project(old_plan)
        else:
            self.reset()

    def reset(self) -> None:
        """Forget the warm start (new episode, or the plan no longer applies)."""
        self._plan = self._rest.expand(self.config.horizon, -1).clone()
        self._has_plan = False

    # ------------------------------------------------------------------------------ planning

    @property
    def nominal(self) -> torch.Tensor:
        """(T, nu) the current plan (warm start of the next cycle)."""
        return self._plan

    def command(self, state: torch.Tensor) -> torch.Tensor:
        """The next action (nu,) for ``state`` (pytorch-mppi's ``command``)."""
        return self.plan(state).action

    def plan(self, state: torch.Tensor, shift: bool = True) -> Plan:
        """Optimise the plan from ``state`` (nx,). With ``shift`` the previous plan is first moved
        one step ahead (its first action has been executed) and the rest action appended.
        Raises ValueError for a malformed state and FloatingPointError when every sample's cost is
        NaN or infinite (the shifted plan is kept)."""
        state = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        if state.dim() != 1:
            raise ValueError(f"state must be one vector (nx,), got shape {tuple(state.shape)}")
        if not bool(torch.isfinite(state).all()):
            raise ValueError(f"state has non-finite entries: {state.tolist()}")
        if shift and self._has_plan:
            self._plan = torch.cat([self._plan[1:], self._rest[None]])
        for _ in range(self.config.iterations):
            result = self._improve(state)
        self._has_plan = True
        return result

    def _improve(self, state: torch.Tensor) -> Plan:
        plan, weights, task_cost, total, actions = self._cycle(state, self._draw_noise(), self._plan)
        if not math.isfinite(float(plan.sum())):
            # NaN costs poison the softmax: give them zero weight, unless nothing is left.
            total = torch.nan_to_num(total, nan=torch.inf, posinf=torch.inf)
            if not bool(torch.isfinite(total.min())):
                raise FloatingPointError("every sampled sequence has an infinite or NaN cost; the plan is kept")
            weights = self._weights(total)
            plan = self._weighted_mean(actions, weights)
        self._plan = plan
        return Plan(plan, weights, task_cost)

    def _draw_noise(self) -> torch.Tensor:
        """Base perturbations (T, N, nu) before scaling by sigma: white or time-correlated, the
        first of each share zero with ``include_nominal``. Drawn outside ``_cycle`` so that the
        compiled cycle is a pure function of its inputs (and plans what the eager one plans)."""
        T, N, nu = self.config.horizon, self.num_base, self.config.action_dim
        noise = torch.randn(T, N, nu, generator=self._generator, dtype=self.dtype, device=self.device)
        if self._time_mixing is not None:
            noise = (self._time_mixing @ noise.view(T, N * nu)).view(T, N, nu)
        if self.config.include_nominal:
            noise[:, 0] = 0.0
            if self.num_rest:
                noise[:, self.num_around_plan] = 0.0
        return noise

    def _cycle_body(self, state: torch.Tensor, noise: torch.Tensor, plan: torch.Tensor):
        """One pass from perturbations to the new plan: (plan, weights, task cost, total cost,
        candidate actions). With ``compile`` this whole function is compiled (see _apply_config)."""
        T, K, nu = self.config.horizon, self.num_rollouts, self.config.action_dim
        actions = self._sample(noise, plan)                            # (T, K, nu)
        task_cost = self.evaluate(state, actions)                      # (K,)
        total = task_cost
        if self.config.control_cost_scale > 0:
            # MPPI's control cost lambda sum_t U_t^T Sigma^-1 (V_t - U_t) (pytorch-mppi's sign), less
            # the part that is the same for every sample and cancels in the softmax. The contraction
            # over (t, n) is one matrix product and a diagonal: much faster on a CPU than an einsum.
            weighted_plan = (plan * self._sigma_inv2).T                # (nu, T)
            per_entry = (weighted_plan @ actions.view(T, K * nu)).view(nu, K, nu)
            control = per_entry.diagonal(dim1=0, dim2=2).sum(-1)
            total = torch.add(total, control, alpha=self.config.control_cost_scale * self.config.temperature)
        weights = self._weights(total)
        return self._weighted_mean(actions, weights), weights, task_cost, total, actions

    def _weights(self, total: torch.Tensor) -> torch.Tensor:
        """MPPI's sample weights softmax(-cost / lambda) (K,)."""
        return torch.softmax(total * (-1.0 / self.config.temperature), dim=0)

    def _weighted_mean(self, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_k w_k V[t, k, :] (T, nu) as one matrix product: (T, K nu) @ (w kron I) (K nu, nu)."""
        T, K, nu = actions.shape
        return actions.view(T, K * nu) @ (weights[:, None, None] * self._eye).view(K * nu, nu)

    def _sample(self, noise: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        """Candidate sequences (T, K, nu) inside the bounds from base perturbations (T, N, nu).
        Sample k = b |G| + i is base perturbation b transformed by group element i; bases below
        ``num_around_plan`` are centred on ``plan``, the others on the rest action."""
        T, N, K, nu = self.config.horizon, self.num_base, self.num_rollouts, self.config.action_dim
        centres = torch.cat([plan, self._ones], dim=1) @ self._centre_map           # (T, K nu)
        if self._scaled_orbit is None:
            actions = torch.addcmul(centres.view(T, K, nu), noise, self._sigma_full)
        else:
            actions = torch.addmm(centres.view(T * N, -1), noise.view(T * N, nu), self._scaled_orbit)
        return self.bounds.project(actions.view(T, K, nu))

    # ------------------------------------------------------------------------------ rollouts

    def evaluate(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Total cost (K,) of action sequences (T, K, nu) started from ``state`` (nx,).

        The horizon loop is the only loop (the dynamics are sequential). The running cost is called
        on several steps at once, about ``COST_ROWS`` rows per call: few calls save the per-call
        overhead that dominates at small K, while chunks that stay in the CPU's cache beat one call
        on all K x T rows at large K (measured: 4096 x 30 costs 1.4 ms in chunks of 4 steps, 2.5 ms
        in one call)."""
        T, K, _ = actions.shape
        current = state.expand(K, state.shape[-1])
        keep_all = self.trajectory_cost is not None
        states, pending, first = [current], [], 0
        per_call = -(-T // -(-T * K // COST_ROWS))           # steps per call, chunks of equal size
        total = None
        for t, step_actions in enumerate(actions.unbind(0)):
            current = self.dynamics(current, step_actions)
            if keep_all:
                states.append(current)
            if self.running_cost is not None:
                pending.append(current)
                if len(pending) == per_call or t == T - 1:
                    n = len(pending)
                    cost = self.running_cost(torch.stack(pending).view(n * K, -1),
                                             actions[first:first + n].reshape(n * K, -1)).view(n, K).sum(0)
                    total = cost if total is None else total + cost
                    pending, first = [], first + n
        if self.terminal_cost is not None:
            cost = self.terminal_cost(current)
            total = cost if total is None else total + cost
        if keep_all:
            cost = self.trajectory_cost(torch.stack(states, dim=1), actions.transpose(0, 1))
            total = cost if total is None else total + cost
        return total

    def rollout(self, state: torch.Tensor, actions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """States (T + 1, nx) visited by one action sequence (T, nu), by default the current plan."""
        actions = self._plan if actions is None else actions
        state = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        states = [state[None]]
        for a in actions:
            states.append(self.dynamics(states[-1], a[None]))
        return torch.cat(states)


def _check_invariant_vectors(config: MPPIConfig, matrices: np.ndarray, layout: Layout) -> None:
    """The rest action must be left alone by every group element, and the noise spread must be the
    same along both entries of a vector (so the control cost is invariant)."""
    rest = np.asarray(config.rest_action or (0.0,) * config.action_dim)
    moved = np.abs(matrices @ rest - rest).max()
    if moved > 1e-9:
        raise ValueError(f"rest_action {rest.tolist()} is not invariant under {config.group}: entries that "
                         f"rotate or flip ({_moving_names(matrices, layout)}) must be zero")
    sigma = np.asarray(config.noise_sigma)
    covariance = np.diag(sigma ** 2)
    if np.abs(matrices @ covariance - covariance @ matrices).max() > 1e-12:
        raise ValueError(f"noise_sigma {sigma.tolist()} must be equal on the two entries of each vector "
                         f"of the layout {layout.names} for symmetric sampling")


def _moving_names(matrices: np.ndarray, layout: Layout) -> str:
    moving = np.abs(matrices - np.eye(matrices.shape[1])).max(axis=(0, 2)) > 1e-9
    return ", ".join(n for n, m in zip(layout.names, moving) if m)

