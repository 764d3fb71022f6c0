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
