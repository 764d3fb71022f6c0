"""The safety layer: what may reach the arm and what is rejected, with which reason."""
import math

import numpy as np
import pytest

from equimanip.action import ACTION_HIGH, ACTION_LOW, action_to_velocity, clip_action, velocity_to_delta
from equimanip.safety import CommandRejected, TwistLimits, check_gripper, check_trajectory, check_twist

LIMITS = TwistLimits.for_period(0.1)
JOINTS = ["j1", "j2", "j3"]
LOWER, UPPER = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])


def test_twist_within_limits_passes_unchanged():
    lin, yaw, notes = check_twist([0.1, -0.2, 0.05], [0, 0, 0.5], "base_link", "base_link", LIMITS)
    assert np.allclose(lin, [0.1, -0.2, 0.05]) and yaw == 0.5 and notes == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_twist_is_rejected(bad):
    with pytest.raises(CommandRejected, match="non-finite"):
        check_twist([0.0, bad, 0.0], [0, 0, 0], "base_link", "base_link", LIMITS)
    with pytest.raises(CommandRejected, match="non-finite"):
        check_twist([0.0, 0.0, 0.0], [0, 0, bad], "base_link", "base_link", LIMITS)


def test_twist_in_another_frame_is_rejected():
    with pytest.raises(CommandRejected, match="frame 'tool0'"):
        check_twist([0.1, 0, 0], [0, 0, 0], "tool0", "base_link", LIMITS)


def test_fast_twist_is_scaled_along_its_direction():
    lin, _, notes = check_twist([3.0, 4.0, 0.0], [0, 0, 0], "", "base_link", LIMITS)
    assert np.isclose(np.max(np.abs(lin)), LIMITS.max_linear)
    assert np.allclose(lin / np.linalg.norm(lin), [0.6, 0.8, 0.0])
    assert any("scaled" in n for n in notes)
    # Within the per-axis limit on every axis: unchanged, even though the norm is larger.
    lin, _, notes = check_twist([0.5, -0.5, 0.5], [0, 0, 0], "", "base_link", LIMITS)
    assert np.allclose(lin, [0.5, -0.5, 0.5]) and notes == []


def test_roll_pitch_rates_are_ignored_with_a_note():
    _, yaw, notes = check_twist([0, 0, 0], [0.3, 0.0, 10.0], "", "base_link", LIMITS)
    assert yaw == pytest.approx(LIMITS.max_yaw_rate)
    assert any("roll and pitch" in n for n in notes)


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf])
def test_gripper_out_of_range_is_rejected(value):
    with pytest.raises(CommandRejected, match="gripper command"):
        check_gripper(value)


def test_trajectory_checks():
    ok = check_trajectory(["j2", "j1"], [([0.1, 0.2], 0.5), ([0.3, 0.4], 1.0)], JOINTS, LOWER, UPPER)
    assert ok.joint_indices.tolist() == [1, 0]
    assert np.allclose(ok.sample(0.75), [0.2, 0.3])
    assert np.allclose(ok.sample(5.0), [0.3, 0.4])
    cases = [
        ((["j9"], [([0.0], 1.0)]), "unknown joints"),
        ((["j1", "j1"], [([0.0, 0.0], 1.0)]), "twice"),
        ((["j1", "j2"], [([0.0], 1.0)]), "1 positions for 2 joints"),
        ((["j1"], []), "no points"),
        ((["j1"], [([math.nan], 1.0)]), "non-finite"),
        ((["j1"], [([0.0], 1.0), ([0.1], 0.5)]), "increasing"),
        ((["j1"], [([2.0], 1.0)]), "joint limits"),
        (([], [([], 1.0)]), "no joints"),
    ]
    for (names, points), message in cases:
        with pytest.raises(CommandRejected, match=message):
            check_trajectory(names, points, JOINTS, LOWER, UPPER)


def test_action_clip_and_conversions():
    a, clipped = clip_action([2.0, 0.1, 0.0, -0.1, 1.0])
    assert clipped and np.allclose(a, [1.0, 0.05, 0.0, -0.05, math.pi / 8])
    a, clipped = clip_action((ACTION_LOW + ACTION_HIGH) / 2)
    assert not clipped
    with pytest.raises(ValueError, match="non-finite"):
        clip_action([0.5, math.nan, 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        clip_action([0.5, 0.0])
    lin, yaw_rate = action_to_velocity([1.0, 0.01, 0.02, 0.03, 0.1], 0.1)
    assert np.allclose(velocity_to_delta(lin, yaw_rate, 0.1), [0.01, 0.02, 0.03, 0.1])



# ------------------------------------------------------------------ the controller-side layer
from equimanip.geometry import down_quat_xyzw  # noqa: E402
from equimanip.safety import SafetyLimits, as_action, limit_action  # noqa: E402

LAYER_LIMITS = SafetyLimits()


def _pose(x, y, z, yaw=0.0):
    return np.concatenate([[x, y, z], down_quat_xyzw(yaw)])


def test_layer_passes_a_safe_action_unchanged():
    a = np.array([0.4, 0.01, -0.02, 0.03, 0.1])
    out = limit_action(a, _pose(0.5, 0.0, 0.2), 0.1, LAYER_LIMITS)
    np.testing.assert_array_equal(out.action, a)
    assert out.reductions == ()


def test_layer_slides_along_walls_and_brings_an_arm_outside_back():
    out = limit_action([1.0, 0.05, 0.05, -0.05, 0.0], _pose(0.69, 0.0, 0.02), 0.1, LAYER_LIMITS)
    np.testing.assert_allclose(out.action[1:4], [0.01, 0.05, -0.005], atol=1e-12)
    assert "workspace box" in out.reductions[0]
    # 3 cm beyond the +x wall and pushing on: sent back, at most at the speed limit
    out = limit_action([1.0, 0.05, 0.0, 0.0, 0.0], _pose(0.73, 0.0, 0.2), 0.1, LAYER_LIMITS)
    np.testing.assert_allclose(out.action[1:4], [-0.03, 0.0, 0.0], atol=1e-12)
    out = limit_action([1.0, 0.0, 0.0, 0.0, 0.0], _pose(0.9, 0.0, 0.2), 0.1, LAYER_LIMITS)
    np.testing.assert_allclose(out.action[1:4], [-0.05, 0.0, 0.0], atol=1e-12)


def test_layer_scales_speed_keeping_direction_and_holds_the_yaw():
    slow = SafetyLimits(max_linear_speed=0.2, max_yaw_rate=1.0)
    out = limit_action([0.5, 0.04, -0.02, 0.01, 0.3], _pose(0.5, 0.0, 0.2), 0.1, slow)
    np.testing.assert_allclose(out.action, [0.5, 0.02, -0.01, 0.005, 0.1])
    assert out.reductions == ("speed 0.4 m/s scaled to 0.2 m/s (100% over)",
                              "yaw rate 3 rad/s clamped to 1 rad/s (200% over)")
    # A policy a hair over a limit (BC's outputs are not squashed): the line says by how much.
    hair = limit_action([0.5, 0.0, 0.0, 0.0, 0.1 * 1.00002], _pose(0.5, 0.0, 0.2), 0.1, slow)
    assert hair.reductions == ("yaw rate 1 rad/s clamped to 1 rad/s (0.002% over)",)
    out = limit_action([0.5, 0.0, 0.0, 0.0, 0.3], _pose(0.5, 0.0, 0.2, yaw=2.3), 0.1, LAYER_LIMITS)
    assert out.action[4] == pytest.approx(0.75 * math.pi - 2.3)
    out = limit_action([1.7, 0.0, 0.0, 0.0, 0.0], _pose(0.5, 0.0, 0.2), 0.1, LAYER_LIMITS)
    assert out.action[0] == 1.0 and "aperture" in out.reductions[0]


@pytest.mark.parametrize("bad", [[0.5, math.nan, 0, 0, 0], [0.5, 0, 0, 0], [0.5 + 0j, 0, 0, 0, 0],
                                 [True, False, False, False, False], ["1", "0", "0", "0", "0"],
                                 [[0.5], 0, 0, 0, 0], None])
def test_layer_refuses_what_is_not_an_action(bad):
    with pytest.raises(CommandRejected):
        limit_action(bad, _pose(0.5, 0.0, 0.2), 0.1, LAYER_LIMITS)


def test_layer_refuses_a_non_finite_pose_and_validates_its_limits():
    with pytest.raises(CommandRejected, match="end-effector pose"):
        limit_action([0.5, 0, 0, 0, 0], [math.nan] * 7, 0.1, LAYER_LIMITS)
    with pytest.raises(ValueError, match="below workspace_max"):
        SafetyLimits(workspace_low=(0.7, -0.2, 0.0)).validate()
    assert as_action(np.arange(5, dtype=np.int32)).dtype == np.float64
