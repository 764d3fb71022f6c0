"""Perception on the PyBullet simulation: the block must show up where the simulator put it.

The cloud goes the way it goes on the robot: the simulated camera's optical-frame points are packed
into a PointCloud2, decoded, moved into the base frame with the camera pose, and turned into an
Observation. Camera: 320 x 240 at the simulation's default pose (about 3 mm per pixel on the table,
a 4 cm block spans about 12 pixels).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

from std_msgs.msg import Header  # noqa: E402

from equimanip.geometry import yaw_of_quat_xyzw  # noqa: E402
from equimanip.perception.frames import CameraPoseResolver  # noqa: E402
from equimanip.perception.observation import (  # noqa: E402
    ObservationConfig,
    build_observation,
    cloud_msg_to_base_points,
)
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2  # noqa: E402
from equimanip.sim.camera import CameraConfig  # noqa: E402
from equimanip.sim.env import ManipulationEnv  # noqa: E402

BLOCK_SIZE = 0.04
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def scenes():
    """(observation from the sim, perception Observation) for a few block_picking resets."""
    env = ManipulationEnv(task="block_picking", camera=CameraConfig(width=320, height=240))
    config = ObservationConfig().validate()
    out = []
    try:
        for seed in SEEDS:
            sim = env.reset(seed)
            msg = xyz_rgb_to_pointcloud2(sim.points_camera, sim.colors, Header(frame_id="camera_depth_optical_frame"))
            resolver = CameraPoseResolver()
            resolver.set_pose("camera_depth_optical_frame", sim.camera_pose)
            points = cloud_msg_to_base_points(msg, resolver)
            np.testing.assert_allclose(np.nan_to_num(points), np.nan_to_num(sim.points), atol=1e-4)
            out.append((sim, build_observation(points, sim.ee_pose, sim.gripper_aperture, sim.time, config), config))
    finally:
        env.close()
    return out


def test_heightmap_shows_the_block_at_its_pixel_and_height(scenes):
    checked = 0
    for sim, obs, config in scenes:
        block = sim.object_poses[0]
        if np.hypot(*(block[:2] - sim.ee_pose[:2])) < 0.08:
            continue  # the gripper (kept in the heightmap) would hover over the block
        r = config.heightmap_side / config.heightmap_size
        S = config.heightmap_size
        row = int(math.floor((sim.ee_pose[1] - block[1]) / r)) + S // 2
        col = int(math.floor((block[0] - sim.ee_pose[0]) / r)) + S // 2
        image = obs.heightmap[0]
        assert image[row, col] == pytest.approx(BLOCK_SIZE, abs=0.003)
        # the block's top face, found as the pixels above 3 cm near it, is centred on that pixel
        near = np.zeros_like(image, dtype=bool)
        near[max(row - 12, 0):row + 13, max(col - 12, 0):col + 13] = True
        top = np.argwhere((image > 0.03) & near)
        assert np.abs(top.mean(axis=0) - (row + 0.5, col + 0.5)).max() < 1.5
        assert 40 <= len(top) <= 100   # a 4 cm square is about 73 pixels of 4.7 mm
        assert obs.heightmap[1].min() == obs.heightmap[1].max() == pytest.approx(sim.gripper_aperture)
        checked += 1
    assert checked >= 2


def test_object_state_recovers_the_block_pose(scenes):
    for sim, obs, config in scenes:
        block = sim.object_poses[0]
        assert len(obs.objects) == 1, [o.centroid for o in obs.objects]
        found = obs.objects[0]
        assert np.linalg.norm(found.centroid - block[:3]) < 0.01
        yaw_error = abs(math.remainder(found.yaw - yaw_of_quat_xyzw(block[3:]), math.pi / 2))  # a cube
        assert math.degrees(yaw_error) < 5
        np.testing.assert_allclose(found.extents, [BLOCK_SIZE] * 3, atol=0.006)
        # the state vector: slot 0 present, position relative to the gripper
        state = obs.object_state
        assert state[3] == 1.0 and not state[12:].any()
        np.testing.assert_allclose(state[4:7], found.centroid - sim.ee_pose[:3], atol=1e-6)
