"""Frame resolution: camera_pose / /camera/pose based lookups, and clear rejections."""
from __future__ import annotations

import math

import numpy as np
import pytest
from std_msgs.msg import Header

from equimanip.geometry import pose7_to_matrix, transform_points
from equimanip.perception.frames import CameraPoseResolver, FrameError, make_resolver
from equimanip.perception.observation import cloud_msg_to_base_points
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2

CAMERA_POSE = np.array([0.5, -0.4, 0.8, *[-0.8535534, 0.1464466, -0.3535534, 0.3535534]])  # tilted, turned


def test_base_frame_is_identity_and_set_pose_is_returned():
    resolver = CameraPoseResolver(base_frame="base_link")
    np.testing.assert_array_equal(resolver.lookup("base_link"), np.eye(4))
    resolver.set_pose("camera_optical", CAMERA_POSE, stamp=1.5)
    np.testing.assert_allclose(resolver.lookup("camera_optical"), pose7_to_matrix(CAMERA_POSE))
    # A leading slash names the same frame (ROS 1 style ids still appear in bags).
    np.testing.assert_allclose(resolver.lookup("/camera_optical", stamp=99.0), pose7_to_matrix(CAMERA_POSE))


def test_lookup_returns_a_copy():
    resolver = CameraPoseResolver()
    resolver.set_pose("cam", CAMERA_POSE)
    resolver.lookup("cam")[:] = 0
    assert resolver.lookup("cam")[3, 3] == 1.0


def test_unknown_frame_is_rejected_with_its_name():
    resolver = CameraPoseResolver()
    resolver.set_pose("cam", CAMERA_POSE)
    with pytest.raises(FrameError, match="no pose known for frame 'wrist_camera'.*camera_pose"):
        resolver.lookup("wrist_camera")


def test_empty_frame_id_is_rejected():
    with pytest.raises(FrameError, match="empty header.frame_id"):
        CameraPoseResolver().lookup("")
    with pytest.raises(FrameError, match="empty frame_id"):
        CameraPoseResolver().set_pose("", CAMERA_POSE)
    assert issubclass(FrameError, LookupError)


def test_bad_pose_is_rejected():
    resolver = CameraPoseResolver()
    with pytest.raises(ValueError, match="7 finite numbers"):
        resolver.set_pose("cam", [0, 0, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="quaternion"):
        resolver.set_pose("cam", [0, 0, 1, 0, 0, 0, 0])
    with pytest.raises(FrameError, match="base frame"):
        resolver.set_pose("base_link", CAMERA_POSE)


def test_make_resolver_without_tf2_is_a_camera_pose_resolver():
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert isinstance(make_resolver(node=object(), base_frame="world"), CameraPoseResolver)
    assert make_resolver().base_frame == "base_link"


def test_cloud_is_moved_into_the_base_frame():
    rng = np.random.default_rng(0)
    points_camera = rng.uniform(-1, 1, size=(4, 5, 3)).astype(np.float32)
    points_camera[1, 1] = np.nan
    msg = xyz_rgb_to_pointcloud2(points_camera, None, Header(frame_id="cam"))
    resolver = CameraPoseResolver()
    resolver.set_pose("cam", CAMERA_POSE)
    base = cloud_msg_to_base_points(msg, resolver)
    assert base.shape == (4, 5, 3)
    expected = transform_points(pose7_to_matrix(CAMERA_POSE), points_camera.astype(np.float64))
    np.testing.assert_allclose(base, expected, atol=1e-5)
    assert np.isnan(base[1, 1]).all()
    # Rigid: distances between points are preserved.
    d_cam = np.linalg.norm(points_camera[0, 0] - points_camera[2, 3])
    assert math.isclose(np.linalg.norm(base[0, 0] - base[2, 3]), d_cam, rel_tol=1e-5)


def test_cloud_in_unknown_frame_is_rejected_not_used():
    msg = xyz_rgb_to_pointcloud2(np.zeros((1, 2, 3), np.float32), None, Header(frame_id="other"))
    with pytest.raises(FrameError, match="'other'"):
        cloud_msg_to_base_points(msg, CameraPoseResolver())
