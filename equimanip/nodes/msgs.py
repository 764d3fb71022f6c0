"""Conversions between ROS messages and the numpy types the rest of equimanip uses."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

from equimanip.action import ACTION_DIM, ACTION_NAMES


def time_msg(seconds: float) -> Time:
    sec = math.floor(seconds)
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:  # rounding up to the next second
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=int(sec), nanosec=nanosec)


def seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def nanoseconds(stamp: Time) -> int:
    """A stamp as integer nanoseconds: exact, so stamps compare for equality."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def header(frame_id: str, stamp_s: float) -> Header:
    return Header(frame_id=frame_id, stamp=time_msg(stamp_s))


def pose_msg(pose7) -> Pose:
    p = Pose()
    (p.position.x, p.position.y, p.position.z,
     p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) = (float(v) for v in pose7)
    return p


def pose7(pose: Pose) -> np.ndarray:
    return np.array([pose.position.x, pose.position.y, pose.position.z,
                     pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])


def pose_stamped(pose7_, frame_id: str, stamp_s: float) -> PoseStamped:
    return PoseStamped(header=header(frame_id, stamp_s), pose=pose_msg(pose7_))


def pose_array(poses7, frame_id: str, stamp_s: float) -> PoseArray:
    return PoseArray(header=header(frame_id, stamp_s), poses=[pose_msg(p) for p in poses7])


def poses7(msg: PoseArray) -> np.ndarray:
    return np.array([pose7(p) for p in msg.poses]).reshape(-1, 7)


def joint_state(names, positions, velocities, stamp_s: float) -> JointState:
    return JointState(header=header("", stamp_s), name=list(names),
                      position=[float(v) for v in positions], velocity=[float(v) for v in velocities])


def joint_positions(msg: JointState, names) -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState; KeyError names a missing joint."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index or index[n] >= len(msg.position)]
    if missing:
        raise KeyError(f"joint_states lacks positions for {missing}")
    return np.array([msg.position[index[n]] for n in names])


def action_msg(action, stamp: Time, frame_id: str, gripper: bool = True) -> JointState:
    """The whole action as a stamped named vector (topics.ACTION): JointState's header, names and
    positions are exactly that, and every ROS tool can plot and record it. ``gripper`` False: a
    stop sent before the controller ever commanded the gripper, which leaves it as it is; the
    message then has no ``p`` (see commands_gripper)."""
    names, values = list(ACTION_NAMES), [float(v) for v in action]
    if not gripper:
        names, values = names[1:], values[1:]
    return JointState(header=Header(stamp=stamp, frame_id=frame_id), name=names, position=values)


def commands_gripper(msg: JointState) -> bool:
    """Whether a topics.ACTION message commands the gripper (has ``p``; see action_msg)."""
    return ACTION_NAMES[0] in msg.name


def action_from_msg(msg: JointState) -> np.ndarray:
    """The action [p, dx, dy, dz, dyaw] of a topics.ACTION message, in ACTION_NAMES order whatever
    order the message lists them in; ValueError when a name is missing or the sizes disagree."""
    if len(msg.name) != len(msg.position):
        raise ValueError(f"action message has {len(msg.name)} names and {len(msg.position)} values")
    values = dict(zip(msg.name, msg.position))
    missing = [n for n in ACTION_NAMES if n not in values]
    if missing:
        raise ValueError(f"action message lacks {missing}")
    action = np.array([values[n] for n in ACTION_NAMES], dtype=np.float64)
    assert action.shape == (ACTION_DIM,)
    return action
