"""What an episode bag holds: its topics, their types and offered QoS, and the episode record.

``recorder_node`` records these topics from the ROS graph; :mod:`equimanip.data.sim_writer` writes
the same topics with the same messages straight from ``ManipulationEnv`` (tests, benchmarks).
The names are the ROS interface's (``equimanip.nodes.topics``, INTERFACES.md); they are repeated
here because the data layer does not import the ROS layer, and a test keeps the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass

from equimanip.data.bag import LATCHED, RELIABLE, SENSOR, Qos

CLOUD = "/camera/points"
CAMERA_POSE = "/camera/pose"
JOINT_STATES = "/joint_states"
EE_POSE = "/ee_pose"
ACTION = "/equimanip/action"
TWIST = "/servo_node/delta_twist_cmds"
GRIPPER = "/gripper_command"
EPISODE_EVENTS = "/sim_node/episode_events"
SIM_METADATA = "/sim_node/metadata"
OBJECT_POSES = "/sim_node/object_poses"
GOAL = "/equimanip/goal"


@dataclass(frozen=True)
class EpisodeTopic:
    name: str
    type: str
    qos: Qos
    required: bool          # a dataset cannot be built from an episode without it
    what: str


EPISODE_TOPICS = (
    EpisodeTopic(CLOUD, "sensor_msgs/msg/PointCloud2", SENSOR, True, "point cloud (observation)"),
    EpisodeTopic(CAMERA_POSE, "geometry_msgs/msg/PoseStamped", LATCHED, False,
                 "camera pose in the base frame (where the cloud's frame is)"),
    EpisodeTopic(JOINT_STATES, "sensor_msgs/msg/JointState", RELIABLE, True, "joint states (gripper aperture)"),
    EpisodeTopic(EE_POSE, "geometry_msgs/msg/PoseStamped", RELIABLE, True, "end-effector pose"),
    EpisodeTopic(ACTION, "sensor_msgs/msg/JointState", RELIABLE, True,
                 "stamped action [p, dx, dy, dz, dyaw], stamp = the state it answers"),
    EpisodeTopic(TWIST, "geometry_msgs/msg/TwistStamped", RELIABLE, False, "the motion command sent"),
    EpisodeTopic(GRIPPER, "std_msgs/msg/Float64", RELIABLE, False, "the gripper command sent"),
    EpisodeTopic(EPISODE_EVENTS, "diagnostic_msgs/msg/DiagnosticArray", RELIABLE, False,
                 "episode start/end from the simulation"),
    EpisodeTopic(SIM_METADATA, "std_msgs/msg/String", LATCHED, False, "the run's metadata (JSON)"),
    EpisodeTopic(OBJECT_POSES, "geometry_msgs/msg/PoseArray", RELIABLE, False,
                 "ground-truth object poses (simulation only; for analysis, and the task's goal of "
                 "observation settings that show it, never the objects themselves)"),
    EpisodeTopic(GOAL, "geometry_msgs/msg/PoseStamped", LATCHED, False,
                 "the task's goal in the base frame, for observation settings that show it (a real "
                 "cell's: whatever sets the goal publishes it here; the simulation's is in the object poses)"),
)
TOPICS_BY_NAME = {t.name: t for t in EPISODE_TOPICS}

# Keys of the equimanip.episode record every writer fills in.
EPISODE_KEYS = ("format", "task", "success", "finished", "note", "source", "seed", "steps",
                "run_metadata", "recorder")
EPISODE_FORMAT = 1
