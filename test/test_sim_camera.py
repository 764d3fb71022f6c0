"""Simulated depth camera: geometry against known objects, noise and dropout, config checks."""
import math

import numpy as np
import pytest

from equimanip.geometry import look_at_pose7, transform_points
from equimanip.sim.camera import SIDE_CAMERA, CameraConfig, render_point_cloud
from equimanip.sim.world import WORKSPACE, PandaWorld

BLOCK_HALF = 0.02


@pytest.fixture(scope="module")
def world():
    world = PandaWorld()
    # Park the robot out of sight: these tests are about the camera, not about occlusion.
    world.set_body_pose(world.robot, [5.0, 5.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    world.block = world.create_box((BLOCK_HALF,) * 3, (0.5, 0.0, BLOCK_HALF), mass=0.1, rgba=(1.0, 0.0, 0.0, 1.0))
    yield world
    world.close()


def top_face_points(world, config, rng=None):
    """Base-frame points of the red block's top face."""
    points_camera, colors = render_point_cloud(world.client, config, rng)
    points = transform_points(config.T_base_camera, points_camera)
    red = (colors[..., 0] > 150) & (colors[..., 1] < 80) & (colors[..., 2] < 80)
    top = red & (np.abs(points[..., 2] - 2 * BLOCK_HALF) < 0.003)
    return points[top]


@pytest.mark.parametrize("x, y, yaw", [(0.6, -0.12, 0.3), (0.35, 0.15, -2.0), (0.68, 0.18, 1.2), (0.32, -0.18, 3.0)])
def test_block_top_face_is_where_the_block_is(world, x, y, yaw):
    world.set_body_pose(world.block, [x, y, BLOCK_HALF, 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])
    top = top_face_points(world, CameraConfig())
    assert len(top) >= 20  # a 4 cm face covers about 40 pixels at 128 x 128
    centroid = top.mean(axis=0)
    assert np.linalg.norm(centroid[:2] - [x, y]) < 0.005
    assert abs(centroid[2] - 2 * BLOCK_HALF) < 0.005


def test_side_camera_sees_the_block(world):
    world.set_body_pose(world.block, [0.5, 0.05, BLOCK_HALF, 0.0, 0.0, 0.0, 1.0])
    config = CameraConfig(**{**SIDE_CAMERA.__dict__, "depth_noise_std": 0.0, "dropout": 0.0})
    top = top_face_points(world, config)
    assert len(top) >= 5
    assert np.linalg.norm(top.mean(axis=0)[:2] - [0.5, 0.05]) < 0.008  # oblique view, fewer pixels


def test_default_camera_sees_the_whole_workspace():
    config = CameraConfig()
    lo, hi = WORKSPACE.low_array, WORKSPACE.high_array
    # Workspace corners on the table, and a block's top corners reaching past its edges.
    corners = np.array([[x, y, z] for x in (lo[0] - 0.03, hi[0] + 0.03) for y in (lo[1] - 0.03, hi[1] + 0.03)
                        for z in (0.0, 0.04)])
    in_camera = transform_points(np.linalg.inv(config.T_base_camera), corners)
    assert np.all(in_camera[:, 2] > config.near)
    pixels = in_camera @ config.intrinsics.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    assert np.all(pixels >= 0.0) and np.all(pixels[:, 0] <= config.width) and np.all(pixels[:, 1] <= config.height)


def test_clean_cloud_has_no_holes_and_is_float32(world):
    points, colors = render_point_cloud(world.client, CameraConfig())
    assert points.shape == (128, 128, 3) and points.dtype == np.float32
    assert colors.shape == (128, 128, 3) and colors.dtype == np.uint8
    assert not np.isnan(points).any()  # the default view sees only the table and what is on it


def test_background_beyond_the_far_plane_is_nan(world):
    # Looking up at the sky: nothing there.
    config = CameraConfig(pose=tuple(look_at_pose7((0.5, 0.0, 0.5), (0.5, 0.0, 2.0), up=(1.0, 0.0, 0.0))))
    points, _ = render_point_cloud(world.client, config)
    assert np.isnan(points).all()


def test_depth_noise_has_the_requested_spread(world):
    clean, _ = render_point_cloud(world.client, CameraConfig())
    noisy, _ = render_point_cloud(world.client, CameraConfig(depth_noise_std=0.01), np.random.default_rng(0))
    depth_error = (noisy[..., 2] - clean[..., 2]).ravel()
    assert abs(depth_error.std() - 0.01) < 0.001
    assert abs(depth_error.mean()) < 0.001


def test_dropout_removes_the_requested_fraction(world):
    config = CameraConfig(dropout=0.2)
    points, _ = render_point_cloud(world.client, config, np.random.default_rng(0))
    assert abs(np.isnan(points[..., 0]).mean() - 0.2) < 0.02
    again, _ = render_point_cloud(world.client, config, np.random.default_rng(0))
    np.testing.assert_array_equal(points, again)  # reproducible with the same generator


def test_noise_needs_a_generator(world):
    with pytest.raises(ValueError, match="random generator"):
        render_point_cloud(world.client, CameraConfig(dropout=0.1))


@pytest.mark.parametrize("overrides, reason", [
    ({"width": 0}, "size"),
    ({"height": -5}, "size"),
    ({"width": 12.5}, "integers"),
    ({"fov_deg": 0.0}, "fov"),
    ({"fov_deg": 180.0}, "fov"),
    ({"near": 1.0, "far": 0.5}, "near"),
    ({"near": 0.0}, "near"),
    ({"depth_noise_std": -0.001}, "noise"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"pose": (0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0)}, "unit"),
    ({"pose": (0.5, 0.0, 1.0, 0.0, 0.0, 1.0)}, "7 finite"),
    ({"pose": (0.5, 0.0, float("nan"), 0.0, 0.0, 0.0, 1.0)}, "7 finite"),
])
def test_invalid_configs_are_rejected(overrides, reason):
    with pytest.raises(ValueError, match=reason):
        CameraConfig(**overrides).validate()


def test_presets_are_valid():
    CameraConfig().validate()
    SIDE_CAMERA.validate()


def test_look_at_points_the_optical_z_axis_at_the_target():
    from equimanip.geometry import pose7_to_matrix

    T = pose7_to_matrix(look_at_pose7((1.0, 0.0, 1.0), (0.0, 0.0, 0.0)))
    np.testing.assert_allclose(T[:3, 2], np.array([-1.0, 0.0, -1.0]) / math.sqrt(2), atol=1e-9)
    assert T[2, 1] < 0  # image "down" (optical y) points downwards in the world
