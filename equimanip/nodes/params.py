"""Declaring and validating ROS parameters from one table per node.

Every node lists its parameters once, as ``ParamSpec`` rows: default, description, range or
allowed values, whether it may change at run time. ``declare_parameters`` turns the table into
ROS declarations with full ``ParameterDescriptor``s (so ``ros2 param describe`` tells users what a
parameter means and which values it takes) and installs one validation callback that rejects a bad
``set`` with a reason, before anything changes. Reactions to accepted changes belong in the node's
post-set callback, never in validation (the ROS convention: no side effects while validating).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from equimanip.geometry import pose7_to_matrix
from equimanip.sim.task_names import TASK_NAMES

# A validator gets the new value and returns None when it is fine, else the reason it is not.
Validator = Callable[[Any], Optional[str]]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: Optional[float] = None          # inclusive bounds for numbers
    max: Optional[float] = None
    choices: Sequence[str] = ()          # allowed values for strings
    read_only: bool = False              # fixed after start-up
    validate: Optional[Validator] = None  # extra check on the whole value (e.g. a pose's quaternion)
    length: Optional[int] = None         # exact length for array parameters
    extra: dict = field(default_factory=dict)

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        constraints = []
        # ROS range descriptors hold one scalar range; rclpy enforces them on every set.
        if isinstance(self.default, bool):
            pass
        elif isinstance(self.default, int) and (self.min is not None or self.max is not None):
            d.integer_range = [IntegerRange(
                from_value=int(self.min if self.min is not None else -(2**63)),
                to_value=int(self.max if self.max is not None else 2**63 - 1), step=0)]
        elif isinstance(self.default, float) and (self.min is not None or self.max is not None):
            d.floating_point_range = [FloatingPointRange(
                from_value=float(self.min if self.min is not None else -math.inf),
                to_value=float(self.max if self.max is not None else math.inf), step=0.0)]
        if self.choices:
            constraints.append("one of: " + ", ".join(self.choices))
        if self.length is not None:
            constraints.append(f"exactly {self.length} values")
        if self.min is not None or self.max is not None:
            constraints.append(f"range [{'-inf' if self.min is None else self.min}, "
                               f"{'inf' if self.max is None else self.max}]")
        d.additional_constraints = "; ".join(constraints)
        return d

    def check(self, value: Any) -> Optional[str]:
        """Reason why ``value`` is not acceptable, or None. Mirrors the descriptor, and adds what
        descriptors cannot say (choices, lengths, NaN, custom checks)."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be finite, got {value}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                return f"{self.name} must be >= {self.min}, got {value}"
            if self.max is not None and value > self.max:
                return f"{self.name} must be <= {self.max}, got {value}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got '{value}'"
        if self.length is not None:
            if len(value) != self.length:
                return f"{self.name} needs exactly {self.length} values, got {len(value)}"
            if not all(math.isfinite(v) for v in value):
                return f"{self.name} values must be finite, got {list(value)}"
        if self.validate is not None:
            return self.validate(value)
        return None


def check_pose7(value) -> Optional[str]:
    """Validator for pose parameters [x y z qx qy qz qw]: finite, with a unit quaternion."""
    try:
        pose7_to_matrix(value)
    except ValueError as e:
        return str(e)
    norm = math.sqrt(sum(v * v for v in value[3:]))
    if abs(norm - 1.0) > 1e-3:
        return f"the quaternion of {list(value)} has norm {norm:.4f}; it must be a unit quaternion"
    return None


# ---------------------------------------------------------------------- shared by several nodes
# Parameters that several nodes of one cell declare, and whose values must agree between them:
# defined once here, so that they mean the same and take the same values everywhere.


TASK = ParamSpec("task", "block_picking", "Task of the simulated cell: what sim_node sets up (a change "
                 "applies at its next reset) and what a task's controller solves; the nodes of a cell "
                 "must agree.", choices=TASK_NAMES)
CONTROL_PERIOD = ParamSpec("control_period", 0.1, "Seconds per control step, the same for the arm and its "
                           "controllers (a controller converts per-step displacements to m/s with it).",
                           min=0.01, max=1.0, read_only=True)
BASE_FRAME = ParamSpec("base_frame", "base_link", "Frame of the robot state, the commands and the "
                       "outputs.", read_only=True)
CAMERA_FRAME = ParamSpec("camera_frame", "camera_depth_optical_frame", "Optical frame of the depth camera, "
                         "the frame of its point cloud.", read_only=True)


def declare_parameters(node: Node, specs: Sequence[ParamSpec]) -> dict[str, ParamSpec]:
    """Declare ``specs`` on ``node`` and reject invalid values, at start-up and on every set.

    Raises ValueError at start-up when an override (YAML, command line) is invalid: a node does not
    start on a configuration it would have to guess around.
    """
    table = {s.name: s for s in specs}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except ParameterException as e:  # out of the descriptor's range, or of the wrong type
            raise ValueError(f"invalid parameter {spec.name}: {e}") from None
        reason = spec.check(node.get_parameter(spec.name).value)
        if reason is not None:
            raise ValueError(f"invalid parameter: {reason}")

    def on_set(params: list[Parameter]) -> SetParametersResult:
        for p in params:
            spec = table.get(p.name)
            if spec is None:
                continue
            reason = spec.check(p.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return table


def param_values(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Current values of ``specs`` as a plain dict."""
    return {s.name: node.get_parameter(s.name).value for s in specs}


def markdown_table(specs: Sequence[ParamSpec]) -> str:
    """The parameters as a Markdown table (the README's tables are generated by this and a test
    keeps them in step with the code)."""
    def allowed(s: ParamSpec) -> str:
        if s.choices:
            return ", ".join(s.choices)
        if s.min is not None and s.max is not None:
            return f"[{s.min}, {s.max}]"
        if s.min is not None:
            return f">= {s.min}"
        if s.max is not None:
            return f"<= {s.max}"
        if s.length is not None:
            return f"{s.length} values"
        return ""

    def fmt(v) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v) + "]"
        return str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["| parameter | default | allowed | run-time | description |", "|---|---|---|---|---|"]
    for s in specs:
        lines.append(f"| `{s.name}` | `{fmt(s.default)}` | {allowed(s)} | "
                     f"{'no' if s.read_only else 'yes'} | {s.description} |")
    return "\n".join(lines)
