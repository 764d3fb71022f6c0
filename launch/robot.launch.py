"""A real cell: one equimanip controller between your camera and robot drivers and MoveIt Servo.

    ros2 launch equimanip robot.launch.py controller:=policy checkpoint:=/path/to/policy.pt \
        points_topic:=/camera/depth/color/points ee_pose_topic:=/tool_pose

The controller reads the cloud, the joint states and the end-effector pose, and publishes MoveIt
Servo twists and a gripper aperture. It starts disabled (config/robot.yaml: start_enabled false):
check `ros2 topic echo /diagnostics`, then enable it with
`ros2 service call /<controller>_node/enable std_srvs/srv/SetBool "data: true"`; `/estop` (std_msgs/Bool
true) stops it at once. Parameters come from config/robot.yaml, then from `params_file`, then
from the arguments below.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

# Topic a controller uses -> the launch argument that renames it on your cell.
REMAPPABLE = {
    "/camera/points": "points_topic",
    "/camera/pose": "camera_pose_topic",
    "/joint_states": "joint_states_topic",
    "/ee_pose": "ee_pose_topic",
    "/servo_node/delta_twist_cmds": "twist_topic",
    "/gripper_command": "gripper_topic",
    "/estop": "estop_topic",
}


def generate_launch_description():
    defaults = os.path.join(get_package_share_directory("equimanip"), "config", "robot.yaml")
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("controller", default_value="policy", description="policy, mppi or expert"),
        DeclareLaunchArgument("params_file", default_value=defaults,
                              description="parameter file applied after config/robot.yaml"),
        DeclareLaunchArgument("checkpoint", default_value="", description="policy checkpoint (policy only)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda[:n]"),
        DeclareLaunchArgument("rate_hz", default_value="10.0", description="decisions per second"),
        DeclareLaunchArgument("sync_slop", default_value="0.05",
                              description="s between the cloud, joint states and pose of one set"),
        # The controller's ~/goal (goal_source topic) from the topic recorder_node records the goal
        # of demonstrations on, so one publisher serves both.
        DeclareLaunchArgument("goal_topic", default_value="/equimanip/goal",
                              description="the task's goal (PoseStamped in the base frame, latched)"),
    ] + [DeclareLaunchArgument(name, default_value=topic, description=f"topic used as {topic}")
         for topic, name in REMAPPABLE.items()]
    # Typed explicitly: launch would read an empty checkpoint as None and "10" as an integer.
    parameters = [defaults, arg("params_file"),
                  {"rate_hz": ParameterValue(arg("rate_hz"), value_type=float),
                   "sync_slop": ParameterValue(arg("sync_slop"), value_type=float)}]
    controller = Node(
        package="equimanip",
        executable=PythonExpression(["'", arg("controller"), "' + '_node'"]),
        output="screen",
        parameters=parameters + [{"checkpoint": ParameterValue(arg("checkpoint"), value_type=str),
                                  "device": ParameterValue(arg("device"), value_type=str)}],
        remappings=[(topic, arg(name)) for topic, name in REMAPPABLE.items()] + [("~/goal", arg("goal_topic"))],
    )
    return LaunchDescription(arguments + [controller])
