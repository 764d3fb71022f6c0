"""sim_node: the PyBullet arm and depth camera behind ROS 2 topics.

It wraps ``equimanip.sim.env.ManipulationEnv`` and adds nothing but ROS I/O: commands in (MoveIt
Servo twists, ros2_control joint trajectories, a gripper aperture), state out (point cloud, joint
states, end-effector pose, clock, task signals). Every command passes ``equimanip.safety`` first;
a rejected or stale command stops the arm for that step.

Timing. In real-time mode a wall-clock timer runs one control step per ``control_period``. In
``sync`` mode the simulation advances exactly one control step per received motion command (a
twist or a trajectory) together with a gripper command (``sync_gripper``), whichever arrives
first, which makes closed-loop runs deterministic and as fast as the controller. A motion command
answers the state whose stamp it carries; one for an earlier state is dropped. The gripper
command is latched until the next one. Either way the node publishes its own time on ``/clock``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Bool, Float32, Float64
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

try:  # tf2_msgs comes with a ROS install; the pip wheels lack it
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

from equimanip import safety
from equimanip.action import velocity_to_delta
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import ParamSpec, check_pose7, declare_parameters, param_values
from equimanip.nodes.spin import spin_node
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
from equimanip.sim.camera import CameraConfig
from equimanip.sim.env import ManipulationEnv, SimConfig
from equimanip.sim.tasks import TASKS
from equimanip.sim.world import FINGER_JOINT_NAMES, aperture_from_finger_positions


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
    ParamSpec("task", "block_picking", "Task to simulate; a change applies at the next reset.",
              choices=tuple(sorted(TASKS))),
    ParamSpec("seed", 0, "Seed of the scene at start-up; each reset takes the next one (seed + 1, "
              "...). Setting it starts the sequence again from the new value.", min=0),
    ParamSpec("sync", False, "Advance one control step per received motion command instead of "
              "on a wall-clock timer (deterministic closed-loop runs)."),
    ParamSpec("sync_gripper", True, "In sync mode, a step also waits for a gripper command (for "
              "controllers that send one with every motion command, as equimanip's do); turn off "
              "for controllers that send motion commands only."),
    ParamSpec("control_period", 0.1, "Seconds of simulated time per control step.",
              min=0.01, max=1.0, read_only=True),
    ParamSpec("physics_hz", 240.0, "Physics steps per simulated second.", min=240.0, max=2000.0,
              read_only=True),
    ParamSpec("max_steps", 0, "Step limit of an episode; 0 uses the task's own.", min=0, max=100000),
    ParamSpec("command_timeout", 0.1, "Motion commands older than this (s) stop the arm, as "
              "MoveIt Servo's incoming_command_timeout.", min=0.0, max=10.0),
    ParamSpec("auto_reset", False, "In real-time mode, start a new episode when one ends."),
    ParamSpec("gui", False, "Open the PyBullet GUI (needs a display).", read_only=True),
    ParamSpec("publish_cloud", True, "Render and publish the point cloud every control step."),
    ParamSpec("camera.width", _DEFAULT_CAMERA.width, "Depth image width (px).", min=8, max=2048),
    ParamSpec("camera.height", _DEFAULT_CAMERA.height, "Depth image height (px).", min=8, max=2048),
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
    ParamSpec("base_frame", "base_link", "Frame of poses and commands.", read_only=True),
    ParamSpec("camera_frame", "camera_depth_optical_frame", "Frame of the point cloud.", read_only=True),
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


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("sim_node", **node_kwargs)
        declare_parameters(self, PARAMS)
        p = param_values(self, PARAMS)
        self._base_frame = p["base_frame"]
        self._camera_frame = p["camera_frame"]
        self._period = p["control_period"]
        self.env = ManipulationEnv(self._sim_config(p))
        self._seed_index = 0       # episodes started since the seed was last set
        self._episode_reported = False
        self._pending_task_change = False
        self._step_listeners = []

        # Latest accepted commands.
        self._motion: Optional[_Motion] = None
        self._gripper = 1.0
        # Sync mode: which halves of this step's command have come in (see _step_if_sync).
        self._motion_heard = self._gripper_heard = False
        self._last_publish_wall = 0.0
        self._clock_offset = 0.0

        self._pub_cloud = self.create_publisher(PointCloud2, topics.CLOUD, qos.SENSOR)
        self._pub_camera_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, qos.SENSOR)
        self._pub_camera_pose = self.create_publisher(PoseStamped, topics.CAMERA_POSE, qos.LATCHED)
        self._pub_joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
        self._pub_ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self._pub_clock = self.create_publisher(Clock, "/clock", qos.RELIABLE)
        self._pub_success = self.create_publisher(Bool, "~/success", qos.RELIABLE)
        self._pub_reward = self.create_publisher(Float32, "~/reward", qos.RELIABLE)
        self._pub_done = self.create_publisher(Bool, "~/episode_done", qos.RELIABLE)
        self._pub_objects = self.create_publisher(PoseArray, "~/object_poses", qos.RELIABLE)
        # On a ROS install the camera frame also goes on /tf_static, for RViz and tf2 users.
        self._pub_tf_static = (self.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
                               if TFMessage is not None else None)

        self.create_subscription(Float64, topics.GRIPPER, self._on_gripper, qos.RELIABLE)
        self.create_subscription(TwistStamped, topics.TWIST, self._on_twist, qos.RELIABLE)
        self.create_subscription(JointTrajectory, topics.JOINT_TRAJECTORY, self._on_trajectory, qos.RELIABLE)
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
            f"{1.0 / self._period:.0f} Hz control, {p['physics_hz']:.0f} Hz physics)")

    # ---------------------------------------------------------------- configuration
    def _camera_config(self, p: dict) -> CameraConfig:
        return CameraConfig(
            width=p["camera.width"], height=p["camera.height"], fov_deg=p["camera.fov_deg"],
            pose=tuple(p["camera_pose"]), near=p["camera.near"], far=p["camera.far"],
            depth_noise_std=p["camera.depth_noise_std"], dropout=p["camera.dropout"])

    def _sim_config(self, p: dict) -> SimConfig:
        return SimConfig(task=p["task"], control_period=p["control_period"], physics_hz=p["physics_hz"],
                         camera=self._camera_config(p), render=p["publish_cloud"], gui=p["gui"],
                         max_steps=p["max_steps"] or None)

    def _check_camera(self, params) -> SetParametersResult:
        """The camera parameters must make a valid camera together (e.g. near below far)."""
        if not any(q.name.startswith("camera") for q in params):
            return SetParametersResult(successful=True)
        p = param_values(self, PARAMS)
        p.update({q.name: q.value for q in params if q.name in p})
        try:
            self._camera_config(p).validate()
        except ValueError as e:
            return SetParametersResult(successful=False, reason=f"invalid camera: {e}")
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
        if "publish_cloud" in names:
            self.env.config.render = p["publish_cloud"]
        if "sync" in names:
            self._motion_heard = self._gripper_heard = False  # halves heard before mean nothing now

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
        self._episode_reported = False
        self._motion = None
        self._motion_heard = self._gripper_heard = False
        self._gripper = 1.0
        self._publish_camera_pose(self._sim_now())
        self._publish_observation(obs, task_signals=False)
        return f"new '{p['task']}' scene from seed {seed}"

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

    # ---------------------------------------------------------------- commands
    def _sim_now(self) -> float:
        """Simulated time (s) as published on /clock: never goes backwards."""
        return self._clock_offset + self.env.time

    def _reject(self, what: str, reason: str) -> None:
        self.get_logger().warning(f"rejected {what}: {reason}; holding the arm still",
                                  throttle_duration_sec=1.0)
        self._motion = None

    def _fresh(self, what: str, stamp) -> Optional[float]:
        """The command's stamp in seconds, or None (after logging) when it is stale or from the
        future. A zero stamp means "now" (as for MoveIt Servo and ros2_control)."""
        stamp_s = msgs.seconds(stamp)
        if stamp_s == 0.0:
            return stamp_s
        timeout = self.get_parameter("command_timeout").value
        age = self._sim_now() - stamp_s
        if age > timeout:
            self._reject(what, f"stamped {age:.3f} s ago, older than command_timeout {timeout} s")
            return None
        if age < -timeout:
            self._reject(what, f"stamped {-age:.3f} s in the future of the simulated clock; does the "
                               "controller use_sim_time?")
            return None
        return stamp_s

    def _on_gripper(self, msg: Float64) -> None:
        try:
            self._gripper = safety.check_gripper(msg.data)
        except safety.CommandRejected as e:
            self.get_logger().warning(f"rejected gripper command: {e}; keeping {self._gripper:.2f}",
                                      throttle_duration_sec=1.0)
        self._gripper_heard = True
        self._step_if_sync()

    def _answers_this_state(self, what: str, stamp) -> bool:
        """In sync mode a motion command is for the state whose stamp it carries (0: unstamped,
        taken as the current one). One for an earlier state (a late or repeated decision, a
        command from before a reset) is dropped: executing it now would shift every later step."""
        if not self.get_parameter("sync").value:
            return True
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        now = msgs.time_msg(self._sim_now())
        if stamp_ns != 0 and stamp_ns != now.sec * 1_000_000_000 + now.nanosec:
            self.get_logger().warning(
                f"ignored a {what} for the state at {msgs.seconds(stamp):.3f} s: the current state is at "
                f"{msgs.seconds(now):.3f} s", throttle_duration_sec=1.0)
            return False
        return True

    def _on_twist(self, msg: TwistStamped) -> None:
        if not self._answers_this_state("twist", msg.header.stamp):
            return
        stamp_s = self._fresh("twist", msg.header.stamp)
        if stamp_s is not None:
            try:
                lin, yaw_rate, notes = safety.check_twist(
                    (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z),
                    (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z),
                    msg.header.frame_id, self._base_frame, safety.TwistLimits.for_period(self._period))
                for note in notes:
                    self.get_logger().warning(f"twist: {note}", throttle_duration_sec=1.0)
                self._motion = _Motion("twist", time.monotonic(), self._sim_now(),
                                       delta=velocity_to_delta(lin, yaw_rate, self._period))
            except safety.CommandRejected as e:
                self._reject("twist", str(e))
        self._motion_heard = True
        self._step_if_sync()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not self._answers_this_state("trajectory", msg.header.stamp):
            return
        if self._fresh("trajectory", msg.header.stamp) is not None:
            try:
                names = self.env.joint_names
                lower, upper = self.env.joint_limits
                traj = safety.check_trajectory(
                    msg.joint_names,
                    [(pt.positions, msgs.seconds(pt.time_from_start)) for pt in msg.points],
                    names, lower, upper)
                self._motion = _Motion("trajectory", time.monotonic(), self._sim_now(), trajectory=traj)
            except safety.CommandRejected as e:
                self._reject("trajectory", str(e))
        self._motion_heard = True
        self._step_if_sync()

    # ---------------------------------------------------------------- stepping
    def _step_if_sync(self) -> None:
        """In sync mode, step once a motion command (accepted or not) has come in, and, with
        sync_gripper, a gripper command too: the step then does not depend on which of the two
        messages DDS delivered first."""
        if not self.get_parameter("sync").value or not self._motion_heard:
            return
        if self.get_parameter("sync_gripper").value and not self._gripper_heard:
            return
        self._motion_heard = self._gripper_heard = False
        self._control_step(sync=True)

    def _on_timer(self) -> None:
        if not self.get_parameter("sync").value:
            self._control_step(sync=False)

    def _on_idle(self) -> None:
        if not self.get_parameter("sync").value or time.monotonic() - self._last_publish_wall <= 1.0:
            return
        if self._motion_heard and not self._gripper_heard:
            self.get_logger().warning("sync mode: a motion command waits for a gripper command "
                                      "(sync_gripper is true; set it false for motion-only controllers)",
                                      throttle_duration_sec=5.0)
        self.republish()

    def republish(self) -> None:
        """Publish the current state again (same stamp): wakes a controller that missed it."""
        self._publish_observation(self.env.observe(render=self.env.config.render), task_signals=False)

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
            if sync:
                self.get_logger().info("episode over: commands are ignored until ~/reset",
                                       throttle_duration_sec=5.0)
            elif self.get_parameter("auto_reset").value:
                self._reset_episode()
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
            self.get_logger().info(f"episode ended after {info['steps']} steps: {outcome}")
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
