"""An MLP that commutes with the workspace's symmetry: ``f(g . x) = g . f(x)``.

API::

    from equimanip import symmetry as sym
    from equimanip.models.mlp import EquivariantMLP

    net = EquivariantMLP(sym.object_state_layout(2), sym.ACTION_LAYOUT, group="c8", hidden=256, depth=3)
    y = net(x)                       # x [B, in_layout.size] -> y [B, out_layout.size], plain tensors
    plain = net.export()             # plain torch nn.Module computing the same function (no escnn)
    net.parameter_count()

``in_layout`` / ``out_layout`` say how each entry transforms (symmetry.Layout); the network is
equivariant under ``group`` acting by ``symmetry.transform`` on both sides. Groups:

* finite (``c4 c8 c16 d4 d8``): hidden layers of regular fields with ReLU;
* ``so2``: hidden layers of band-limited irreps (frequencies 0..``so2_max_frequency``) with the
  ``so2_nonlinearity`` 'gated' (default) or 'norm' (equimanip.models.nonlinear);
* ``none``: a plain MLP of width ``hidden``.

``hidden`` is the width a plain MLP would have; the equivariant versions take as many fields as
give about the same number of parameters (for a finite group of order |G|, ``hidden / sqrt(|G|)``
regular fields: |G| times fewer weights per channel pair, so a wider feature vector for the same
budget). ``depth`` counts the linear layers (``depth - 1`` hidden layers). All layers are escnn's
``Linear`` (weights expanded from an equivariant basis), so ``export()`` is exact.
"""
from __future__ import annotations

import copy
import math

import torch
from escnn import nn as enn
from torch import nn

from equimanip import symmetry as sym
from equimanip.models import fields
from equimanip.models.nonlinear import so2_nonlinearity


class EquivariantMLP(fields.CheapModuleWalk, fields.WeightsOnlyStateDict):
    def __init__(self, in_layout: sym.Layout, out_layout: sym.Layout, group: str, hidden: int = 256,
                 depth: int = 3, so2_max_frequency: int = 3, so2_nonlinearity_kind: str = "gated"):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError(f"depth and hidden must be >= 1, got depth={depth}, hidden={hidden}")
        if so2_max_frequency < 1:
            raise ValueError(f"so2_max_frequency must be >= 1, got {so2_max_frequency}")
        self.in_layout, self.out_layout, self.group_name = in_layout, out_layout, group
        self.hidden, self.depth = hidden, depth
        G = fields.check_group_name(group)
        self.equivariant = not G.is_trivial
        if not self.equivariant:
            widths = [in_layout.size] + [hidden] * (depth - 1) + [out_layout.size]
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Linear(a, b))
                if i < depth - 1:
                    layers.append(nn.ReLU())
            self.net = nn.Sequential(*layers)
            return

        max_f = max([so2_max_frequency, *in_layout.frequencies(), *out_layout.frequencies()])
        gs = fields.gspace(group, planar=False, max_frequency=max(max_f, fields.DEFAULT_SO2_MAX_FREQUENCY))
        self.in_type = fields.layout_type(gs, in_layout)
        self.out_type = fields.layout_type(gs, out_layout)
        modules: list[enn.EquivariantModule] = []
        current = self.in_type
        for _ in range(depth - 1):
            if G.is_finite:
                n = max(1, round(hidden / math.sqrt(G.order)))
                linear_out = fields.regular_type(gs, n)
                modules += [enn.Linear(current, linear_out), enn.ReLU(linear_out)]
            else:
                gated = so2_nonlinearity_kind == "gated"
                per_copy = 1 + 3 * so2_max_frequency if gated else fields.band_limited_size(so2_max_frequency)
                n = max(1, round(hidden / math.sqrt(per_copy)))
                linear_out = fields.band_limited_type(gs, n, so2_max_frequency, gates=gated)
                act = so2_nonlinearity(linear_out, so2_nonlinearity_kind)
                modules += [enn.Linear(current, linear_out), act]
            current = modules[-1].out_type
        modules.append(enn.Linear(current, self.out_type))
        self.net = fields.own_kernel_bases(enn.SequentialModule(*modules))   # moves alone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_layout.size:
            raise ValueError(f"expected input [B, {self.in_layout.size}] ({', '.join(self.in_layout.names)}), "
                             f"got {tuple(x.shape)}")
        if not self.equivariant:
            return self.net(x)
        return self.net(enn.GeometricTensor(x, self.in_type)).tensor

    def train(self, mode: bool = True):
        # escnn's Linear caches its expanded weights in eval mode: keep autograd out of the cache.
        with torch.no_grad():
            return super().train(mode)

    def export(self) -> nn.Module:
        """A plain-torch module computing the same function (eval mode, no escnn at run time)."""
        if not self.equivariant:
            return copy.deepcopy(self.net).eval()
        was_training = self.training
        self.eval()                         # (train() runs without autograd, see above)
        try:
            with torch.no_grad():
                return self.net.export().eval()
        finally:
            self.train(was_training)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


__all__ = ["EquivariantMLP"]
