"""The Gymnasium environments: spaces, seeds, terminated vs truncated, scene options, vector API,
expert demonstrations. Real PyBullet scenes and real point clouds throughout (small heightmaps)."""
from __future__ import annotations

import dataclasses
import math

import gymnasium
import numpy as np
import pytest
import torch

import equimanip.envs  # noqa: F401  (registers the environments)
from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.envs import ENV_IDS, make_vector_env
from equimanip.envs.demos import collect_demonstrations
from equimanip.envs.scene import gripper_start, in_sector, object_bodies, rotate_xy, scene_yaw, workspace_centre_xy
from equimanip.geometry import wrap_angle, yaw_of_quat_xyzw
from equimanip.perception.observation import ObservationConfig

torch.set_num_threads(1)
SMALL = ObservationConfig(heightmap_size=32)


def make(task="block_picking", **kw):
    return gymnasium.make(ENV_IDS[task], observation_config=SMALL, **kw)


@pytest.mark.parametrize("task", sorted(ENV_IDS))
def test_every_task_makes_and_passes_gymnasiums_checker(task):
    from gymnasium.utils.env_checker import check_env

    env = make(task)
    check_env(env.unwrapped, skip_render_check=True)
    np.testing.assert_array_equal(env.action_space.low, ACTION_LOW.astype(np.float32))
    np.testing.assert_array_equal(env.action_space.high, ACTION_HIGH.astype(np.float32))
    env.close()


def test_observation_modes_match_their_spaces():
    for mode in ("heightmap", "state", "both"):
        env = make(observation=mode)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs), mode
        if mode == "heightmap":
            assert obs.shape == (2, 32, 32)
        if mode == "both":
            assert obs["state"][3] == 1.0           # the first object slot is present: the block was seen
        env.close()


def test_same_seed_same_scene_and_seeds_advance():
    env = make()
    a, info_a = env.reset(seed=7)
    b, _ = env.reset(seed=8)
    c, info_c = env.reset(seed=7)
    d, info_d = env.reset()                          # no seed: the next one
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)
    assert info_a["episode_seed"] == info_c["episode_seed"] == 7 and info_d["episode_seed"] == 8
    np.testing.assert_array_equal(b, d)
    env.close()


def test_success_terminates_and_the_step_limit_truncates():
    env = make(max_episode_steps=40)
    env.reset(seed=1)
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
    assert terminated and not truncated and reward == 1.0 and info["is_success"]

    short = make(max_episode_steps=3)
    short.reset(seed=1)
    outcomes = [short.step(np.array([1.0, 0, 0, 0, 0], dtype=np.float32))[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (False, True)]
    env.close()
    short.close()


def _state(env):
    sim = env.unwrapped.sim
    return sim.world.ee_pose(), np.stack([sim.world.body_pose(b) for b in object_bodies(sim)])


def test_perturbations_move_the_start_within_their_bounds():
    plain, moved = make("block_pushing"), make("block_pushing", perturb_gripper=0.05, perturb_objects=0.03)
    ee_offsets, object_offsets = [], []
    for seed in range(3):
        plain.reset(seed=seed)
        moved.reset(seed=seed)
        (ee0, obj0), (ee1, obj1) = _state(plain), _state(moved)
        ee_offsets.append(ee1[:2] - ee0[:2])
        object_offsets.append(obj1[:, :2] - obj0[:, :2])
    ee_offsets, object_offsets = np.abs(ee_offsets), np.abs(object_offsets)
    assert ee_offsets.max() <= 0.05 + 0.004 and ee_offsets.max() > 0.005      # servoed within 2-3 mm
    assert object_offsets.max() <= 0.03 + 1e-3 and object_offsets.max() > 0.003
    plain.close()
    moved.close()


def test_rotate_scene_rotates_objects_and_hand_about_the_workspace_centre():
    plain, turned = make("block_pushing"), make("block_pushing", rotate_scene=90.0)
    plain.reset(seed=4)
    hm_turned, _ = turned.reset(seed=4)
    (ee0, obj0), (ee1, obj1) = _state(plain), _state(turned)
    centre = workspace_centre_xy()
    for before, after in zip(obj0, obj1):
        np.testing.assert_allclose(after[:2], rotate_xy(before[:2], math.pi / 2, centre), atol=2e-3)
        turn = wrap_angle(yaw_of_quat_xyzw(after[3:]) - yaw_of_quat_xyzw(before[3:]) - math.pi / 2)
        assert abs(turn) < 1e-2
    # The hand starts at home turned the same way (its yaw too, modulo the gripper's half turn).
    np.testing.assert_allclose(ee1[:3], gripper_start(math.pi / 2, [0.0, 0.0])[0], atol=2e-3)
    assert abs(wrap_angle(2 * (yaw_of_quat_xyzw(ee1[3:]) - yaw_of_quat_xyzw(ee0[3:]) - math.pi / 2))) < 0.02
    # The policy's view turns with it: the block's pixels in the turned scene's heightmap are the
    # plain heightmap's block pixels turned by 90 degrees (the image is centred on the hand,
    # which turned too). Compare the block's centroid, away from the gripper's own pixels.
    hm_plain = plain.unwrapped.last_observation.heightmap[0]
    hm_turned = hm_turned[0]

    def block_centroid(image):
        rows, cols = np.nonzero((image > 0.02) & (image < 0.06))
        return np.array([cols.mean(), rows.mean()]) - (image.shape[0] - 1) / 2

    p, q = block_centroid(hm_plain), block_centroid(hm_turned)
    # A counter-clockwise turn seen from above: (col, row) with row along -y maps (c, r) -> (r, -c).
    np.testing.assert_allclose(q, [p[1], -p[0]], atol=1.5)
    plain.close()
    turned.close()


def test_yaw_sector_keeps_only_scenes_in_the_sector():
    env = make("block_pushing", yaw_sector=(0.0, 90.0))
    yaws = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        yaws.append(info["scene_yaw"])
        assert info["scene_yaw"] == pytest.approx(scene_yaw(env.unwrapped.sim))
    assert all(in_sector(y, 0.0, math.pi / 2) for y in yaws)
    free = make("block_pushing")
    outside = [free.reset(seed=s)[1]["scene_yaw"] for s in range(6)]
    assert not all(in_sector(y, 0.0, math.pi / 2) for y in outside)   # the restriction did something
    env.close()
    free.close()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_api_runs_copies_on_distinct_seeds(asynchronous):
    envs = make_vector_env("reach", 2, asynchronous=asynchronous, max_episode_steps=4,
                           observation_config=ObservationConfig(heightmap_size=16))
    obs, info = envs.reset(seed=100)
    assert obs.shape == (2, 2, 16, 16)
    assert list(info["episode_seed"]) == [100, 101]
    for _ in range(4):
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 5), dtype=np.float32))
    assert truncated.all() and "final_obs" in info
    assert list(info["episode_seed"]) == [102, 103]            # stride 2: no scene twice
    envs.close()


def test_demonstrations_are_successful_expert_episodes():
    env = make()
    demos = collect_demonstrations(env, episodes=2, seed=50)
    assert len(demos) == 2
    for demo in demos:
        assert len(demo.observations) == len(demo) + 1
        assert demo.terminated[-1] and not any(demo.truncated) and demo.rewards[-1] == 1.0
        assert all(env.action_space.contains(a) for a in demo.actions)
    env.close()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        gymnasium.make("equimanip/BlockPicking-v0", task="stack")
    with pytest.raises(ValueError, match="yaw_sector"):
        make(yaw_sector=(0.0, 0.0))
    with pytest.raises(ValueError, match="perturb"):
        make(perturb_gripper=-0.1)
    with pytest.raises(ValueError, match="observation must be"):
        make(observation="pixels")


def test_the_goal_channel_shows_pushings_goal_and_only_pushing_has_one():
    config = dataclasses.replace(SMALL, heightmap_mode="gripper", goal_channel=True)
    env = gymnasium.make(ENV_IDS["block_pushing"], observation_config=config)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (3, 32, 32) and env.observation_space.contains(obs)
    sim_obs = env.unwrapped.sim.observe(render=False)
    np.testing.assert_allclose(env.unwrapped._last_observation.goal_xy, sim_obs.object_poses[1, :2])
    assert obs[2].sum() > 0
    env.close()
    with pytest.raises(ValueError, match="block_picking has none"):
        gymnasium.make(ENV_IDS["block_picking"], observation_config=config)
