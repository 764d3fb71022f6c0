"""The end-effector planner of a cell: MPPI with the kinematic model, a goal pose and the point cloud.

One object that the ROS node (``mppi_node``) and the experiments in ``ManipulationEnv`` share, so
that what is measured without ROS is what runs on the arm::

    planner = EndEffectorPlanner(EndEffectorPlannerSettings(mppi=MPPIConfig.for_end_effector(group="c8")))
    plan = planner.plan(ee_pose, aperture, points, goal_position, goal_yaw)   # once per control step
    plan.action                       # [p, dx, dy, dz, dyaw], the command
    planner.path(ee_pose, aperture)   # (T + 1, 5) end-effector states along the plan (for RViz)
    planner.reset()                   # new episode: no warm start

Each cycle the obstacle cloud is the observed points less what must not count as an obstacle
(:class:`ObstacleSettings`): the table (points less than ``min_height`` above it), anything more
than ``max_height`` above it (the arm's upper links), the gripper itself (points inside its own
collision spheres, padded by ``self_padding``: a tight self-filter, so that an obstacle right next to
the hand is still seen), the arm above the hand (points higher than ``arm_height`` above the grasp
point within ``arm_radius`` of it: the forearm and wrist rise from there) and the object at the goal
(``goal_clearance`` around the goal position: the thing to reach is not in the way). Measured on
the simulated cell with the camera's segmentation: no point of the robot survives these filters
over 350 random poses. A real cell with tall obstacles next to the hand runs a robot self-filter
(robot_body_filter) upstream instead.

The arm hides what is under it from a camera above the table, so the obstacle points of the last
``memory`` cycles are kept (cleared by :meth:`EndEffectorPlanner.reset`, e.g. at a new episode):
without that the planner forgot a post the moment the forearm passed over it, and the hand touched
it. Kept points are conservative for obstacles that move away (they stay for ``memory`` cycles).

The distance field is built once per cycle over the workspace grown by ``margin`` (a query outside
reads the border, which never overstates the distance: points all lie inside), with everything
under an observed point taken as solid down to the table (``solid_below``: a camera above the table
does not see the far sides of what stands on it).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Optional

import numpy as np
import torch

from equimanip.geometry import yaw_of_quat_xyzw
from equimanip.planning.costs import EndEffectorCost, EndEffectorCostConfig, GripperSpheres, PointCloudDistance
from equimanip.planning.dynamics import EndEffectorLimits, KinematicEndEffector
from equimanip.planning.mppi import MPPI, MPPIConfig, Plan
from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW, YAW_LIMIT
from equimanip.symmetry import ACTION_LAYOUT


@dataclass(frozen=True)
class ObstacleSettings:
    """Which observed points are obstacles, and the distance field built from them."""

    enabled: bool = True
    resolution: float = 0.0075        # m, voxel of the distance field (reads at most 2.6 cm low)
    table_z: float = 0.0              # m, the table top in the base frame
    min_height: float = 0.01          # m above the table: lower points are the table
    max_height: float = 0.3           # m above the table: higher points are the robot's arm
    goal_clearance: float = 0.03      # m around the goal: the object to reach, not an obstacle
    margin: float = 0.1               # m, the field covers the workspace grown by this
    solid_below: bool = True          # what is under an observed point, down to the table, is solid
    self_padding: float = 0.01        # m added to the gripper's spheres: points inside are the gripper
    arm_height: float = 0.14          # m above the grasp point: higher points within arm_radius are the arm
    arm_radius: float = 0.2           # m, horizontally from the grasp point
    memory: int = 30                  # cycles whose obstacle points are kept (1: the newest cloud only)

    def validate(self) -> "ObstacleSettings":
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (bool, int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"obstacles.{f.name} must be finite, got {value!r}")
        if not 0.002 <= self.resolution <= 0.1:
            raise ValueError(f"obstacles.resolution must be in [0.002, 0.1] m, got {self.resolution}")
        if not 0 <= self.min_height < self.max_height:
            raise ValueError(f"obstacles need 0 <= min_height < max_height, got {self.min_height}, {self.max_height}")
        if not isinstance(self.memory, int) or isinstance(self.memory, bool) or not 1 <= self.memory <= 1000:
            raise ValueError(f"obstacles.memory must be an integer in [1, 1000], got {self.memory!r}")
        for name in ("goal_clearance", "margin", "self_padding", "arm_height", "arm_radius"):
            if getattr(self, name) < 0:
                raise ValueError(f"obstacles.{name} must be >= 0, got {getattr(self, name)}")
        return self


# Cost weights for reaching past obstacles, tuned on the reach_obstacles task (seeds 5000-5099;
# docs/mppi.md, "Reaching with obstacles"): a stronger pull to the goal, most of all at the end of
# the horizon, and a lighter, narrower collision margin than EndEffectorCostConfig's defaults. With
# those the hand hovered 3 cm short of targets 10 cm from a post: the grid distance reads up to two
# voxel diagonals low (2.6 cm at the default 7.5 mm) and the gripper's spheres reach up to 1 cm past
# the hand, so the margin already has room in it; touching the cloud stays forbidden by the contact
# term. The yaw is only lightly held,
# modulo a half turn (the open hand looks the same turned half way round).
REACH_COST = EndEffectorCostConfig(goal_position=20.0, goal_yaw=0.1, terminal=10.0, collision=1.0,
                                   safety_margin=0.005, yaw_period=math.pi)


@dataclass(frozen=True)
class EndEffectorPlannerSettings:
    """Everything the planner is built from (one dataclass per part, validated together)."""

    mppi: MPPIConfig = field(default_factory=MPPIConfig.for_end_effector)
    cost: EndEffectorCostConfig = REACH_COST
    obstacles: ObstacleSettings = field(default_factory=ObstacleSettings)
    workspace_low: tuple = WORKSPACE_LOW
    workspace_high: tuple = WORKSPACE_HIGH
    yaw_limit: float = YAW_LIMIT
    gripper: GripperSpheres = GripperSpheres()

    def validate(self) -> "EndEffectorPlannerSettings":
        self.mppi.validate()
        self.cost.validate()
        self.obstacles.validate()
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
            raise ValueError(f"the workspace needs low < high on x, y, z; got {low.tolist()}, {high.tolist()}")
        if not 0 < self.yaw_limit <= math.pi:
            raise ValueError(f"yaw_limit must be in (0, pi], got {self.yaw_limit}")
        return self


@dataclass
class CycleTimes:
    """Milliseconds of the last cycle's parts."""
    field_ms: float = 0.0
    plan_ms: float = 0.0
    obstacle_points: int = 0


class EndEffectorPlanner:
    """MPPI over :class:`KinematicEndEffector` with :class:`EndEffectorCost`; see the module docstring."""

    def __init__(self, settings: EndEffectorPlannerSettings = EndEffectorPlannerSettings()):
        settings.validate()
        self.settings = settings
        self.model, self.cost = self._parts(settings)
        self.mppi = MPPI(self.model, settings.mppi, trajectory_cost=self.cost, action_layout=ACTION_LAYOUT)
        self.times = CycleTimes()
        self.last_plan: Optional[Plan] = None
        self._memory: deque = deque(maxlen=settings.obstacles.memory)    # obstacle points of past cycles

    @staticmethod
    def _parts(settings: EndEffectorPlannerSettings):
        device = settings.mppi.device
        limits = EndEffectorLimits(tuple(settings.workspace_low), tuple(settings.workspace_high), settings.yaw_limit)
        model = KinematicEndEffector(limits, device=device)
        cost = EndEffectorCost(settings.cost, gripper=settings.gripper, workspace_low=tuple(settings.workspace_low),
                               workspace_high=tuple(settings.workspace_high), device=device)
        return model, cost

    # ------------------------------------------------------------------------------ settings

    def check(self, settings: EndEffectorPlannerSettings) -> EndEffectorPlannerSettings:
        """``settings`` after every check :meth:`update` runs (ValueError naming the problem);
        changes nothing (for a ROS parameter callback)."""
        settings.validate()
        self.mppi.check_update(**_mppi_changes(self.settings.mppi, settings.mppi))
        return settings

    def update(self, settings: EndEffectorPlannerSettings) -> None:
        """Take over ``settings`` all or nothing. The warm start survives changes that keep its shape
        (``MPPI.update_config``); new limits, weights or a new device rebuild the model and cost."""
        self.check(settings)
        old = self.settings
        rebuild = (settings.cost != old.cost or settings.mppi.device != old.mppi.device
                   or tuple(settings.workspace_low) != tuple(old.workspace_low)
                   or tuple(settings.workspace_high) != tuple(old.workspace_high)
                   or settings.yaw_limit != old.yaw_limit or settings.gripper != old.gripper)
        model, cost = self._parts(settings) if rebuild else (self.model, self.cost)
        if rebuild:
            cost.previous_action = self.cost.previous_action.to(cost.device)
            cost.goal_position, cost.goal_yaw = self.cost.goal_position.to(cost.device), self.cost.goal_yaw
        self.mppi.update_config(**_mppi_changes(old.mppi, settings.mppi))
        self.model, self.cost = model, cost
        self.mppi.dynamics, self.mppi.trajectory_cost = model, cost
        if settings.obstacles.memory != self._memory.maxlen:
            self._memory = deque(self._memory, maxlen=settings.obstacles.memory)
        self.settings = settings

    def reset(self) -> None:
        """A new episode: no warm start, no previous command."""
        self.mppi.reset()
        self.cost.previous_action = torch.zeros_like(self.cost.previous_action)
        self.last_plan = None
        self._memory.clear()

    # ------------------------------------------------------------------------------ planning

    @staticmethod
    def state(ee_pose, aperture: float) -> torch.Tensor:
        """The model's state [x, y, z, yaw, aperture] of an end-effector pose7 and an aperture."""
        ee_pose = np.asarray(ee_pose, dtype=np.float64)
        return torch.tensor([*ee_pose[:3], yaw_of_quat_xyzw(ee_pose[3:]), float(aperture)], dtype=torch.float32)

    def obstacle_points(self, points: Optional[np.ndarray], ee_pose, goal_position) -> np.ndarray:
        """The observed points (M, 3) that are obstacles (see the module docstring)."""
        o = self.settings.obstacles
        if points is None or not o.enabled:
            return np.zeros((0, 3), dtype=np.float32)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        height = points[:, 2] - o.table_z
        keep = np.isfinite(points).all(axis=1) & (height >= o.min_height) & (height <= o.max_height)
        points = points[keep]
        ee_pose = np.asarray(ee_pose, dtype=np.float64)
        offset = (points - ee_pose[:3]).astype(np.float64)
        arm = (offset[:, 2] >= o.arm_height) & (np.hypot(offset[:, 0], offset[:, 1]) <= o.arm_radius)
        points, offset = points[~arm], offset[~arm]
        yaw = yaw_of_quat_xyzw(ee_pose[3:])
        c, s = math.cos(yaw), math.sin(yaw)
        local = np.stack([c * offset[:, 0] + s * offset[:, 1], -s * offset[:, 0] + c * offset[:, 1], offset[:, 2]], 1)
        gripper = self.settings.gripper
        centres, radii = np.asarray(gripper.centres), np.asarray(gripper.radii) + o.self_padding
        inside = np.zeros(len(points), dtype=bool)
        for centre, radius in zip(centres, radii):       # a dozen spheres: a loop is clearer than a 3-D array
            inside |= np.sum((local - centre) ** 2, axis=1) <= radius * radius
        points = points[~inside]
        if o.goal_clearance > 0 and goal_position is not None:
            away = np.linalg.norm(points - np.asarray(goal_position, dtype=np.float32), axis=1) > o.goal_clearance
            points = points[away]
        return points

    def distance_field(self, obstacle_points: np.ndarray) -> Optional[PointCloudDistance]:
        """The distance field of the obstacle points over the workspace grown by ``margin``
        (from the table up); None when there is nothing to avoid."""
        if len(obstacle_points) == 0:
            return None
        o, s = self.settings.obstacles, self.settings
        low = np.asarray(s.workspace_low, float) - o.margin
        high = np.asarray(s.workspace_high, float) + o.margin
        low[2] = o.table_z
        high[2] = max(min(high[2], o.table_z + o.max_height + o.margin), low[2] + o.resolution)
        return PointCloudDistance.from_points(obstacle_points, low, high, o.resolution,
                                              device=self.settings.mppi.device,
                                              solid_below=o.table_z if o.solid_below else None)

    def plan(self, ee_pose, aperture: float, points: Optional[np.ndarray], goal_position,
             goal_yaw: Optional[float]) -> Plan:
        """One planning cycle from the measured end-effector pose7 and aperture, the observed
        base-frame points (M, 3) (None: no obstacles) and the goal; the command is ``.action``."""
        start = time.perf_counter()
        self._memory.append(self.obstacle_points(points, ee_pose, goal_position))
        obstacles = np.concatenate(self._memory)
        field = self.distance_field(obstacles)
        middle = time.perf_counter()
        self.cost.goal_position = goal_position
        self.cost.goal_yaw = goal_yaw
        self.cost.obstacles = field
        with torch.no_grad():
            plan = self.mppi.plan(self.state(ee_pose, aperture))
        self.cost.previous_action = plan.action.clone()
        self.times = CycleTimes((middle - start) * 1000.0, (time.perf_counter() - middle) * 1000.0, len(obstacles))
        self.last_plan = plan
        return plan

    def path(self, ee_pose, aperture: float) -> np.ndarray:
        """(T + 1, 5) model states along the current plan from the given pose."""
        with torch.no_grad():
            return self.mppi.rollout(self.state(ee_pose, aperture)).cpu().numpy()

    def clearance(self, ee_pose, aperture: float) -> float:
        """Smallest predicted clearance (m) of the gripper along the current plan against the last
        cycle's obstacles; inf without obstacles."""
        if self.cost.obstacles is None:
            return math.inf
        with torch.no_grad():
            states = self.mppi.rollout(self.state(ee_pose, aperture))
            return float(self.cost.clearance(states).min())


def _mppi_changes(old: MPPIConfig, new: MPPIConfig) -> dict:
    return {f.name: getattr(new, f.name) for f in fields(MPPIConfig) if getattr(new, f.name) != getattr(old, f.name)}


def with_changes(settings: EndEffectorPlannerSettings, **parts) -> EndEffectorPlannerSettings:
    """``settings`` with whole parts replaced (``mppi=``, ``cost=``, ...), validated."""
    return replace(settings, **parts).validate()


__all__ = ["EndEffectorPlanner", "EndEffectorPlannerSettings", "ObstacleSettings", "CycleTimes", "with_changes"]
