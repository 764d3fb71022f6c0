"""The one place where ``equimanip.symmetry`` meets escnn.

API::

    gs = gspace("d4", planar=True)            # escnn GSpace on R^2 (images) for a group name
    gs = gspace("c8", planar=False)           # the same group without a base space (vectors, MLPs)
    ft = layout_type(gs, ACTION_LAYOUT)       # FieldType whose channels are the layout's entries, in order
    e = to_escnn_element(gs, g)               # escnn's element that acts like symmetry.GroupElement g
    hidden = regular_type(gs, n)              # n regular fields (finite groups)
    hidden = band_limited_type(gs, n, L)      # n copies of irreps 0..L (so2)

``group='none'`` has no escnn counterpart here: the networks use plain torch layers for it.

Conventions, checked when the networks are built (``_verify``) and by
``test/test_models_sac.py::test_heads_are_equivariant_under_every_element``:

* symmetry.py's element ``(angle, flip)`` is ``R(angle) @ diag(1, -1)^flip`` with the mirror
  ``y -> -y``; escnn's dihedral element ``(f, k)`` is "flip f, then rotate by k 2 pi / N". They agree
  (same element, same matrices for the frequency-1 irrep) when the escnn gspace's reflection axis
  is the x-axis: ``flipRot2dOnR2(N, axis=0)`` (escnn's default axis is pi/2, the *other* mirror).
* On images, escnn's ``GeometricTensor.transform`` by the rotation ``k`` is ``torch.rot90(x, k,
  dims=(-2, -1))`` and its flip about axis 0 reverses the rows: exactly
  ``symmetry.transform_heightmap`` for the heightmap's grid (column j along +x, row i along -y).
* Field kinds: scalar -> trivial; pseudoscalar -> the sign representation on D_N (the reflections
  change its sign), trivial on C_N and SO(2); vector of frequency k -> the frequency-k irrep. On
  C_N / D_N a frequency is only defined modulo N, so a vector of frequency k = N/2 (e.g. the
  doubled box yaw under C4) splits into two one-dimensional irreps, k = 0 into trivial (+ sign on
  D_N), and k > N/2 is irrep N - k seen in the mirrored basis (c, -s). Every representation built
  here is compared with ``symmetry.Field.matrix`` on the group's elements (sampled angles for SO(2))
  before it is returned, so a convention mismatch fails loudly instead of training a wrong network.
"""
from __future__ import annotations

import copy
import math
from functools import lru_cache

import numpy as np
from escnn import group as egroup
from escnn import gspaces
from escnn import nn as enn
from escnn.nn.modules.basismanager.basisexpansion_singleblock import SingleBlockBasisExpansion
from torch import nn

from equimanip import symmetry as sym

# Highest SO(2) frequency the so2 group objects know by default; irreps above it still work, this
# only bounds what escnn precomputes for its own bases.
DEFAULT_SO2_MAX_FREQUENCY = 6


def check_group_name(name: str) -> sym.PlanarGroup:
    """The symmetry.PlanarGroup called ``name`` (ValueError listing the names otherwise)."""
    return sym.group(name)


@lru_cache(maxsize=None)
def gspace(name: str, planar: bool = True, max_frequency: int = DEFAULT_SO2_MAX_FREQUENCY) -> gspaces.GSpace:
    """escnn's GSpace for the group ``name``: on the plane (``planar``, for images) or with no base
    space (for vectors). ValueError for 'none' (plain torch layers are used there) and unknown names."""
    G = check_group_name(name)
    if G.is_trivial:
        raise ValueError("group 'none' has no escnn field types: its networks are plain torch")
    if planar:
        if G.rotations is None:
            return gspaces.rot2dOnR2(N=-1, maximum_frequency=max_frequency)
        if G.reflections:
            return gspaces.flipRot2dOnR2(N=G.rotations, axis=0.0)   # mirror y -> -y, see the docstring
        return gspaces.rot2dOnR2(N=G.rotations)
    if G.rotations is None:
        return gspaces.no_base_space(egroup.so2_group(max_frequency))
    if G.reflections:
        return gspaces.no_base_space(egroup.dihedral_group(G.rotations))
    return gspaces.no_base_space(egroup.cyclic_group(G.rotations))


def planar_group_of(gs: gspaces.GSpace) -> tuple[int | None, bool]:
    """(rotations or None for SO(2), reflections) of a gspace built by :func:`gspace`."""
    G = gs.fibergroup
    if isinstance(G, egroup.SO2):
        return None, False
    if isinstance(G, egroup.DihedralGroup):
        return G.rotation_order, True
    if isinstance(G, egroup.CyclicGroup):
        return G.order(), False
    raise ValueError(f"unsupported escnn group {G.name}")


def to_escnn_element(gs: gspaces.GSpace, g: sym.GroupElement):
    """escnn's group element acting like ``g`` (ValueError when ``g`` is not in the group)."""
    rotations, reflections = planar_group_of(gs)
    G = gs.fibergroup
    if g.flip and not reflections:
        raise ValueError(f"{g} has a reflection; the group {G.name} has none")
    if rotations is None:
        return G.element(g.angle % (2 * math.pi))
    steps = g.angle / (2 * math.pi / rotations)
    if abs(steps - round(steps)) > 1e-9:
        raise ValueError(f"{g} is not a rotation by a multiple of 2 pi / {rotations}")
    k = int(round(steps)) % rotations
    return G.element((int(g.flip), k)) if reflections else G.element(k)


def check_elements(gs: gspaces.GSpace, count: int = 12) -> list[sym.GroupElement]:
    """Elements to check a representation on: all of a finite group, ``count`` angles of SO(2)."""
    rotations, reflections = planar_group_of(gs)
    if rotations is None:
        return [sym.GroupElement(a, False) for a in np.linspace(-math.pi, math.pi, count, endpoint=False) + 0.1]
    flips = (False, True) if reflections else (False,)
    return [sym.GroupElement(2 * math.pi * k / rotations, f) for f in flips for k in range(rotations)]


# ---------------------------------------------------------------------------- representations


def field_representation(gs: gspaces.GSpace, field: sym.Field) -> egroup.Representation:
    """The escnn representation of one symmetry.Field, verified against ``field.matrix``."""
    rep = _field_representation(gs, field.kind, field.frequency)
    _verify(gs, rep, field)
    return rep


def _field_representation(gs: gspaces.GSpace, kind: str, frequency: int) -> egroup.Representation:
    G = gs.fibergroup
    rotations, reflections = planar_group_of(gs)
    if kind == "scalar" or (kind == "pseudoscalar" and not reflections):
        return G.trivial_representation
    if kind == "pseudoscalar":
        return G.irrep(1, 0)                      # D_N's sign representation: -1 on reflections
    # A vector (c, s) turning by frequency * angle, s -> -s under the mirror.
    if rotations is None:
        return G.irrep(frequency)
    k = frequency % rotations
    if reflections:
        if k == 0:                                # c invariant, s flips sign under the mirror
            parts = [G.irrep(0, 0), G.irrep(1, 0)]
        elif 2 * k == rotations:                  # c -> (-1)^j c, s -> (-1)^(j + f) s
            parts = [G.irrep(0, k), G.irrep(1, k)]
        else:
            return _mirrored(G, G.irrep(1, min(k, rotations - k)), k > rotations / 2, f"D{rotations}_vec{k}")
        return _sum(G, parts, f"D{rotations}_vec{k}")
    if k == 0:
        return _sum(G, [G.trivial_representation] * 2, f"C{rotations}_vec{k}")
    if 2 * k == rotations:
        return _sum(G, [G.irrep(k)] * 2, f"C{rotations}_vec{k}")
    return _mirrored(G, G.irrep(min(k, rotations - k)), k > rotations / 2, f"C{rotations}_vec{k}")


def _sum(G, parts, name: str) -> egroup.Representation:
    name = f"equimanip_{name}"
    if name in G.representations:
        return G.representations[name]
    return egroup.directsum(parts, name=name)


def _mirrored(G, irrep, mirror: bool, name: str) -> egroup.Representation:
    """``irrep`` itself, or (for frequencies above N/2) the same irrep in the basis (c, -s), which
    turns the other way: R(-a) = F R(a) F with F = diag(1, -1)."""
    if not mirror:
        return irrep
    name = f"equimanip_{name}"
    if name in G.representations:
        return G.representations[name]
    return egroup.directsum([irrep], change_of_basis=np.diag([1.0, -1.0]), name=name)


def _verify(gs: gspaces.GSpace, rep: egroup.Representation, field: sym.Field) -> None:
    for g in check_elements(gs):
        ours, theirs = field.matrix(g), rep(to_escnn_element(gs, g))
        if not np.allclose(ours, theirs, atol=1e-9):
            raise AssertionError(f"escnn representation {rep.name} of {field} disagrees with "
                                 f"symmetry.py at {g}: {theirs.tolist()} vs {ours.tolist()}")


# ---------------------------------------------------------------------------- field types


def layout_type(gs: gspaces.GSpace, layout: sym.Layout) -> enn.FieldType:
    """FieldType whose channels are ``layout``'s entries in order (one field per layout field)."""
    return enn.FieldType(gs, [field_representation(gs, f) for f in layout.fields])


def trivial_type(gs: gspaces.GSpace, n: int) -> enn.FieldType:
    return enn.FieldType(gs, n * [gs.trivial_repr])


def regular_type(gs: gspaces.GSpace, n: int) -> enn.FieldType:
    """``n`` regular fields (finite groups only: |G| channels each, pointwise nonlinearities)."""
    if planar_group_of(gs)[0] is None:
        raise ValueError("SO(2) has no finite regular representation; use band_limited_type")
    return enn.FieldType(gs, n * [gs.regular_repr])


def band_limited_type(gs: gspaces.GSpace, n: int, max_frequency: int, gates: bool = False) -> enn.FieldType:
    """SO(2) hidden type: ``n`` trivial fields, then (with ``gates``) ``n * max_frequency`` trivial
    gate fields, then ``n`` copies of each irrep 1..max_frequency. Trivial fields first and the
    two-dimensional fields contiguous after them is what equimanip.models.nonlinear expects."""
    G = gs.fibergroup
    reps = n * [G.trivial_representation]
    if gates:
        reps += n * max_frequency * [G.trivial_representation]
    reps += [G.irrep(k) for _ in range(n) for k in range(1, max_frequency + 1)]
    return enn.FieldType(gs, reps)


def band_limited_size(max_frequency: int) -> int:
    """Channels per copy of irreps 0..L: 1 + 2 L."""
    return 1 + 2 * max_frequency


# ---------------------------------------------------------------------------- module traversal


def own_kernel_bases(network: nn.Module) -> nn.Module:
    """``network`` with escnn's sampled kernel bases made its own; returns it.

    escnn caches one basis-sampling module per (basis, sampling points) for the whole process and
    shares it between every convolution or linear layer that uses that basis, in every network.
    ``Module.to`` replaces a module's buffers in place, so moving one network (to a GPU, or
    ``.double()``) moved the bases of all the others, which then failed with tensors on two
    devices. Each shared module is replaced here by a twin with its own buffer table: the same
    tensors until this network is moved (no copy of the data), its own afterwards."""
    twins: dict[int, nn.Module] = {}
    for module in list(network.modules()):
        for name, child in module._modules.items():
            if isinstance(child, SingleBlockBasisExpansion):
                if id(child) not in twins:
                    twin = copy.copy(child)
                    twin._buffers, twin._parameters = dict(child._buffers), dict(child._parameters)
                    twin._modules = dict(child._modules)
                    twins[id(child)] = twin
                module._modules[name] = twins[id(child)]
    return network


class CheapModuleWalk:
    """Mixin for torch modules that contain escnn layers: ``named_modules`` (and so ``modules()``,
    ``parameters()``, ``buffers()``) with a memo keyed by ``id``.

    torch remembers visited modules in a set, which hashes each one; escnn's basis-expansion
    modules define ``__hash__`` from their whole kernel basis, so one ``critic.parameters()`` of
    the CPU configuration took 12 ms (39 ms relaxed) on the build machine, and a SAC update walks
    its networks several times (target update, regulariser). Same modules, same order as torch."""

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        if memo is not None and remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        seen: set[int] = set()

        def walk(module, path: str):
            if remove_duplicate:
                if id(module) in seen:
                    return
                seen.add(id(module))
            yield path, module
            for name, child in module._modules.items():
                if child is not None:
                    yield from walk(child, f"{path}.{name}" if path else name)

        yield from walk(self, prefix)


# Buffers escnn computes from a layer's weights (expanded filters and matrices, with their bias)
# or from its field types (bias expansion, a basis module's index tables), exactly.
_LAYER_DERIVED_BUFFERS = ("filter", "matrix", "expanded_bias", "bias_expansion")
# The sampled kernel bases come from the field types too, but by floating-point computation that
# differs in the last bits between CPUs (up to 3e-8 between the Intel machine that trained the
# shipped pushing policy and an AMD one), enough to change a simulated episode's steps. Kept in
# the state dict, a checkpoint's network computes the same function wherever it is loaded.
_KEPT_BASIS_BUFFERS = ("sampled_basis",)


def derived_state_keys(network: nn.Module) -> set[str]:
    """The ``network.state_dict()`` keys of buffers that escnn rebuilds exactly from the weights
    and the field types, which a network built from the same configuration computes again (the
    sampled kernel bases are not among them: see _KEPT_BASIS_BUFFERS)."""
    from escnn.nn.modules.basismanager import BasisManager
    from escnn.nn.modules.conv.rd_convolution import _RdConv

    keys: set[str] = set()
    # Every path: layers with the same basis share one basis module, which the state dict holds
    # once under each of them.
    for path, module in network.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        if isinstance(module, BasisManager):
            names = [n for n in module._buffers if n not in _KEPT_BASIS_BUFFERS]
        elif isinstance(module, (_RdConv, enn.Linear)):
            names = [n for n in _LAYER_DERIVED_BUFFERS if n in module._buffers]
        else:
            continue
        keys.update(prefix + n for n in names
                    if module._buffers[n] is not None and n not in module._non_persistent_buffers_set)
    return keys


class WeightsOnlyStateDict(nn.Module):
    """Mixin for torch modules that contain escnn layers: ``state_dict`` leaves out the buffers
    escnn derives exactly (``derived_state_keys``), and loading rebuilds them.

    They are most of the state dict: the C8 actor of the paper configuration has 4.5 MB of weights
    and 55 MB of expanded filters, the CPU configuration's 60 kB and 0.7 MB. It
    works through module hooks, so it also holds when the network sits inside a plain module
    whose ``state_dict`` or ``load_state_dict`` is called. Loading takes a network's own derived
    buffers in place of any the state dict carries (checkpoints written before this: same values,
    ignored) and then switches the network to training mode and back, which makes escnn expand its
    filters again from the loaded weights (eval mode caches them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_state_dict_post_hook(_drop_derived_buffers)
        self.register_load_state_dict_pre_hook(_use_own_derived_buffers)
        self.register_load_state_dict_post_hook(_expand_loaded_weights)


def _drop_derived_buffers(module, state_dict, prefix, local_metadata) -> None:
    for key in derived_state_keys(module):
        state_dict.pop(prefix + key, None)


def _use_own_derived_buffers(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                             error_msgs) -> None:
    derived = derived_state_keys(module)
    for name, buffer in module.named_buffers(remove_duplicate=False):
        # A sampled basis the state dict lacks (checkpoints written at 6cbe0a7, which dropped them
        # too) is this network's own: the same up to the last bits of the CPU that computes it.
        if name in derived or (name.rsplit(".", 1)[-1] in _KEPT_BASIS_BUFFERS and prefix + name not in state_dict):
            state_dict[prefix + name] = buffer


def _expand_loaded_weights(module, incompatible_keys) -> None:
    mode = module.training
    module.train(True)
    module.train(mode)


__all__ = ["CheapModuleWalk", "WeightsOnlyStateDict", "derived_state_keys", "own_kernel_bases",
           "gspace", "planar_group_of", "to_escnn_element", "check_elements", "field_representation",
           "layout_type", "trivial_type", "regular_type", "band_limited_type", "band_limited_size",
           "check_group_name", "DEFAULT_SO2_MAX_FREQUENCY"]
