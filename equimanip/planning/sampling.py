"""How MPPI draws its action sequences: bounds, noise and the symmetric orbit.

Three pieces, each small enough to check by hand:

* :class:`ActionBounds` projects actions onto the allowed set: a box per entry, and optionally a
  disc of radius ``vector_norm_max`` for each in-plane vector of the action layout (dx, dy). A box
  is not invariant under a 45-degree turn; the disc is, which is what C8 and D8 need.
  :meth:`ActionBounds.check_invariant` refuses bounds that a group element would not map onto
  themselves, because then clipping and rotating no longer commute and the plan loses its symmetry.
* :func:`ar1_matrix` makes time-correlated noise with one matrix product over the horizon: each
  step keeps ``beta`` of the previous step's noise, with the same stationary spread as white noise.
* :func:`orbit_matrix` stacks the representation matrices of every group element side by side, so
  that one matrix product turns N base perturbations into their N x |G| orbit.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from equimanip import symmetry
from equimanip.symmetry import Layout, PlanarGroup


def finite_group(name: str) -> PlanarGroup:
    """The planar group called ``name``, refusing continuous ones: the orbit must be a finite set."""
    group = symmetry.group(name)
    if not group.is_finite:
        finite = [n for n, g in symmetry.GROUPS.items() if g.is_finite]
        raise ValueError(f"symmetric sampling needs a finite group ({', '.join(finite)}); "
                         f"'{name}' has infinitely many elements")
    return group


def representation_matrices(group: PlanarGroup, layout: Optional[Layout], nu: int) -> np.ndarray:
    """(|G|, nu, nu) matrices of every group element acting on actions of ``layout``."""
    if group.is_trivial:
        return np.eye(nu)[None]
    if layout is None:
        raise ValueError(f"group '{group.name}' needs the action layout (how each action entry transforms), "
                         "e.g. equimanip.symmetry.ACTION_LAYOUT")
    if layout.size != nu:
        raise ValueError(f"the action layout has {layout.size} entries {layout.names}, the actions {nu}")
    return np.stack([symmetry.representation(layout, g) for g in group.elements()])


def orbit_matrix(matrices: np.ndarray) -> np.ndarray:
    """(nu, |G| nu): ``x @ orbit_matrix`` lists ``rho(g) x`` for every g, one after the other."""
    return np.concatenate([m.T for m in matrices], axis=1)


def ar1_matrix(horizon: int, beta: float) -> np.ndarray:
    """(T, T) lower-triangular L with ``eps = L @ w`` (w white, unit variance) an AR(1) sequence:
    eps_0 = w_0, eps_t = beta eps_{t-1} + sqrt(1 - beta^2) w_t, so every step has unit variance."""
    t = np.arange(horizon)
    lag = t[:, None] - t[None, :]
    L = np.where(lag >= 0, beta ** np.maximum(lag, 0), 0.0) * math.sqrt(1.0 - beta * beta)
    L[:, 0] = np.where(lag[:, 0] >= 0, beta ** t, 0.0)   # the first step carries the full variance
    return L


def _vector_pairs(layout: Optional[Layout]) -> list[tuple[int, int, int]]:
    """(first index, second index, frequency) of each vector field of the layout."""
    if layout is None:
        return []
    pairs, start = [], 0
    for field in layout.fields:
        if field.kind == "vector":
            pairs.append((start, start + 1, field.frequency))
        start += field.size
    return pairs


class ActionBounds:
    """The allowed actions: ``low <= a <= high`` per entry, except that with ``vector_norm_max`` each
    in-plane vector of the layout is limited to that length instead (the box must contain the disc,
    so the result is inside the box too)."""

    def __init__(self, low: Sequence[float], high: Sequence[float], vector_norm_max: Optional[float] = None,
                 layout: Optional[Layout] = None):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.vector_norm_max = vector_norm_max
        self.layout = layout
        self.pairs = _vector_pairs(layout) if vector_norm_max is not None else []
        if vector_norm_max is not None:
            if layout is None:
                raise ValueError("vector_norm_max needs the action layout to know which entries form a vector")
            if not self.pairs:
                raise ValueError(f"vector_norm_max is set but the action layout {layout.names} has no vector")
            r = vector_norm_max
            for i, j, _ in self.pairs:
                if np.any(self.low[[i, j]] > -r) or np.any(self.high[[i, j]] < r):
                    names = layout.names
                    raise ValueError(f"the box on ({names[i]}, {names[j]}) must contain the disc of radius "
                                     f"vector_norm_max = {r}; got low {self.low[[i, j]].tolist()}, "
                                     f"high {self.high[[i, j]].tolist()}")
        # The entries a disc limits are not clamped per entry: a clamp does not commute with a
        # 45-degree turn, the disc does.
        box_low, box_high = self.low.copy(), self.high.copy()
        for i, j, _ in self.pairs:
            box_low[[i, j]], box_high[[i, j]] = -np.inf, np.inf
        self._box = (box_low, box_high)
        self._tensors: dict = {}

    def prepare(self, shape: tuple, device, dtype=torch.float32) -> None:
        """Build the full-shape bounds for actions of ``shape`` now, outside torch.compile: a compiled
        planning cycle then reads them and never fills the cache while traced (which changes what it
        was traced with, so torch.compile would trace it a second time)."""
        key = (tuple(shape), torch.device(device), dtype)
        if key not in self._tensors:
            if len(self._tensors) > 8:
                self._tensors.clear()
            low, high = (torch.as_tensor(b, dtype=dtype, device=device).expand(shape).contiguous()
                         for b in self._box)
            self._tensors[key] = (low, high, self._vector_index(device))

    def _on(self, like: torch.Tensor):
        """Bounds as tensors of ``like``'s full shape: a clamp between equal-shaped contiguous tensors
        is several times faster on a CPU than one that broadcasts a (nu,) vector (and, compiled, a
        clamp fused with the broadcast was measured 5x slower than a clamp of full-shape inputs)."""
        key = (tuple(like.shape), like.device, like.dtype)
        if key not in self._tensors:
            if torch.compiler.is_compiling():    # not prepared: (nu,) bounds, no cache write while traced
                return (*(torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in self._box),
                        self._vector_index(like.device))
            self.prepare(like.shape, like.device, like.dtype)
        return self._tensors[key]

    def _vector_index(self, device) -> torch.Tensor:
        """Indices of the vectors' first entries, then of their second entries."""
        return torch.tensor([i for i, _, _ in self.pairs] + [j for _, j, _ in self.pairs], dtype=torch.long,
                            device=device)

    def project(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (..., nu) moved into the allowed set (a new tensor)."""
        low, high, vector_index = self._on(actions)
        out = torch.clamp(actions, low, high)
        if self.pairs:
            n = len(self.pairs)
            xy = out.index_select(-1, vector_index).unflatten(-1, (2, n))          # (..., 2, n)
            length = torch.linalg.vector_norm(xy, dim=-2, keepdim=True)
            scale = torch.clamp(self.vector_norm_max / length.clamp_min(1e-12), max=1.0)
            out = out.index_copy(-1, vector_index, (xy * scale).flatten(-2))
        return out

    def check_invariant(self, group: PlanarGroup) -> None:
        """Raise ValueError unless every element of ``group`` maps the allowed set onto itself in a
        way that commutes with :meth:`project` (see the module docstring for why)."""
        if group.is_trivial:
            return
        layout = self.layout
        start = 0
        for field in layout.fields:
            idx = list(range(start, start + field.size))
            start += field.size
            low, high = self.low[idx], self.high[idx]
            symmetric = np.allclose(low, -high)
            if field.kind == "pseudoscalar" and group.reflections and not symmetric:
                raise ValueError(f"'{field.names[0]}' changes sign under the reflections of {group.name}: "
                                 f"its bounds must be symmetric, got [{low[0]}, {high[0]}]")
            if field.kind != "vector" or self.vector_norm_max is not None:
                continue
            quarter_turns = (4 * field.frequency) % group.rotations == 0
            square = symmetric and np.isclose(high[0], high[1])
            if not (quarter_turns and square):
                why = ("only a square box centred on zero is mapped onto itself by quarter turns"
                       if quarter_turns else f"{group.name} turns by less than 90 degrees, which no box survives")
                raise ValueError(f"the bounds of ({field.names[0]}, {field.names[1]}) are not invariant under "
                                 f"{group.name}: {why}; set vector_norm_max (a disc) instead")

    def contains(self, actions: torch.Tensor, atol: float = 1e-6) -> bool:
        """Whether every action is inside the allowed set (up to ``atol``)."""
        low = torch.as_tensor(self.low, dtype=actions.dtype, device=actions.device)
        high = torch.as_tensor(self.high, dtype=actions.dtype, device=actions.device)
        inside = bool(((actions >= low - atol) & (actions <= high + atol)).all())
        for i, j, _ in self.pairs:
            inside &= bool((torch.hypot(actions[..., i], actions[..., j]) <= self.vector_norm_max + atol).all())
        return inside
