"""The Panda model of equimanip.kinematics against PyBullet's own forward kinematics, and the
joint step it computes for a delta action against where that step really takes the grasp point."""
from __future__ import annotations

import math

import numpy as np
import pytest

from equimanip.geometry import pose7_to_matrix
from equimanip.kinematics import PANDA


@pytest.fixture(scope="module")
def world():
    from equimanip.sim.world import ARM_JOINT_NAMES, PandaWorld
    assert tuple(ARM_JOINT_NAMES) == PANDA.joint_names
    w = PandaWorld()
    yield w
    w.close()


def test_forward_kinematics_matches_pybullet(world):
    import pybullet as p

    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(PANDA.lower, PANDA.upper)
        for joint, angle in zip(world._arm_indices, q):
            p.resetJointState(world.robot, joint, float(angle), physicsClientId=world.client)
        np.testing.assert_allclose(PANDA.forward(q), pose7_to_matrix(world.ee_pose()), atol=1e-6)
    # Franka's published limits of the real arm: inside the simulated URDF's (which adds ~4 degrees)
    assert np.all(PANDA.lower >= world.joint_lower_limits[:7]) and np.all(PANDA.upper <= world.joint_upper_limits[:7])


def test_jacobian_is_the_derivative_of_the_forward_kinematics():
    q = np.array([0.1, 0.4, -0.2, -1.9, 0.1, 2.3, 0.6])
    J = PANDA.jacobian(q)
    eps = 1e-7
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = eps
        moved = (PANDA.forward(q + dq)[:3, 3] - PANDA.forward(q - dq)[:3, 3]) / (2 * eps)
        np.testing.assert_allclose(J[:3, i], moved, atol=1e-6)


def test_a_joint_step_moves_the_grasp_point_by_the_delta_and_keeps_it_pointing_down(world):
    q = world.home_arm_positions
    start = PANDA.forward(q)
    delta = np.array([0.01, -0.02, 0.015, 0.1])
    after = PANDA.forward(PANDA.joint_step(q, delta, period=0.1))
    np.testing.assert_allclose(after[:3, 3] - start[:3, 3], delta[:3], atol=1e-3)   # first order, 2 cm steps
    yaw = lambda T: math.atan2(T[1, 0], T[0, 0])  # noqa: E731
    assert yaw(after) - yaw(start) == pytest.approx(0.1, abs=5e-3)
    assert after[2, 2] == pytest.approx(-1.0, abs=1e-3)                              # z axis still down


def test_a_joint_step_respects_the_joint_speeds_and_limits():
    q = np.array([0.0, 0.4, 0.0, -1.9, 0.0, 2.3, 0.8])
    far = PANDA.joint_step(q, np.array([0.5, 0.5, -0.5, 2.0]), period=0.1)
    assert np.all(np.abs(far - q) <= PANDA.max_velocity * 0.1 + 1e-12)
    with pytest.raises(ValueError, match="7 finite joint positions"):
        PANDA.forward([0.0] * 6)
