"""The symmetry description: group laws, representations, and agreement with what perception does.

The layouts are checked against the real pipeline, not against themselves: a scene turned (or
mirrored) about the gripper gives an object state and a heightmap that equal the transformed ones.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from equimanip import symmetry as sym
from equimanip.geometry import down_quat_xyzw, look_at_pose7, pose7_to_matrix, rotation_z, transform_points
from equimanip.perception.heightmap import project_heightmap
from equimanip.perception.object_state import object_state_dim
from equimanip.perception.observation import ObservationConfig, build_observation
from equimanip.perception.synthetic import Box, SyntheticScene, render

FINITE = [n for n, g in sym.GROUPS.items() if g.is_finite]


def test_group_names_orders_and_errors():
    assert [sym.group(n).order for n in FINITE] == [1, 4, 8, 16, 8, 16]
    assert sym.group("so2").order is None and not sym.group("so2").is_finite
    with pytest.raises(ValueError, match="unknown group 'c3'; available: none, c4"):
        sym.group("c3")
    with pytest.raises(ValueError, match="continuous"):
        sym.group("so2").elements()


@pytest.mark.parametrize("name", FINITE)
def test_finite_groups_are_closed_and_compose_like_their_matrices(name):
    G = sym.group(name)
    elements = G.elements()
    assert len(set(elements)) == G.order
    for a, b in itertools.product(elements, repeat=2):
        ab = a.compose(b)
        assert G.contains(ab)
        np.testing.assert_allclose(ab.matrix(), a.matrix() @ b.matrix(), atol=1e-12)
        np.testing.assert_allclose(a.inverse().compose(a).matrix(), np.eye(2), atol=1e-12)
    assert all(any(np.allclose(ab.matrix(), e.matrix()) for e in elements)
               for ab in (a.compose(b) for a, b in itertools.product(elements, repeat=2)))


@pytest.mark.parametrize("max_objects", [0, 1, 3])
def test_representations_are_orthogonal_homomorphisms(max_objects):
    rng = np.random.default_rng(0)
    layouts = [sym.ACTION_LAYOUT, sym.object_state_layout(max_objects)]
    elements = sym.group("d8").elements() + sym.group("so2").sample(rng, 4)
    for layout, a, b in itertools.product(layouts, elements, elements):
        Da, Db = sym.representation(layout, a), sym.representation(layout, b)
        np.testing.assert_allclose(sym.representation(layout, a.compose(b)), Da @ Db, atol=1e-12)
        np.testing.assert_allclose(Da @ Da.T, np.eye(layout.size), atol=1e-12)


def test_action_layout_semantics():
    """A quarter turn moves an x step to a y step and keeps p, dz, dyaw; a mirror flips dy and dyaw."""
    a = np.array([0.3, 0.01, 0.0, -0.02, 0.2])
    quarter = sym.GroupElement(math.pi / 2)
    np.testing.assert_allclose(sym.transform_action(quarter, a), [0.3, 0.0, 0.01, -0.02, 0.2], atol=1e-15)
    mirror = sym.GroupElement(0.0, flip=True)
    b = np.array([0.3, 0.01, 0.03, -0.02, 0.2])
    np.testing.assert_allclose(sym.transform_action(mirror, b), [0.3, 0.01, -0.03, -0.02, -0.2])
    assert sym.ACTION_LAYOUT.indices("vector", 1) == [1, 2]
    assert sym.ACTION_LAYOUT.indices("pseudoscalar") == [4]
    with pytest.raises(ValueError, match="expected 5 entries"):
        sym.transform_action(quarter, np.zeros(4))


def test_transform_works_on_numpy_and_torch_batches_alike():
    g = sym.GroupElement(0.7, flip=True)
    x = np.random.default_rng(1).normal(size=(4, 3, 5)).astype(np.float32)
    out_np = sym.transform_action(g, x)
    out_torch = sym.transform_action(g, torch.from_numpy(x))
    assert out_np.dtype == np.float32 and out_torch.dtype == torch.float32
    np.testing.assert_allclose(out_torch.numpy(), out_np, atol=1e-6)


def _scene_object_state(g: sym.GroupElement, config: ObservationConfig):
    """The object state of a two-box scene, and of the same scene transformed by g about the gripper."""
    gripper = np.array([0.5, 0.02, 0.2])
    # Oblong boxes: a square's heading is only defined modulo 90 degrees (object_state.py), so its
    # (cos 2 yaw, sin 2 yaw) is not a frequency-2 field.
    boxes = [((0.08, -0.05), (0.06, 0.03, 0.05), 0.4), ((-0.06, 0.09), (0.05, 0.03, 0.04), 0.1)]
    gripper_yaw = 0.3
    M = g.matrix()

    def scene(transformed: bool):
        placed = []
        for (ox, oy), size, yaw in boxes:
            offset = M @ [ox, oy] if transformed else np.array([ox, oy])
            # a mirrored box's heading mirrors too: yaw -> -yaw, then the rotation adds g.angle
            box_yaw = (g.angle + (-yaw if g.flip else yaw)) if transformed else yaw
            placed.append(Box(gripper[0] + offset[0], gripper[1] + offset[1], box_yaw, size))
        yaw_g = (g.angle + (-gripper_yaw if g.flip else gripper_yaw)) if transformed else gripper_yaw
        # Straight down from high above the gripper: what the camera sees does not depend on the
        # scene's orientation (up to pixel sampling), so only the symmetry is under test.
        camera = look_at_pose7(eye=(gripper[0], gripper[1] + 1e-3, 1.2), target=(gripper[0], gripper[1], 0.0))
        points_camera, _ = render(SyntheticScene(boxes=placed, camera_pose=camera, dropout=0.0, fov_deg=30.0))
        points = transform_points(pose7_to_matrix(camera), points_camera)
        ee = np.concatenate([gripper, down_quat_xyzw(yaw_g)])
        return build_observation(points, ee, 0.6, 0.0, config).object_state

    return scene(False), scene(True)


@pytest.mark.parametrize("g", [sym.GroupElement(math.pi / 2), sym.GroupElement(-2.2),
                               sym.GroupElement(0.0, flip=True), sym.GroupElement(1.0, flip=True)])
def test_object_state_layout_matches_the_perception_pipeline(g):
    config = ObservationConfig(max_objects=2)
    state, turned = _scene_object_state(g, config)
    assert state.shape == (object_state_dim(2),) and state[sym.object_state_layout(2).index("obj1.present")] == 1
    # Box fits on a rendered point grid are accurate to about a millimetre and a degree.
    np.testing.assert_allclose(turned, sym.transform_object_state(g, state, 2), atol=0.02)


def _offsets_cloud(rng, n=400):
    offsets = rng.integers(-1200, 1200, size=(n, 2)) / 4096.0      # dyadic: exact under swaps
    heights = rng.uniform(0.0, 0.2, size=n)
    return offsets, heights


@pytest.mark.parametrize("g", sym.group("d4").elements())
def test_heightmap_quarter_turns_and_mirrors_are_exact(g):
    rng = np.random.default_rng(2)
    offsets, heights = _offsets_cloud(rng)
    centre = np.array([0.5, 0.0])
    moved = (offsets @ np.round(g.matrix()).T)                      # exact: entries are 0 and +-1
    image = project_heightmap(np.column_stack([centre + offsets, heights]).astype(np.float32), centre, 32, 0.5)
    image_g = project_heightmap(np.column_stack([centre + moved, heights]).astype(np.float32), centre, 32, 0.5)
    np.testing.assert_array_equal(sym.transform_heightmap(g, image), image_g)
    np.testing.assert_array_equal(sym.transform_heightmap(g, torch.from_numpy(image)).numpy(), image_g)


@pytest.mark.parametrize("angle", [math.pi / 4, -1.1, 2.5])
def test_heightmap_any_angle_resamples_in_the_same_sense_as_the_scene(angle):
    """A smooth bump placed at offset v appears, after transform_heightmap, where a bump at R v is."""
    size, side = 64, 0.6
    r = side / size
    c = (np.arange(size) - size / 2 + 0.5) * r
    x, y = np.meshgrid(c, -c)                              # row i runs along -y

    def bump(v):
        return np.exp(-((x - v[0]) ** 2 + (y - v[1]) ** 2) / (2 * 0.03 ** 2)).astype(np.float32)

    v = np.array([0.12, 0.05])
    g = sym.GroupElement(angle)
    turned = sym.transform_heightmap(g, bump(v))
    expected = bump(rotation_z(angle)[:2, :2] @ v)
    assert np.abs(turned - expected).max() < 0.05
    # and the exact path agrees with the resampling one at a quarter turn
    quarter = sym.GroupElement(math.pi / 2)
    resampled = sym.transform_heightmap(sym.GroupElement(math.pi / 2 + 1e-7), bump(v))
    np.testing.assert_allclose(resampled, sym.transform_heightmap(quarter, bump(v)), atol=1e-4)


def test_a_batch_of_heightmaps_is_transformed_like_each_one_alone():
    """transform_heightmaps (the replay buffer's batched path) gives every image what
    transform_heightmap gives it: the same values for other angles, float rounding for the
    quarter turns and mirrors that transform_heightmap does exactly."""
    rng = np.random.default_rng(3)
    images = torch.as_tensor(rng.uniform(0, 0.2, (7, 2, 32, 32)), dtype=torch.float32)
    elements = [sym.GroupElement(a) for a in (0.3, -2.0, 4.1)] + list(sym.group("d4").elements())[1:5]
    batch = sym.transform_heightmaps(elements, images)
    for b, g in enumerate(elements):
        alone = sym.transform_heightmap(g, images[b])
        if g.is_quarter_turn:
            torch.testing.assert_close(batch[b], alone, atol=1e-5, rtol=0)
        else:
            torch.testing.assert_close(batch[b], alone, atol=0, rtol=0)
    assert sym.transform_heightmaps([], images[:0]).shape == (0, 2, 32, 32)
    with pytest.raises(ValueError, match="2 elements for 7 images"):
        sym.transform_heightmaps(elements[:2], images)
