"""Closed-form orientation helpers agree with transforms3d's general conversions."""
import math

import numpy as np
import pytest


def test_closed_form_orientation_helpers_match_transforms3d():
    import transforms3d

    from equimanip.geometry import down_quat_xyzw, matrix_to_quat_xyzw, quat_xyzw_to_matrix, yaw_of_quat_xyzw
    rng = np.random.default_rng(0)
    for yaw in rng.uniform(-math.pi, math.pi, 50):
        R = transforms3d.euler.euler2mat(0.0, 0.0, yaw, "sxyz") @ transforms3d.euler.euler2mat(math.pi, 0, 0, "sxyz")
        q = down_quat_xyzw(yaw)
        assert np.allclose(quat_xyzw_to_matrix(q), R)
        assert yaw_of_quat_xyzw(q) == pytest.approx(yaw)
    for q in rng.normal(size=(50, 4)):
        R = quat_xyzw_to_matrix(q)
        assert yaw_of_quat_xyzw(q) == pytest.approx(math.atan2(R[1, 0], R[0, 0]))
        assert yaw_of_quat_xyzw(2.5 * q) == pytest.approx(yaw_of_quat_xyzw(q))
        assert np.allclose(quat_xyzw_to_matrix(matrix_to_quat_xyzw(R)), R)


def test_pose_difference_is_distance_and_rotation_angle():
    from equimanip.geometry import pose_difference, yaw_quat_xyzw

    a = np.r_[0.1, 0.2, 0.3, yaw_quat_xyzw(0.0)]
    b = np.r_[0.1, 0.2, 0.7, yaw_quat_xyzw(np.radians(40.0))]
    distance, angle = pose_difference(a, b)
    assert abs(distance - 0.4) < 1e-12 and abs(angle - 40.0) < 1e-9
    assert np.allclose(pose_difference(b, np.r_[b[:3], -b[3:]]), 0.0, atol=1e-5)   # q and -q: one rotation
