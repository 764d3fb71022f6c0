"""mppi_node: the equivariant MPPI planner on a real or simulated arm.

Each decision plans with the kinematic end-effector model (``equimanip.planning``) from the
measured end-effector pose towards a goal, against the obstacles in the point cloud (the distance
field is rebuilt from the newest cloud every cycle), and sends the first action of the plan
through the controller runtime (``equimanip.nodes.controller``: safety layer, timer or state
trigger, e-stop, watchdog, diagnostics, stamped outputs). The whole planned path goes out as a
``nav_msgs/Path`` for RViz and Foxglove.

**Goal** (``goal_source``, fixed at start-up; ``equimanip.nodes.goal_input``):

* ``topic``: the newest ``~/goal`` (geometry_msgs/PoseStamped in the base frame: position and yaw);
* ``object_poses``: row ``goal_object`` of the simulated cell's ``/sim_node/object_poses`` (the
  reach tasks' target), the pose of the state's own instant, plus ``goal_offset``;
* ``nearest_object``: the top of the object nearest the gripper in the observation's
  object-centric state (the perception pipeline's boxes) plus ``goal_offset``.

With the last two the goal yaw is the gripper's yaw when the goal appeared. Without a goal the
node holds the arm still and says so in /diagnostics.

**Live tuning.** Every planner setting is a parameter (``num_samples``, ``horizon``,
``temperature`` = MPPI's lambda, ``noise_sigma``, ``group``, the ``cost.*`` weights, the
``obstacles.*`` filter, ``device``, ``torch_threads``...). A set is checked completely before it is
accepted (``EndEffectorPlanner.check``, the same checks ``MPPI.update_config`` runs: an odd
``noise_sigma`` for a group, bounds a group would break, a device torch cannot see): an invalid
value is refused with the reason and the planner keeps its settings; an accepted one takes
effect at the next decision (applied on the decision thread, never under a running plan).
``on_episode_start`` (``~/reset``, the simulation's episode events) drops the warm start.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import fields, replace
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import KeyValue
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult

from equimanip.geometry import down_quat_xyzw, yaw_of_quat_xyzw
from equimanip.nodes import msgs, qos
from equimanip.nodes.controller import ObservationController
from equimanip.nodes.devices import check_device, resolve_device
from equimanip.nodes.goal_input import GoalInput, goal_params
from equimanip.nodes.params import TASK, ParamSpec, param_values
from equimanip.nodes.spin import spin_node
from equimanip.planning.costs import EndEffectorCostConfig
from equimanip.planning.end_effector import EndEffectorPlannerSettings, ObstacleSettings
from equimanip.planning.mppi import MPPIConfig
from equimanip.symmetry import GROUPS

_M = MPPIConfig.for_end_effector()
_C = EndEffectorPlannerSettings().cost
_O = ObstacleSettings()
FINITE_GROUPS = tuple(name for name, g in GROUPS.items() if g.is_finite)
# The goal moved this far (m): the warm start, made for the old goal, is dropped.
GOAL_JUMP = 0.02
WARM_UP_CYCLES = 3


def _positive_list(value) -> Optional[str]:
    return None if all(v > 0 for v in value) else f"every entry must be positive, got {list(value)}"


_COST_HELP = {
    "goal_position": "per metre from the goal position, each step",
    "goal_yaw": "per unit of 1 - cos(yaw error), each step",
    "terminal": "the goal terms of the last step count this many times more",
    "collision": "at zero clearance to the cloud, falling quadratically to 0 at cost.safety_margin",
    "contact": "per step in which a swept gripper sphere overlaps the cloud",
    "safety_margin": "clearance (m) below which the collision cost starts",
    "workspace": "per (overshoot of the workspace box / max_step_m)^2",
    "speed": "per (excess over the step limits / limit)^2",
    "smoothness": "per (change of the motion between steps / limit)^2",
    "max_step_m": "step length (m) above which the speed cost starts",
    "max_step_yaw": "yaw step (rad) above which the speed cost starts",
    "swept_points": "positions checked per step along each move (the end included)",
    "yaw_period": "yaw error period (rad): pi for a gripper that looks the same turned half way round",
}


def _cost_spec(name: str) -> ParamSpec:
    default = getattr(_C, name)
    if name == "swept_points":
        return ParamSpec(f"cost.{name}", int(default), f"Cost: {_COST_HELP[name]}.", min=1, max=20)
    low = 1e-4 if name in ("safety_margin", "max_step_m", "max_step_yaw", "yaw_period") else 0.0
    return ParamSpec(f"cost.{name}", float(round(default, 6)), f"Cost: {_COST_HELP[name]}.", min=low,
                     max=10 * math.pi if name == "yaw_period" else 1e6)


PLANNER_PARAMS = [
    ParamSpec("num_samples", _M.num_samples, "K: action sequences evaluated per cycle (with a group: "
              "num_samples // |G| base sequences and their orbits).", min=16, max=1_000_000),
    ParamSpec("horizon", _M.horizon, "T: control steps planned ahead.", min=1, max=200),
    ParamSpec("temperature", _M.temperature, "MPPI's lambda: lower follows the best samples more greedily.",
              min=1e-4, max=1000.0),
    ParamSpec("noise_sigma", [round(v, 6) for v in _M.noise_sigma], "Spread of the sampled perturbations of "
              "[p, dx, dy, dz, dyaw] (per step; dx and dy equal for a group).", length=5, validate=_positive_list),
    ParamSpec("noise_correlation", _M.noise_correlation, "AR(1) correlation of the noise over time "
              "(0 white, towards 1 smoother).", min=0.0, max=0.99),
    ParamSpec("rest_share", _M.rest_share, "Share of samples around 'hold still' instead of the previous plan.",
              min=0.0, max=0.95),
    ParamSpec("iterations", _M.iterations, "Optimisation passes per cycle.", min=1, max=20),
    ParamSpec("group", _M.group, "Symmetric sampling: every sampled perturbation is evaluated turned (and "
              "mirrored) by every element of this planar group.", choices=FINITE_GROUPS),
    ParamSpec("seed", -1, "Seed of the planner's random numbers; -1 draws one.", min=-1, max=2**31 - 1),
    ParamSpec("device", "auto", "Where the planner runs: auto (a GPU when there is one), cpu, cuda or cuda:N.",
              validate=check_device),
    ParamSpec("torch_threads", 1, "Torch intra-op threads on the CPU (1 is fastest on a busy small CPU).",
              min=1, max=64),
    ParamSpec("compile", False, "torch.compile each planning cycle (faster; the first cycle of each new "
              "shape compiles for seconds and needs a C++ compiler; see docs/mppi.md)."),
]
COST_PARAMS = [_cost_spec(f.name) for f in fields(EndEffectorCostConfig)]
OBSTACLE_PARAMS = [
    ParamSpec("obstacles.enabled", _O.enabled, "Avoid the points of the cloud (the collision cost)."),
    ParamSpec("obstacles.resolution", _O.resolution, "Voxel (m) of the distance field built each cycle.",
              min=0.002, max=0.1),
    ParamSpec("obstacles.min_height", _O.min_height, "Points less than this (m) above observation.table_z "
              "are the table, not obstacles.", min=0.0, max=2.0),
    ParamSpec("obstacles.max_height", _O.max_height, "Points more than this (m) above the table are the "
              "robot's arm, not obstacles (run a robot self-filter upstream to raise it).", min=0.001, max=5.0),
    ParamSpec("obstacles.goal_clearance", _O.goal_clearance, "Points this close (m) to the goal are the "
              "object to reach, not obstacles.", min=0.0, max=0.5),
    ParamSpec("obstacles.margin", _O.margin, "The distance field covers the safety workspace box grown by this (m).",
              min=0.0, max=1.0),
    ParamSpec("obstacles.solid_below", _O.solid_below, "Everything under an observed point, down to the table, is "
              "solid (a camera above the table does not see the far sides of what stands on it)."),
    ParamSpec("obstacles.self_padding", _O.self_padding, "Points within this (m) of the gripper's collision spheres "
              "are the gripper itself.", min=0.0, max=0.1),
    ParamSpec("obstacles.arm_height", _O.arm_height, "Points higher than this (m) above the grasp point within "
              "obstacles.arm_radius of it are the arm rising from the hand.", min=0.0, max=2.0),
    ParamSpec("obstacles.arm_radius", _O.arm_radius, "Horizontal reach (m) of the arm filter around the grasp point.",
              min=0.0, max=2.0),
    ParamSpec("obstacles.memory", _O.memory, "Planning cycles whose obstacle points are kept (the arm hides what "
              "is under it); 1: the newest cloud only. Cleared at a new episode.", min=1, max=1000),
]
GOAL_PARAMS = goal_params()
PLANNER_OUTPUT_PARAMS = [
    ParamSpec("gripper", "open", "Gripper command: 'open', 'closed', or 'plan' (the plan's aperture).",
              choices=("open", "closed", "plan")),
    ParamSpec("publish_path", True, "Publish the planned end-effector path on ~/planned_path (nav_msgs/Path)."),
]
PARAMS = [TASK, *GOAL_PARAMS, *PLANNER_OUTPUT_PARAMS, *PLANNER_PARAMS, *COST_PARAMS, *OBSTACLE_PARAMS]
# What the planner's settings are made of besides this node's own parameters.
_SHARED = ("safety.workspace_min", "safety.workspace_max", "safety.max_yaw", "observation.table_z")


def planner_settings(values: dict, base: EndEffectorPlannerSettings) -> EndEffectorPlannerSettings:
    """The planner's settings from parameter values (this node's and the runtime's ``safety.*`` and
    ``observation.table_z``), over ``base`` (which holds what no parameter sets)."""
    seed = values["seed"]
    mppi = replace(base.mppi, num_samples=values["num_samples"], horizon=values["horizon"],
                   temperature=values["temperature"], noise_sigma=tuple(values["noise_sigma"]),
                   noise_correlation=values["noise_correlation"], rest_share=values["rest_share"],
                   iterations=values["iterations"], group=values["group"], seed=None if seed < 0 else seed,
                   device=resolve_device(values["device"]), compile=values["compile"])
    cost = EndEffectorCostConfig(**{f.name: values[f"cost.{f.name}"] for f in fields(EndEffectorCostConfig)})
    obstacles = replace(base.obstacles, **{name.removeprefix("obstacles."): values[name]
                                           for name in (s.name for s in OBSTACLE_PARAMS)},
                        table_z=values["observation.table_z"])
    return replace(base, mppi=mppi, cost=cost, obstacles=obstacles,
                   workspace_low=tuple(values["safety.workspace_min"]),
                   workspace_high=tuple(values["safety.workspace_max"]), yaw_limit=values["safety.max_yaw"])


class MPPINode(ObservationController):
    def __init__(self, **node_kwargs):
        super().__init__("mppi_node", PARAMS, **node_kwargs)
        import torch

        from equimanip.planning.end_effector import EndEffectorPlanner

        torch.set_num_threads(self.get_parameter("torch_threads").value)
        settings = planner_settings(self._values(), EndEffectorPlannerSettings())
        self.planner = EndEffectorPlanner(settings)      # ValueError: the node does not start (spin_node)
        self._pending: Optional[EndEffectorPlannerSettings] = None
        self._pending_lock = threading.Lock()
        self._goal: Optional[tuple[np.ndarray, Optional[float]]] = None      # (position, yaw) planned for
        self.goals = GoalInput(self)
        self._waiting_for_goal = 0
        self._clearance = math.inf
        self._timings: deque = deque(maxlen=200)          # (field_ms, plan_ms)
        self._warm = False

        self._pub_path = self.create_publisher(Path, "~/planned_path", qos.RELIABLE)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._on_planner_parameters)
        self._warm_up()
        s = self.planner.settings.mppi
        self.get_logger().info(f"MPPI with K = {self.planner.mppi.num_rollouts}, T = {s.horizon}, group {s.group}, "
                               f"on {s.device}; goal from {self.goals.source}")

    # ------------------------------------------------------------------ settings
    def _values(self, changed=()) -> dict:
        """Current values of everything the planner is built from, with ``changed`` applied."""
        values = param_values(self, PARAMS)
        values.update({name: self.get_parameter(name).value for name in _SHARED})
        values.update({p.name: p.value for p in changed if p.name in values})
        return values

    def _check_parameters(self, params) -> SetParametersResult:
        """Refuse any set that the planner would refuse (no side effects here)."""
        names = {s.name for s in PARAMS} | set(_SHARED)
        if not any(p.name in names for p in params) or not hasattr(self, "planner"):
            return SetParametersResult(successful=True)
        try:
            self.planner.check(planner_settings(self._values(params), self.planner.settings))
        except (ValueError, TypeError) as e:
            return SetParametersResult(successful=False, reason=f"planner refused it: {e}")
        return SetParametersResult(successful=True)

    def _on_planner_parameters(self, params) -> None:
        import torch

        names = {p.name for p in params}
        if "torch_threads" in names:
            torch.set_num_threads(self.get_parameter("torch_threads").value)
        if names & ({s.name for s in PARAMS} | set(_SHARED)) and hasattr(self, "planner"):
            # Applied by the next decision, on the decision thread: a plan never sees half a change.
            settings = planner_settings(self._values(), self.planner.settings)
            with self._pending_lock:
                self._pending = settings
        self._publish_metadata()

    def _apply_pending(self) -> None:
        with self._pending_lock:     # a set landing between the read and the clear must not be lost
            pending, self._pending = self._pending, None
        if pending is None or pending == self.planner.settings:
            return
        try:
            self.planner.update(pending)
        except (ValueError, TypeError, RuntimeError) as e:   # checked when set; kept safe regardless
            self._log.error("settings", f"planner settings not applied, the old ones stay: {e}")
            return
        if pending.mppi.compile:
            # torch.compile specialises on shapes and settings: the next cycle may compile again.
            self._log.warning("compile", "planner settings changed with compile on: the next cycle may compile "
                                         "again (seconds, during which decisions are late)")

    # ------------------------------------------------------------------ goals
    def _clip_to_workspace(self, position: np.ndarray) -> np.ndarray:
        return np.clip(position, self.limits.workspace_low, self.limits.workspace_high)

    # ------------------------------------------------------------------ deciding
    def observation_config(self):
        """The object-centric state (clustering) only when the goal comes from it."""
        config = self.observations.config
        return replace(config, compute_object_state=self.goals.source == "nearest_object")

    def on_episode_start(self) -> None:
        self.planner.reset()
        self._goal = None
        self.goals.reset(self.episode_start_ns)

    def act(self, observation) -> np.ndarray:
        self._apply_pending()
        gripper_mode = self.get_parameter("gripper").value
        hold_gripper = {"open": 1.0, "closed": 0.0}.get(gripper_mode, observation.gripper_aperture)
        goal = self.goals.goal_at(observation.stamp, observation.objects)
        if goal is None:
            if not self.goals.from_earlier_episode(observation.stamp):
                self._waiting_for_goal += 1
                self._log.warning("no-goal", f"no goal yet ({self.goals.wait_text()}): holding still")
            return np.array([hold_gripper, 0.0, 0.0, 0.0, 0.0])
        position, yaw = self._clip_to_workspace(np.asarray(goal[0], dtype=np.float64)), goal[1]
        if self._goal is None or np.linalg.norm(position - self._goal[0]) > GOAL_JUMP:
            if self._goal is not None:
                self.planner.reset()     # a plan made for another goal is no warm start
            held_yaw = yaw_of_quat_xyzw(observation.ee_pose[3:])
            self._goal = (position, yaw if yaw is not None else held_yaw)
        else:
            self._goal = (position, yaw if yaw is not None else self._goal[1])
        plan = self.planner.plan(observation.ee_pose, observation.gripper_aperture, observation.points,
                                 self._goal[0], self._goal[1])
        self._timings.append((self.planner.times.field_ms, self.planner.times.plan_ms))
        action = plan.action.detach().cpu().numpy().astype(np.float64)
        if gripper_mode != "plan":
            action[0] = hold_gripper
        if self.get_parameter("publish_path").value:
            self._publish_path(observation)
        return action

    def _publish_path(self, observation) -> None:
        states = self.planner.path(observation.ee_pose, observation.gripper_aperture)
        self._clearance = self.planner.clearance(observation.ee_pose, observation.gripper_aperture)
        path = Path()
        path.header = msgs.header(self.base_frame, observation.stamp)
        for x, y, z, yaw, _ in states:
            pose = msgs.pose_stamped([x, y, z, *down_quat_xyzw(float(yaw))], self.base_frame, observation.stamp)
            path.poses.append(pose)
        self._pub_path.publish(path)

    # ------------------------------------------------------------------ readiness and health
    def _warm_up(self) -> None:
        """A few planning cycles on a made-up scene, so that the first real decision does not pay
        for torch's first calls (and, with compile, for compiling)."""
        s = self.planner.settings
        centre = (np.asarray(s.workspace_low) + np.asarray(s.workspace_high)) / 2.0
        pose = np.array([*centre, *down_quat_xyzw(0.0)])
        post = centre + np.random.default_rng(0).uniform(-0.02, 0.02, size=(200, 3)) + [0.08, 0.0, -0.05]
        # With and without obstacles: the cost differs, and with compile on each compiles once.
        for points in (post, None):
            for _ in range(WARM_UP_CYCLES):
                self.planner.plan(pose, 1.0, points, centre + [0.1, 0.05, 0.0], 0.0)
            self.planner.reset()
        self._warm = True

    def is_warmed_up(self) -> bool:
        return self._warm

    def readiness(self) -> tuple[bool, str]:
        ready, waiting = super().readiness()
        if ready and self.goals.waiting_on_topic():
            return False, "a goal on ~/goal (geometry_msgs/PoseStamped in the base frame)"
        return ready, waiting

    def metadata(self) -> dict:
        data = super().metadata()
        planner = getattr(self, "planner", None)
        if planner is not None:
            s = planner.settings
            data["planner"] = {"mppi": {f.name: getattr(s.mppi, f.name) for f in fields(MPPIConfig)},
                               "cost": {f.name: getattr(s.cost, f.name) for f in fields(EndEffectorCostConfig)},
                               "obstacles": {f.name: getattr(s.obstacles, f.name) for f in fields(ObstacleSettings)},
                               "samples": planner.mppi.num_rollouts, "goal_source": self.goals.source}
        return data

    def diagnostics(self):
        status = super().diagnostics()
        timings = np.asarray(self._timings) if self._timings else np.full((1, 2), np.nan)
        plan = self.planner.last_plan
        goal = "none" if self._goal is None else str(np.round(self._goal[0], 3).tolist())
        values = {"goal_source": self.goals.source, "goal": goal, "waiting_for_goal": self._waiting_for_goal,
                  "samples": self.planner.mppi.num_rollouts, "group": self.planner.settings.mppi.group,
                  "device": self.planner.settings.mppi.device,
                  "field_ms_p50": f"{np.median(timings[:, 0]):.2f}", "plan_ms_p50": f"{np.median(timings[:, 1]):.2f}",
                  "obstacle_points": self.planner.times.obstacle_points,
                  "effective_samples": "n/a" if plan is None else f"{plan.effective_samples:.1f}",
                  "best_cost": "n/a" if plan is None else f"{plan.best_cost:.3g}",
                  "predicted_clearance_m": f"{self._clearance:.3f}"}
        status.values.extend(KeyValue(key=k, value=str(v)) for k, v in values.items())
        return status


def main(args=None):
    spin_node(MPPINode, args)


if __name__ == "__main__":
    main()
