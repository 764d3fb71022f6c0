"""Simulated cell: sim_node (PyBullet arm + depth camera) and a controller.

    ros2 launch equimanip sim.launch.py task:=block_pushing
    ros2 launch equimanip sim.launch.py controller:=policy            # the policy shipped for the task
    ros2 launch equimanip sim.launch.py controller:=policy checkpoint:=runs/pick_c8/best.pt device:=cuda
    ros2 launch equimanip sim.launch.py params_file:=/path/to/side_camera.yaml

Both nodes read config/sim.yaml (what the nodes of the cell share; `equimanip run` uses it too),
then an extra parameter file, e.g. the package's side_camera.yaml, then the launch arguments.
launch_ros hands the arguments over as a /** parameter file, which a node's own section in an
earlier file would override; the package's files therefore keep everything a launch argument or
a -p may change in /** (test/test_launch_params.py starts the nodes this way and checks).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("equimanip"), "config")
    defaults = os.path.join(config, "sim.yaml")
    task = LaunchConfiguration("task")
    controller = LaunchConfiguration("controller")
    extra = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="block_picking",
                              description="reach, block_picking, block_pushing or drawer_opening"),
        DeclareLaunchArgument("params_file", default_value=defaults,
                              description="extra parameter file applied after sim.yaml"),
        DeclareLaunchArgument("controller", default_value="expert",
                              description="expert, policy, mppi, or none (another process commands the arm)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="controller:=policy: its checkpoint; empty: the one shipped for the task"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda[:n] (policy, mppi)"),
        DeclareLaunchArgument("goal_source", default_value="object_poses",
                              description="policy, mppi: the goal from the simulation's object poses, "
                                          "topic (~/goal), or nearest_object (mppi)"),
        DeclareLaunchArgument("auto_reset", default_value="true",
                              description="start a new episode when one ends (nobody else resets here)"),
        Node(package="equimanip", executable="sim_node", name="sim_node", output="screen",
             parameters=[defaults, extra, {"task": task,
                                           "auto_reset": ParameterValue(LaunchConfiguration("auto_reset"),
                                                                        value_type=bool)}]),
        Node(package="equimanip", executable=PythonExpression(["'", controller, "' + '_node'"]), output="screen",
             parameters=[defaults, extra, {"task": task, "use_sim_time": True,
                                           "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"),
                                                                        value_type=str),
                                           "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                                           "goal_source": ParameterValue(LaunchConfiguration("goal_source"),
                                                                         value_type=str)}],
             condition=IfCondition(PythonExpression(["'", controller, "' != 'none'"]))),
    ])
