"""The closed loop through ROS topics: simulation node + scripted expert, every task."""
import json
import subprocess
import sys

import numpy as np
import pytest
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from equimanip.bringup import RunConfig, run
from equimanip.nodes import topics
from equimanip.sim.env import ManipulationEnv, expert_input
from equimanip.sim.tasks import TASKS

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("task", sorted(TASKS))
def test_expert_solves_every_task_through_ros(task):
    result = run(RunConfig(task=task, episodes=2, seed=100, sim_overrides={"publish_cloud": False}))
    assert [e.success for e in result.episodes] == [True, True], result.summary()


def test_ros_loop_matches_the_python_api_step_for_step(ros):
    """Same seed, same expert: the loop through DDS and the plain API take the same steps: the
    arm's measured pose and the objects' poses agree after every one of them. The twist's m/s
    round trip (action / period * period) changes the last bits of a command; the poses agree to
    1e-13 until a contact amplifies that (to 1.4e-3 in the block's quaternion at the last step of
    this episode), while a step taken late or twice would differ by centimetres."""
    from equimanip.sim.expert_node import ExpertNode
    from equimanip.sim.sim_node import SimNode

    steps = []   # (step of the episode, state after it): the expert may already act on the scene
    sim = ros.node(SimNode, task="block_pushing", seed=7, sync=True, publish_cloud=False)   # of start-up
    sim.add_step_listener(lambda env, obs: steps.append((env.steps, np.concatenate([obs.ee_pose, *obs.object_poses]))))
    # The controller-side safety layer cuts steps at the box's walls from the measured pose, where
    # the simulation's own limits allow a millimetre (test_hostile_controller.py tests the layer):
    # off here, so that the two paths carry out the same commands.
    expert = ros.node(ExpertNode, task="block_pushing", **{"safety.enabled": False})
    reset = sim.create_client(Trigger, topics.SIM_RESET)
    clear = sim.create_client(Trigger, "/expert_node/reset")   # the expert may have acted already
    ros.spin_until(lambda: sim.count_publishers(topics.TWIST) and expert.inputs_connected()
                   and reset.service_is_ready() and clear.service_is_ready(), timeout_s=30, what="discovery")
    cleared = clear.call_async(Trigger.Request())
    ros.spin_until(cleared.done, what="the expert to clear its memory")
    sim.set_parameters([Parameter("seed", value=7)])
    future = reset.call_async(Trigger.Request())
    ros.spin_until(future.done, what="reset")
    ros.spin_until(lambda: sim.env.done, timeout_s=60, what="the episode to end")
    first = max(i for i, (step, _) in enumerate(steps) if step == 1)     # the reset episode's first step
    through_ros = [state for _, state in steps[first:]]

    with ManipulationEnv(task="block_pushing", render=False) as env:
        policy = env.make_expert()
        obs, done, through_api = env.reset(7), False, []
        while not done:
            obs, _, done, info = env.step(policy.act(expert_input(obs)))
            through_api.append(np.concatenate([obs.ee_pose, *obs.object_poses]))
    assert info["success"] and sim.env.success
    assert len(through_ros) == len(through_api) > 5
    np.testing.assert_allclose(np.array(through_ros), np.array(through_api), atol=2e-3)


def test_run_with_the_point_cloud_on_and_an_animation(tmp_path):
    gif = tmp_path / "episode.gif"
    result = run(RunConfig(task="reach", episodes=1, seed=1, record=gif))
    assert result.success_rate == 1.0
    assert gif.stat().st_size > 1000


def test_cli_json_summary():
    out = subprocess.run([sys.executable, "-m", "equimanip.cli", "run", "--task", "reach",
                          "--episodes", "2", "--seed", "3", "--json"],
                         capture_output=True, text=True, timeout=240, check=True).stdout
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0 and summary["mean_steps"] > 0
    assert sum(line.startswith("episode") for line in lines) == 2


def test_cli_rejects_unknown_task():
    proc = subprocess.run([sys.executable, "-m", "equimanip.cli", "run", "--task", "juggling"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown task 'juggling'" in proc.stderr


def test_a_run_refuses_to_share_its_ros_domain_with_another_controller(ros):
    """Another controller on the same ROS domain (here: a node publishing twists) would step this
    run's simulation with its commands: the run stops with what to do instead of wrong results."""
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node

    from equimanip.nodes import qos

    intruder = ros.add(Node("other_controller", context=ros.context))
    intruder.create_publisher(TwistStamped, topics.TWIST, qos.RELIABLE)
    with pytest.raises(RuntimeError, match=r"another arm or controller is running on ROS domain \d+ "
                                           r"\(/servo_node/delta_twist_cmds has 2 publishers"):
        run(RunConfig(task="reach", episodes=1, seed=1, sim_overrides={"publish_cloud": False}))
