"""The equimanip tasks as Gymnasium environments.

``ManipulationGymEnv`` wraps :class:`~equimanip.sim.env.ManipulationEnv` (the PyBullet arm, task
and depth camera) and :func:`~equimanip.perception.observation.build_observation` (what a policy
sees on the robot), so anything trained here sees exactly what the ROS nodes will give it, and
never the ground-truth object poses (block_pushing's goal, the task's specification rather than
something to perceive, is the exception: ``ObservationConfig.goal_channel`` draws it in, and
``goal_in_state`` appends it to the object-centric state, as the policy node does from ``~/goal``):

* observation: the heightmap ``(2, S, S)`` float32 (``(3, S, S)`` with the goal channel;
  ``observation="heightmap"``, a Box), the
  object-centric state ``(D,)`` (``"state"``), or both (``"both"``, a Dict with keys
  ``heightmap`` and ``state``); S and every other perception setting come from ``ObservationConfig``;
* action: ``Box(ACTION_LOW, ACTION_HIGH)`` in ``equimanip.action`` order ``[p, dx, dy, dz, dyaw]``
  (actions outside are clipped by the simulation; ``info["clipped"]`` says so);
* reward: sparse, 1 on the step that succeeds, else 0; ``terminated`` on success, ``truncated``
  at the step limit (the task's own unless ``max_episode_steps`` is given);
* seeds: ``reset(seed=s)`` gives the scene of episode seed ``s``; later resets without a seed take
  ``s + stride``, ``s + 2 stride``, ... (``episode_seed_stride``; :func:`make_vector_env` sets it
  to the number of environments so that parallel copies never repeat a scene).

Scene options, applied after the task has placed its objects (``equimanip.envs.scene``):
``yaw_sector=(start_deg, width_deg)`` keeps only scenes whose scene yaw (see
:func:`~equimanip.envs.scene.scene_yaw`) lies in the sector (others are redrawn from derived
seeds); ``rotate_scene`` turns every object and the hand's starting point about the workspace
centre by that many degrees; ``perturb_objects`` / ``perturb_gripper`` shift each object / the
hand's start in (x, y) by U(-d, d) metres, drawn from the episode seed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.perception.observation import Observation, ObservationConfig, build_observation
from equimanip.sim.camera import CameraConfig
from equimanip.sim.env import ManipulationEnv, expert_input
from equimanip.sim.task_names import TABLE_GOAL_ROWS
from equimanip.sim.tasks import TASKS

from . import scene

OBSERVATION_MODES = ("heightmap", "state", "both")
# Scenes outside a yaw sector are redrawn from seeds ``seed + k * SECTOR_SEED_STEP``: far above
# any seed a run uses, so the redrawn scenes are not other episodes' scenes.
SECTOR_SEED_STEP = 2 ** 40
SECTOR_MAX_TRIES = 500


@dataclass
class EnvConfig:
    """Everything that defines one environment. ``validate()`` raises ValueError on the first bad field."""

    task: str = "block_picking"
    observation_config: ObservationConfig = field(default_factory=ObservationConfig)
    observation: str = "heightmap"            # heightmap | state | both
    max_episode_steps: int | None = None      # None: the task's own limit
    camera: CameraConfig = field(default_factory=CameraConfig)
    rotate_scene: float = 0.0                 # degrees about the workspace centre
    perturb_gripper: float = 0.0              # metres, U(-d, d) on the hand's start (x, y)
    perturb_objects: float = 0.0              # metres, U(-d, d) on each object's (x, y)
    yaw_sector: tuple[float, float] | None = None  # (start, width) in degrees
    episode_seed_stride: int = 1

    def validate(self) -> "EnvConfig":
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(sorted(TASKS))}")
        if self.observation not in OBSERVATION_MODES:
            raise ValueError(f"observation must be one of {OBSERVATION_MODES}, got {self.observation!r}")
        if not isinstance(self.observation_config, ObservationConfig):
            raise ValueError("observation_config must be an ObservationConfig")
        self.observation_config.validate()
        if self.observation_config.takes_goal and self.task not in TABLE_GOAL_ROWS:
            raise ValueError(f"goal_channel and goal_in_state show a goal on the table; {self.task} has none "
                             f"(tasks with one: {', '.join(TABLE_GOAL_ROWS)})")
        if self.max_episode_steps is not None and (not isinstance(self.max_episode_steps, (int, np.integer))
                                                   or self.max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {self.max_episode_steps!r}")
        for name in ("rotate_scene", "perturb_gripper", "perturb_objects"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.perturb_gripper < 0 or self.perturb_objects < 0:
            raise ValueError("perturb_gripper and perturb_objects are half-widths in metres, >= 0")
        if self.yaw_sector is not None:
            if len(self.yaw_sector) != 2 or not all(math.isfinite(v) for v in self.yaw_sector):
                raise ValueError(f"yaw_sector is (start_deg, width_deg), got {self.yaw_sector!r}")
            if not 0 < self.yaw_sector[1] <= 360:
                raise ValueError(f"yaw_sector width must be in (0, 360] degrees, got {self.yaw_sector[1]}")
        if self.episode_seed_stride < 1:
            raise ValueError(f"episode_seed_stride must be >= 1, got {self.episode_seed_stride}")
        return self


class ManipulationGymEnv(gym.Env):
    """One equimanip task as a Gymnasium environment (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str = "block_picking", render_mode: str | None = None, **options):
        config = options.pop("config", None)
        if config is None:
            if isinstance(options.get("observation_config"), dict):
                options["observation_config"] = ObservationConfig(**options["observation_config"])
            config = EnvConfig(task=task, **options)
        elif options:
            raise TypeError("give either config= or the EnvConfig fields, not both")
        # The object-centric state costs clustering every step: compute it only when it is observed.
        wants_state = config.observation != "heightmap"
        if config.observation_config.compute_object_state != wants_state:
            config = dataclasses.replace(config, observation_config=dataclasses.replace(
                config.observation_config, compute_object_state=wants_state))
        self.config = config.validate()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        # Rendering is asked for explicitly after each step (and not at all while a reset is redrawn).
        self.sim = ManipulationEnv(task=config.task, render=False, camera=config.camera,
                                   max_steps=config.max_episode_steps)
        self.action_space = spaces.Box(ACTION_LOW.astype(np.float32), ACTION_HIGH.astype(np.float32), dtype=np.float32)
        self.observation_space = self._make_observation_space()
        self._next_seed = 0
        self._expert = None
        self._last_observation: Observation | None = None
        self.episode_seed: int | None = None

    # ----------------------------------------------------------------------------------- spaces
    def _make_observation_space(self) -> spaces.Space:
        oc = self.config.observation_config
        S = oc.heightmap_size
        high = np.empty((oc.heightmap_channels, S, S), dtype=np.float32)
        high[0] = oc.workspace_max[2] - oc.table_z     # heights above the table, inside the crop box
        high[1:] = 1.0                                 # the gripper aperture, the goal channel
        heightmap = spaces.Box(np.zeros_like(high), high, dtype=np.float32)
        state = spaces.Box(-np.inf, np.inf, shape=(oc.object_state_dim,), dtype=np.float32)
        if self.config.observation == "heightmap":
            return heightmap
        if self.config.observation == "state":
            return state
        return spaces.Dict({"heightmap": heightmap, "state": state})

    def _observe(self):
        sim_obs = self.sim.observe(render=True)
        oc = self.config.observation_config
        observation = build_observation(sim_obs.points, sim_obs.ee_pose, sim_obs.gripper_aperture, sim_obs.time, oc,
                                        goal_xy=self._table_goal(sim_obs))
        self._last_observation = observation
        if self.config.observation == "heightmap":
            return observation.heightmap
        if self.config.observation == "state":
            return observation.object_state
        return {"heightmap": observation.heightmap, "state": observation.object_state}

    def _table_goal(self, sim_obs):
        """The task's goal on the table (x, y) for the goal channel or state; None when not shown."""
        if not self.config.observation_config.takes_goal:
            return None
        return sim_obs.object_poses[TABLE_GOAL_ROWS[self.config.task], :2]

    # ----------------------------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            self._next_seed = int(seed)
        self.episode_seed = self._next_seed
        self._next_seed += self.config.episode_seed_stride
        yaw = self._reset_scene(self.episode_seed)
        if self._expert is not None:
            self._expert.reset()
        info = {"episode_seed": self.episode_seed, "scene_yaw": yaw, "success": self.sim.task.success(self.sim.world)}
        return self._observe(), info

    def _reset_scene(self, seed: int) -> float:
        """The task's scene for ``seed`` with the configured changes; returns its scene yaw (before
        ``rotate_scene``)."""
        c = self.config
        for attempt in range(SECTOR_MAX_TRIES):
            self.sim.reset(seed + attempt * SECTOR_SEED_STEP)
            yaw = scene.scene_yaw(self.sim)
            if c.yaw_sector is None or scene.in_sector(yaw, *np.radians(c.yaw_sector)):
                break
        else:
            raise RuntimeError(f"no scene of seed {seed} in yaw sector {c.yaw_sector} after {SECTOR_MAX_TRIES} tries")
        if c.rotate_scene == 0.0 and c.perturb_gripper == 0.0 and c.perturb_objects == 0.0:
            return yaw
        rng = np.random.default_rng([seed, 1])  # the perturbations of this episode, reproducible
        angle = math.radians(c.rotate_scene)
        gripper_offset = rng.uniform(-c.perturb_gripper, c.perturb_gripper, 2)
        n_objects = len(scene.object_bodies(self.sim))
        object_offsets = rng.uniform(-c.perturb_objects, c.perturb_objects, (n_objects, 2))
        position, gripper_yaw = scene.gripper_start(angle, gripper_offset)
        scene.servo_gripper(self.sim, position, gripper_yaw)
        scene.move_bodies(self.sim, angle, object_offsets)
        scene.settle(self.sim)
        return yaw

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        _, reward, _, info = self.sim.step(action)
        terminated = bool(info["success"])
        truncated = bool(info["truncated"])
        info = dict(info, is_success=terminated, episode_seed=self.episode_seed)
        return self._observe(), float(reward), terminated, truncated, info

    # ----------------------------------------------------------------------------------- extras
    def expert_action(self) -> np.ndarray:
        """What the task's scripted expert does now (it reads the ground-truth poses the policy
        never sees): for demonstrations. Its memory is cleared at every reset."""
        if self._expert is None:
            self._expert = self.sim.make_expert()
        return np.asarray(self._expert.act(expert_input(self.sim.observe(render=False))), dtype=np.float64)

    @property
    def last_observation(self) -> Observation | None:
        """The full :class:`Observation` behind the last returned observation (for policies that
        take one, e.g. ``checkpoint.load_policy(...).act``)."""
        return self._last_observation

    def render(self):
        if self.render_mode == "rgb_array":
            return self.sim.render_rgb()
        return None

    def close(self):
        self.sim.close()
        super().close()


def make_vector_env(task: str, num_envs: int, asynchronous: bool = False, **options):
    """``num_envs`` copies of a task in Gymnasium's vector API. Each copy steps through episode seeds
    with stride ``num_envs``, so ``reset(seed=s)`` gives copy i the seeds s + i, s + i + n, ... and no
    two copies ever play the same scene. Episodes end in the same step they finish (autoreset
    ``SAME_STEP``: the final observation is in ``infos["final_obs"]``)."""
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    def make_one():
        return ManipulationGymEnv(task, episode_seed_stride=num_envs, **options)

    cls = AsyncVectorEnv if asynchronous else SyncVectorEnv
    return cls([make_one] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


__all__ = ["EnvConfig", "ManipulationGymEnv", "make_vector_env", "OBSERVATION_MODES"]
