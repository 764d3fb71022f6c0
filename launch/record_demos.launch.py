"""Record demonstrations: the simulated cell, a demonstrator and recorder_node.

    ros2 launch equimanip record_demos.launch.py task:=block_picking output_dir:=demos
    ros2 launch equimanip record_demos.launch.py source:=keyboard     # then run teleop_keyboard in a terminal

sim_node runs in real time with ``auto_reset`` (each episode follows the last); the recorder
follows the simulation's episode events, so every episode becomes one bag ``episode_NNNN`` in
``output_dir``, finished, with its success. With ``source:=expert`` the scripted expert
demonstrates; with ``source:=keyboard`` start ``teleop_keyboard`` yourself in a terminal (it needs
one to read keys; launch gives nodes none). Ctrl-C keeps an episode in flight, marked unfinished
(recorder parameter ``on_interrupt``). ``equimanip record`` writes the same bags without ROS
installed (in one process).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("equimanip"), "config")
    defaults = os.path.join(config, "sim.yaml")
    task = LaunchConfiguration("task")
    extra = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="block_picking",
                              description="reach, block_picking, block_pushing or drawer_opening"),
        DeclareLaunchArgument("params_file", default_value=defaults,
                              description="extra parameter file applied after sim.yaml (e.g. side_camera.yaml)"),
        DeclareLaunchArgument("source", default_value="expert",
                              description="expert (scripted) or keyboard (run teleop_keyboard in a terminal)"),
        DeclareLaunchArgument("output_dir", default_value="demos", description="where the episode bags go"),
        DeclareLaunchArgument("note", default_value="", description="operator note stored with the episodes"),
        Node(package="equimanip", executable="sim_node", name="sim_node", output="screen",
             parameters=[defaults, extra, {"task": task, "auto_reset": True}]),
        Node(package="equimanip", executable="expert_node", name="expert_node", output="screen",
             parameters=[defaults, extra, {"task": task, "trigger": "timer"}],
             condition=LaunchConfigurationEquals("source", "expert")),
        Node(package="equimanip", executable="recorder_node", name="recorder_node", output="screen",
             parameters=[defaults, extra, {"task": task, "output_dir": LaunchConfiguration("output_dir"),
                                           "source": LaunchConfiguration("source"),
                                           "note": LaunchConfiguration("note"),
                                           "follow_episode_events": True}]),
    ])
