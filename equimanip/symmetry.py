"""The symmetry of the workspace, described once, as data.

A tabletop scene looks the same after a rotation about the vertical axis (and, for mirror-symmetric
tasks, after a reflection), so a good policy commutes with those transformations. Everything in
equimanip that relies on this (the networks' field types, the buffer augmentation, symmetric MPPI
sampling, the equivariance tests) reads it from here instead of hard-coding indices:

* a **planar group** by name: ``c4``, ``c8``, ``c16`` (rotations by multiples of 2 pi / N), ``d4``,
  ``d8`` (the same plus reflections), ``so2`` (every rotation) and ``none`` (the trivial group);
* a **group element** ``g = (angle, flip)`` acting on the plane as ``R(angle) @ F``: first the
  mirror ``F`` (``y -> -y``, i.e. across the base x-axis) when ``flip``, then the rotation by
  ``angle`` counter-clockwise seen from above. The centre is the vertical axis through the gripper
  (the heightmap's centre and the origin of the object-state offsets);
* a **layout**: how each entry of a vector transforms, as a sequence of fields. A ``scalar`` does
  not change; a ``pseudoscalar`` changes sign under a reflection (a yaw rate: a mirrored turn goes
  the other way); a ``vector`` of frequency ``k`` is a pair ``(c, s)`` that turns by ``k * angle``
  and has ``s -> -s`` under the mirror: frequency 1 for in-plane displacements (dx, dy) and for
  ``(cos yaw, sin yaw)``, frequency 2 for ``(cos 2 yaw, sin 2 yaw)`` of a box whose yaw is defined
  modulo pi.

The two layouts every learner uses are here: :data:`ACTION_LAYOUT` for ``[p, dx, dy, dz, dyaw]``
(``equimanip.action``) and :func:`object_state_layout` for the object-centric state
(``equimanip.perception.object_state``). :func:`transform` applies an element to a batch of
vectors of any layout, :func:`representation` gives the matrix, and :func:`transform_heightmap`
turns a top-down image about its centre (exactly, by ``rot90`` and flips, for multiples of 90
degrees; by bilinear resampling otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from equimanip.action import ACTION_NAMES
from equimanip.perception.object_state import GOAL_FIELDS, GRIPPER_FIELDS, SLOT_FIELDS
from equimanip.perception.object_state import object_state_layout as object_state_names

# ----------------------------------------------------------------------------------- the groups


@dataclass(frozen=True)
class GroupElement:
    """``R(angle) @ F^flip`` acting on the plane about the gripper's vertical axis."""

    angle: float = 0.0
    flip: bool = False

    def matrix(self) -> np.ndarray:
        """The 2 x 2 matrix acting on in-plane (x, y) column vectors."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        rotation = np.array([[c, -s], [s, c]])
        return rotation @ np.diag([1.0, -1.0]) if self.flip else rotation

    def inverse(self) -> "GroupElement":
        # (R F)^-1 = F R^-1 = R F (a reflection is its own inverse); a rotation inverts its angle.
        return self if self.flip else GroupElement(-self.angle, False)

    def compose(self, other: "GroupElement") -> "GroupElement":
        """``self`` after ``other``: R(a) F^f  R(b) F^h = R(a + (-1)^f b) F^(f xor h)."""
        angle = self.angle + (-other.angle if self.flip else other.angle)
        return GroupElement(_wrap(angle), self.flip != other.flip)

    @property
    def is_quarter_turn(self) -> bool:
        """Whether the rotation is a multiple of 90 degrees (exact on a square pixel grid)."""
        quarters = self.angle / (math.pi / 2)
        return abs(quarters - round(quarters)) < 1e-9


IDENTITY = GroupElement()


def _wrap(angle: float) -> float:
    """Angle in [-pi, pi), so that composed elements compare equal to listed ones."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class PlanarGroup:
    """A subgroup of O(2): ``rotations`` evenly spaced rotations (None: all of SO(2)), with or
    without the reflections."""

    name: str
    rotations: Optional[int]
    reflections: bool

    @property
    def is_finite(self) -> bool:
        return self.rotations is not None

    @property
    def order(self) -> Optional[int]:
        """Number of elements; None for SO(2)."""
        if self.rotations is None:
            return None
        return self.rotations * (2 if self.reflections else 1)

    @property
    def is_trivial(self) -> bool:
        return self.order == 1

    def elements(self) -> list[GroupElement]:
        """Every element, rotations first (angle k 2 pi / N), then the reflected ones."""
        if self.rotations is None:
            raise ValueError(f"group {self.name} is continuous; use sample() for elements")
        step = 2 * math.pi / self.rotations
        flips = (False, True) if self.reflections else (False,)
        return [GroupElement(_wrap(k * step), f) for f in flips for k in range(self.rotations)]

    def sample(self, rng: np.random.Generator, n: int) -> list[GroupElement]:
        """``n`` elements drawn uniformly (Haar measure for SO(2))."""
        if self.rotations is None:
            return [GroupElement(_wrap(a), False) for a in rng.uniform(-math.pi, math.pi, n)]
        elements = self.elements()
        return [elements[i] for i in rng.integers(0, len(elements), n)]

    def contains(self, g: GroupElement) -> bool:
        if g.flip and not self.reflections:
            return False
        if self.rotations is None:
            return True
        steps = g.angle / (2 * math.pi / self.rotations)
        return abs(steps - round(steps)) < 1e-9


GROUPS = {
    "none": PlanarGroup("none", 1, False),
    "c4": PlanarGroup("c4", 4, False),
    "c8": PlanarGroup("c8", 8, False),
    "c16": PlanarGroup("c16", 16, False),
    "d4": PlanarGroup("d4", 4, True),
    "d8": PlanarGroup("d8", 8, True),
    "so2": PlanarGroup("so2", None, False),
}


def group(name: str) -> PlanarGroup:
    """The group called ``name``; ValueError listing the names otherwise."""
    try:
        return GROUPS[name]
    except KeyError:
        raise ValueError(f"unknown group '{name}'; available: {', '.join(GROUPS)}") from None


# ----------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Field:
    """One field of a layout: ``kind`` is 'scalar', 'pseudoscalar' or 'vector' (2 entries turning
    with ``frequency`` times the angle). ``names`` are the entries it covers."""

    kind: str
    names: tuple[str, ...]
    frequency: int = 0

    def __post_init__(self):
        size = 2 if self.kind == "vector" else 1
        if self.kind not in ("scalar", "pseudoscalar", "vector"):
            raise ValueError(f"unknown field kind {self.kind!r}")
        if len(self.names) != size:
            raise ValueError(f"a {self.kind} field covers {size} entries, got {self.names}")
        if (self.kind == "vector") != (self.frequency > 0):
            raise ValueError("vector fields need a frequency >= 1, other fields none")

    @property
    def size(self) -> int:
        return len(self.names)

    def matrix(self, g: GroupElement) -> np.ndarray:
        if self.kind == "scalar":
            return np.ones((1, 1))
        if self.kind == "pseudoscalar":
            return -np.ones((1, 1)) if g.flip else np.ones((1, 1))
        return GroupElement(self.frequency * g.angle, g.flip).matrix()


def scalar(name: str) -> Field:
    return Field("scalar", (name,))


def pseudoscalar(name: str) -> Field:
    return Field("pseudoscalar", (name,))


def vector(x_name: str, y_name: str, frequency: int = 1) -> Field:
    return Field("vector", (x_name, y_name), frequency)


@dataclass(frozen=True)
class Layout:
    """A vector's entries as fields, in order."""

    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [n for f in self.fields for n in f.names]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fields)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def indices(self, kind: str, frequency: int = 0) -> list[int]:
        """Positions of every entry of fields of ``kind`` (and ``frequency`` for vectors), e.g. to
        build a network's field type or to pick out the invariant part."""
        out, start = [], 0
        for f in self.fields:
            if f.kind == kind and (kind != "vector" or f.frequency == frequency):
                out.extend(range(start, start + f.size))
            start += f.size
        return out

    def count(self, kind: str, frequency: int = 0) -> int:
        """How many fields (not entries) of that kind."""
        return sum(1 for f in self.fields if f.kind == kind and (kind != "vector" or f.frequency == frequency))

    def frequencies(self) -> list[int]:
        return sorted({f.frequency for f in self.fields if f.kind == "vector"})


def representation(layout: Layout, g: GroupElement) -> np.ndarray:
    """The (D x D) matrix by which ``g`` acts on vectors of ``layout`` (block diagonal)."""
    D = np.zeros((layout.size, layout.size))
    start = 0
    for f in layout.fields:
        D[start:start + f.size, start:start + f.size] = f.matrix(g)
        start += f.size
    return D


Array = Union[np.ndarray, "torch.Tensor"]  # noqa: F821 - torch is optional here


def transform(layout: Layout, g: GroupElement, x: Array) -> Array:
    """``g`` applied to vectors ``x`` of ``layout`` (last axis), numpy or torch, any batch shape."""
    if x.shape[-1] != layout.size:
        raise ValueError(f"expected {layout.size} entries {layout.names}, got shape {tuple(x.shape)}")
    D = representation(layout, g)
    if isinstance(x, np.ndarray):
        return (x @ D.T).astype(x.dtype, copy=False)
    import torch
    return x @ torch.as_tensor(D.T, dtype=x.dtype, device=x.device)


# The action [p, dx, dy, dz, dyaw] (equimanip.action): the aperture and the height change are
# invariant, the in-plane step turns with the scene, and a mirrored scene turns the other way.
ACTION_LAYOUT = Layout((scalar("p"), vector("dx", "dy"), scalar("dz"), pseudoscalar("dyaw")))
assert tuple(ACTION_LAYOUT.names) == ACTION_NAMES


def object_state_layout(max_objects: int, goal: bool = False) -> Layout:
    """The object-centric state of ``equimanip.perception.object_state``: the gripper's yaw as a
    frequency-1 pair, its aperture; per object slot its presence, offset from the gripper, the
    box's yaw as a frequency-2 pair (a box looks the same turned by 180 degrees) and its extents;
    with ``goal`` (``ObservationConfig.goal_in_state``) the goal's offset from the gripper last."""
    cos_g, sin_g, aperture = GRIPPER_FIELDS
    fields = [vector(cos_g, sin_g, 1), scalar(aperture)]
    for k in range(max_objects):
        n = {name: f"obj{k}.{name}" for name in SLOT_FIELDS}
        fields += [scalar(n["present"]), vector(n["dx"], n["dy"], 1), scalar(n["dz"]),
                   vector(n["cos2yaw"], n["sin2yaw"], 2), scalar(n["long"]), scalar(n["short"]),
                   scalar(n["height"])]
    if goal:
        fields.append(vector(*GOAL_FIELDS, 1))
    layout = Layout(tuple(fields))
    # The order must be the perception module's; a change there has to change this too.
    assert list(layout.names) == object_state_names(max_objects, goal)
    return layout


def transform_action(g: GroupElement, action: Array) -> Array:
    return transform(ACTION_LAYOUT, g, action)


def transform_object_state(g: GroupElement, state: Array, max_objects: int, goal: bool = False) -> Array:
    return transform(object_state_layout(max_objects, goal), g, state)


# ----------------------------------------------------------------------------------- images


def transform_heightmap(g: GroupElement, image: Array) -> Array:
    """``g`` applied to top-down images (..., S, S) about their centre, in the heightmap's
    convention (``equimanip.perception.heightmap``: column j along +x, row i along -y).

    Quarter turns and mirrors are exact (``rot90`` / ``flip``: the gripper sits on the central pixel
    corner, so the grid maps onto itself); other angles resample bilinearly (torch ``grid_sample``,
    zeros outside the image), as Equivariant SAC's buffer augmentation does."""
    if g.is_quarter_turn:
        return _quarter_turn(g, image)
    import torch

    tensor = torch.as_tensor(image)
    batch_shape, (H, W) = tensor.shape[:-2], tensor.shape[-2:]
    flat = tensor.reshape(-1, 1, H, W).to(torch.float32 if not tensor.is_floating_point() else tensor.dtype)
    out = _resample(flat, np.repeat(_sampling_theta(g)[None], flat.shape[0], axis=0))
    out = out.reshape(*batch_shape, H, W)
    return out.numpy().astype(image.dtype) if isinstance(image, np.ndarray) else out


def transform_heightmaps(elements, images):
    """``transform_heightmap`` of a batch, one element per image: ``images[b]`` (a float tensor
    (B, ..., S, S), on any device) transformed by ``elements[b]``, in one ``grid_sample`` on the
    images' device. Every element resamples bilinearly, so quarter turns, which
    ``transform_heightmap`` turns exactly, agree with it only to float rounding here; other
    elements give the same values. What the replay buffer uses to turn a batch on the GPU."""
    if len(elements) != images.shape[0]:
        raise ValueError(f"{len(elements)} elements for {images.shape[0]} images")
    if not len(elements):
        return images.clone()
    flat = images.reshape(images.shape[0], -1, *images.shape[-2:])
    return _resample(flat, np.stack([_sampling_theta(g) for g in elements])).reshape(images.shape)


def _sampling_theta(g: GroupElement) -> np.ndarray:
    """The affine map of ``torch.nn.functional.affine_grid`` that resamples an image by ``g``: the
    output pixel at scene point q samples the input at g^-1 q. Image-normalised coordinates are
    (x, -y) of the scene, hence the conjugation by S = diag(1, -1)."""
    S = np.diag([1.0, -1.0])
    theta = np.zeros((2, 3))
    theta[:, :2] = S @ g.inverse().matrix() @ S
    return theta


def _resample(images, thetas: np.ndarray):
    """Bilinear resampling of (N, C, H, W) images by N affine maps (zeros outside the image)."""
    import torch
    import torch.nn.functional as F

    grid = F.affine_grid(torch.as_tensor(thetas, dtype=images.dtype, device=images.device), list(images.shape),
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _quarter_turn(g: GroupElement, image: Array) -> Array:
    k = int(round(g.angle / (math.pi / 2))) % 4
    if isinstance(image, np.ndarray):
        out = np.flip(image, axis=-2) if g.flip else image      # y -> -y: rows run along -y
        return np.ascontiguousarray(np.rot90(out, k=k, axes=(-2, -1)))
    import torch
    out = torch.flip(image, dims=(-2,)) if g.flip else image
    return torch.rot90(out, k, dims=(-2, -1))


__all__ = ["GroupElement", "PlanarGroup", "GROUPS", "group", "IDENTITY", "Field", "Layout",
           "scalar", "pseudoscalar", "vector", "representation", "transform", "ACTION_LAYOUT",
           "object_state_layout", "transform_action", "transform_object_state",
           "transform_heightmap", "transform_heightmaps"]
