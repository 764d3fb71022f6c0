"""The simulation API used by training code and by the ROS simulation node.

:class:`ManipulationEnv` wraps a :class:`~equimanip.sim.world.PandaWorld`, one task and a depth
camera. One control step applies a command, runs ``round(control_period * physics_hz)`` physics
steps and returns a :class:`SimObservation`. Episodes are reproducible: the same seed and the same
calls give bit-identical observations, whatever ran in this environment before.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from equimanip import safety
from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.geometry import transform_points, yaw_of_quat_xyzw
from equimanip.sim.camera import CameraConfig, render_point_cloud, render_rgb
from equimanip.sim.experts import Expert, ExpertInput
from equimanip.sim.tasks import TASKS, Task, make_task
from equimanip.sim.world import ARM_JOINT_NAMES, JOINT_NAMES, MOTION_LIMITS, PandaWorld, aperture_from_finger_positions

# Oblique overview for figures and GIFs: from the front-right corner of the table.
OVERVIEW_EYE = (1.1, -0.65, 0.7)
OVERVIEW_TARGET = (0.35, 0.0, 0.2)


@dataclass
class SimConfig:
    task: str = "block_picking"
    control_period: float = 0.1  # s per control step
    physics_hz: float = 240.0  # physics steps per second
    camera: CameraConfig = field(default_factory=CameraConfig)
    render: bool = True  # render the point cloud after every step
    gui: bool = False  # PyBullet GUI window (one per process)
    max_steps: int | None = None  # episode step limit; None = the task's own
    # Hold every command to the motion limits (equimanip.sim.world.MotionLimits: workspace box,
    # step per control step, gripper tilt). False makes a raw arm that executes any finite
    # command as given, for testing a controller's own safety layer.
    enforce_limits: bool = True

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return int(round(self.control_period * self.physics_hz))

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(sorted(TASKS))}")
        if not (np.isfinite(self.physics_hz) and self.physics_hz >= 240.0):
            raise ValueError(f"physics_hz must be >= 240, got {self.physics_hz}")
        if not (np.isfinite(self.control_period) and self.control_period > 0.0) or self.substeps < 1:
            raise ValueError(f"control_period must allow at least one physics step, got {self.control_period}")
        if self.max_steps is not None and (not isinstance(self.max_steps, (int, np.integer)) or self.max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if not isinstance(self.camera, CameraConfig):
            raise ValueError(f"camera must be a CameraConfig, got {type(self.camera).__name__}")
        self.camera.validate()


@dataclass
class SimObservation:
    time: float  # simulated seconds since the environment was created (never decreases)
    points_camera: np.ndarray | None  # (H, W, 3) float32, optical frame, NaN = no return
    colors: np.ndarray | None  # (H, W, 3) uint8 RGB of the same pixels
    points: np.ndarray | None  # (H, W, 3) float32, the same pixels in base_link
    camera_pose: np.ndarray  # pose7 of camera_depth_optical_frame in base_link
    ee_pose: np.ndarray  # pose7 of panda_grasptarget
    ee_yaw: float
    gripper_aperture: float  # measured, 0 closed .. 1 open
    joint_names: list[str]  # 7 arm joints then 2 finger joints
    joint_positions: np.ndarray  # (9,)
    joint_velocities: np.ndarray  # (9,)
    object_poses: np.ndarray  # (K, 7) in the task's documented order


def _real_array(values, what: str, shape: tuple) -> np.ndarray:
    """``values`` as finite float64 numbers of ``shape``; ValueError otherwise. Complex numbers,
    booleans and strings are refused rather than converted (numpy would take their real part,
    0/1, or parse them)."""
    array = np.asarray(values)
    if array.dtype.kind not in "fiu" or array.shape != shape:
        raise ValueError(f"{what} must be real numbers of shape {shape}, got {array.dtype} {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite, got {array.tolist()}")
    return array


def expert_input(observation: SimObservation) -> ExpertInput:
    """What an expert may see of an observation (the same fields the ROS topics carry)."""
    return ExpertInput.from_state(observation.ee_pose, observation.joint_positions[len(ARM_JOINT_NAMES):],
                                  observation.object_poses)


class ManipulationEnv:
    """A Panda, a table, one task and a depth camera, stepped at a fixed control period."""

    def __init__(self, config: SimConfig | None = None, **overrides):
        config = config if config is not None else SimConfig()
        valid = {f.name for f in dataclasses.fields(SimConfig)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"unknown SimConfig field(s) {unknown}; valid: {sorted(valid)}")
        config = dataclasses.replace(config, **overrides)
        config.validate()
        self._config = config
        self._world = PandaWorld(physics_hz=config.physics_hz, gui=config.gui,
                                 control_period=config.control_period)
        self._task = make_task(config.task)
        self._task.build(self._world)
        # Every reset starts from this snapshot, so an episode does not depend on earlier ones.
        self._initial_state = self._world.save_state()
        self._substeps_done = 0  # physics steps since creation: the clock, exact and monotonic
        self._steps = 0
        self._done = False
        self._success = False
        self._needs_reset = True
        self._next_seed = 0
        self._noise_rng = np.random.default_rng(0)

    # ----------------------------------------------------------------------------------- episode
    def reset(self, seed: int | None = None) -> SimObservation:
        """Start a new episode with a random scene drawn from ``seed`` (None: the seed after the
        previous one, starting at 0)."""
        if seed is None:
            seed = self._next_seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._next_seed = int(seed) + 1
        scene_seed, noise_seed = np.random.SeedSequence(int(seed)).spawn(2)
        world = self._world
        world.restore_state(self._initial_state)
        world.reset_robot()
        self._task.reset(world, np.random.default_rng(scene_seed))
        self._noise_rng = np.random.default_rng(noise_seed)
        # One control period of settling so that the first observation is a resting scene.
        self._run_physics()
        self._steps = 0
        self._done = False
        self._success = self._task.success(world)
        self._needs_reset = False
        return self.observe(render=self._config.render)

    def step(self, action):
        """One control step of the action ``[p, dx, dy, dz, dyaw]``, clipped to the action limits
        (unless ``enforce_limits`` is off; the motion limits of the world apply then too).

        Returns ``(observation, reward, done, info)``; info has success, steps, truncated and
        clipped (True when the action was outside the limits).
        """
        self._require_reset()
        action = safety.as_action(action)
        if self._config.enforce_limits:
            command = np.clip(action, ACTION_LOW, ACTION_HIGH)
        else:  # the aperture is a motor target: nothing beyond open and closed exists
            command = action.copy()
            command[0] = min(max(command[0], 0.0), 1.0)
        world = self._apply_limit_setting()
        world.command_gripper(command[0])
        world.move_ee(command[1:4], command[4])
        return self._finish_step(clipped=bool(np.any(command != action)))

    def step_joints(self, arm_positions, gripper: float | None = None):
        """One control step towards arm joint positions (7), clipped to the joint limits; unless
        ``enforce_limits`` is off also to what the joints' maximum speeds reach in one control
        period, and shortened to the motion limits (the end effector moves at most MAX_STEP_M per
        axis, stays in the workspace and keeps the gripper within the tilt limit of pointing
        down; a move along a workspace wall slides along it). ``gripper`` is an aperture in
        [0, 1] or None to leave the fingers as they are."""
        self._require_reset()
        world = self._apply_limit_setting()
        requested = _real_array(arm_positions, "arm_positions", (7,))
        if gripper is not None:
            gripper = float(_real_array(gripper, "gripper", ()))
        positions = world.joint_states()[0]
        target = np.clip(requested, world.joint_lower_limits[:7], world.joint_upper_limits[:7])
        if world.limits is not None:
            current = positions[:7]
            max_change = world.joint_max_velocities[:7] * self._config.control_period
            target = current + np.clip(target - current, -max_change, max_change)
            target, _ = world.slide_joint_step(positions, target, world.limits.max_step)
            target, _ = world.limit_motion(target)
        clipped = bool(np.any(np.abs(target - requested) > 1e-12))
        world.set_arm_targets(target)
        if gripper is not None:
            clipped |= not (0.0 <= gripper <= 1.0)
            world.command_gripper(float(np.clip(gripper, 0.0, 1.0)))
        result = self._finish_step(clipped)
        # Later EE commands hold the pose the joints reached, not an older EE target.
        world.hold_measured_pose()
        return result

    def hold(self):
        """One control step without a new command: the arm keeps its target, the gripper too."""
        self._require_reset()
        return self._finish_step(clipped=False)

    def _apply_limit_setting(self) -> PandaWorld:
        """The world, with its motion limits on or off and its control period as the
        configuration says now."""
        self._world.limits = MOTION_LIMITS if self._config.enforce_limits else None
        self._world.control_period = self._config.control_period
        return self._world

    def _require_reset(self) -> None:
        if self._needs_reset:
            raise RuntimeError("call reset() before stepping the environment")

    def _run_physics(self) -> None:
        substeps = self._config.substeps
        self._world.step(substeps)
        self._substeps_done += substeps

    def _finish_step(self, clipped: bool):
        self._run_physics()
        self._steps += 1
        self._success = self._task.success(self._world)
        limit_reached = self._steps >= self.max_steps
        self._done = self._done or self._success or limit_reached
        info = {
            "success": self._success,
            "steps": self._steps,
            "truncated": limit_reached and not self._success,
            "clipped": clipped,
        }
        reward = self._task.reward(self._world, self._success)
        return self.observe(render=self._config.render), reward, self._done, info

    # ----------------------------------------------------------------------------------- sensing
    def observe(self, render: bool = True) -> SimObservation:
        """The current state; ``render=False`` skips the point cloud (about 20 ms at 128 x 128)."""
        world = self._world
        positions, velocities = world.joint_states()
        ee_pose = world.ee_pose()
        camera = self._config.camera
        points_camera = colors = points = None
        if render:
            points_camera, colors = render_point_cloud(world.client, camera, self._noise_rng)
            points = transform_points(camera.T_base_camera, points_camera)
        return SimObservation(
            time=self.time,
            points_camera=points_camera,
            colors=colors,
            points=points,
            camera_pose=np.array(camera.pose),
            ee_pose=ee_pose,
            ee_yaw=yaw_of_quat_xyzw(ee_pose[3:]),
            gripper_aperture=aperture_from_finger_positions(positions[7:]),
            joint_names=list(JOINT_NAMES),
            joint_positions=positions,
            joint_velocities=velocities,
            object_poses=self._task.object_poses(world),
        )

    def set_camera(self, camera: CameraConfig) -> None:
        """Replace the camera (intrinsics, pose, noise) from the next rendered observation on."""
        camera.validate()
        self._config = dataclasses.replace(self._config, camera=camera)

    def render_rgb(self, width: int = 320, height: int = 240) -> np.ndarray:
        """(H, W, 3) uint8 oblique view of the scene, for figures and GIFs."""
        return render_rgb(self._world.client, width, height, OVERVIEW_EYE, OVERVIEW_TARGET)

    def make_expert(self) -> Expert:
        return self._task.make_expert()

    def close(self) -> None:
        self._world.close()

    def __enter__(self) -> "ManipulationEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- state
    @property
    def config(self) -> SimConfig:
        return self._config

    @property
    def task(self) -> Task:
        return self._task

    @property
    def world(self) -> PandaWorld:
        return self._world

    @property
    def joint_names(self) -> list[str]:
        """The 7 arm joints then the 2 finger joints, as in observations."""
        return list(JOINT_NAMES)

    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) position limits of the joints in ``joint_names`` order (rad, m)."""
        return self._world.joint_lower_limits.copy(), self._world.joint_upper_limits.copy()

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return self._config.substeps

    @property
    def time(self) -> float:
        return self._substeps_done / self._config.physics_hz

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def max_steps(self) -> int:
        return self._config.max_steps if self._config.max_steps is not None else self._task.max_steps

    @property
    def done(self) -> bool:
        return self._done

    @property
    def success(self) -> bool:
        return self._success
