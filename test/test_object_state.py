"""Object-centric state: table plane, box fits, gripper removal, the state vector and its
equivariance under rotations about the gripper's vertical axis."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from equimanip.geometry import down_quat_xyzw, look_at_pose7, pose7_to_matrix, rotation_z, transform_points, wrap_angle
from equimanip.perception import object_state as osm
from equimanip.perception.observation import ObservationConfig, build_observation
from equimanip.perception.synthetic import Box, SyntheticScene, render


def box_surface(x, y, yaw, size, spacing=0.003, table_z=0.0):
    """Points on the top and the four sides of an upright box, on a regular grid (no bottom)."""
    sx, sy, sz = size
    u = np.arange(-sx / 2, sx / 2 + 1e-9, spacing)
    v = np.arange(-sy / 2, sy / 2 + 1e-9, spacing)
    w = np.arange(0.0, sz + 1e-9, spacing)
    top = np.stack(np.meshgrid(u, v, [sz]), -1).reshape(-1, 3)
    sides_x = np.stack(np.meshgrid([-sx / 2, sx / 2], v, w), -1).reshape(-1, 3)
    sides_y = np.stack(np.meshgrid(u, [-sy / 2, sy / 2], w), -1).reshape(-1, 3)
    local = np.concatenate([top, sides_x, sides_y])
    return local @ rotation_z(yaw).T + [x, y, table_z]


def table(half=0.3, spacing=0.006, centre=(0.5, 0.0), z=0.0):
    g = np.arange(-half, half, spacing)
    gx, gy = np.meshgrid(g + centre[0], g + centre[1])
    return np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)])


def yaw_error(a, b, period=math.pi):
    return abs(math.remainder(a - b, period))


# ------------------------------------------------------------------------------------ pieces


@pytest.mark.parametrize("yaw", [0.0, 0.4, -1.2, math.pi / 2, 3.0])
def test_min_area_rectangle_of_a_rectangle(yaw):
    rng = np.random.default_rng(0)
    local = rng.uniform([-0.05, -0.02], [0.05, 0.02], size=(500, 2))
    local = np.concatenate([local, [[-0.05, -0.02], [0.05, -0.02], [0.05, 0.02], [-0.05, 0.02]]])
    xy = local @ rotation_z(yaw)[:2, :2].T + [0.3, -0.1]
    centre, fitted_yaw, long, short = osm.min_area_rectangle(xy)
    np.testing.assert_allclose(centre, [0.3, -0.1], atol=1e-9)
    assert (long, short) == pytest.approx((0.1, 0.04), abs=1e-9)
    assert -math.pi / 2 <= fitted_yaw < math.pi / 2
    assert yaw_error(fitted_yaw, yaw) < 1e-9


def test_min_area_rectangle_of_a_square_finds_its_sides():
    xy = box_surface(0.0, 0.0, 0.3, (0.05, 0.05, 0.0))[:, :2]
    _, yaw, long, short = osm.min_area_rectangle(xy)
    assert yaw_error(yaw, 0.3, math.pi / 2) < 1e-6   # a square: yaw is defined modulo 90 degrees
    assert long == pytest.approx(0.05, abs=1e-6) and short == pytest.approx(0.05, abs=1e-6)


def test_table_plane_ignores_box_sides_and_finds_a_tilted_table():
    tilt = math.radians(3)
    points = table(half=0.25)
    points[:, 2] = 0.02 + math.tan(tilt) * (points[:, 0] - 0.5)
    # a tall box's side, seen face-on: nearly as many points as the table; it must not win
    side = np.stack(np.meshgrid([0.5], np.arange(-0.1, 0.1, 0.002), np.arange(0, 0.2, 0.002)), -1).reshape(-1, 3)
    plane = osm.fit_table_plane(np.concatenate([points, side]))
    expected_normal = np.array([-math.sin(tilt), 0.0, math.cos(tilt)])
    np.testing.assert_allclose(plane[:3], expected_normal, atol=1e-3)  # the side's foot is inlier too
    assert osm.height_above_plane(np.array([[0.5, 0.0, 0.02]]), plane)[0] == pytest.approx(0.0, abs=1e-3)


def test_table_plane_falls_back_to_table_z_without_a_table():
    np.testing.assert_array_equal(osm.fit_table_plane(np.zeros((0, 3)), fallback_z=0.1), [0, 0, 1, -0.1])
    vertical_wall = np.stack(np.meshgrid([0.5], np.arange(0, 0.2, 0.01), np.arange(0, 0.2, 0.01)), -1).reshape(-1, 3)
    np.testing.assert_array_equal(osm.fit_table_plane(vertical_wall, fallback_z=0.1), [0, 0, 1, -0.1])


def test_gripper_points_are_removed_using_the_end_effector_pose():
    ee = np.r_[0.5, 0.1, 0.03, down_quat_xyzw(0.7)]
    fingers = box_surface(0.5, 0.1, 0.7, (0.02, 0.16, 0.2), table_z=0.025)  # hand and fingers, above the table
    block = box_surface(0.35, -0.1, 0.2, (0.06, 0.03, 0.04))
    objects = osm.detect_objects(np.concatenate([table(), fingers, block]), ee)
    assert len(objects) == 1
    np.testing.assert_allclose(objects[0].centroid, [0.35, -0.1, 0.02], atol=0.004)
    # without removal the gripper would be an object of its own
    kept = osm.outside_gripper(fingers, ee, np.array([-0.045, -0.11, -0.25]), np.array([0.045, 0.11, 0.01]))
    assert not kept.any()


def test_state_vector_layout_padding_and_order():
    ee = np.r_[0.5, 0.0, 0.2, down_quat_xyzw(0.3)]
    far = box_surface(0.7, 0.2, 0.5, (0.08, 0.04, 0.05))
    near = box_surface(0.45, -0.05, -0.4, (0.06, 0.03, 0.04))
    objects = osm.detect_objects(np.concatenate([table(half=0.35), far, near]), ee)
    state = osm.object_state_vector(objects, ee, 0.6, max_objects=3)
    names = osm.object_state_layout(3)
    assert state.shape == (len(names),) == (3 + 9 * 3,) and state.dtype == np.float32
    s = dict(zip(names, state))
    assert (s["cos_gripper_yaw"], s["sin_gripper_yaw"]) == pytest.approx((math.cos(0.3), math.sin(0.3)), abs=1e-6)
    assert s["gripper_aperture"] == pytest.approx(0.6)
    # nearest object first, positions relative to the gripper
    assert s["obj0.present"] == 1 and s["obj1.present"] == 1 and s["obj2.present"] == 0
    assert (s["obj0.dx"], s["obj0.dy"], s["obj0.dz"]) == pytest.approx((-0.05, -0.05, 0.02 - 0.2), abs=0.004)
    assert (s["obj1.dx"], s["obj1.dy"]) == pytest.approx((0.2, 0.2), abs=0.004)
    assert (s["obj0.cos2yaw"], s["obj0.sin2yaw"]) == pytest.approx((math.cos(-0.8), math.sin(-0.8)), abs=0.05)
    assert (s["obj1.long"], s["obj1.short"], s["obj1.height"]) == pytest.approx((0.08, 0.04, 0.05), abs=0.005)
    assert not np.any(state[names.index("obj2.present"):])  # the empty slot is all zeros
    # fewer slots than objects: the nearest ones are kept
    one_slot = osm.object_state_vector(objects, ee, 0.6, max_objects=1)
    np.testing.assert_array_equal(one_slot, state[:len(osm.object_state_layout(1))])


def test_synthetic_camera_view_recovers_blocks():
    """A ray-cast camera view (partial: top and two sides visible) at 320 x 240."""
    boxes = [Box(0.45, 0.08, 0.5, (0.05, 0.05, 0.05)), Box(0.55, -0.1, -0.3, (0.07, 0.035, 0.04))]
    scene = SyntheticScene(boxes=boxes, width=320, height=240, dropout=0.02, noise_std=0.001,
                           camera_pose=look_at_pose7((0.5, -0.45, 0.6), (0.5, 0.0, 0.0)))
    points_camera, _ = render(scene, seed=1)
    points = transform_points(pose7_to_matrix(scene.camera_pose), points_camera)
    ee = np.r_[0.3, 0.25, 0.25, down_quat_xyzw(0.0)]
    obs = build_observation(points, ee, 1.0, 0.0, ObservationConfig().validate())
    assert len(obs.objects) == 2
    for box, obj, period in zip(boxes, obs.objects, (math.pi / 2, math.pi)):
        assert np.linalg.norm(obj.centroid - [box.x, box.y, box.size[2] / 2]) < 0.01
        assert math.degrees(yaw_error(obj.yaw, box.yaw, period)) < 5


# ------------------------------------------------------------------------------- equivariance


@st.composite
def box_scenes(draw):
    """1-3 separate elongated boxes (long >= 1.5 short, so yaw is defined modulo 180 deg).

    Cells of a 3 x 2 layout 13 cm and 18 cm apart keep them apart: a box reaches at most 3.9 cm
    (half its diagonal) from its centre, which moves at most 1 cm from its cell's, so two boxes are
    at least 13 - 2 - 7.8 = 3.2 cm apart, well clear of the clustering radius (1.2 cm)."""
    n = draw(st.integers(1, 3))
    slots = draw(st.permutations(range(6)))[:n]
    boxes = []
    for slot in slots:
        short = draw(st.floats(0.025, 0.035))
        boxes.append(dict(
            x=0.32 + 0.13 * (slot % 3) + draw(st.floats(-0.01, 0.01)),
            y=-0.09 + 0.18 * (slot // 3) + draw(st.floats(-0.01, 0.01)),
            yaw=draw(st.floats(-math.pi, math.pi)),
            size=(short * draw(st.floats(1.5, 2.0)), short, draw(st.floats(0.03, 0.08)))))
    return boxes


def scene_points(boxes):
    return np.concatenate([table(half=0.35)] + [box_surface(**b) for b in boxes])


@settings(max_examples=30, deadline=None)
@given(box_scenes(), st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi))
def test_object_state_rotates_with_the_scene(boxes, angle, gripper_yaw):
    centre = np.array([0.45, 0.0, 0.25])
    # Slots are ordered by distance to the gripper: two boxes (nearly) as far from it, as the
    # layout's mirrored cells can be, may take either order once sensor noise differs.
    distances = np.sort([math.hypot(b["x"] - centre[0], b["y"] - centre[1]) for b in boxes])
    assume(np.all(np.diff(distances) > 0.01))
    ee = np.r_[centre, down_quat_xyzw(gripper_yaw)]
    ee_turned = np.r_[centre, down_quat_xyzw(gripper_yaw + angle)]
    points = scene_points(boxes)
    turned = (points - centre) @ rotation_z(angle).T + centre  # about the gripper's vertical axis
    max_objects = 3
    state = osm.object_state_vector(osm.detect_objects(points, ee), ee, 0.5, max_objects)
    state_turned = osm.object_state_vector(osm.detect_objects(turned, ee_turned), ee_turned, 0.5, max_objects)
    names = osm.object_state_layout(max_objects)

    def field(vector, *fields):
        return np.array([vector[names.index(f)] for f in fields])

    present = [f"obj{k}.present" for k in range(max_objects)]
    assert field(state, *present).sum() == len(boxes) == field(state_turned, *present).sum()
    # gripper yaw: (cos, sin) rotates by angle
    gripper = ("cos_gripper_yaw", "sin_gripper_yaw")
    np.testing.assert_allclose(field(state_turned, *gripper), rotation_z(angle)[:2, :2] @ field(state, *gripper),
                               atol=1e-6)
    for k in range(len(boxes)):
        def slot(vector, *fields):
            return field(vector, *(f"obj{k}.{f}" for f in fields))
        np.testing.assert_allclose(slot(state_turned, "dx", "dy"), rotation_z(angle)[:2, :2] @ slot(state, "dx", "dy"),
                                   atol=0.004)
        assert slot(state_turned, "dz") == pytest.approx(slot(state, "dz"), abs=0.004)
        np.testing.assert_allclose(slot(state_turned, "cos2yaw", "sin2yaw"),
                                   rotation_z(2 * angle)[:2, :2] @ slot(state, "cos2yaw", "sin2yaw"), atol=0.07)
        extents = ("long", "short", "height")
        np.testing.assert_allclose(slot(state_turned, *extents), slot(state, *extents), atol=0.006)
    yaws = np.array([o.yaw for o in osm.detect_objects(points, ee)])
    yaws_turned = np.array([o.yaw for o in osm.detect_objects(turned, ee_turned)])
    assert np.all(np.abs(wrap_angle(2 * (yaws_turned - yaws - angle))) / 2 < math.radians(2))


# ------------------------------------------------------------------------------ bounded cost


def test_a_hostile_cloud_is_cut_to_the_documented_bounds():
    """A million random points in a slab above the table (6.5 s before the bounds): at most
    MAX_CLUSTER_POINTS are clustered and MAX_CLUSTERS summarised, each cut with a warning."""
    points = np.random.default_rng(0).uniform([0.15, -0.45, 0.0], [0.9, 0.45, 0.1], (1_000_000, 3)).astype(np.float32)
    ee = np.r_[0.5, 0.0, 0.3, down_quat_xyzw(0.0)]
    with pytest.warns(osm.PerceptionLimitWarning) as caught:
        objects = osm.detect_objects(points, ee)
    messages = " | ".join(str(w.message) for w in caught)
    assert f"a random {osm.MAX_CLUSTER_POINTS} of them" in messages
    assert f"the {osm.MAX_CLUSTERS} nearest the gripper" in messages
    assert len(objects) == osm.MAX_CLUSTERS
    distances = [np.hypot(*(o.centroid[:2] - ee[:2])) for o in objects]
    assert distances == sorted(distances)


def test_a_real_scene_is_not_cut():
    import warnings
    ee = np.r_[0.5, 0.0, 0.2, down_quat_xyzw(0.3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene = np.concatenate([table(half=0.35), box_surface(0.45, -0.05, -0.4, (0.06, 0.03, 0.04))])
        objects = osm.detect_objects(scene, ee)
    assert len(objects) == 1


def test_no_point_in_the_workspace_is_said():
    with pytest.warns(osm.PerceptionLimitWarning, match="no valid point of the cloud lies in the workspace box"):
        assert osm.detect_objects(np.zeros((0, 3), np.float32), np.r_[0.5, 0.0, 0.2, down_quat_xyzw(0.0)]) == []


@pytest.mark.parametrize("x", [1e39, -2e6, math.inf, math.nan])
def test_an_end_effector_beyond_any_workspace_is_refused(x):
    """A finite 1e39 used to become -inf in the float32 state vector."""
    ee = np.r_[x, 0.0, 0.2, down_quat_xyzw(0.0)]
    objects = osm.detect_objects(np.concatenate([table(half=0.35), box_surface(0.45, -0.05, 0.0, (0.04, 0.04, 0.04))]),
                                 np.r_[0.5, 0.0, 0.2, down_quat_xyzw(0.0)])
    with pytest.raises(ValueError, match="end-effector position .* is not a position in the workspace"):
        osm.object_state_vector(objects, ee, 1.0, max_objects=2)
    with pytest.raises(ValueError, match="end-effector position"):
        osm.detect_objects(table(), ee)
