"""The controller side configured for a real cell (config/robot.yaml, launch/robot.launch.py's
remappings) runs against the simulation with every topic under another name."""
from __future__ import annotations

import pytest
import yaml

from equimanip.bringup import RunConfig, run
from equimanip.config import config_file
from equimanip.nodes import topics
from equimanip.nodes.tables import NODE_PARAMETER_TABLES

pytestmark = pytest.mark.ros

# Every topic of the loop under a name a real cell might use.
REMAPPED = {
    topics.CLOUD: "/cell/depth/points",
    topics.CAMERA_POSE: "/cell/depth/pose",
    topics.JOINT_STATES: "/cell/arm/joint_states",
    topics.EE_POSE: "/cell/arm/tool_pose",
    topics.TWIST: "/cell/servo/delta_twist_cmds",
    topics.GRIPPER: "/cell/gripper/aperture",
    topics.ACTION: "/cell/equimanip/action",
    topics.SIM_OBJECT_POSES: "/cell/ground_truth/object_poses",
}


def test_robot_yaml_sets_only_a_learned_controllers_parameters_and_starts_disabled():
    values = yaml.safe_load(config_file("robot").read_text())["/**"]["ros__parameters"]
    flat = {f"{group}.{k}": v for group in ("safety", "observation") for k, v in values.pop(group).items()}
    flat.update(values)
    declared = {s.name for s in NODE_PARAMETER_TABLES["policy_node"]}
    assert set(flat) <= declared, set(flat) - declared
    assert flat["trigger"] == "timer" and flat["start_enabled"] is False and flat["arm_metadata_topic"] == ""


def test_expert_episodes_with_every_topic_remapped_and_the_real_cell_settings():
    """robot.yaml's settings (timer mode at 10 Hz, slop, its safety box) on top of the simulation in
    real time, all topics renamed: the loop closes and the task is solved."""
    config = RunConfig(task="reach", episodes=2, seed=5, sync=False, params_files=("sim", "robot"),
                       remappings=REMAPPED,
                       # robot.yaml starts disabled and ignores the arm's metadata; a test enables it
                       # and keeps the simulation's control-period check on.
                       param_overrides=[("expert_node", "start_enabled", True),
                                        ("expert_node", "arm_metadata_topic", topics.SIM_METADATA),
                                        ("expert_node", "safety.max_linear_speed", 0.5)],
                       episode_timeout_s=60.0)
    result = run(config)
    assert result.success_rate == 1.0, result.summary()
    for default, renamed in REMAPPED.items():
        assert renamed in result.graph_topics and default not in result.graph_topics


def test_a_ros2_control_arm_driven_by_joint_trajectories_alone():
    """output: joint_trajectory, as for a joint_trajectory_controller without MoveIt Servo: the
    controller turns each step into joint targets (equimanip.kinematics) and the task is solved."""
    config = RunConfig(task="reach", episodes=3, seed=11,
                       param_overrides=[("expert_node", "output", "joint_trajectory")], episode_timeout_s=60.0)
    result = run(config)
    assert result.success_rate == 1.0, result.summary()
    assert result.controller_stats["failures"] == 0


def test_a_misspelled_parameter_override_is_refused_not_dropped():
    with pytest.raises(ValueError, match="expert_node has no parameter 'safty.max_linear_speed'"):
        run(RunConfig(task="reach", episodes=1, param_overrides=[("expert_node", "safty.max_linear_speed", 0.2)]))


def test_the_real_arm_nodes_start_without_the_simulator():
    """A real cell's computer has no PyBullet: the controllers and the recorder must import
    (and know the task names) without it. A fresh interpreter where importing pybullet fails."""
    import subprocess
    import sys

    code = ("import sys\n"
            "sys.modules['pybullet'] = sys.modules['pybullet_data'] = None\n"
            "import equimanip.nodes.policy_node, equimanip.nodes.mppi_node, equimanip.nodes.recorder_node\n"
            "from equimanip.nodes.params import TASK\n"
            "print(sorted(TASK.choices))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from equimanip.sim.tasks import TASKS
    assert done.stdout.strip() == str(sorted(TASKS))
