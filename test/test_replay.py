"""The replay buffer: equi_rl's rotation augmentation (heightmap and (dx, dy) turned together, through
equimanip.symmetry), prioritized replay, saving and loading."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.learning.replay import ReplayBuffer, normalize_action, rotate_transition, unnormalize_action
from equimanip.perception.heightmap import project_heightmap
from equimanip.symmetry import ACTION_LAYOUT, GroupElement

torch.set_num_threads(1)
DX, DY = ACTION_LAYOUT.index("dx"), ACTION_LAYOUT.index("dy")
S, SIDE = 32, 0.6
GRIPPER = np.array([0.5, 0.0])


def block_points(centre_xy, half=0.03, height=0.04, n=25):
    """A dense grid of points on top of a box: what the camera sees of a block."""
    g = np.linspace(-half, half, n)
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel() + centre_xy[0], y.ravel() + centre_xy[1], np.full(x.size, height)], axis=1)


def heightmap_of(points, aperture=1.0):
    image = np.empty((2, S, S), dtype=np.float32)
    image[0] = project_heightmap(points, GRIPPER, S, SIDE)
    image[1] = aperture
    return image


def scene_xy_of_blob(image):
    """Where the blob of a heightmap lies relative to the gripper, in metres (x, y), found by
    projecting the pixel centres the same way the heightmap does (no pixel convention assumed)."""
    probe_x = heightmap_of(np.array([[GRIPPER[0] + 0.25, GRIPPER[1], 0.01]]))[0]  # a point at +x
    probe_y = heightmap_of(np.array([[GRIPPER[0], GRIPPER[1] + 0.25, 0.01]]))[0]  # a point at +y
    weights = image[0] / image[0].sum()
    rows, cols = np.indices(image[0].shape) - (S - 1) / 2
    pixel = np.array([(weights * cols).sum(), (weights * rows).sum()])

    def direction(probe):
        r, c = np.argwhere(probe > 0)[0] - (S - 1) / 2
        return np.array([c, r]) / np.hypot(c, r)

    ex, ey = direction(probe_x), direction(probe_y)
    metres_per_pixel = SIDE / S
    return np.array([pixel @ ex, pixel @ ey]) * metres_per_pixel


def test_normalisation_maps_the_limits_to_plus_minus_one():
    np.testing.assert_allclose(normalize_action(ACTION_LOW), -1.0)
    np.testing.assert_allclose(normalize_action(ACTION_HIGH), 1.0)
    a = np.array([0.3, 0.01, -0.02, 0.04, -0.2], dtype=np.float32)
    np.testing.assert_allclose(unnormalize_action(normalize_action(a)), a, atol=1e-6)


@pytest.mark.parametrize("angle_deg", [37.0, 90.0, -120.0, 200.0])
def test_rotation_turns_heightmap_and_step_together(angle_deg):
    # A block 10 cm from the gripper along (3, 4)/5, and an action stepping towards it.
    offset = np.array([0.06, 0.08])
    obs = heightmap_of(block_points(GRIPPER + offset))
    next_obs = heightmap_of(block_points(GRIPPER + 0.5 * offset), aperture=0.5)
    action = np.array([1.0, 0.03, 0.04, -0.01, 0.1], dtype=np.float32)
    g = GroupElement(math.radians(angle_deg))
    turned_obs, turned_u, turned_next = (np.asarray(x) for x in
                                         rotate_transition(g, obs, normalize_action(action), next_obs))
    turned_action = unnormalize_action(turned_u)

    # The image turned like the scene: compare with the heightmap of the turned block.
    expected_offset = g.matrix() @ offset
    np.testing.assert_allclose(scene_xy_of_blob(turned_obs), expected_offset, atol=0.01)
    np.testing.assert_allclose(scene_xy_of_blob(turned_next), 0.5 * expected_offset, atol=0.01)
    np.testing.assert_allclose(turned_obs[1], 1.0)                # gripper channel unchanged
    # The step still points at the block: turned by the same angle, length kept.
    step = turned_action[[DX, DY]]
    np.testing.assert_allclose(step, g.matrix() @ action[[DX, DY]], atol=1e-5)
    # Everything else unchanged.
    others = [i for i in range(5) if i not in (DX, DY)]
    np.testing.assert_allclose(turned_action[others], action[others], atol=1e-6)


def test_rotated_steps_are_clipped_to_the_limits():
    action = np.array([0.0, 0.05, 0.05, 0.0, 0.0], dtype=np.float32)     # the corner of the box
    image = np.zeros((2, 8, 8), dtype=np.float32)
    _, u, _ = rotate_transition(GroupElement(math.pi / 4), image, normalize_action(action), image)
    step = unnormalize_action(u)[[DX, DY]]
    np.testing.assert_allclose(step, [0.0, 0.05], atol=1e-6)               # (0, 0.0707) clipped


def make_buffer(prioritized=False, n=6, copies=4, capacity=50):
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(capacity, (2, 16, 16), copies=copies, prioritized=prioritized, seed=1)
    for i in range(n):
        obs = rng.uniform(0, 0.1, (2, 16, 16)).astype(np.float32)
        buffer.add(obs, rng.uniform(-1, 1, 5).astype(np.float32), float(i % 2), obs * 0.5, bool(i % 2),
                   is_expert=i < 2)
    return buffer


def test_buffer_holds_each_transition_and_its_rotated_copies():
    buffer = make_buffer()
    assert len(buffer) == 6 * 5
    batch = buffer.sample(200)
    assert batch.obs.shape == (200, 2, 16, 16) and batch.action.shape == (200, 5)
    transition, copy = np.divmod(batch.indices, 5)
    for b in range(200):
        i = transition[b]
        assert batch.is_expert[b] == (i < 2) and batch.reward[b, 0] == i % 2
        if copy[b] == 0:      # the transition as observed
            np.testing.assert_array_equal(batch.obs[b].numpy(), buffer.obs[i].astype(np.float32))
            np.testing.assert_array_equal(batch.action[b].numpy(), buffer.action[i])
        else:                 # a copy: the same transition turned by its stored angle
            g = GroupElement(float(buffer.angles[i, copy[b]]))
            o, u, n = rotate_transition(g, buffer.obs[i].astype(np.float32), buffer.action[i],
                                        buffer.next_obs[i].astype(np.float32))
            np.testing.assert_allclose(batch.obs[b].numpy(), np.asarray(o), atol=1e-6)
            np.testing.assert_allclose(batch.action[b].numpy(), u, atol=1e-6)
            np.testing.assert_allclose(batch.next_obs[b].numpy(), np.asarray(n), atol=1e-6)
    # Four different continuous angles per transition, none of them a no-op.
    assert np.all(np.abs(buffer.angles[:6, 1:]) > 0) and len(np.unique(buffer.angles[:6, 1:])) == 24


@pytest.mark.parametrize("prioritized", [False, True])
def test_demo_fraction_keeps_a_fixed_share_of_each_batch_expert(prioritized):
    buffer = make_buffer(prioritized=prioritized)     # 2 of 6 transitions are the expert's
    batch = buffer.sample(64, expert_fraction=0.5)
    expert = batch.is_expert.numpy()
    # Half the batch is drawn from the expert items, the other half from everything (a third expert).
    assert expert[32:].all() and 0 < expert.sum() < 64
    transition, copy = np.divmod(batch.indices[32:], 5)
    assert set(transition) <= {0, 1} and len(set(copy)) > 1            # the rotated copies too
    assert np.all(batch.weights.numpy()[32:] == 1.0)
    # Without demonstrations in the buffer the fraction has nothing to draw from: all uniform.
    empty = ReplayBuffer(10, (2, 16, 16), copies=4, seed=1)
    empty.add(np.zeros((2, 16, 16)), np.zeros(5), 0.0, np.zeros((2, 16, 16)), False)
    assert len(empty.sample(8, expert_fraction=0.5).indices) == 8


def test_prioritized_replay_prefers_large_td_errors_and_weights_them_down():
    buffer = make_buffer(prioritized=True)
    everything = np.arange(len(buffer))
    td = np.full(len(buffer), 0.01)
    td[17] = 10.0                                     # one surprising item (transition 3, not expert)
    buffer.update_priorities(everything, td)
    batch = buffer.sample(2000, beta=0.4)
    share = np.mean(batch.indices == 17)
    p = buffer.priorities.reshape(-1)[:len(buffer)]
    assert share == pytest.approx(p[17] / p.sum(), abs=0.03) and share > 5 / len(buffer)   # 5x uniform
    # Expert items keep a bonus: the same TD error gives them a higher priority.
    assert buffer.priorities[0, 1] > buffer.priorities[2, 1]
    # Importance weights: at most 1, smallest for the most sampled item.
    w = batch.weights.numpy().ravel()
    assert w.max() <= 1.0 + 1e-6 and w[batch.indices == 17].max() == pytest.approx(w.min())
    # New transitions get the highest priority so far.
    buffer.add(np.zeros((2, 16, 16)), np.zeros(5), 0.0, np.zeros((2, 16, 16)), False)
    assert buffer.priorities[6, 0] == pytest.approx(buffer.priorities.max())


def test_full_buffer_overwrites_the_oldest_transitions():
    buffer = make_buffer(n=7, capacity=5)
    assert buffer.size == 5 and len(buffer) == 25
    assert buffer.reward[0] == 1.0 and buffer.reward[1] == 0.0        # transitions 5 and 6 went to slots 0, 1


def test_save_and_load_round_trip(tmp_path):
    buffer = make_buffer(prioritized=True)
    buffer.update_priorities(np.arange(10), np.linspace(0, 1, 10))
    buffer.save(tmp_path / "replay.npz")
    other = ReplayBuffer(50, (2, 16, 16), copies=4, prioritized=True, seed=99)
    other.load(tmp_path / "replay.npz")
    for name in ReplayBuffer._ARRAYS:
        np.testing.assert_array_equal(getattr(other, name)[:6], getattr(buffer, name)[:6])
    np.testing.assert_array_equal(other.sample(8).indices, buffer.sample(8).indices)   # same generator state
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(50, (2, 8, 8), copies=4).load(tmp_path / "replay.npz")
