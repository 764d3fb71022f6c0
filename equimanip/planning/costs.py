"""Built-in costs for MPPI, as callables on batched tensors.

* :class:`QuadraticCost`: ``s^T Q s + a^T R a`` with diagonal Q and R, the benchmark's running cost.
* :class:`PointCloudDistance`: distance from any position to the nearest observed point, built once
  per planning cycle: a Euclidean distance transform of the points' voxel grid, read at the nearest
  voxel (``method="grid"``, cost independent of the number of points), or the exact
  nearest-neighbour distance (``method="exact"``, for small clouds and as the reference).
* :class:`EndEffectorCost`: the trajectory cost of the kinematic end-effector model
  (``equimanip.planning.dynamics.KinematicEndEffector``): distance to a goal pose, collision of the
  gripper's swept volume with the point cloud, workspace and speed limits, smoothness. Weights and
  margins live in :class:`EndEffectorCostConfig`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import numpy as np
import torch

from equimanip.action import MAX_STEP_M, MAX_STEP_YAW
from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW

# ----------------------------------------------------------------------------------- quadratic


class QuadraticCost:
    """Running cost ``sum_i q_i s_i^2 + sum_j r_j a_j^2`` (the goal at the origin of the state)."""

    def __init__(self, state_weights: Sequence[float], action_weights: Sequence[float], device: str = "cpu"):
        self.q = torch.tensor(state_weights, dtype=torch.float32, device=device)
        self.r = torch.tensor(action_weights, dtype=torch.float32, device=device)

    def __call__(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # element-wise, which inductor fuses with the rollout around it (see PointMass)
            return (state * state * self.q).sum(-1) + (action * action * self.r).sum(-1)
        # eager: (s * s) @ q is the fastest form on a CPU (a matrix-vector product); the same
        # callable runs through pytorch-mppi in the benchmark.
        return (state * state) @ self.q + (action * action) @ self.r


# ----------------------------------------------------------------------------------- point cloud


class PointCloudDistance:
    """Distance (m) from positions to the nearest point of a cloud; ``inf`` for an empty cloud.

    ``grid`` (the default): the points inside the box ``[low, high]`` are binned into voxels of
    ``resolution``, scipy's exact Euclidean distance transform gives each voxel centre its distance
    to the nearest occupied voxel centre, and a query reads the voxel it falls in (one ``take`` per
    position: about 50 times faster on a CPU than trilinear ``grid_sample``). One voxel diagonal
    (sqrt(3) x resolution) is subtracted so that the value never exceeds the true distance to the
    points; it is at most two diagonals (3.5 cm at 1 cm) below it. Positions outside the box read the
    nearest border voxel; points outside the box are ignored, so make the box the workspace grown by
    the largest clearance that matters (the default grows it by 10 cm). ``exact``: ``torch.cdist``
    to every point (time and memory grow with the number of points; the reference in tests).
    """

    def __init__(self, field: Optional[torch.Tensor], low: np.ndarray, high: np.ndarray, resolution: float,
                 points: Optional[torch.Tensor] = None):
        self._field, self._points = field, points
        self.low, self.high, self.resolution = low, high, resolution
        self.method = "grid" if points is None else "exact"
        if field is not None:
            device = field.device
            # voxel coordinate = position / resolution + offset, the voxel centres at whole numbers
            self._inverse_resolution = torch.full((3,), 1.0 / resolution, device=device)
            self._offset = torch.as_tensor(-low / resolution - 0.5, dtype=torch.float32, device=device)
            self._flat = field.reshape(-1)

    @classmethod
    def from_points(cls, points, low=None, high=None, resolution: float = 0.01, method: str = "grid",
                    device: str = "cpu", solid_below: Optional[float] = None) -> "PointCloudDistance":
        """``points`` (N, 3) in the planner's frame; rows with a NaN are dropped (organised clouds
        mark missing returns that way). ``low``/``high`` default to the workspace grown by 10 cm.

        ``solid_below`` (a height, e.g. the table's): everything between that height and an observed
        point straight above it counts as occupied. A camera above the table sees the tops and near
        sides of objects, not their far sides; an object standing on the table fills the column under
        its top, so this restores the hidden sides (and is conservative under overhangs)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        points = points[np.isfinite(points).all(axis=1)]
        low = np.asarray(low if low is not None else np.asarray(WORKSPACE_LOW) - 0.1, dtype=np.float64)
        high = np.asarray(high if high is not None else np.asarray(WORKSPACE_HIGH) + 0.1, dtype=np.float64)
        if low.shape != (3,) or high.shape != (3,) or not np.all(high > low):
            raise ValueError(f"the box needs low < high in x, y, z; got low {low.tolist()}, high {high.tolist()}")
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if method == "exact":
            if solid_below is not None:
                points = _columns(points, solid_below, resolution)
            return cls(None, low, high, resolution,
                       points=torch.as_tensor(points, dtype=torch.float32, device=device))
        if method != "grid":
            raise ValueError(f"method must be 'grid' or 'exact', got '{method}'")
        cells = np.prod(np.ceil((high - low) / resolution))
        if cells > 20_000_000:
            raise ValueError(f"a {resolution} m grid over that box has {cells:.0f} voxels; use a coarser resolution")
        return cls(_distance_grid(points, low, high, resolution, device, solid_below), low, high, resolution)

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """Distances (...) for positions (..., 3)."""
        shape = positions.shape[:-1]
        flat = positions.reshape(-1, 3)
        if self._points is not None:
            if self._points.shape[0] == 0:
                return torch.full(shape, math.inf, dtype=positions.dtype, device=positions.device)
            # Chunks bound the (rows x points) distance matrix to about 4 M entries. Differences, not
            # cdist's faster |x|^2 + |y|^2 - 2 x.y, which loses digits in float32 (and with them the
            # exact rotation invariance the symmetry tests check).
            step = max(1, 4_000_000 // self._points.shape[0])
            out = torch.cat([torch.cdist(flat[i:i + step], self._points,
                                         compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
                             for i in range(0, flat.shape[0], step)])
            return out.reshape(shape)
        if self._field is None:
            return torch.full(shape, math.inf, dtype=positions.dtype, device=positions.device)
        return self._lookup(self._to_voxels(flat)).reshape(shape)

    def _to_voxels(self, positions: torch.Tensor) -> torch.Tensor:
        """Fractional voxel coordinates (3, N), coordinate-major, of positions (N, 3)."""
        return torch.addcmul(self._offset[:, None], positions.T, self._inverse_resolution[:, None])

    def _lookup(self, voxel: torch.Tensor) -> torch.Tensor:
        """Field values (...) at fractional voxel coordinates (3, ...), nearest voxel, clamped to the
        grid. Coordinate-major, so that every step is a contiguous operation (a CPU does those fast)."""
        nz, ny, nx = self._field.shape
        voxel = voxel.round()
        for axis, size in enumerate((nx, ny, nz)):
            voxel[axis].clamp_(0, size - 1)
        index = voxel[0].add(voxel[1], alpha=nx).add_(voxel[2], alpha=nx * ny)
        return self._flat.take(index.long())

    def sphere_clearance(self, positions: torch.Tensor, yaw: torch.Tensor, centres: torch.Tensor,
                         radii: torch.Tensor) -> torch.Tensor:
        """Smallest ``distance - radius`` (M,) over spheres whose ``centres`` (S, 3) are given in a body
        frame at ``positions`` (M, 3) turned by ``yaw`` (M,) about the vertical axis. On the grid the
        turn and the conversion to voxel coordinates of every sphere are one matrix product."""
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        if self._field is None:
            x = positions[:, None, 0] + cos[:, None] * centres[:, 0] - sin[:, None] * centres[:, 1]
            y = positions[:, None, 1] + sin[:, None] * centres[:, 0] + cos[:, None] * centres[:, 1]
            z = positions[:, None, 2] + centres[:, 2].expand(positions.shape[0], -1)
            distance = self(torch.stack([x, y, z], dim=-1))
            return (distance - radii).min(dim=-1).values
        # voxel(axis, s, m) = W[axis, s] . [cos_m, sin_m, 1, x_m, y_m, z_m]: the turn of the sphere
        # centre, the move and the conversion to voxel coordinates in one matrix product.
        S = centres.shape[0]
        cx, cy, cz = (centres / self.resolution).unbind(-1)
        zero, one = torch.zeros_like(cx), torch.ones_like(cx)
        offset = self._offset[:, None].expand(3, S)
        W = torch.stack([torch.stack([cx, -cy, offset[0], one / self.resolution, zero, zero], -1),
                         torch.stack([cy, cx, offset[1], zero, one / self.resolution, zero], -1),
                         torch.stack([zero, zero, cz + offset[2], zero, zero, one / self.resolution], -1)])
        basis = torch.stack([cos, sin, torch.ones_like(cos), *positions.unbind(-1)])     # (6, M)
        voxel = (W.reshape(3 * S, 6) @ basis).view(3, S, -1)
        return (self._lookup(voxel) - radii[:, None]).min(dim=0).values


def _columns(points: np.ndarray, floor: float, step: float) -> np.ndarray:
    """``points`` and, under each, points every ``step`` down to ``floor``."""
    depth = np.maximum(points[:, 2] - floor, 0.0)
    counts = np.floor(depth / step).astype(int)
    repeated = np.repeat(points, counts + 1, axis=0)
    offsets = np.concatenate([np.arange(c + 1) for c in counts]) * step if len(points) else np.zeros(0)
    repeated[:, 2] -= offsets
    return repeated


def _distance_grid(points: np.ndarray, low: np.ndarray, high: np.ndarray, resolution: float,
                   device: str, solid_below: Optional[float] = None) -> Optional[torch.Tensor]:
    """(nz, ny, nx) distance field, or None when no point lies in the box."""
    from scipy.ndimage import distance_transform_edt

    size = np.maximum(1, np.ceil((high - low) / resolution).astype(int))
    inside = points[np.all((points >= low) & (points < high), axis=1)]
    if len(inside) == 0:
        return None
    index = np.minimum(((inside - low) / resolution).astype(int), size - 1)
    occupied = np.zeros(size[::-1], dtype=bool)                  # (z, y, x)
    occupied[index[:, 2], index[:, 1], index[:, 0]] = True
    if solid_below is not None:
        # every voxel with an occupied one above it in its column, down to the floor's voxel
        occupied = np.logical_or.accumulate(occupied[::-1], axis=0)[::-1]
        floor = int(np.clip(np.floor((solid_below - low[2]) / resolution), 0, size[2]))
        occupied[:floor] = False
    free = ~occupied
    distance = distance_transform_edt(free, sampling=resolution)
    distance = np.maximum(distance - math.sqrt(3.0) * resolution, 0.0)
    return torch.as_tensor(distance, dtype=torch.float32, device=device)


# ----------------------------------------------------------------------------------- end effector


@dataclass(frozen=True)
class GripperSpheres:
    """The gripper as spheres in the end-effector frame (x forward, y along the fingers' travel, z up,
    origin at ``panda_grasptarget`` between the finger pads, whose tips reach 1.1 cm below it); the
    default covers a Panda hand with its fingers fully open (conservative for any aperture) and the
    wrist link above it (panda_link7, rigid with the hand). Measured on the simulated Panda by probing
    a 1 cm grid around the hand for collisions with each link: every probe point inside the fingers,
    the hand (x +-3 cm, y +-10 cm, z 4 to 13 cm) or the wrist (x +-4 cm, y -8 to 5 cm, z 11 to 16 cm)
    lies inside a sphere (to 1 mm), and the spheres reach at most 1 cm past the hand across it. The
    set is mirror-symmetric about the x-z plane (the wrist's spheres cover its longer side on both),
    so the cost stays invariant under the mirrors of d4 and d8. The
    obstacle cloud must not hold the table or the object to grasp: the fingertips touch both."""

    centres: tuple[tuple[float, float, float], ...] = (
        (0.0, 0.0, 0.0),          # between the finger pads
        (0.0, 0.05, -0.002),      # fingertips, fully open
        (0.0, -0.05, -0.002),
        (0.0, 0.05, 0.03),        # upper fingers
        (0.0, -0.05, 0.03),
        *((0.0, y, z) for z in (0.065, 0.105) for y in (-0.08, -0.04, 0.0, 0.04, 0.08)),   # hand, two rows
        (0.0, -0.05, 0.135),      # wrist (panda_link7)
        (0.0, 0.0, 0.135),
        (0.0, 0.05, 0.135),
    )
    radii: tuple[float, ...] = (0.01, 0.017, 0.017, 0.017, 0.017, *(0.04,) * 10, 0.05, 0.05, 0.05)

    def __post_init__(self):
        if len(self.centres) != len(self.radii) or not self.radii:
            raise ValueError("GripperSpheres needs one radius per centre (at least one)")


@dataclass(frozen=True)
class EndEffectorCostConfig:
    """Weights (cost units) and margins of :class:`EndEffectorCost`. A weight of 0 turns a term off."""

    goal_position: float = 10.0       # per metre from the goal position, each step
    goal_yaw: float = 0.5             # per unit of 1 - cos(yaw error), each step
    terminal: float = 5.0             # the goal terms of the last step count this many times more
    collision: float = 20.0           # at zero clearance, falling quadratically to 0 at safety_margin
    contact: float = 1000.0           # per step in which a swept sphere overlaps the cloud
    safety_margin: float = 0.04       # m of clearance below which collision cost starts
    workspace: float = 100.0          # per (requested overshoot of the workspace box / max_step_m)^2
    speed: float = 10.0               # per (excess over max_step / max_step)^2
    smoothness: float = 0.05          # per (change of the motion between steps / limit)^2
    max_step_m: float = MAX_STEP_M    # length of a step (m) above which the speed cost starts
    max_step_yaw: float = MAX_STEP_YAW
    swept_points: int = 2             # positions checked per step along the move (the end included)
    yaw_period: float = 2 * math.pi   # pi for a gripper that looks the same turned half way round

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("safety_margin", "max_step_m", "max_step_yaw", "yaw_period"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if int(self.swept_points) != self.swept_points or self.swept_points < 1:
            raise ValueError(f"swept_points must be an integer >= 1, got {self.swept_points}")


class EndEffectorCost:
    """Trajectory cost ``(states (K, T+1, 5), actions (K, T, 5)) -> (K,)`` for the kinematic
    end-effector model (state ``[x, y, z, yaw, aperture]``, action ``[p, dx, dy, dz, dyaw]``).

    Per planning cycle, set :attr:`goal_position` (3,), optionally :attr:`goal_yaw`, the obstacles
    (:class:`PointCloudDistance`, or None) and :attr:`previous_action` (the command sent last, for
    smoothness). All terms except the workspace box are invariant under rotations and mirrors about
    any vertical axis, which is what symmetric MPPI needs."""

    def __init__(self, config: EndEffectorCostConfig = EndEffectorCostConfig(), goal_position=(0.5, 0.0, 0.2),
                 goal_yaw: Optional[float] = None, obstacles: Optional[PointCloudDistance] = None,
                 gripper: GripperSpheres = GripperSpheres(), workspace_low=WORKSPACE_LOW,
                 workspace_high=WORKSPACE_HIGH, device: str = "cpu"):
        config.validate()
        self.config, self.device = config, torch.device(device)
        self._goal_yaw_tensor = torch.zeros((), dtype=torch.float32, device=self.device)
        self.goal_position = goal_position
        self.goal_yaw = goal_yaw
        self.obstacles = obstacles
        self.previous_action = torch.zeros(5, dtype=torch.float32, device=self.device)
        self._sphere_centres = torch.tensor(gripper.centres, dtype=torch.float32, device=self.device)
        self._sphere_radii = torch.tensor(gripper.radii, dtype=torch.float32, device=self.device)
        self._low = torch.tensor(workspace_low, dtype=torch.float32, device=self.device)
        self._high = torch.tensor(workspace_high, dtype=torch.float32, device=self.device)
        self._limits = torch.tensor([config.max_step_m] * 3 + [config.max_step_yaw], device=self.device)
        s = int(config.swept_points)
        self._fractions = torch.arange(1, s + 1, dtype=torch.float32, device=self.device) / s

    @property
    def goal_position(self) -> torch.Tensor:
        return self._goal_position

    @goal_position.setter
    def goal_position(self, value) -> None:
        goal = torch.as_tensor(value, dtype=torch.float32, device=self.device).reshape(-1)
        if goal.shape != (3,) or not bool(torch.isfinite(goal).all()):
            raise ValueError(f"goal_position must be 3 finite numbers, got {goal.tolist()}")
        self._goal_position = goal

    @property
    def goal_yaw(self) -> Optional[float]:
        return self._goal_yaw

    @goal_yaw.setter
    def goal_yaw(self, value: Optional[float]) -> None:
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"goal_yaw must be a finite number or None, got {value}")
            # The cost reads the yaw from a tensor, updated in place: a compiled planning cycle
            # (MPPIConfig.compile) would otherwise take a Python float as a constant and compile
            # again for every new goal.
            self._goal_yaw_tensor.fill_(value)
        self._goal_yaw = value
        self._has_goal_yaw = value is not None      # what the cost branches on (a bool, not the float)

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        c = self.config
        after = states[:, 1:]                                          # (K, T, 5)
        total = torch.zeros(states.shape[0], dtype=states.dtype, device=states.device)
        per_step_weights = torch.ones(after.shape[1], dtype=states.dtype, device=states.device)
        per_step_weights[-1] += c.terminal
        if c.goal_position:
            distance = torch.linalg.vector_norm(after[..., :3] - self._goal_position, dim=-1)
            total = total + c.goal_position * (distance @ per_step_weights)
        if c.goal_yaw and self._has_goal_yaw:
            error = (after[..., 3] - self._goal_yaw_tensor) * (2 * math.pi / c.yaw_period)
            total = total + c.goal_yaw * ((1.0 - torch.cos(error)) @ per_step_weights)
        if (c.collision or c.contact) and self.obstacles is not None:
            total = total + self.collision_cost(states)
        if c.workspace:
            requested = states[:, :-1, :3] + actions[..., 1:4]
            overshoot = torch.relu(requested - self._high) + torch.relu(self._low - requested)
            total = total + c.workspace * (overshoot / c.max_step_m).square().sum((1, 2))
        if c.speed:
            step = torch.linalg.vector_norm(actions[..., 1:4], dim=-1)
            excess = torch.relu(step / c.max_step_m - 1.0).square() + \
                torch.relu(actions[..., 4].abs() / c.max_step_yaw - 1.0).square()
            total = total + c.speed * excess.sum(1)
        if c.smoothness:
            motion = actions[..., 1:5] / self._limits
            previous = (self.previous_action[1:5] / self._limits).expand(motion.shape[0], 1, 4)
            change = torch.diff(motion, dim=1, prepend=previous)
            total = total + c.smoothness * change.square().sum((1, 2))
        return total

    def gripper_spheres(self, states: torch.Tensor) -> torch.Tensor:
        """Centres (..., S, 3) of the gripper's spheres for end-effector states (..., 5)."""
        yaw = states[..., 3:4]
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        ox, oy, oz = self._sphere_centres.unbind(-1)                   # each (S,)
        x = states[..., 0:1] + cos * ox - sin * oy
        y = states[..., 1:2] + sin * ox + cos * oy
        z = states[..., 2:3] + oz
        return torch.stack([x, y, z], dim=-1)

    def clearance(self, states: torch.Tensor) -> torch.Tensor:
        """Smallest distance (...) between the gripper's spheres and the cloud for states (..., 5)."""
        flat = states.reshape(-1, states.shape[-1])
        clearance = self.obstacles.sphere_clearance(flat[:, :3], flat[:, 3], self._sphere_centres,
                                                    self._sphere_radii)
        return clearance.reshape(states.shape[:-1])

    def collision_cost(self, states: torch.Tensor) -> torch.Tensor:
        """(K,) collision cost of the gripper swept from each state to the next (``swept_points``
        positions per step, the end included)."""
        c = self.config
        start, end = states[:, :-1, None], states[:, 1:, None]        # (K, T, 1, 5)
        swept = start + self._fractions[:, None] * (end - start)       # (K, T, P, 5)
        clearance = self.clearance(swept).min(dim=-1).values           # (K, T)
        near = (torch.relu(c.safety_margin - clearance) / c.safety_margin).square()
        return c.collision * near.sum(1) + c.contact * (clearance < 0).sum(1).to(states.dtype)
