"""escnn field types from symmetry.py's layouts, and the equivariant MLP.

The field types are checked against symmetry.py itself (matrices and image transforms), so a
mismatch of conventions (escnn's reflection axis, image axes, irrep bases) fails here before any
network is trained on it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from escnn import nn as enn

from equimanip import symmetry as sym
from equimanip.models import fields
from equimanip.models.mlp import EquivariantMLP

torch.set_num_threads(1)   # a 2-core shared machine: more threads only contend

EQUIVARIANT = [n for n, g in sym.GROUPS.items() if not g.is_trivial]
LAYOUTS = {"action": sym.ACTION_LAYOUT, "object_state_2": sym.object_state_layout(2)}


def elements_to_check(name: str) -> list[sym.GroupElement]:
    G = sym.group(name)
    if G.is_finite:
        return G.elements()
    return G.sample(np.random.default_rng(1), 6)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("name", EQUIVARIANT)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_field_types_act_like_symmetry_py(name, layout):
    """escnn's action on a layout's field type is symmetry.transform, element by element."""
    gs = fields.gspace(name, planar=False)
    ft = fields.layout_type(gs, LAYOUTS[layout])
    x = torch.randn(3, LAYOUTS[layout].size, dtype=torch.float64)
    for g in elements_to_check(name):
        e = fields.to_escnn_element(gs, g)
        np.testing.assert_allclose(ft.representation(e), sym.representation(LAYOUTS[layout], g), atol=1e-9)
        ours = sym.transform(LAYOUTS[layout], g, x)
        theirs = enn.GeometricTensor(x, ft).transform(e).tensor
        torch.testing.assert_close(theirs, ours)


@pytest.mark.parametrize("name", ["c4", "c8", "c16", "d4", "d8", "so2"])
def test_escnn_image_transform_is_transform_heightmap_on_quarter_turns(name):
    """On images escnn's rotation k and its flip (axis 0) are symmetry.transform_heightmap: the
    same rot90 direction and the same mirror (rows reversed: y -> -y on the heightmap grid).
    Only quarter turns map the pixel grid onto itself, so only those are compared exactly."""
    gs = fields.gspace(name, planar=True)
    ft = fields.trivial_type(gs, 2)
    image = torch.randn(1, 2, 8, 8)
    quarter = [g for g in elements_to_check(name) if g.is_quarter_turn] if name != "so2" else \
        [sym.GroupElement(k * math.pi / 2) for k in range(4)]
    assert len(quarter) == (8 if name.startswith("d") else 4)
    for g in quarter:
        theirs = enn.GeometricTensor(image, ft).transform(fields.to_escnn_element(gs, g)).tensor
        torch.testing.assert_close(theirs, sym.transform_heightmap(g, image))


def test_escnn_default_mirror_would_be_the_wrong_one():
    """Why the reflection axis is set: escnn's default (pi/2) mirrors x, symmetry.py mirrors y."""
    from escnn import gspaces
    default = gspaces.flipRot2dOnR2(4)
    image = torch.randn(1, 1, 6, 6)
    flipped = enn.GeometricTensor(image, enn.FieldType(default, [default.trivial_repr])).transform(
        default.fibergroup.element((1, 0))).tensor
    assert not torch.allclose(flipped, sym.transform_heightmap(sym.GroupElement(0.0, True), image))


def test_element_and_group_errors():
    with pytest.raises(ValueError, match="plain torch"):
        fields.gspace("none")
    with pytest.raises(ValueError, match="unknown group"):
        fields.gspace("c3")
    with pytest.raises(ValueError, match="reflection"):
        fields.to_escnn_element(fields.gspace("c4"), sym.GroupElement(0.0, True))
    with pytest.raises(ValueError, match="multiple"):
        fields.to_escnn_element(fields.gspace("c4"), sym.GroupElement(0.3))
    with pytest.raises(ValueError, match="regular"):
        fields.regular_type(fields.gspace("so2"), 2)


@pytest.mark.parametrize("name", list(sym.GROUPS))
def test_mlp_is_equivariant_and_exports_exactly(name):
    torch.manual_seed(0)
    in_layout, out_layout = sym.object_state_layout(2), sym.ACTION_LAYOUT
    net = EquivariantMLP(in_layout, out_layout, name, hidden=48, depth=3).eval()
    x = torch.randn(32, in_layout.size)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (32, out_layout.size)
        for g in elements_to_check(name):
            assert relative_error(net(sym.transform(in_layout, g, x)), sym.transform(out_layout, g, y)) < 1e-4, g
        plain = net.export()
        assert not any("escnn" in type(m).__module__ for m in plain.modules())
        torch.testing.assert_close(plain(x), y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,nonlinearity", [("so2", "norm"), ("so2", "gated"), ("c8", "gated")])
def test_mlp_trains_and_stays_equivariant(name, nonlinearity):
    """A few Adam steps move the weights (gradients reach every layer) and keep the symmetry."""
    torch.manual_seed(1)
    layout = sym.object_state_layout(1)
    net = EquivariantMLP(layout, sym.ACTION_LAYOUT, name, hidden=32, so2_nonlinearity_kind=nonlinearity)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, target = torch.randn(64, layout.size), torch.randn(64, 5)
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(5):
        loss = (net(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    net.eval()
    with torch.no_grad():
        g = elements_to_check(name)[3]
        assert relative_error(net(sym.transform(layout, g, x)), sym.transform(sym.ACTION_LAYOUT, g, net(x))) < 1e-4


def test_a_rotation_network_is_not_mirror_equivariant():
    """The equivariance check can fail: C8 says nothing about reflections, so a mirror breaks it."""
    torch.manual_seed(0)
    layout = sym.object_state_layout(1)
    net = EquivariantMLP(layout, sym.ACTION_LAYOUT, "c8", hidden=32).eval()
    x = torch.randn(16, layout.size)
    mirror = sym.GroupElement(0.0, True)
    with torch.no_grad():
        mirrored_in, mirrored_out = sym.transform(layout, mirror, x), sym.transform(sym.ACTION_LAYOUT, mirror, net(x))
        assert relative_error(net(mirrored_in), mirrored_out) > 1e-2


def test_plain_mlp_has_about_the_same_parameter_count():
    layout = sym.object_state_layout(2)
    plain = EquivariantMLP(layout, sym.ACTION_LAYOUT, "none", hidden=128).parameter_count()
    for name in EQUIVARIANT:
        count = EquivariantMLP(layout, sym.ACTION_LAYOUT, name, hidden=128).parameter_count()
        assert 0.6 < count / plain < 1.5, (name, count, plain)


def test_mlp_input_errors():
    net = EquivariantMLP(sym.ACTION_LAYOUT, sym.ACTION_LAYOUT, "c4", hidden=16)
    with pytest.raises(ValueError, match=r"expected input \[B, 5\]"):
        net(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="depth"):
        EquivariantMLP(sym.ACTION_LAYOUT, sym.ACTION_LAYOUT, "c4", depth=0)
    with pytest.raises(ValueError, match="nonlinearity"):
        EquivariantMLP(sym.ACTION_LAYOUT, sym.ACTION_LAYOUT, "so2", so2_nonlinearity_kind="relu")
