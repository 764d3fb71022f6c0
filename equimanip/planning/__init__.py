"""Sampling-based planning without ROS: MPPI over plain callables, symmetric sampling under a planar
group, built-in dynamics (point mass, kinematic end effector) and costs (quadratic, goal pose,
point-cloud collision, workspace, speed, smoothness). See docs/mppi.md."""
from equimanip.planning.costs import (
    EndEffectorCost,
    EndEffectorCostConfig,
    GripperSpheres,
    PointCloudDistance,
    QuadraticCost,
)
from equimanip.planning.dynamics import EndEffectorLimits, KinematicEndEffector, PointMass
from equimanip.planning.mppi import MPPI, MPPIConfig, Plan
from equimanip.planning.sampling import ActionBounds

__all__ = ["MPPI", "MPPIConfig", "Plan", "ActionBounds", "PointMass", "KinematicEndEffector", "EndEffectorLimits",
           "QuadraticCost", "PointCloudDistance", "EndEffectorCost", "EndEffectorCostConfig", "GripperSpheres"]
