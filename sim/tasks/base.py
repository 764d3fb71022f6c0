"""What every task provides, and sampling helpers shared by the tasks.

A task owns the objects it adds to a :class:`~equimanip.sim.world.PandaWorld`: it creates them once
in :meth:`Task.build`, scatters them in :meth:`Task.reset`, reports their ground-truth poses in a
fixed order (documented in each task's docstring) and judges success. Rewards are sparse.
"""
from __future__ import annotations

import abc
import math
from typing import ClassVar

import numpy as np

from equimanip.sim.experts import Expert
from equimanip.sim.world import WORKSPACE, PandaWorld


def sample_yaw(rng: np.random.Generator) -> float:
    """Uniform over the whole circle [-pi, pi): the tasks are symmetric under any rotation."""
    return float(rng.uniform(-math.pi, math.pi))


def sample_xy(rng: np.random.Generator, margin: float, count: int | None = None) -> np.ndarray:
    """Uniform (x, y) in the workspace shrunk by ``margin`` on every side; (2,) or (count, 2)."""
    low = WORKSPACE.low_array[:2] + margin
    high = WORKSPACE.high_array[:2] - margin
    return rng.uniform(low, high, size=None if count is None else (count, 2))


def upright_pose7(position, yaw: float) -> np.ndarray:
    return np.array([*position, 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)])


class Task(abc.ABC):
    """A manipulation task in the Panda world."""

    name: ClassVar[str]
    max_steps: ClassVar[int] = 100
    object_names: ClassVar[tuple[str, ...]]  # one per row of object_poses()

    @abc.abstractmethod
    def build(self, world: PandaWorld) -> None:
        """Create the task's bodies in ``world`` (called once)."""

    @abc.abstractmethod
    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        """Place the objects at a new random configuration."""

    @abc.abstractmethod
    def object_poses(self, world: PandaWorld) -> np.ndarray:
        """(K, 7) ground-truth pose7 rows in base_link, in the order of ``object_names``."""

    @abc.abstractmethod
    def success(self, world: PandaWorld) -> bool:
        """Sparse success test of the current state."""

    def reward(self, world: PandaWorld, success: bool) -> float:
        """Reward of a step that ended in this state; sparse by default (Equivariant SAC's
        setting). A task with a shaped reward overrides this."""
        return 1.0 if success else 0.0

    @abc.abstractmethod
    def make_expert(self) -> Expert:
        """A fresh scripted expert for this task."""
