"""Tasks: registry, random placement over the whole circle, success predicates, expert success."""
import math

import numpy as np
import pybullet as p
import pytest

from equimanip.geometry import yaw_of_quat_xyzw
from equimanip.sim.env import ManipulationEnv, expert_input
from equimanip.sim.evaluate import run_expert
from equimanip.sim.experts import closest_symmetric_yaw
from equimanip.sim.tasks import TASKS, Task, drawer_opening, make_task
from equimanip.sim.world import WORKSPACE


@pytest.fixture(scope="module", params=sorted(TASKS))
def env(request):
    env = ManipulationEnv(task=request.param, render=False)
    yield env
    env.close()


def test_registry_has_the_five_tasks():
    assert set(TASKS) == {"reach", "block_picking", "block_pushing", "drawer_opening", "reach_obstacles"}
    for name, task_class in TASKS.items():
        assert issubclass(task_class, Task) and task_class.name == name
        assert isinstance(make_task(name), task_class)
    assert TASKS["reach"].max_steps == 50


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match="block_picking"):
        make_task("stack_blocks")


def test_object_poses_have_the_documented_rows(env):
    poses = env.reset(0).object_poses
    assert poses.shape == (len(env.task.object_names), 7)
    np.testing.assert_allclose(np.linalg.norm(poses[:, 3:], axis=1), 1.0, atol=1e-6)


def test_random_placement_covers_the_circle_and_the_workspace(env):
    poses = np.stack([env.reset(seed).object_poses[0] for seed in range(48)])
    yaws = np.array([yaw_of_quat_xyzw(q) for q in poses[:, 3:]])
    # Every 90-degree sector is hit (a range limited to e.g. [0, pi) would leave two empty).
    sectors = np.floor((yaws + math.pi) / (math.pi / 2)).astype(int)
    assert set(sectors.tolist()) == {0, 1, 2, 3}
    assert np.all(poses[:, 0] >= WORKSPACE.low[0]) and np.all(poses[:, 0] <= WORKSPACE.high[0])
    assert np.all(poses[:, 1] >= WORKSPACE.low[1]) and np.all(poses[:, 1] <= WORKSPACE.high[1])
    assert np.ptp(poses[:, 0]) > 0.15 and np.ptp(poses[:, 1]) > 0.15


def test_nothing_succeeds_right_after_reset(env):
    for seed in range(10):
        env.reset(seed)
        assert not env.success


def test_lifted_block_counts_as_picked():
    with ManipulationEnv(task="block_picking", render=False) as env:
        env.reset(0)
        block = env.task.block
        pose = env.world.body_pose(block)
        assert not env.task.success(env.world)
        env.world.set_body_pose(block, [pose[0], pose[1], 0.02 + 0.085, *pose[3:]])
        assert env.task.success(env.world)
        env.world.set_body_pose(block, [pose[0], pose[1], 0.02 + 0.07, *pose[3:]])
        assert not env.task.success(env.world)


def test_block_on_the_goal_counts_as_pushed():
    with ManipulationEnv(task="block_pushing", render=False) as env:
        block_pose, goal_pose = env.reset(0).object_poses
        assert np.linalg.norm(block_pose[:2] - goal_pose[:2]) >= 0.1
        env.world.set_body_pose(env.task.block, [goal_pose[0] + 0.03, goal_pose[1] + 0.03, 0.02, *block_pose[3:]])
        assert env.task.success(env.world)
        env.world.set_body_pose(env.task.block, [goal_pose[0] + 0.06, goal_pose[1], 0.02, *block_pose[3:]])
        assert not env.task.success(env.world)


def test_open_drawer_counts_and_the_handle_moves_along_its_yaw():
    with ManipulationEnv(task="drawer_opening", render=False) as env:
        handle_closed = env.reset(3).object_poses[0]
        task, world = env.task, env.world
        p.resetJointState(task.cabinet, task.slide_joint, 0.105, physicsClientId=world.client)
        handle_open = task.object_poses(world)[0]
        pull_yaw = yaw_of_quat_xyzw(handle_closed[3:])
        expected = handle_closed[:2] + 0.105 * np.array([math.cos(pull_yaw), math.sin(pull_yaw)])
        np.testing.assert_allclose(handle_open[:2], expected, atol=1e-6)
        assert task.success(world)
        p.resetJointState(task.cabinet, task.slide_joint, 0.05, physicsClientId=world.client)
        assert not task.success(world)


def test_drawer_handle_stays_reachable_when_pulled_out():
    with ManipulationEnv(task="drawer_opening", render=False) as env:
        for seed in range(30):
            handle = env.reset(seed).object_poses[0]
            yaw = yaw_of_quat_xyzw(handle[3:])
            pulled = handle[:2] + drawer_opening.DRAWER_TRAVEL * np.array([math.cos(yaw), math.sin(yaw)])
            for xy in (handle[:2], pulled):
                assert np.all(xy >= WORKSPACE.low_array[:2]) and np.all(xy <= WORKSPACE.high_array[:2])


def test_reach_target_reached_by_teleporting_it_to_the_gripper():
    with ManipulationEnv(task="reach", render=False) as env:
        obs = env.reset(0)
        assert not env.task.success(env.world)
        env.world.set_body_pose(env.task.target, [*(obs.ee_pose[:3] + [0.01, 0.0, 0.0]), 0, 0, 0, 1])
        assert env.task.success(env.world)


def test_closest_symmetric_yaw_respects_the_symmetry_and_the_range():
    # A block at 80 degrees looks the same at -10 degrees: the gripper at 0 takes -10.
    assert closest_symmetric_yaw(math.radians(80), math.pi / 2, 0.0) == pytest.approx(math.radians(-10))
    # A handle needing 170 degrees is grasped at -10 degrees with the gripper's half-turn symmetry.
    assert closest_symmetric_yaw(math.radians(170), math.pi, 0.0) == pytest.approx(math.radians(-10))
    rng = np.random.default_rng(0)
    for object_yaw, current in rng.uniform(-math.pi, math.pi, size=(200, 2)):
        for period in (math.pi / 2, math.pi):
            yaw = closest_symmetric_yaw(object_yaw, period, current)
            assert abs(yaw) <= math.pi / 2 + 1e-9
            steps = (yaw - object_yaw) / period
            assert abs(steps - round(steps)) < 1e-9


@pytest.mark.parametrize("task", sorted(TASKS))
def test_expert_succeeds(task):
    result = run_expert(task, episodes=20, seed=1000)
    assert result["success_rate"] >= 0.95, result["per_episode"]
    assert all(e["steps"] <= TASKS[task].max_steps for e in result["per_episode"])


@pytest.mark.parametrize("task, phase", [("block_picking", "lift"), ("block_pushing", "push")])
def test_expert_recovers_when_the_block_is_knocked_away(task, phase):
    """Mid-task the block is teleported elsewhere on the table: the expert starts over on it."""
    with ManipulationEnv(task=task, render=False) as env:
        expert = env.make_expert()
        obs = env.reset(21)
        expert.reset()
        while expert.phase != phase:  # ends one step into the phase: lifting / pushing
            obs = env.step(expert.act(expert_input(obs)))[0]
        assert not env.done
        block = env.task.block
        elsewhere = 0.6 if obs.ee_pose[0] < 0.5 else 0.4
        env.world.set_body_pose(block, [elsewhere, -0.12, 0.02, 0.0, 0.0, math.sin(0.4), math.cos(0.4)])
        obs = env.observe(render=False)
        while not env.done:
            obs, _, _, info = env.step(expert.act(expert_input(obs)))
        assert info["success"]
