"""Nonlinearities and poolings that escnn cannot export, written once in plain torch.

API (each returns an escnn EquivariantModule whose ``export()`` is the plain-torch core it runs)::

    act = so2_nonlinearity(linear_out_type, "gated" | "norm")   # SO(2) hidden fields
    pool = norm_max_pool(band_limited_type, 2)                   # SO(2) spatial pooling
    inv = norm_invariants(band_limited_type)                     # SO(2) fields -> invariants
    gpool = group_pooling(regular_type)                          # finite groups: max over the group
    act.out_type; plain = act.export()

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
import torch.nn.functional as F
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
        with torch.no_grad():
            return tuple(self.core(torch.zeros(input_shape)).shape)

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


class _NormMaxPoolCore(nn.Module):
    """Max pooling that keeps, per 2-d field and window, the vector of largest norm (a pointwise
    max of the two components would mix vectors from different pixels and break equivariance).
    The leading one-dimensional fields are non-negative here (after a ReLU), so their plain max is
    their largest norm."""

    def __init__(self, n_trivial: int, n_vectors: int, kernel: int):
        super().__init__()
        self.n_trivial, self.n_vectors, self.kernel = n_trivial, n_vectors, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        scalars = F.max_pool2d(x[:, :self.n_trivial], self.kernel)
        v = x[:, self.n_trivial:].reshape(B, self.n_vectors, 2, H * W)
        _, index = F.max_pool2d(v.pow(2).sum(dim=2).reshape(B, self.n_vectors, H, W), self.kernel,
                                return_indices=True)
        h, w = index.shape[-2:]
        picked = torch.gather(v, 3, index.reshape(B, self.n_vectors, 1, h * w).expand(-1, -1, 2, -1))
        return torch.cat([scalars, picked.reshape(B, 2 * self.n_vectors, h, w)], dim=1)


class _NormInvariantsCore(nn.Module):
    """Trivial fields as they are, each 2-d field replaced by its norm."""

    def __init__(self, n_trivial: int, n_vectors: int, eps: float = 1e-6):
        super().__init__()
        self.n_trivial, self.n_vectors, self.eps = n_trivial, n_vectors, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, self.n_trivial:].reshape(x.shape[0], self.n_vectors, 2, *x.shape[2:])
        return torch.cat([x[:, :self.n_trivial], torch.sqrt(v.pow(2).sum(dim=2) + self.eps)], dim=1)


class _GroupMaxCore(nn.Module):
    """Max over the |G| channels of each regular field (escnn's GroupPooling, without escnn)."""

    def __init__(self, order: int):
        super().__init__()
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, self.order, *x.shape[2:]).amax(dim=2)


def norm_max_pool(in_type: enn.FieldType, kernel: int) -> enn.EquivariantModule:
    n_trivial, n_vectors = _count_fields(in_type)
    return _CoreModule(in_type, in_type, _NormMaxPoolCore(n_trivial, n_vectors, kernel))


def norm_invariants(in_type: enn.FieldType) -> enn.EquivariantModule:
    n_trivial, n_vectors = _count_fields(in_type)
    out_type = enn.FieldType(in_type.gspace, (n_trivial + n_vectors) * [in_type.gspace.trivial_repr])
    return _CoreModule(in_type, out_type, _NormInvariantsCore(n_trivial, n_vectors))


def group_pooling(in_type: enn.FieldType) -> enn.EquivariantModule:
    order = in_type.fibergroup.order()
    regular = in_type.fibergroup.regular_representation.name
    if order < 1 or any(r.name != regular for r in in_type.representations):
        raise ValueError("group pooling here takes regular fields of a finite group")
    out_type = enn.FieldType(in_type.gspace, len(in_type) * [in_type.gspace.trivial_repr])
    return _CoreModule(in_type, out_type, _GroupMaxCore(order))


__all__ = ["so2_nonlinearity", "norm_max_pool", "norm_invariants", "group_pooling"]
