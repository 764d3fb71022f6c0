"""Nonlinearities for SO(2) hidden fields (band-limited irreps), with a plain-torch export.

API::

    act = so2_nonlinearity(linear_out_type, "gated" | "norm")   # escnn EquivariantModule
    act.out_type                                                 # the type after it
    plain = act.export()                                         # the same function, plain torch

A pointwise ReLU is only equivariant on regular fields of finite groups; irreps of SO(2) need a
function of invariants. Both options here act on the layout of
``fields.band_limited_type``: trivial fields first (plain ReLU), then two-dimensional irrep fields
(contiguous pairs of channels):

* ``norm``: each 2-d field ``v`` becomes ``v * relu(|v| - b) / |v|`` with a learned bias ``b`` per
  field: the direction is kept, the length shrunk (escnn's NormNonLinearity 'n_relu' idea);
* ``gated``: ``n L`` extra trivial gate channels precede the irreps; each 2-d field is multiplied
  by ``sigmoid(gate)`` and the gates are dropped (escnn's GatedNonLinearity1 idea).

escnn's own versions have no ``export()``; these run the same code (``_NormReLUCore`` /
``_GatedCore``) inside escnn and after export, so the two cannot drift apart. They work on any
tensor whose channel axis is 1: ``[B, C]`` (MLPs) and ``[B, C, H, W]`` (convolutions).
"""
from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn


def _count_fields(field_type: enn.FieldType) -> tuple[int, int]:
    """(leading one-dimensional fields, two-dimensional fields after them), checked."""
    sizes = [r.size for r in field_type.representations]
    n_trivial = next((i for i, s in enumerate(sizes) if s != 1), len(sizes))
    n_vectors = len(sizes) - n_trivial
    if any(s != 2 for s in sizes[n_trivial:]):
        raise ValueError("expected trivial fields followed by two-dimensional irreps")
    return n_trivial, n_vectors


class _NormReLUCore(nn.Module):
    def __init__(self, n_trivial: int, n_vectors: int, eps: float = 1e-6):
        super().__init__()
        self.n_trivial, self.n_vectors, self.eps = n_trivial, n_vectors, eps
        self.bias = nn.Parameter(torch.full((n_vectors,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalars, vectors = x[:, :self.n_trivial], x[:, self.n_trivial:]
        v = vectors.reshape(x.shape[0], self.n_vectors, 2, *x.shape[2:])
        norm = torch.sqrt(v.pow(2).sum(dim=2, keepdim=True) + self.eps)
        bias = self.bias.reshape(1, -1, 1, *([1] * (x.dim() - 2)))
        v = v * (torch.relu(norm - bias) / norm)
        return torch.cat([torch.relu(scalars), v.reshape(vectors.shape)], dim=1)


class _GatedCore(nn.Module):
    def __init__(self, n_trivial: int, n_gates: int):
        super().__init__()
        self.n_trivial, self.n_gates = n_trivial, n_gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, g = self.n_trivial, self.n_gates
        scalars, gates, vectors = x[:, :t], x[:, t:t + g], x[:, t + g:]
        v = vectors.reshape(x.shape[0], g, 2, *x.shape[2:]) * torch.sigmoid(gates).unsqueeze(2)
        return torch.cat([torch.relu(scalars), v.reshape(vectors.shape)], dim=1)


class _CoreModule(enn.EquivariantModule):
    """An escnn module around a plain-torch core that maps ``in_type`` channels to ``out_type``."""

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, core: nn.Module):
        super().__init__()
        self.in_type, self.out_type, self.core = in_type, out_type, core

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        assert x.type == self.in_type
        return enn.GeometricTensor(self.core(x.tensor), self.out_type, x.coords)

    def evaluate_output_shape(self, input_shape):
        return (input_shape[0], self.out_type.size, *input_shape[2:])

    def export(self) -> nn.Module:
        import copy
        return copy.deepcopy(self.core).eval()


def so2_nonlinearity(in_type: enn.FieldType, kind: str) -> enn.EquivariantModule:
    """The nonlinearity ``kind`` ('norm' or 'gated') for a band-limited type (``gates=True`` for
    'gated', see ``fields.band_limited_type``)."""
    if kind == "norm":
        n_trivial, n_vectors = _count_fields(in_type)
        return _CoreModule(in_type, in_type, _NormReLUCore(n_trivial, n_vectors))
    if kind == "gated":
        n_ones, n_vectors = _count_fields(in_type)
        n_trivial = n_ones - n_vectors
        if n_trivial < 0:
            raise ValueError("a gated type needs trivial fields, one gate per 2-d field, then the 2-d fields")
        out_type = enn.FieldType(in_type.gspace, in_type.representations[:n_trivial] + in_type.representations[n_ones:])
        return _CoreModule(in_type, out_type, _GatedCore(n_trivial, n_vectors))
    raise ValueError(f"unknown SO(2) nonlinearity {kind!r}; choose 'gated' or 'norm'")


__all__ = ["so2_nonlinearity"]
