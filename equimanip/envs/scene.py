"""Changes to a freshly reset scene: rotations about the workspace centre, perturbed starts, and the
"scene yaw" that the symmetry-generalisation experiment restricts to a sector.

Everything here goes through the simulation's public API (``ManipulationEnv.world`` / ``.task``):
the task places its objects as usual, then these functions move the bodies (every body except the
robot and the table, so they work for every task without knowing its objects) and the gripper's
starting point.
"""
from __future__ import annotations

import math

import numpy as np
import pybullet as p

from equimanip.geometry import wrap_angle, yaw_of_quat_xyzw, yaw_quat_xyzw
from equimanip.sim.env import ManipulationEnv
from equimanip.sim.world import HOME_EE_POSITION, HOME_EE_YAW, WORKSPACE

# Object origins are kept this far inside the workspace's (x, y) edges when a rotation or a
# perturbation would carry them out (the tasks sample with margins of 2 to 5 cm).
OBJECT_MARGIN = 0.02
# The gripper's (x, y) start is kept this far inside the workspace.
GRIPPER_MARGIN = 0.01
# Servoing the arm to a new starting point: at most this many seconds of physics, stopping once
# the hand is this close (the arm moves at the height of its home pose, above every object).
START_SERVO_SECONDS = 2.0
START_SERVO_TOLERANCE = 0.001
START_SERVO_ROUNDS = 3


def object_bodies(sim: ManipulationEnv) -> list[int]:
    """Every body of the task: all bodies but the robot and the table."""
    world, cid = sim.world, sim.world.client
    ids = [p.getBodyUniqueId(i, physicsClientId=cid) for i in range(p.getNumBodies(physicsClientId=cid))]
    return [b for b in ids if b not in (world.robot, world.table)]


def workspace_centre_xy() -> np.ndarray:
    return WORKSPACE.center[:2].copy()


def rotate_xy(xy, angle: float, centre) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    d = np.asarray(xy, dtype=np.float64) - centre
    return centre + np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


def clip_xy(xy, margin: float) -> np.ndarray:
    return np.clip(xy, WORKSPACE.low_array[:2] + margin, WORKSPACE.high_array[:2] - margin)


def move_bodies(sim: ManipulationEnv, angle: float = 0.0, offsets: np.ndarray | None = None) -> bool:
    """Rotate every object body by ``angle`` about the workspace centre's vertical axis (its yaw
    turns by the same angle), then shift each by its row of ``offsets`` (K, 2); origins that would
    leave the workspace are clipped back in. Returns whether any was clipped."""
    centre = workspace_centre_xy()
    clipped = False
    for k, body in enumerate(object_bodies(sim)):
        pose = sim.world.body_pose(body)
        xy = rotate_xy(pose[:2], angle, centre)
        if offsets is not None:
            xy = xy + offsets[k]
        inside = clip_xy(xy, OBJECT_MARGIN)
        clipped |= bool(np.any(np.abs(inside - xy) > 1e-12))
        # Only the yaw of an upright body changes: compose the rotation about z with the old quaternion.
        q = _quat_multiply(yaw_quat_xyzw(angle), pose[3:])
        sim.world.set_body_pose(body, np.concatenate([inside, pose[2:3], q]))
    return clipped


def _quat_multiply(a, b) -> np.ndarray:
    """Hamilton product of two scalar-last quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def gripper_start(angle: float, offset) -> tuple[np.ndarray, float]:
    """The hand's starting (x, y, z) and yaw: home, rotated about the workspace centre by ``angle``
    and shifted by ``offset`` (2,), kept inside the workspace. A parallel gripper looks the same
    turned by 180 degrees, so its yaw is taken modulo pi (within reach of the wrist)."""
    xy = rotate_xy(HOME_EE_POSITION[:2], angle, workspace_centre_xy()) + np.asarray(offset, dtype=np.float64)
    yaw = float(wrap_angle(2.0 * (HOME_EE_YAW + angle)) / 2.0)
    return np.array([*clip_xy(xy, GRIPPER_MARGIN), HOME_EE_POSITION[2]]), yaw


def servo_gripper(sim: ManipulationEnv, position, yaw: float) -> float:
    """Drive the hand to ``position``/``yaw`` with the simulation's own controller (open gripper,
    above the objects) and make that pose the one zero commands hold. Returns the remaining error (m).

    The hand can settle off a fixed target (at the workspace's far corners, where the inverse
    kinematics cannot reach it exactly, see ``PandaWorld._inverse_kinematics``), so the target is
    corrected by the remaining error and servoed again, up to ``START_SERVO_ROUNDS`` times."""
    world = sim.world
    position = np.asarray(position, dtype=np.float64)
    target = position.copy()
    substeps = max(1, sim.substeps)
    # Setting up a scene is not a command: the per-step motion limits would cut the servo short.
    limits, world.limits = world.limits, None
    try:
        return _servo(sim, world, position, target, yaw, substeps)
    finally:
        world.limits = limits


def _servo(sim, world, position, target, yaw, substeps) -> float:
    for _ in range(START_SERVO_ROUNDS):
        world.set_ee_target(target, yaw)
        for _ in range(int(START_SERVO_SECONDS * world.physics_hz) // substeps):
            before = world.ee_pose()[:3]
            world.step(substeps)
            if np.linalg.norm(world.ee_pose()[:3] - before) < 1e-4:   # at rest
                break
        error = position - world.ee_pose()[:3]
        if np.linalg.norm(error) < START_SERVO_TOLERANCE:
            break
        target = target + error
    world.hold_measured_pose()
    return float(np.linalg.norm(world.ee_pose()[:3] - position))


def settle(sim: ManipulationEnv) -> None:
    """One control period of physics, as ``ManipulationEnv.reset`` does after placing a scene."""
    sim.world.step(sim.substeps)


# ------------------------------------------------------------------------------ the scene's yaw


def scene_yaw(sim: ManipulationEnv) -> float:
    """The direction that orients a task's scene about the vertical axis, in [-pi, pi).

    The objects themselves say little (a cube looks the same turned by 90 degrees), so this is the
    direction that matters for solving the task: reach (with or without obstacles) and
    block_picking the bearing of the target / block seen from the hand, block_pushing the push
    direction (block to goal), drawer_opening the pull direction (the handle's yaw). A rotation of
    the whole scene about the hand turns it by the rotation's angle."""
    name = sim.task.name
    poses = sim.task.object_poses(sim.world)
    if name in ("reach", "reach_obstacles", "block_picking"):
        d = poses[0, :2] - sim.world.ee_pose()[:2]
    elif name == "block_pushing":
        d = poses[1, :2] - poses[0, :2]
    elif name == "drawer_opening":
        return float(wrap_angle(yaw_of_quat_xyzw(poses[0, 3:])))
    else:
        raise ValueError(f"no scene yaw defined for task {name!r}")
    return float(math.atan2(d[1], d[0]))


def in_sector(angle: float, start: float, width: float) -> bool:
    """Whether ``angle`` lies in the sector ``[start, start + width)`` (radians, any wrap)."""
    return float((angle - start) % (2 * math.pi)) < width


__all__ = ["object_bodies", "move_bodies", "gripper_start", "servo_gripper", "settle", "scene_yaw",
           "in_sector", "rotate_xy", "workspace_centre_xy"]
