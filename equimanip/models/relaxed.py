"""Relaxed group convolution: approximately equivariant, exactly equivariant when it chooses to be.

API::

    conv = RelaxedR2Conv(in_type, out_type, kernel_size=3, padding=1, banks=2)   # escnn module
    y = conv(x)                         # GeometricTensor -> GeometricTensor (out_type: regular fields)
    conv.asymmetry()                    # sum over banks of the spread of the mixing weights (0: exact)
    conv.export()                       # torch.nn.Conv2d with the combined filter

Wang, Walters and Yu (ICML 2022; REFERENCES section 2): keep ``L`` kernel banks and let every group
element ``g`` mix them with its own weights ``w[g, l]``. Here each bank is an escnn ``R2Conv`` into
regular fields, i.e. a group convolution whose filter for the output channel of element ``g`` is
the bank's base filter transformed by ``g``. The relaxed layer scales the output channels of
element ``g`` of bank ``l`` by ``w[g, l]`` and sums the banks, so the filter of channel ``g`` is
``sum_l w[g, l] (g . psi_l)``, the relaxed group convolution. When ``w[g, l]`` does not depend on
``g`` the layer is a sum of equivariant convolutions and is exactly equivariant; that is how it
starts (``w = 1 / sqrt(L)``: the sum of L independently initialised banks keeps the variance of
one). :meth:`asymmetry` measures how far the weights have spread over the group; the networks add
``strength * asymmetry`` to the loss (``NetworkConfig.relaxed_strength``) to pull them back.

Since the banks are linear in their filters, the layer runs as *one* ``conv2d`` with the combined
filter (no L-fold cost in the convolution itself); in eval mode that filter is cached.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import nn


class RelaxedR2Conv(enn.EquivariantModule):
    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, kernel_size: int, padding: int,
                 banks: int = 2):
        super().__init__()
        if banks < 1:
            raise ValueError(f"a relaxed convolution needs at least one kernel bank, got {banks}")
        group = out_type.fibergroup
        order = group.order()
        if order < 1 or any(r.name != group.regular_representation.name for r in out_type.representations):
            raise ValueError("relaxed convolutions map into regular fields of a finite group")
        self.in_type, self.out_type, self.padding, self.order = in_type, out_type, padding, order
        self.banks = nn.ModuleList(
            enn.R2Conv(in_type, out_type, kernel_size, padding=padding, bias=(bank == 0)) for bank in range(banks))
        self.mixing = nn.Parameter(torch.full((order, banks), 1.0 / math.sqrt(banks)))
        # Output channel c of a regular field is the basis vector of group element c % order.
        self.register_buffer("element_of_channel", torch.arange(out_type.size) % order, persistent=False)
        self._cached = None

    def combined_filter(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(filter [C_out, C_in, k, k], bias [C_out]) of the single convolution this layer runs."""
        weights = self.mixing[self.element_of_channel]                     # [C_out, banks]
        total, bias = None, None
        for bank, conv in enumerate(self.banks):
            filt, b = conv.expand_parameters()
            term = weights[:, bank].reshape(-1, 1, 1, 1) * filt
            total = term if total is None else total + term
            bias = b if b is not None else bias
        return total, bias

    def asymmetry(self) -> torch.Tensor:
        """Sum of squared deviations of each bank's weights from their mean over the group."""
        return (self.mixing - self.mixing.mean(dim=0, keepdim=True)).pow(2).sum()

    def train(self, mode: bool = True):
        self._cached = None
        return super().train(mode)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        assert x.type == self.in_type
        if self.training:
            filt, bias = self.combined_filter()
        else:
            if self._cached is None:
                with torch.no_grad():
                    self._cached = self.combined_filter()
            filt, bias = self._cached
        return enn.GeometricTensor(F.conv2d(x.tensor, filt, bias, padding=self.padding), self.out_type, None)

    def evaluate_output_shape(self, input_shape):
        return self.banks[0].evaluate_output_shape(input_shape)

    def export(self) -> nn.Conv2d:
        with torch.no_grad():
            filt, bias = self.combined_filter()
        conv = nn.Conv2d(filt.shape[1], filt.shape[0], filt.shape[2], padding=self.padding, bias=bias is not None)
        conv.weight.data.copy_(filt)
        if bias is not None:
            conv.bias.data.copy_(bias)
        return conv.eval()


__all__ = ["RelaxedR2Conv"]
