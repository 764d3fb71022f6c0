"""ObservationConfig validation and build_observation, the one function nodes and training share."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from std_msgs.msg import Header

from equimanip.geometry import down_quat_xyzw, pose7_to_matrix, transform_points
from equimanip.perception.frames import CameraPoseResolver
from equimanip.perception.object_state import object_state_layout
from equimanip.perception.observation import (
    Observation,
    ObservationConfig,
    build_observation,
    cloud_msg_to_base_points,
    crop_to_workspace,
)
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
from equimanip.perception.synthetic import default_scene, render

EE = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.3)]


@pytest.fixture(scope="module")
def scene():
    scene = default_scene(width=320, height=240)
    points_camera, colours = render(scene)
    return scene, points_camera, colours


@pytest.mark.parametrize("change, reason", [
    (dict(workspace_min=(0.0, 0.0, 1.0)), "must be below workspace_max"),
    (dict(workspace_max=(1.0, 1.0)), "3 finite numbers"),
    (dict(heightmap_size=127), "even integer"),
    (dict(heightmap_size=0), "even integer"),
    (dict(heightmap_side=0.0), "side length must be positive"),
    (dict(fill_iterations=-1), "fill_iterations"),
    (dict(voxel_size=-0.01), "voxel sizes"),
    (dict(outlier_neighbors=-2), "outlier_neighbors"),
    (dict(max_objects=-1), "max_objects"),
    (dict(cluster_eps=0.0), "cluster_eps must be positive"),
    (dict(max_object_height=-0.1), "max_object_height must be positive"),
    (dict(min_object_points=0), "min_object_points"),
    (dict(gripper_box_min=(0.1, 0.0, 0.0), gripper_box_max=(0.0, 0.1, 0.1)), "gripper_box_min"),
    (dict(hand_box_max=(0.1, 0.1, float("nan"))), "hand_box_min and hand_box_max need 3 finite"),
    (dict(finger_box_min=(0.1, 0.0, 0.0), finger_box_max=(0.0, 0.1, 0.1)), "finger_box_min"),
    (dict(robot_removal="none"), "robot_removal must be one of"),
])
def test_config_validation_names_the_problem(change, reason):
    with pytest.raises(ValueError, match=reason):
        dataclasses.replace(ObservationConfig(), **change).validate()


def test_defaults_are_valid_and_smaller_heightmaps_allowed():
    assert ObservationConfig().validate().heightmap_size == 128
    assert ObservationConfig(heightmap_size=32).validate().object_state_dim == len(object_state_layout(4))


def test_build_observation_fields(scene):
    _, points_camera, _ = scene
    sc, _, _ = scene
    points = transform_points(pose7_to_matrix(sc.camera_pose), points_camera)
    config = ObservationConfig(heightmap_size=64, max_objects=2).validate()
    obs = build_observation(points, EE, 0.8, stamp=12.5, config=config, cloud_stamp=12.4)
    assert isinstance(obs, Observation)
    assert obs.heightmap.shape == (2, 64, 64) and obs.heightmap.dtype == np.float32
    assert obs.object_state.shape == (3 + 9 * 2,) and obs.object_state.dtype == np.float32
    assert len(obs.objects) == 3 and obs.object_state[3] == obs.object_state[12] == 1.0  # 3 found, 2 slots
    assert (obs.stamp, obs.cloud_stamp, obs.gripper_aperture) == (12.5, 12.4, 0.8)
    np.testing.assert_array_equal(obs.ee_pose, EE)
    assert 0.09 < obs.heightmap[0].max() < 0.11   # the tallest box is 0.10 m
    assert np.all(obs.heightmap[1] == np.float32(0.8))


def test_message_path_equals_points_path(scene):
    """A node (from the PointCloud2) and training (from base-frame points) get the same observation."""
    sc, points_camera, colours = scene
    msg = xyz_rgb_to_pointcloud2(points_camera, colours, Header(frame_id="cam"))
    resolver = CameraPoseResolver()
    resolver.set_pose("cam", sc.camera_pose)
    config = ObservationConfig(heightmap_size=32).validate()
    from_msg = build_observation(cloud_msg_to_base_points(msg, resolver), EE, 1.0, 0.0, config)
    direct = transform_points(pose7_to_matrix(sc.camera_pose), points_camera.astype(np.float64)).astype(np.float32)
    from_points = build_observation(direct, EE, 1.0, 0.0, config)
    np.testing.assert_allclose(from_msg.heightmap, from_points.heightmap, atol=1e-5)
    np.testing.assert_allclose(from_msg.object_state, from_points.object_state, atol=1e-4)


def test_crop_keeps_finite_points_in_the_box_only():
    points = np.array([[0.5, 0.0, 0.1], [2.0, 0.0, 0.1], [0.5, 0.0, -1.0], [np.nan, 0.0, 0.1], [0.0, -0.45, -0.05]])
    np.testing.assert_array_equal(crop_to_workspace(points, (0.0, -0.45, -0.05), (0.9, 0.45, 0.5)),
                                  points[[0, 4]])


def test_optional_filters_and_fill_run_and_keep_the_scene(scene):
    sc, points_camera, _ = scene
    points = transform_points(pose7_to_matrix(sc.camera_pose), points_camera)
    plain = build_observation(points, EE, 1.0, 0.0, ObservationConfig(heightmap_size=32).validate())
    filtered = build_observation(points, EE, 1.0, 0.0, ObservationConfig(
        heightmap_size=32, voxel_size=0.005, outlier_neighbors=20, fill_empty=True).validate())
    assert len(filtered.objects) == len(plain.objects) == 3
    assert abs(filtered.heightmap[0].max() - plain.heightmap[0].max()) < 0.005
    for a, b in zip(plain.objects, filtered.objects):
        assert np.linalg.norm(a.centroid - b.centroid) < 0.005


def test_torch_device_gives_the_same_observation(scene):
    sc, points_camera, _ = scene
    points = transform_points(pose7_to_matrix(sc.camera_pose), points_camera)
    config = ObservationConfig(compute_object_state=False).validate()
    np.testing.assert_array_equal(build_observation(points, EE, 1.0, 0.0, config, device="cpu").heightmap,
                                  build_observation(points, EE, 1.0, 0.0, config).heightmap)


def test_bad_inputs_are_refused():
    config = ObservationConfig().validate()
    with pytest.raises(ValueError, match="ee_pose"):
        build_observation(np.zeros((4, 3)), EE[:6], 1.0, 0.0, config)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        build_observation(np.zeros((4, 2)), EE, 1.0, 0.0, config)


def test_empty_cloud_gives_an_empty_observation():
    obs = build_observation(np.full((4, 4, 3), np.nan, np.float32), EE, 0.0, 0.0, ObservationConfig().validate())
    assert not obs.heightmap.any() and obs.objects == [] and not obs.object_state[3:].any()


def test_an_end_effector_beyond_any_robots_reach_is_refused():
    with pytest.raises(ValueError, match="beyond 1e\\+06 m"):
        build_observation(np.zeros((4, 3), np.float32), [1e39, 0, 0.2, 1, 0, 0, 0], 1.0, 0.0, ObservationConfig())


def test_the_goal_channel_is_a_disc_at_the_goal_that_turns_with_the_scene(scene):
    """Channel 2 marks the pixels within goal_radius of the goal; turning points and goal a quarter
    turn about the gripper turns the whole heightmap (np.rot90), goal channel included."""
    from equimanip import symmetry as sym

    _, points_camera, _ = scene
    config = ObservationConfig(heightmap_size=64, heightmap_mode="gripper", goal_channel=True,
                               compute_object_state=False)
    ee = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.0)]
    goal = np.array([0.36, -0.14])
    points = np.random.default_rng(0).uniform([0.2, -0.3, 0.0], [0.7, 0.3, 0.1], size=(5000, 3))
    obs = build_observation(points, ee, 1.0, 0.0, config, goal_xy=goal)
    assert obs.heightmap.shape == (3, 64, 64) and config.heightmap_channels == 3
    np.testing.assert_array_equal(obs.goal_xy, goal)
    rows, cols = np.nonzero(obs.heightmap[2])
    r = config.heightmap_side / 64
    # column j spans x from gx + (j - 32) r; row i spans y down from gy - (i - 32) r
    assert cols.mean() == pytest.approx(32 + (goal[0] - ee[0]) / r - 0.5, abs=0.5)
    assert rows.mean() == pytest.approx(32 - (goal[1] - ee[1]) / r - 0.5, abs=0.5)
    assert len(rows) == pytest.approx(np.pi * (config.goal_radius / r) ** 2, rel=0.1)
    assert set(np.unique(obs.heightmap[2])) == {0.0, 1.0}

    quarter = sym.GroupElement(np.pi / 2)
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    turned_points = points.copy()
    turned_points[:, :2] = (points[:, :2] - ee[:2]) @ turn.T + ee[:2]
    turned_goal = turn @ (goal - ee[:2]) + ee[:2]
    turned = build_observation(turned_points, ee, 1.0, 0.0, config, goal_xy=turned_goal)
    np.testing.assert_array_equal(turned.heightmap[2], sym.transform_heightmap(quarter, obs.heightmap[2]))


def test_a_goal_channel_needs_a_sane_goal_and_is_off_by_default():
    points = np.zeros((10, 3))
    ee = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.0)]
    with_goal = ObservationConfig(heightmap_size=32, goal_channel=True, compute_object_state=False)
    with pytest.raises(ValueError, match="goal_channel or goal_in_state"):
        build_observation(points, ee, 1.0, 0.0, with_goal)
    for bad in ([0.4, np.nan], [0.4], [1e9, 0.0]):
        with pytest.raises(ValueError, match="goal"):
            build_observation(points, ee, 1.0, 0.0, with_goal, goal_xy=bad)
    plain = build_observation(points, ee, 1.0, 0.0, ObservationConfig(heightmap_size=32, compute_object_state=False),
                              goal_xy=[0.4, 0.1])
    assert plain.heightmap.shape == (2, 32, 32) and plain.goal_xy is None
    with pytest.raises(ValueError, match="goal_radius"):
        ObservationConfig(goal_radius=0.0).validate()


def test_a_goal_in_the_state_is_its_offset_from_the_gripper_and_turns_with_the_scene():
    """goal_in_state: the state ends with goal.dx, goal.dy (goal minus gripper); it needs a goal like
    the channel does; a scene turned about the gripper, goal and gripper yaw with it, gives the
    state its layout says."""
    from equimanip import symmetry as sym

    config = ObservationConfig(heightmap_size=32, goal_in_state=True, max_objects=2)
    assert config.object_state_dim == 3 + 2 * 9 + 2 and config.takes_goal and config.heightmap_channels == 2
    assert object_state_layout(2, goal=True)[-2:] == ["goal.dx", "goal.dy"]
    ee = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.3)]
    cube = np.random.default_rng(0).uniform([0.5, 0.08, 0.0], [0.54, 0.12, 0.04], size=(2000, 3))
    table = np.c_[np.random.default_rng(1).uniform([0.2, -0.3], [0.7, 0.3], size=(4000, 2)), np.zeros(4000)]
    points = np.concatenate([cube, table])
    goal = np.array([0.36, -0.14])
    obs = build_observation(points, ee, 1.0, 0.0, config, goal_xy=goal)
    np.testing.assert_allclose(obs.object_state[-2:], goal - ee[:2], atol=1e-6)
    assert obs.object_state[3] == 1.0 and obs.heightmap.shape == (2, 32, 32)    # the cube, no goal channel
    with pytest.raises(ValueError, match="goal_channel or goal_in_state"):
        build_observation(points, ee, 1.0, 0.0, config)

    quarter = sym.GroupElement(np.pi / 2)
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    turned_points = points.copy()
    turned_points[:, :2] = (points[:, :2] - ee[:2]) @ turn.T + ee[:2]
    turned_ee = np.r_[ee[:3], down_quat_xyzw(0.3 + np.pi / 2)]
    turned = build_observation(turned_points, turned_ee, 1.0, 0.0, config, goal_xy=turn @ (goal - ee[:2]) + ee[:2])
    expected = sym.transform_object_state(quarter, obs.object_state.astype(np.float64), 2, goal=True)
    np.testing.assert_allclose(turned.object_state, expected, atol=2e-3)
