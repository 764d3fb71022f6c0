"""Built-in dynamics for MPPI, as callables on batched tensors ``(state (K, nx), action (K, nu))``.

* :class:`PointMass`: a planar double integrator, the benchmark's model (the same one runs through
  pytorch-mppi) and the convex test problem.
* :class:`KinematicEndEffector`: the end effector as the simulation moves it: each action
  ``[p, dx, dy, dz, dyaw]`` (``equimanip.action``) moves the target by the displacement, kept in the
  workspace box and the yaw limit of ``equimanip.safety`` (the simulation's too), and sets the gripper aperture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW, YAW_LIMIT
from equimanip.symmetry import GroupElement, Layout, vector

# ----------------------------------------------------------------------------------- point mass

POINT_MASS_STATE = Layout((vector("x", "y"), vector("vx", "vy")))
POINT_MASS_ACTION = Layout((vector("ax", "ay"),))


class PointMass:
    """State ``[x, y, vx, vy]``, action ``[ax, ay]`` (an acceleration), time step ``dt``:
    exact integration of constant acceleration over the step, as the linear map ``s A^T + a B^T``.
    Equivariant under every planar rotation and reflection about the origin."""

    nx, nu = 4, 2
    state_layout, action_layout = POINT_MASS_STATE, POINT_MASS_ACTION

    def __init__(self, dt: float = 0.05, device: str = "cpu"):
        A = np.eye(4)
        A[0, 2] = A[1, 3] = dt
        B = np.zeros((4, 2))
        B[0, 0] = B[1, 1] = 0.5 * dt * dt
        B[2, 0] = B[3, 1] = dt
        self.dt = dt
        self._At = torch.as_tensor(A.T, dtype=torch.float32, device=device)
        self._Bt = torch.as_tensor(B.T, dtype=torch.float32, device=device)

    def __call__(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # Under torch.compile the same map entry by entry: inductor fuses element-wise steps
            # into the loops around them but calls a library kernel for every matrix product.
            position, velocity = state[..., :2], state[..., 2:]
            return torch.cat([position + self.dt * velocity + (0.5 * self.dt * self.dt) * action,
                              velocity + self.dt * action], dim=-1)
        return state @ self._At + action @ self._Bt   # eager: faster on a CPU than one addmm


# ----------------------------------------------------------------------------------- end effector

# State of the kinematic end-effector model, in base_link: position (m), yaw (rad), aperture (0..1).
END_EFFECTOR_STATE = ("x", "y", "z", "yaw", "aperture")


@dataclass(frozen=True)
class EndEffectorLimits:
    """Where the end effector can go; None removes a limit (e.g. to test the model's symmetry,
    which a box around the robot's base does not have)."""

    workspace_low: Optional[tuple[float, float, float]] = WORKSPACE_LOW
    workspace_high: Optional[tuple[float, float, float]] = WORKSPACE_HIGH
    yaw_limit: Optional[float] = YAW_LIMIT


class KinematicEndEffector:
    """``[x, y, z, yaw, aperture]`` moved by actions ``[p, dx, dy, dz, dyaw]``: the position by
    (dx, dy, dz) clipped to the workspace, the yaw by dyaw clipped to +-yaw_limit (the simulation's
    ``PandaWorld.set_ee_target``), the aperture to the commanded p. It assumes the arm reaches its
    target within one control step, which the simulation's servo does for steps up to
    ``MAX_STEP_M``. A rotation about the vertical axis through any point commutes with the model when
    the limits are removed."""

    nx, nu = 5, 5
    state_names = END_EFFECTOR_STATE

    def __init__(self, limits: EndEffectorLimits = EndEffectorLimits(), device: str = "cpu"):
        self.limits = limits
        inf = float("inf")
        low = (*(limits.workspace_low or (-inf,) * 3), -(limits.yaw_limit or inf), 0.0)
        high = (*(limits.workspace_high or (inf,) * 3), limits.yaw_limit or inf, 1.0)
        self._low = torch.tensor(low, dtype=torch.float32, device=device)
        self._high = torch.tensor(high, dtype=torch.float32, device=device)
        # next = clamp(state * keep + action[move], low, high): the aperture is replaced, not added.
        self._keep = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float32, device=device)
        self._move = torch.tensor([1, 2, 3, 4, 0], device=device)

    def __call__(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.addcmul(action[:, self._move], state, self._keep), self._low, self._high)

    @staticmethod
    def transform_state(g: GroupElement, state: torch.Tensor, pivot) -> torch.Tensor:
        """``g`` applied to states (..., 5) as a rotation (and mirror) about the vertical axis
        through ``pivot`` (x, y): the position turns about it, the yaw turns with the heading."""
        M = torch.as_tensor(g.matrix(), dtype=state.dtype, device=state.device)
        pivot = torch.as_tensor(pivot, dtype=state.dtype, device=state.device)
        out = state.clone()
        out[..., 0:2] = (state[..., 0:2] - pivot) @ M.T + pivot
        heading = torch.stack([torch.cos(state[..., 3]), torch.sin(state[..., 3])], dim=-1) @ M.T
        out[..., 3] = torch.atan2(heading[..., 1], heading[..., 0])
        return out


__all__ = ["PointMass", "POINT_MASS_STATE", "POINT_MASS_ACTION", "KinematicEndEffector", "EndEffectorLimits",
           "END_EFFECTOR_STATE"]
