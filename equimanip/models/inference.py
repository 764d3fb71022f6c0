"""Fast CPU inference for an exported actor: memory format per layer, then a frozen TorchScript graph.

API::

    plain = actor.export()                                   # equimanip.models.Actor, plain torch
    fast, plan = optimize_for_cpu(plain)                     # TorchScript; plan: format per layer
    mean, log_std = fast(heightmap)                          # [1, C, S, S] -> [1, 5], [1, 5]

What it does, and why (measured on the 2-core build machine, one thread, batch 1; the numbers are
in docs/equivariant_sac.md):

* escnn's exported filters are strided views; ``Actor.export`` already packs them, which lets torch
  use oneDNN for the convolutions (7x faster for a 2 -> 8 channel layer at 64 x 64);
* torch's max-pooling in the default (NCHW) layout is 5 to 10 times slower than in channels-last,
  while a convolution is sometimes faster in one layout and sometimes in the other, depending on
  its channel counts and image size. So each layer is timed in both layouts on the example input
  (the switch costs a copy, timed with it) and runs in the faster one: a greedy, per-layer choice,
  ``plan`` lists it. The function is unchanged (same weights), results agree to float rounding;
* ``torch.jit.trace`` + ``torch.jit.freeze`` remove the Python overhead of ~20 module calls, which
  is a third of the time of the small CPU-configuration network.

It is for CPU, batch 1 (a controller's decision); on a GPU use the exported actor as it is.
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch
from torch import nn

from equimanip.symmetry import ACTION_LAYOUT

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


class _ToFormat(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=FORMATS[self.name])


class _ActorOutputs(nn.Module):
    """The Actor's forward without its Python-side checks: layers, then (mean, clamped log-std)."""

    def __init__(self, layers: nn.Sequential, action_dim: int, log_std_min: float, log_std_max: float):
        super().__init__()
        self.layers, self.action_dim = layers, action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.layers(x).flatten(1)
        return out[:, :self.action_dim], out[:, self.action_dim:].clamp(self.log_std_min, self.log_std_max)


def _median_us(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def _layer_in(module: nn.Module, name: str) -> nn.Module:
    return module.to(memory_format=FORMATS[name]) if name == "channels_last" else module


def optimize_for_cpu(actor, example: torch.Tensor | None = None, repeats: int = 7):
    """``(TorchScript module, plan)`` for an exported ``Actor`` (see the module docstring).
    ``example``: an input of the right shape (zeros of [1, C, S, S] by default)."""
    import copy

    cfg = actor.config
    if example is None:
        example = torch.zeros(1, cfg.in_channels, cfg.heightmap_size, cfg.heightmap_size)
    layers = [copy.deepcopy(m).eval() for m in list(actor.encoder) + [actor.head]]
    chosen: list[nn.Module] = []
    plan: list[str] = []
    current = "nchw"
    x = example.contiguous()
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.ReLU):              # elementwise: any layout, keep the current one
                chosen.append(layer)
                x = layer(x)
                plan.append(f"{type(layer).__name__}:{current}")
                continue
            other = "channels_last" if current == "nchw" else "nchw"
            keep_layer = _layer_in(copy.deepcopy(layer), current)
            switch_layer = _layer_in(copy.deepcopy(layer), other)
            keep = _median_us(lambda: keep_layer(x), repeats)
            switch = _median_us(lambda: switch_layer(x.contiguous(memory_format=FORMATS[other])), repeats)
            if switch < keep:
                chosen += [_ToFormat(other), switch_layer]
                current = other
                x = switch_layer(x.contiguous(memory_format=FORMATS[other]))
            else:
                chosen.append(keep_layer)
                x = keep_layer(x)
            plan.append(f"{type(layer).__name__}:{current}")
        head = _ActorOutputs(nn.Sequential(*chosen), ACTION_LAYOUT.size, cfg.log_std_min, cfg.log_std_max).eval()
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated in favour of torch.compile / torch.export; on
            # this CPU those need a compiler run per process (tens of seconds), which a controller
            # node should not pay at start-up. The traced graph is what was measured.
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.freeze(torch.jit.trace(head, example))
    return traced, plan


__all__ = ["optimize_for_cpu"]
