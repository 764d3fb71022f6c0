"""Equivariant SAC's actor and critic (Wang, Walters, Platt, ICLR 2022; equi_rl's networks).

API::

    from equimanip.models import NetworkConfig, make_actor, make_critic

    cfg = NetworkConfig()                                  # or NetworkConfig.paper()
    actor = make_actor(cfg)
    mean, log_std = actor(heightmap)                       # [B, 2, S, S] -> [B, 5], [B, 5] (pre-tanh)
    critic = make_critic(cfg)
    q1, q2 = critic(heightmap, action)                     # action [B, 5] in [-1, 1] -> [B, 1], [B, 1]
    loss = ... + actor.regularization_loss()               # relaxed networks: strength * asymmetry; else 0
    plain = actor.export()                                 # same class, plain torch layers, eval mode

Both take the heightmap as trivial fields (heights and gripper aperture do not change under a
rotation, only their position does) and share one encoder design: seven 3x3 convolutions
(``NetworkConfig.widths``: n/8, n/4, n/2, n, 2n, n, n fields) with ReLU and 2x2 max pooling down
to 1 x 1 (``NetworkConfig.top`` says how the last three layers get there). Then

* the actor: a 1x1 convolution to the fields of ``symmetry.ACTION_LAYOUT`` (p, dz scalars, (dx, dy)
  a frequency-1 vector, dyaw a pseudoscalar: sign flip under reflections) for the means, and five
  trivial fields for the log-stds (a rotated scene is not more or less certain), clamped;
* the critic: the encoder output and the action typed by ``ACTION_LAYOUT`` side by side at 1 x 1,
  two heads of a 1x1 convolution to n fields, nonlinearity, pooling to invariants (max over the
  group; norms for SO(2)) and a 1x1 convolution to Q. Q is invariant.

Groups: finite ones use regular fields and pointwise ReLU / max pooling; ``so2`` band-limited irreps
with a gated or norm nonlinearity and norm max pooling; ``none`` is a plain CNN with about the
parameter count of C8 at the same ``n_hidden`` (equi_rl's own baseline has the same role).

Means and action are in the network's units: the SAC squashes ``tanh(mean)`` to [-1, 1] and
scales by the action limits afterwards (a rotation of (dx, dy) commutes with the scaling because
dx and dy share their limit).
"""
from __future__ import annotations

import copy
import math

import torch
from escnn import nn as enn
from torch import nn

from equimanip import symmetry as sym
from equimanip.models import fields
from equimanip.models.config import INPUT_CENTRES, INPUT_SCALES, NetworkConfig
from equimanip.models.nonlinear import group_pooling, norm_invariants, norm_max_pool, so2_nonlinearity
from equimanip.models.relaxed import RelaxedR2Conv

ACTION_DIM = sym.ACTION_LAYOUT.size
# 'none' takes this many channels per field of the equivariant networks. A plain 3x3 convolution has
# 9 weights per channel pair; escnn's C8 regular-to-regular 3x3 kernel has 48 per field pair (its
# basis is band-limited on the 3x3 grid), so sqrt(48 / 9) channels per field give the plain CNN the
# parameter count of the default group's networks at the same n_hidden (equi_rl's comparison).
PLAIN_CHANNELS_PER_FIELD = math.sqrt(48 / 9)


# ------------------------------------------------------------------------------- building blocks


class InputCentering(nn.Module):
    """``(x - centre) / scale`` per input channel (``NetworkConfig.center_inputs``). The channels
    are trivial fields and the map is the same at every pixel, so it commutes with every rotation
    and reflection of the image: the network stays exactly equivariant."""

    def __init__(self, channels: int):
        super().__init__()
        # Not in the state dict: the constants follow from the network's configuration.
        self.register_buffer("centre", torch.tensor(INPUT_CENTRES[:channels]).view(1, channels, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor(INPUT_SCALES[:channels]).view(1, channels, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.centre) / self.scale


class EscnnStage(nn.Module):
    """Plain tensors in and out around an escnn module (the rest of the code never sees a
    GeometricTensor); ``export()`` gives escnn's plain-torch equivalent. ``centering``: an
    :class:`InputCentering` applied to the plain input first (the encoder's, with center_inputs)."""

    def __init__(self, module: enn.EquivariantModule, centering: InputCentering | None = None):
        super().__init__()
        self.module = module
        self.centering = centering

    @property
    def in_type(self) -> enn.FieldType:
        return self.module.in_type

    @property
    def out_type(self) -> enn.FieldType:
        return self.module.out_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.centering is not None:
            x = self.centering(x)
        return self.module(enn.GeometricTensor(x, self.module.in_type)).tensor

    def train(self, mode: bool = True):
        with torch.no_grad():               # escnn caches expanded filters in eval mode: no graph
            return super().train(mode)

    def export(self) -> nn.Module:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                plain = self.module.export().eval()
                if self.centering is not None:     # one flat Sequential, as inference.optimize_for_cpu walks it
                    plain = nn.Sequential(copy.deepcopy(self.centering), *plain.children()).eval()
                return plain
        finally:
            self.train(was_training)


def export_module(module: nn.Module) -> nn.Module:
    """A plain-torch copy of one stage of a network (an EscnnStage or a plain module), eval mode."""
    plain = module.export() if isinstance(module, EscnnStage) else copy.deepcopy(module).eval()
    # escnn's exported filters are strided views of its expanded basis; torch then falls back to its
    # slow im2col convolution (7x slower for the first layer at batch 1 here). Same values, packed.
    for param in plain.parameters():
        param.data = param.data.contiguous()
    return plain


def encoder_schedule(cfg: NetworkConfig) -> list[dict]:
    """The seven encoder layers as dicts: width (fields), kernel, padding, pool (kernel or 1)."""
    target = 8 if cfg.top == "paper" else 4
    halvings = int(round(math.log2(cfg.heightmap_size // target)))
    pools = [1, 1, 1, 1]
    for i in range(min(halvings, 4)):
        pools[i] = 2
    if halvings > 4:                       # larger images: the first layer pools harder
        pools[0] = 2 ** (halvings - 3)
    w = cfg.widths
    layers = [dict(width=w[i], kernel=3, padding=1, pool=pools[i]) for i in range(4)]
    if cfg.top == "paper":                 # 8 -> 8 -> 6 -> pool 3 -> 1
        layers += [dict(width=w[4], kernel=3, padding=1, pool=1), dict(width=w[5], kernel=3, padding=0, pool=2),
                   dict(width=w[6], kernel=3, padding=0, pool=1)]
    else:                                  # 4 -> 4 -> 2 -> pool 1 -> 1
        layers += [dict(width=w[4], kernel=3, padding=1, pool=1), dict(width=w[5], kernel=3, padding=0, pool=2),
                   dict(width=w[6], kernel=1, padding=0, pool=1)]
    return layers


def _plain_width(fields_count: int) -> int:
    return max(1, round(fields_count * PLAIN_CHANNELS_PER_FIELD))


def _plain_encoder(cfg: NetworkConfig) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [InputCentering(cfg.in_channels)] if cfg.center_inputs else []
    channels = cfg.in_channels
    for spec in encoder_schedule(cfg):
        out = _plain_width(spec["width"])
        conv = nn.Conv2d(channels, out, spec["kernel"], padding=spec["padding"])
        # He initialisation, as escnn initialises its convolutions: torch's default shrinks the
        # signal at each of the seven layers, and with heights of a few centimetres the encoder's
        # output then barely depended on its input (std 1.5e-7 across heightmaps) and SAC could not
        # start learning.
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers.append(conv)
        if spec["pool"] > 1:               # max-pool before ReLU: the same function, fewer pixels to ReLU
            layers.append(nn.MaxPool2d(spec["pool"]))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers), channels


def _equivariant_encoder(cfg: NetworkConfig, gs) -> EscnnStage:
    G = sym.group(cfg.group)
    current = fields.trivial_type(gs, cfg.in_channels)
    modules: list[enn.EquivariantModule] = []
    for spec in encoder_schedule(cfg):
        if G.is_finite:
            out = fields.regular_type(gs, spec["width"])
            if cfg.relaxed:
                modules.append(RelaxedR2Conv(current, out, spec["kernel"], spec["padding"], cfg.relaxed_banks))
            else:
                modules.append(enn.R2Conv(current, out, spec["kernel"], padding=spec["padding"]))
            if spec["pool"] > 1:
                modules.append(enn.PointwiseMaxPool2D(out, spec["pool"]))
            modules.append(enn.ReLU(out, inplace=True))
        else:
            gated = cfg.so2_nonlinearity == "gated"
            out = fields.band_limited_type(gs, spec["width"], cfg.so2_max_frequency, gates=gated)
            modules.append(enn.R2Conv(current, out, spec["kernel"], padding=spec["padding"]))
            modules.append(so2_nonlinearity(out, cfg.so2_nonlinearity))
            if spec["pool"] > 1:
                modules.append(norm_max_pool(modules[-1].out_type, spec["pool"]))
        current = modules[-1].out_type
    return EscnnStage(enn.SequentialModule(*modules), InputCentering(cfg.in_channels) if cfg.center_inputs else None)


def network_gspace(cfg: NetworkConfig):
    return fields.gspace(cfg.group, planar=True, max_frequency=max(cfg.so2_max_frequency,
                                                                    fields.DEFAULT_SO2_MAX_FREQUENCY))


# ------------------------------------------------------------------------------- the networks


class _SACNetwork(fields.CheapModuleWalk, fields.WeightsOnlyStateDict):
    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.config = cfg

    def train(self, mode: bool = True):
        # escnn layers expand and cache their filters when switched to eval mode; without no_grad
        # the cache would hold an autograd graph (and the network could not be deep-copied).
        with torch.no_grad():
            return super().train(mode)

    def check_heightmap(self, heightmap: torch.Tensor) -> None:
        S, C = self.config.heightmap_size, self.config.in_channels
        if heightmap.dim() != 4 or tuple(heightmap.shape[1:]) != (C, S, S):
            raise ValueError(f"expected a heightmap batch [B, {C}, {S}, {S}], got {tuple(heightmap.shape)}")

    def regularization_loss(self) -> torch.Tensor:
        """``relaxed_strength`` times the asymmetry of every relaxed layer (0 when not relaxed):
        add it to the loss to pull a relaxed network toward exact equivariance."""
        layers = [m for m in self.modules() if isinstance(m, RelaxedR2Conv)]
        if not layers:
            return torch.zeros((), device=next(self.parameters()).device)
        return self.config.relaxed_strength * sum(layer.asymmetry() for layer in layers)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class Actor(_SACNetwork):
    """heightmap [B, C, S, S] -> (mean [B, 5], log_std [B, 5]) in ACTION_LAYOUT order, pre-tanh."""

    def __init__(self, cfg: NetworkConfig, encoder: nn.Module, head: nn.Module):
        super().__init__(cfg)
        self.encoder, self.head = encoder, head

    def forward(self, heightmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_heightmap(heightmap)
        out = self.head(self.encoder(heightmap)).flatten(1)
        mean, log_std = out[:, :ACTION_DIM], out[:, ACTION_DIM:]
        return mean, torch.clamp(log_std, self.config.log_std_min, self.config.log_std_max)

    def export(self) -> "Actor":
        """The same function with plain torch layers (no escnn at run time), in eval mode."""
        return Actor(self.config, export_module(self.encoder), export_module(self.head)).eval()


class Critic(_SACNetwork):
    """(heightmap [B, C, S, S], action [B, 5]) -> (q1 [B, 1], q2 [B, 1]), invariant."""

    def __init__(self, cfg: NetworkConfig, encoder: nn.Module, head1: nn.Module, head2: nn.Module):
        super().__init__(cfg)
        self.encoder, self.head1, self.head2 = encoder, head1, head2

    def forward(self, heightmap: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_heightmap(heightmap)
        if action.dim() != 2 or action.shape != (heightmap.shape[0], ACTION_DIM):
            raise ValueError(f"expected actions [{heightmap.shape[0]}, {ACTION_DIM}], got {tuple(action.shape)}")
        return self.heads(self.encoder(heightmap), action)

    def heads(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q from encoder features [B, F, 1, 1] and actions [B, 5] (lets a caller reuse features)."""
        joint = torch.cat([features, action.reshape(action.shape[0], ACTION_DIM, 1, 1)], dim=1)
        return self.head1(joint).flatten(1), self.head2(joint).flatten(1)

    def export(self) -> "Critic":
        return Critic(self.config, export_module(self.encoder), export_module(self.head1),
                      export_module(self.head2)).eval()


def own_copy(network: nn.Module) -> nn.Module:
    """The network with escnn's constants made its own (``fields.own_kernel_bases``: moving it
    moves no other network's bases) and packed: escnn keeps some as strided or expanded views (an
    index vector with stride 0 for SO(2)), and copying into those fails (a target network's
    ``buffer.copy_``). Same values."""
    network = fields.own_kernel_bases(network)
    for module in network.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and not buffer.is_contiguous():
                module._buffers[name] = buffer.contiguous()
    return network


def make_encoder(cfg: NetworkConfig):
    """The encoder the actor and critic are built on, for other heads (the heightmap imitation
    policies): ``(module, out)`` with ``out`` the output FieldType ([B, F, 1, 1]) for an
    equivariant group, the channel count for 'none'."""
    cfg = cfg.validate()
    if cfg.group == "none":
        return _plain_encoder(cfg)
    encoder = _equivariant_encoder(cfg, network_gspace(cfg))
    return encoder, encoder.out_type


def make_actor(cfg: NetworkConfig | None = None) -> Actor:
    cfg = (cfg or NetworkConfig()).validate()
    encoder, out = make_encoder(cfg)
    if cfg.group == "none":
        return Actor(cfg, encoder, nn.Conv2d(out, 2 * ACTION_DIM, 1))
    gs = out.gspace
    out_type = fields.layout_type(gs, sym.ACTION_LAYOUT) + fields.trivial_type(gs, ACTION_DIM)
    head = EscnnStage(enn.R2Conv(encoder.out_type, out_type, 1))
    return own_copy(Actor(cfg, encoder, head))


def make_critic(cfg: NetworkConfig | None = None) -> Critic:
    cfg = (cfg or NetworkConfig()).validate()
    encoder, out = make_encoder(cfg)
    if cfg.group == "none":
        channels = out
        hidden = _plain_width(cfg.n_hidden)

        def plain_head() -> nn.Module:
            return nn.Sequential(nn.Conv2d(channels + ACTION_DIM, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, 1, 1))
        return Critic(cfg, encoder, plain_head(), plain_head())
    gs = out.gspace
    joint = out + fields.layout_type(gs, sym.ACTION_LAYOUT)
    G = sym.group(cfg.group)

    def head() -> EscnnStage:
        if G.is_finite:
            hidden = fields.regular_type(gs, cfg.n_hidden)
            invariant = group_pooling(hidden)
            modules = [enn.R2Conv(joint, hidden, 1), enn.ReLU(hidden, inplace=True), invariant]
        else:
            gated = cfg.so2_nonlinearity == "gated"
            hidden = fields.band_limited_type(gs, cfg.n_hidden, cfg.so2_max_frequency, gates=gated)
            act = so2_nonlinearity(hidden, cfg.so2_nonlinearity)
            invariant = norm_invariants(act.out_type)
            modules = [enn.R2Conv(joint, hidden, 1), act, invariant]
        modules.append(enn.R2Conv(invariant.out_type, fields.trivial_type(gs, 1), 1))
        return EscnnStage(enn.SequentialModule(*modules))

    return own_copy(Critic(cfg, encoder, head(), head()))


__all__ = ["Actor", "Critic", "EscnnStage", "InputCentering", "make_actor", "make_critic", "make_encoder",
           "encoder_schedule", "export_module", "own_copy", "network_gspace", "ACTION_DIM"]
