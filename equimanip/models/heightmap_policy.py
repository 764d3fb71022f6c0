"""Imitation policies on heightmaps: Equivariant SAC's encoder, a feature vector, an MLP head.

API::

    from equimanip.models import NetworkConfig
    from equimanip.models.heightmap_policy import HeightmapPolicyNet, feature_layout

    net = HeightmapPolicyNet(NetworkConfig(group="c8", n_hidden=16), features=8, hidden=256, depth=4)
    z = net.features(heightmap)          # [B, C, S, S] -> [B, feature_layout(8).size]
    action = net.head(z)                 # -> [B, 5] in ACTION_LAYOUT order (normalised units)
    action = net(heightmap)              # the two together
    plain = net.export()                 # plain torch, same function, eval mode

Why a feature vector between them: BMIL's backwards models imagine states, and with heightmaps
they imagine them in this feature space (the encoder's output), where a state is a short vector
with a known transformation law. The feature vector is typed by ``feature_layout(n)``: ``n`` each
of scalars (invariant), pseudoscalars (sign flip under a mirror), frequency-1 and frequency-2
vectors. A 1x1 convolution maps the encoder's regular fields onto it, so ``features`` commutes with
the group acting on the heightmap (``symmetry.transform_heightmap``) and on the vector
(``symmetry.transform(feature_layout(n), g, z)``), and the head is an ``EquivariantMLP`` from that
layout to ``symmetry.ACTION_LAYOUT``. The backwards models (``equimanip.learning.backward``) take the
same layout, so the whole BMIL loop stays equivariant without a line that knows an index.

The encoder is the SAC actor's (``sac_networks.make_encoder``: seven 3x3 convolutions down to 1 x 1,
``NetworkConfig``'s group, width and heightmap size); ``none`` is the plain CNN of about the same
parameter count and a plain MLP head.
"""
from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn

from equimanip import symmetry as sym
from equimanip.models import fields
from equimanip.models.config import NetworkConfig
from equimanip.models.mlp import EquivariantMLP
from equimanip.models.sac_networks import EscnnStage, export_module, make_encoder, own_copy


def feature_layout(copies: int) -> sym.Layout:
    """The encoder's feature vector: ``copies`` scalars, pseudoscalars, frequency-1 and frequency-2
    vectors (6 entries per copy)."""
    if copies < 1:
        raise ValueError(f"feature copies must be >= 1, got {copies}")
    return sym.Layout(tuple(sym.scalar(f"s{i}") for i in range(copies))
                      + tuple(sym.pseudoscalar(f"p{i}") for i in range(copies))
                      + tuple(sym.vector(f"u{i}", f"v{i}", 1) for i in range(copies))
                      + tuple(sym.vector(f"u2_{i}", f"v2_{i}", 2) for i in range(copies)))


class HeightmapPolicyNet(fields.CheapModuleWalk, fields.WeightsOnlyStateDict):
    """heightmap [B, C, S, S] -> features [B, F] -> normalised action [B, 5] (linear output)."""

    def __init__(self, network: NetworkConfig, features: int = 8, hidden: int = 256, depth: int = 4,
                 encoder: nn.Module | None = None, project: nn.Module | None = None,
                 head: nn.Module | None = None):
        super().__init__()
        self.config = network.validate()
        self.layout = feature_layout(features)
        if encoder is None:                      # built here; export() passes its plain copies in
            encoder, out = make_encoder(self.config)
            if self.config.group == "none":
                project = nn.Conv2d(out, self.layout.size, 1)
            else:
                project = EscnnStage(enn.R2Conv(out, fields.layout_type(out.gspace, self.layout), 1))
            head = EquivariantMLP(self.layout, sym.ACTION_LAYOUT, group=self.config.group, hidden=hidden,
                                  depth=depth)
        self.encoder, self.project, self.head = encoder, project, head
        if isinstance(self.encoder, EscnnStage):
            own_copy(self)

    def check_heightmap(self, heightmap: torch.Tensor) -> None:
        S, C = self.config.heightmap_size, self.config.in_channels
        if heightmap.dim() != 4 or tuple(heightmap.shape[1:]) != (C, S, S):
            raise ValueError(f"expected a heightmap batch [B, {C}, {S}, {S}], got {tuple(heightmap.shape)}")

    def features(self, heightmap: torch.Tensor) -> torch.Tensor:
        self.check_heightmap(heightmap)
        return self.project(self.encoder(heightmap)).flatten(1)

    def forward(self, heightmap: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(heightmap))

    def train(self, mode: bool = True):
        with torch.no_grad():          # escnn caches expanded filters in eval mode: keep autograd out
            return super().train(mode)

    def export(self) -> "HeightmapPolicyNet":
        """The same function in plain torch layers (no escnn at run time), eval mode."""
        head = self.head.export() if isinstance(self.head, EquivariantMLP) else export_module(self.head)
        plain = HeightmapPolicyNet(self.config, encoder=export_module(self.encoder),
                                   project=export_module(self.project), head=head,
                                   features=self.layout.count("scalar"))
        return plain.eval()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


__all__ = ["HeightmapPolicyNet", "feature_layout"]
