"""sim_node: the PyBullet arm and depth camera behind ROS 2 topics.

It wraps ``equimanip.sim.env.ManipulationEnv`` and adds nothing but ROS I/O: commands in (MoveIt
Servo twists, ros2_control joint trajectories, a gripper aperture), state out (point cloud, joint
states, end-effector pose, clock, task signals, episode events, run metadata). Every command
passes ``equimanip.safety`` first; a rejected or stale command stops the arm for that step, with
one log line per kind of problem (``ReasonThrottle``). With ``enforce_limits`` (the default) the
arm keeps the motion limits of ``equimanip.sim.world.MotionLimits`` whatever it is sent.

Timing. In real-time mode a wall-clock timer runs one control step per ``control_period`` and warns
when a step takes longer than that. In ``sync`` mode the simulation advances exactly one control
step per received motion command (a twist or a trajectory) together with a gripper command
(``sync_gripper``), whichever arrives first, which makes closed-loop runs deterministic and as fast
as the controller. A motion command answers the state whose stamp it carries; one for an earlier
state is dropped. The gripper command (std_msgs/Float64) carries no stamp, so a controller that
also sends its stamped action (``/equimanip/action``, as equimanip's do) has the step's gripper
taken from that action, paired with the state by its stamp: a late gripper command of an earlier
answer can then never count for this state (an action without ``p``, a controller's stop before
it ever commanded the gripper, keeps the gripper the last step had). The gripper command is
latched until the next one. Either way the node publishes its own time on ``/clock``.

Cost. What one message may cost is bounded: a trajectory holds at most ``MAX_TRAJECTORY_POINTS``
points (a larger message is refused before it is decoded), and the camera at most
``MAX_CAMERA_PIXELS`` pixels.
"""
from __future__ import annotations

import collections
import json
import math
import struct
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Bool, Float32, Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

try:  # tf2_msgs comes with a ROS install; the pip wheels lack it
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

from equimanip import safety
from equimanip.action import ACTION_HIGH, ACTION_LOW, ACTION_NAMES, velocity_to_delta
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import (
    BASE_FRAME,
    CAMERA_FRAME,
    CONTROL_PERIOD,
    TASK,
    ParamSpec,
    check_pose7,
    declare_parameters,
    param_values,
)
from equimanip.nodes.spin import spin_node
from equimanip.nodes.throttle import ReasonThrottle, reason_key
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
from equimanip.sim.camera import CameraConfig
from equimanip.sim.env import ManipulationEnv, SimConfig
from equimanip.sim.world import FINGER_JOINT_NAMES, MOTION_LIMITS, aperture_from_finger_positions, tilt_of_quat_xyzw

# The most points a joint trajectory may hold (a planner's dense path; 100 s at 10 Hz). Decoding
# costs rclpy about 7 us a point (a 50,000-point message took 0.4 s), so the count is read from the
# serialized message and a longer trajectory is refused before it is decoded.
MAX_TRAJECTORY_POINTS = 1000
# 1000 points of all 9 joints with positions, velocities, accelerations and efforts take 312 kB.
MAX_TRAJECTORY_BYTES = 1_000_000
# The largest camera image (pixels): 640 x 480, a common depth camera's. Rendering it and
# publishing its cloud takes about 0.18 s on the 2-core build machine (real time at 10 Hz is then
# not kept, and the node says so); 2048 x 2048 took 1.4 s.
MAX_CAMERA_PIXELS = 640 * 480
# Longest wait at a reset for every subscriber to acknowledge the episode_start event (see
# _reset_episode).
EVENT_ACK_TIMEOUT_S = 0.2


@dataclass
class _Motion:
    """An accepted motion command: a Cartesian step or a joint trajectory."""
    kind: str                 # "twist" or "trajectory"
    received: float           # wall-clock (monotonic) time of arrival
    started: float            # simulated time of arrival: where a trajectory's time 0 lies
    delta: Optional[np.ndarray] = None                                # [dx, dy, dz, dyaw] per step
    trajectory: Optional[safety.JointTrajectoryCommand] = None


_DEFAULT_CAMERA = CameraConfig()

PARAMS = [
    TASK,
    ParamSpec("seed", 0, "Seed of the scene at start-up; each reset takes the next one (seed + 1, "
              "...). Setting it starts the sequence again from the new value.", min=0),
    ParamSpec("sync", False, "Advance one control step per received motion command instead of "
              "on a wall-clock timer (deterministic closed-loop runs)."),
    ParamSpec("sync_gripper", True, "In sync mode, a step also waits for a gripper command (for "
              "controllers that send one with every motion command, as equimanip's do: from a controller "
              "that sends stamped actions on /equimanip/action, this state's action); turn off "
              "for controllers that send motion commands only."),
    CONTROL_PERIOD,
    ParamSpec("physics_hz", 240.0, "Physics steps per simulated second.", min=240.0, max=2000.0,
              read_only=True),
    ParamSpec("max_steps", 0, "Step limit of an episode; 0 uses the task's own.", min=0, max=100000),
    ParamSpec("command_timeout", 0.25, "Motion commands stamped longer ago than this (s of simulated "
              "time) are refused and stop the arm; in real-time mode a twist is followed for this "
              "long (s of wall-clock time) after it arrives, as MoveIt Servo's incoming_command_timeout. "
              "The default lets a reply come up to two control steps late.", min=0.0, max=10.0),
    ParamSpec("auto_reset", False, "Start a new episode when one ends: in real-time mode at the next "
              "control step, in sync mode on the next command (which answers the last state of the "
              "old episode and is not executed)."),
    ParamSpec("enforce_limits", True, "Hold every command to the motion limits: the grasp point "
              "stays in the workspace box and moves at most 5 cm per axis and pi/8 rad per control "
              "step, the gripper stays within 10 degrees of pointing down (joint trajectories that "
              "would tilt it further are refused). false: a raw arm that executes any finite, "
              "well-formed command as given, for testing a controller's own safety layer."),
    ParamSpec("gui", False, "Open the PyBullet GUI (needs a display).", read_only=True),
    ParamSpec("publish_cloud", True, "Render and publish the point cloud every control step."),
    ParamSpec("camera.width", _DEFAULT_CAMERA.width, "Depth image width (px); width x height at most "
              f"{MAX_CAMERA_PIXELS} (640 x 480).", min=8, max=1280),
    ParamSpec("camera.height", _DEFAULT_CAMERA.height, "Depth image height (px).", min=8, max=960),
    ParamSpec("camera.fov_deg", float(_DEFAULT_CAMERA.fov_deg), "Vertical field of view (deg).",
              min=1.0, max=179.0),
    ParamSpec("camera.near", float(_DEFAULT_CAMERA.near), "Near clipping distance (m).", min=0.001, max=10.0),
    ParamSpec("camera.far", float(_DEFAULT_CAMERA.far), "Far clipping distance (m); farther is invalid.",
              min=0.01, max=100.0),
    ParamSpec("camera.depth_noise_std", 0.0, "Gaussian depth noise (m); 0 turns it off.", min=0.0, max=0.1),
    ParamSpec("camera.dropout", 0.0, "Probability that a pixel is invalid (NaN).", min=0.0, max=0.99),
    ParamSpec("camera_pose", [float(v) for v in _DEFAULT_CAMERA.pose],
              "Pose of camera_depth_optical_frame in base_link [x y z qx qy qz qw].",
              length=7, validate=check_pose7),
    BASE_FRAME,
    CAMERA_FRAME,
]


def camera_info(camera: CameraConfig, header) -> CameraInfo:
    """The pinhole model of the simulated camera, in ROS's convention (pixel centres at integer
    coordinates, hence half a pixel less than CameraConfig's corner-origin principal point)."""
    K = camera.intrinsics.copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=header, width=camera.width, height=camera.height, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=K.reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(),
                      p=P.reshape(-1).tolist())


def trajectory_point_count(data: bytes) -> int:
    """The number of points of a serialized (CDR) trajectory_msgs/JointTrajectory, read without
    decoding it: header (stamp, frame_id), joint_names, then the points' sequence length.
    ValueError for a message too short to hold them."""
    if len(data) < 4:
        raise ValueError("not a serialized message")
    order = "<" if data[1] == 1 else ">"  # encapsulation: CDR little or big endian

    def uint32(pos: int) -> tuple[int, int]:
        pos += -(pos - 4) % 4  # aligned to 4 from the end of the encapsulation header
        if pos + 4 > len(data):
            raise ValueError("the message ends early")
        return struct.unpack_from(order + "I", data, pos)[0], pos + 4

    _, pos = uint32(4 + 4)              # stamp: sec, nanosec
    length, pos = uint32(pos)           # frame_id
    names, pos = uint32(pos + length)
    for _ in range(names):
        if pos > len(data):
            raise ValueError("the message ends early")
        length, pos = uint32(pos)
        pos += length
    return uint32(pos)[0]


def _key_values(values: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()]


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("sim_node", **node_kwargs)
        declare_parameters(self, PARAMS)
        p = param_values(self, PARAMS)
        self._base_frame = p["base_frame"]
        self._camera_frame = p["camera_frame"]
        self._period = p["control_period"]
        self._log = ReasonThrottle(self.get_logger(), period_s=1.0)
        reason = self._camera_problem(p)
        if reason is not None:
            raise ValueError(f"invalid camera: {reason}")
        self.env = ManipulationEnv(self._sim_config(p))
        self._seed_index = 0       # episodes started since the seed was last set
        self._episode = -1         # index of the current episode since start-up
        self._episode_seed = None
        self._episode_reported = False
        self._pending_task_change = False
        self._step_listeners = []
        # Messages received per command topic (before any check): what arrived, for tests and tools.
        self.received = collections.Counter()

        # Latest accepted commands.
        self._motion: Optional[_Motion] = None
        self._gripper = 1.0
        # Sync mode: which halves of this step's command have come in (see _step_if_sync).
        self._motion_heard = self._gripper_heard = False
        # Sync mode with a controller that sends stamped actions: this state's gripper from its action.
        self._stamped_actions = False
        self._stamped_gripper: Optional[float] = None
        self._step_gripper = 1.0        # the gripper the last step ran with (kept by a stop)
        self._answered_ns = -1          # the stamp of the state the last step answered
        self._last_publish_wall = 0.0
        self._last_observation = None       # the last state published (republish sends it again)
        self._clock_offset = 0.0
        self._metadata = None

        self._pub_cloud = self.create_publisher(PointCloud2, topics.CLOUD, qos.SENSOR)
        self._pub_camera_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, qos.SENSOR)
        self._pub_camera_pose = self.create_publisher(PoseStamped, topics.CAMERA_POSE, qos.LATCHED)
        self._pub_joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
        self._pub_ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self._pub_clock = self.create_publisher(Clock, "/clock", qos.RELIABLE)
        self._pub_success = self.create_publisher(Bool, "~/success", qos.RELIABLE)
        self._pub_reward = self.create_publisher(Float32, "~/reward", qos.RELIABLE)
        self._pub_done = self.create_publisher(Bool, "~/episode_done", qos.RELIABLE)
        self._pub_events = self.create_publisher(DiagnosticArray, "~/episode_events", qos.RELIABLE)
        self._pub_metadata = self.create_publisher(String, "~/metadata", qos.LATCHED)
        self._pub_objects = self.create_publisher(PoseArray, "~/object_poses", qos.RELIABLE)
        # On a ROS install the camera frame also goes on /tf_static, for RViz and tf2 users.
        self._pub_tf_static = (self.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
                               if TFMessage is not None else None)

        self.create_subscription(Float64, topics.GRIPPER, self._on_gripper, qos.RELIABLE)
        self.create_subscription(TwistStamped, topics.TWIST, self._on_twist, qos.RELIABLE)
        self.create_subscription(JointState, topics.ACTION, self._on_action, qos.RELIABLE)
        # Serialized: a trajectory's size is checked before rclpy spends time decoding it.
        self.create_subscription(JointTrajectory, topics.JOINT_TRAJECTORY, self._on_trajectory_bytes,
                                 qos.RELIABLE, raw=True)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._check_camera)
        self.add_post_set_parameters_callback(self._on_parameters_set)

        self._timer = self.create_timer(self._period, self._on_timer)
        # In sync mode nothing moves until a controller speaks; until then the current state is
        # repeated every second so that a controller that started late still gets it.
        self._idle_timer = self.create_timer(1.0, self._on_idle)

        self._reset_episode()
        self.get_logger().info(
            f"simulating '{p['task']}' ({'sync' if p['sync'] else 'real-time'}, "
            f"{1.0 / self._period:.0f} Hz control, {p['physics_hz']:.0f} Hz physics"
            f"{'' if p['enforce_limits'] else ', motion limits OFF'})")

    # ---------------------------------------------------------------- configuration
    def _camera_config(self, p: dict) -> CameraConfig:
        """The camera of the parameters (validated: ValueError); the same reading `equimanip eval
        --params` does of a parameter file."""
        return CameraConfig.from_parameters(p)

    def _camera_problem(self, p: dict) -> Optional[str]:
        """Why the camera parameters do not make a valid camera together, or None."""
        if p["camera.width"] * p["camera.height"] > MAX_CAMERA_PIXELS:
            return (f"{p['camera.width']} x {p['camera.height']} pixels is more than the "
                    f"{MAX_CAMERA_PIXELS} (640 x 480) a camera may have")
        try:
            self._camera_config(p)
        except ValueError as e:
            return str(e)
        return None

    def _sim_config(self, p: dict) -> SimConfig:
        return SimConfig(task=p["task"], control_period=p["control_period"], physics_hz=p["physics_hz"],
                         camera=self._camera_config(p), render=p["publish_cloud"], gui=p["gui"],
                         max_steps=p["max_steps"] or None, enforce_limits=p["enforce_limits"])

    def _check_camera(self, params) -> SetParametersResult:
        """The camera parameters must make a valid camera together (e.g. near below far)."""
        if not any(q.name.startswith("camera") for q in params):
            return SetParametersResult(successful=True)
        p = param_values(self, PARAMS)
        p.update({q.name: q.value for q in params if q.name in p})
        reason = self._camera_problem(p)
        if reason is not None:
            return SetParametersResult(successful=False, reason=f"invalid camera: {reason}")
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, params) -> None:
        names = {q.name for q in params}
        p = param_values(self, PARAMS)
        if names & {"task", "max_steps"}:
            self._pending_task_change = "task" in names or self._pending_task_change
            self.get_logger().info("task settings changed: they apply at the next reset")
        if "seed" in names:
            self._seed_index = 0  # the next reset starts the sequence again from the new seed
        if any(n.startswith("camera") for n in names):
            self.env.set_camera(self._camera_config(p))
            self._publish_camera_pose(self._sim_now())
            self._last_observation = None   # republish() renders with the new camera
        if "publish_cloud" in names:
            self.env.config.render = p["publish_cloud"]
            self._last_observation = None
        if "enforce_limits" in names:
            self.env.config.enforce_limits = p["enforce_limits"]
            self.get_logger().info(f"motion limits {'on' if p['enforce_limits'] else 'OFF: a raw arm'}")
        if "sync" in names:
            self._motion_heard = self._gripper_heard = False  # halves heard before mean nothing now
            self._stamped_actions, self._stamped_gripper = False, None
        self._publish_metadata()

    @property
    def control_period(self) -> float:
        return self._period

    @property
    def camera_frame(self) -> str:
        return self._camera_frame

    def add_step_listener(self, fn) -> None:
        """Call ``fn(env, obs)`` after every control step (used in-process, e.g. to record a GIF)."""
        self._step_listeners.append(fn)

    # ---------------------------------------------------------------- episodes
    def _reset_episode(self) -> str:
        p = param_values(self, PARAMS)
        if self._pending_task_change:
            new_env = ManipulationEnv(self._sim_config(p))  # built first: a failure keeps the old one
            # A new world starts its clock at 0; /clock must not go backwards, so carry the time.
            self._clock_offset = self._sim_now()
            self.env.close()
            self.env = new_env
            self._pending_task_change = False
        self.env.config.max_steps = p["max_steps"] or None  # 0: the task's own limit
        seed = p["seed"] + self._seed_index
        obs = self.env.reset(seed)
        self._seed_index += 1
        self._episode += 1
        self._episode_seed = seed
        self._episode_reported = False
        self._motion = None
        self._motion_heard = self._gripper_heard = False
        self._stamped_gripper = None
        self._gripper = self._step_gripper = 1.0
        if self.count_publishers(topics.ACTION) == 0:   # the controller that sent them has gone
            self._stamped_actions = False
        now = self._sim_now()
        self._publish_camera_pose(now)
        self._publish_metadata()
        message = f"new '{self.env.task.name}' scene from seed {seed}"
        self._publish_event("episode_start", message, now)
        # The new scene's first state only once every (reliable) subscriber holds the event: a
        # controller's executor then takes the event first and runs its start hook before it
        # answers that state (controller.py), where the two could otherwise cross in transit.
        # Bounded, so a subscriber that has died but not yet been unmatched costs one short wait.
        if not self._pub_events.wait_for_all_acked(Duration(seconds=EVENT_ACK_TIMEOUT_S)):
            self.get_logger().debug("episode_start not acknowledged by every subscriber in time")
        self._publish_observation(obs, task_signals=False)
        return message

    def _on_reset(self, request, response):
        try:
            response.message = self._reset_episode()
            response.success = True
            self.get_logger().info(response.message)
        except Exception as e:  # a broken reset must not take the node down
            response.success = False
            response.message = f"reset failed: {e}"
            self.get_logger().error(response.message)
        return response

    def _publish_event(self, name: str, message: str, stamp_s: float, **values) -> None:
        """One stamped episode event on ~/episode_events (INTERFACES.md)."""
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=name, message=message, hardware_id="sim_node",
                                  values=_key_values({"task": self.env.task.name, "seed": self._episode_seed,
                                                      "episode": self._episode, **values}))
        self._pub_events.publish(DiagnosticArray(header=msgs.header(self._base_frame, stamp_s), status=[status]))

    def metadata(self) -> dict:
        """What a recorder needs to know about this run (published latched on ~/metadata)."""
        p = param_values(self, PARAMS)
        limits = MOTION_LIMITS.workspace
        return {
            "task": self.env.task.name, "seed": p["seed"], "control_period": self._period,
            "physics_hz": p["physics_hz"], "max_steps": self.env.max_steps,
            "workspace_low": list(limits.low), "workspace_high": list(limits.high),
            "action_low": ACTION_LOW.tolist(), "action_high": ACTION_HIGH.tolist(),
            "action_names": list(ACTION_NAMES), "max_tilt_deg": math.degrees(MOTION_LIMITS.max_tilt),
            "enforce_limits": p["enforce_limits"], "sync": p["sync"],
            "base_frame": self._base_frame, "camera_frame": self._camera_frame,
        }

    def _publish_metadata(self) -> None:
        metadata = self.metadata()
        if metadata != self._metadata:
            self._metadata = metadata
            self._pub_metadata.publish(String(data=json.dumps(metadata)))

    # ---------------------------------------------------------------- commands
    def _sim_now(self) -> float:
        """Simulated time (s) as published on /clock: never goes backwards."""
        return self._clock_offset + self.env.time

    def _now_ns(self) -> int:
        """The current state's stamp in nanoseconds, as its messages carry it."""
        return msgs.nanoseconds(msgs.time_msg(self._sim_now()))

    def _reject(self, what: str, reason: str) -> None:
        self._log.warning(f"{what}: {reason_key(reason)}", f"rejected {what}: {reason}; holding the arm still")
        self._motion = None

    def _fresh(self, what: str, stamp) -> Optional[float]:
        """The command's stamp in seconds, or None (after logging) when it is stale or from the
        future. A zero stamp means "now" (as for MoveIt Servo and ros2_control)."""
        stamp_s = msgs.seconds(stamp)
        if stamp_s == 0.0:
            return stamp_s
        timeout = self.get_parameter("command_timeout").value
        age = self._sim_now() - stamp_s
        # Stamps are whole nanoseconds of a clock that ticks in physics steps: equal to the
        # timeout is within it.
        if age > timeout + 1e-6:
            self._reject(what, f"stamped {age:.4g} s ago, more than command_timeout ({timeout:g} s) "
                               f"before the simulated clock")
            return None
        if age < -timeout - 1e-6:
            self._reject(what, f"stamped {-age:.4g} s in the future of the simulated clock; does the "
                               "controller use_sim_time?")
            return None
        return stamp_s

    def _on_gripper(self, msg: Float64) -> None:
        self.received["gripper"] += 1
        try:
            self._gripper = safety.check_gripper(msg.data)
        except safety.CommandRejected as e:
            self._log.warning(f"gripper: {reason_key(str(e))}",
                              f"rejected gripper command: {e}; keeping {self._gripper:.2f}")
        self._gripper_heard = True
        self._step_if_sync()

    def _on_action(self, msg: JointState) -> None:
        """A controller's stamped action: in sync mode, the gripper half of the step for the state
        it answers (the aperture its ``p`` commands); ignored for any other state, and in real-time
        mode (the gripper and motion commands are what move the arm)."""
        if not self.get_parameter("sync").value:
            return
        self.received["action"] += 1
        stamp_ns, now_ns = msgs.nanoseconds(msg.header.stamp), self._now_ns()
        # An action for this state or for the one the last step answered (sent after the twist and
        # gripper command the step was taken on) comes from a controller in this loop: from now on
        # a step's gripper is its state's action's (until a reset finds no one sending actions).
        # One for any other state (a late answer, a recording played back) does not switch.
        if stamp_ns in (0, self._answered_ns, now_ns):
            self._stamped_actions = True
        if stamp_ns not in (0, now_ns):   # 0: unstamped, now
            return                     # an earlier state's: its twist is dropped (and logged) too
        if not msgs.commands_gripper(msg):   # a stop before any gripper command: it stays
            self._stamped_gripper = self._step_gripper
        else:
            try:
                self._stamped_gripper = safety.check_gripper(float(msgs.action_from_msg(msg)[0]))
            except (ValueError, safety.CommandRejected) as e:
                self._log.warning(f"action: {reason_key(str(e))}", f"rejected the gripper of a stamped action: "
                                                                   f"{e}; keeping {self._step_gripper:.2f}")
                self._stamped_gripper = self._step_gripper
        self._step_if_sync()

    def _answers_this_state(self, what: str, stamp) -> bool:
        """In sync mode a motion command is for the state whose stamp it carries (0: unstamped,
        taken as the current one). One for an earlier state (a late or repeated decision, a
        command from before a reset) is dropped: executing it now would shift every later step."""
        if not self.get_parameter("sync").value:
            return True
        stamp_ns = msgs.nanoseconds(stamp)
        if stamp_ns != 0 and stamp_ns != self._now_ns():
            self._log.warning(f"{what}: not for the current state",
                              f"ignored a {what} for the state at {msgs.seconds(stamp):.3f} s: the current "
                              f"state is at {self._sim_now():.3f} s")
            return False
        return True

    def _on_twist(self, msg: TwistStamped) -> None:
        self.received["twist"] += 1
        if not self._answers_this_state("twist", msg.header.stamp):
            return
        if self._fresh("twist", msg.header.stamp) is not None:
            limits = (safety.TwistLimits.for_period(self._period) if self.env.config.enforce_limits
                      else safety.TwistLimits(math.inf, math.inf))
            try:
                lin, yaw_rate, notes = safety.check_twist(
                    (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z),
                    (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z),
                    msg.header.frame_id, self._base_frame, limits)
                for note in notes:
                    self._log.warning(f"twist note: {reason_key(note)}", f"twist: {note}")
                self._motion = _Motion("twist", time.monotonic(), self._sim_now(),
                                       delta=velocity_to_delta(lin, yaw_rate, self._period))
            except safety.CommandRejected as e:
                self._reject("twist", str(e))
        self._motion_heard = True
        self._step_if_sync()

    def _on_trajectory_bytes(self, data: bytes) -> None:
        """A serialized trajectory: refused undecoded when it is too large, else decoded."""
        self.received["trajectory"] += 1
        try:
            points = trajectory_point_count(data)
        except ValueError as e:
            points, problem = None, f"malformed message ({e})"
        if points is not None:
            problem = None
            if points > MAX_TRAJECTORY_POINTS:
                problem = f"trajectory has {points} points; at most {MAX_TRAJECTORY_POINTS} are accepted"
            elif len(data) > MAX_TRAJECTORY_BYTES:
                problem = f"trajectory message of {len(data)} bytes; at most {MAX_TRAJECTORY_BYTES} are accepted"
        if problem is None:
            try:
                msg = deserialize_message(data, JointTrajectory)
            except Exception as e:  # noqa: BLE001 - whatever rclpy says about bytes it cannot decode
                problem = f"malformed message ({e})"
            else:
                self._on_trajectory(msg)
                return
        # Refused undecoded: like any other refused motion command it holds the arm for a step.
        self._reject("trajectory", problem)
        self._motion_heard = True
        self._step_if_sync()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not self._answers_this_state("trajectory", msg.header.stamp):
            return
        if self._fresh("trajectory", msg.header.stamp) is not None:
            try:
                self._motion = _Motion("trajectory", time.monotonic(), self._sim_now(),
                                       trajectory=self._check_trajectory(msg))
            except safety.CommandRejected as e:
                self._reject("trajectory", str(e))
        self._motion_heard = True
        self._step_if_sync()

    def _check_trajectory(self, msg: JointTrajectory) -> safety.JointTrajectoryCommand:
        names = self.env.joint_names
        lower, upper = self.env.joint_limits
        traj = safety.check_trajectory(msg.joint_names,
                                       [(pt.positions, msgs.seconds(pt.time_from_start)) for pt in msg.points],
                                       names, lower, upper)
        safety.check_trajectory_rates([pt.velocities for pt in msg.points], [pt.accelerations for pt in msg.points],
                                      len(traj.joint_indices), self.env.world.joint_max_velocities[traj.joint_indices])
        if self.env.config.enforce_limits:
            self._check_tilt(traj)
        return traj

    def _check_tilt(self, traj: safety.JointTrajectoryCommand) -> None:
        """Refuse a trajectory with a point that tilts the gripper beyond the motion limits (the
        joints it does not name stay where they are)."""
        arm = np.array(self.env.observe(render=False).joint_positions[:7])
        named_arm = traj.joint_indices < 7
        if not np.any(named_arm):
            return  # fingers only
        for i, positions in enumerate(traj.positions):
            arm[traj.joint_indices[named_arm]] = positions[named_arm]
            tilt = tilt_of_quat_xyzw(self.env.world.forward_kinematics(arm)[3:])
            if tilt > MOTION_LIMITS.max_tilt:
                raise safety.CommandRejected(
                    f"trajectory point {i} tilts the gripper {math.degrees(tilt):.0f} degrees from pointing "
                    f"down; at most {math.degrees(MOTION_LIMITS.max_tilt):.0f} with enforce_limits")

    # ---------------------------------------------------------------- stepping
    def _step_if_sync(self) -> None:
        """In sync mode, step once a motion command (accepted or not) has come in, and, with
        sync_gripper, a gripper command too: the step then does not depend on which of the two
        messages DDS delivered first."""
        if not self.get_parameter("sync").value or not self._motion_heard:
            return
        if self.get_parameter("sync_gripper").value:
            if self._stamped_actions:      # paired by stamp: this state's own action
                if self._stamped_gripper is None:
                    return
                self._gripper = self._stamped_gripper
            elif not self._gripper_heard:
                return
        self._motion_heard = self._gripper_heard = False
        self._stamped_gripper = None
        self._step_gripper = self._gripper
        self._answered_ns = self._now_ns()
        self._control_step(sync=True)

    def _on_timer(self) -> None:
        if self.get_parameter("sync").value:
            return
        start = time.monotonic()
        self._control_step(sync=False)
        took = time.monotonic() - start
        if took > self._period:
            self._log.warning("overrun", f"a control step took {took * 1000:.0f} ms, more than the control period "
                                         f"of {self._period * 1000:.0f} ms: the simulation runs slower than real "
                                         "time (a smaller camera or publish_cloud false helps)")

    def _on_idle(self) -> None:
        if not self.get_parameter("sync").value or time.monotonic() - self._last_publish_wall <= 1.0:
            return
        if self._motion_heard and self._stamped_actions and self._stamped_gripper is None:
            self._log.warning("waiting for the action", f"sync mode: a motion command waits for the controller's "
                                                        f"stamped action on {topics.ACTION} for this state "
                                                        "(it sent stamped actions before)")
        elif self._motion_heard and not self._gripper_heard and not self._stamped_actions:
            self._log.warning("waiting for the gripper", "sync mode: a motion command waits for a gripper command "
                                                         "(sync_gripper is true; set it false for motion-only "
                                                         "controllers)")
        self.republish()

    def republish(self) -> None:
        """Publish the current state again, as it was (same stamp, same cloud): wakes a controller
        that missed it. Not rendered again: a new rendering would draw new depth noise, so the
        same stamp would carry another cloud and every later one would differ from a run where
        no controller was late (sync mode's runs would stop being repeatable)."""
        obs = self._last_observation
        if obs is None:
            obs = self.env.observe(render=self.env.config.render)
        self._publish_observation(obs, task_signals=False)

    def _motion_for_step(self, sync: bool) -> Optional[_Motion]:
        """The motion command to execute this step, or None to hold still."""
        motion = self._motion
        if motion is None:
            return None
        if motion.kind == "twist":
            if sync:
                self._motion = None  # exactly one step per command
            elif time.monotonic() - motion.received > self.get_parameter("command_timeout").value:
                self._motion = None  # like Servo: a silent controller's arm halts
                return None
        elif self._sim_now() - motion.started >= motion.trajectory.times[-1]:
            self._motion = None  # trajectory finished: this last step reaches its final point
        return motion

    def _step_trajectory(self, motion: _Motion):
        traj = motion.trajectory
        names = self.env.joint_names
        target = np.array(self.env.observe(render=False).joint_positions, dtype=np.float64)
        target[traj.joint_indices] = traj.sample(self._sim_now() + self._period - motion.started)
        fingers = [i for i, n in enumerate(names) if n in FINGER_JOINT_NAMES]
        gripper = self._gripper
        if set(fingers) & set(traj.joint_indices.tolist()):
            gripper = aperture_from_finger_positions(target[fingers])
        arm = [i for i, n in enumerate(names) if n not in FINGER_JOINT_NAMES]
        return self.env.step_joints(target[arm], gripper)

    def _control_step(self, sync: bool) -> None:
        if self.env.done:
            if self.get_parameter("auto_reset").value:
                self._reset_episode()
            elif sync:
                self._log.info("episode over", "episode over: commands are ignored until ~/reset "
                                               "(or set auto_reset)")
            else:  # real time goes on: the arm holds still until someone resets
                self._publish_observation(self.env.hold()[0], task_signals=False)
            return
        motion = self._motion_for_step(sync)
        if motion is None:
            result = self.env.step(np.array([self._gripper, 0.0, 0.0, 0.0, 0.0]))
        elif motion.kind == "twist":
            result = self.env.step(np.concatenate([[self._gripper], motion.delta]))
        else:
            result = self._step_trajectory(motion)
        obs, reward, done, info = result
        self._publish_observation(obs, reward=reward, success=info["success"])
        if done and not self._episode_reported:
            self._episode_reported = True
            self._pub_done.publish(Bool(data=bool(info["success"])))
            outcome = "success" if info["success"] else "step limit"
            message = f"episode ended after {info['steps']} steps: {outcome}"
            self._publish_event("episode_end", message, self._clock_offset + obs.time, success=info["success"],
                                steps=info["steps"], truncated=info["truncated"])
            self.get_logger().info(message)
        for fn in self._step_listeners:
            fn(self.env, obs)

    # ---------------------------------------------------------------- publishing
    def _publish_camera_pose(self, stamp_s: float) -> None:
        pose = self.get_parameter("camera_pose").value
        self._pub_camera_pose.publish(msgs.pose_stamped(pose, self._base_frame, stamp_s))
        if self._pub_tf_static is not None:
            tf = TransformStamped(header=msgs.header(self._base_frame, stamp_s), child_frame_id=self._camera_frame)
            t, q = tf.transform.translation, tf.transform.rotation
            t.x, t.y, t.z, q.x, q.y, q.z, q.w = (float(v) for v in pose)
            self._pub_tf_static.publish(TFMessage(transforms=[tf]))

    def _publish_observation(self, obs, reward: float = 0.0, success: bool = False,
                             task_signals: bool = True) -> None:
        self._last_publish_wall = time.monotonic()
        self._last_observation = obs        # what republish() sends again
        stamp = self._clock_offset + obs.time  # everything of one step carries this stamp
        self._pub_clock.publish(Clock(clock=msgs.time_msg(stamp)))
        if obs.points_camera is not None:
            header = msgs.header(self._camera_frame, stamp)
            self._pub_cloud.publish(xyz_rgb_to_pointcloud2(obs.points_camera, obs.colors, header))
            self._pub_camera_info.publish(camera_info(self.env.config.camera, header))
        self._pub_joints.publish(msgs.joint_state(obs.joint_names, obs.joint_positions,
                                                  obs.joint_velocities, stamp))
        self._pub_ee.publish(msgs.pose_stamped(obs.ee_pose, self._base_frame, stamp))
        self._pub_objects.publish(msgs.pose_array(obs.object_poses, self._base_frame, stamp))
        if task_signals:
            self._pub_success.publish(Bool(data=bool(success)))
            self._pub_reward.publish(Float32(data=float(reward)))

    def destroy_node(self):
        if hasattr(self, "env"):  # absent when start-up failed on a parameter
            self.env.close()
        return super().destroy_node()


def main(args=None):
    spin_node(SimNode, args)


if __name__ == "__main__":
    main()
