"""The Panda on its table: one PyBullet client, the table, the robot and its low-level controllers.

Frames: everything is expressed in ``base_link``, the Panda's base frame, which is also the PyBullet
world frame. The robot stands at the origin on a table whose top surface is the plane z = 0.

Task objects are not created here; tasks add them through :meth:`PandaWorld.create_box`,
:meth:`PandaWorld.load_urdf` and friends. Every PyBullet call passes ``physicsClientId`` so that
several worlds can live in one process (for example one per test, or one per evaluation worker).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pybullet_data

from equimanip.action import MAX_STEP_M, PANDA_FINGER_JOINTS, PANDA_FINGER_OPEN_POSITION, gripper_aperture
from equimanip.geometry import down_quat_xyzw, wrap_angle, yaw_of_quat_xyzw

# The cell's limits, defined once: the workspace box of the grasp point, and the gripper's yaw
# limit (3 pi / 4: what the wrist reaches; a parallel gripper needs only +-pi/2).
from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW, YAW_LIMIT
from equimanip.sim.bullet import p

PANDA_URDF = os.path.join(pybullet_data.getDataPath(), "franka_panda", "panda.urdf")

ARM_JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = PANDA_FINGER_JOINTS
JOINT_NAMES = ARM_JOINT_NAMES + FINGER_JOINT_NAMES
EE_LINK_NAME = "panda_grasptarget"

# Maximum finger joint position: a fully open gripper has 2 x 0.04 m between the finger pads.
FINGER_OPEN_POSITION = PANDA_FINGER_OPEN_POSITION
# Torque limits of the real Panda for the arm joints (N m) and a grasp force per finger (N) that
# holds a 100 g block with plenty of margin without crushing it through the solver.
ARM_MAX_FORCES = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
FINGER_MAX_FORCE = 20.0
# Position control of the arm joints. With PyBullet's default gain (0.1) a 4 cm step fell short by
# 3.4-8.7 mm within one 0.1 s control period, and unevenly (worst towards the base), so a turned
# scene was not carried out as the turned copy of the plain one. A higher gain alone overshoots in
# sustained or tilted motion (the joints build up speed: 11 mm on the fourth step down at 0.2, and
# 6 cm single steps after a tilting joint trajectory at 0.15). So the gain is raised and each
# joint's speed is capped at JOINT_SPEED_MARGIN times the speed that covers its planned change in
# one control period (never below JOINT_SPEED_FLOOR): no joint travels much further than the path
# that limit_motion checked. With the re-aimed inverse kinematics below, 4 cm steps miss by
# 1.8-2.1 mm in every horizontal direction and 2.2-2.9 mm vertically (`equimanip bench tracking`).
# Gain 0.3 tracked to 0.8-1.1 mm but full-speed reversals then carried the hand 5.5 mm out of the
# box and 66.6 mm in one step (`equimanip bench motion`); a margin of 1.2 let test_motion_limits
# find a 6.03 cm step, and a margin of 1.0 lags into 15 mm excursions.
ARM_POSITION_GAIN = 0.2
JOINT_SPEED_MARGIN = 1.1
JOINT_SPEED_FLOOR = 0.02  # rad/s: enough to take up gravity sag while holding
# Which arm control a result was measured with (recorded by training runs and in the results
# files): 1 = PyBullet's default gain and one inverse-kinematics solve (until 2026-11-25);
# 2 = gain 0.3 with the speed cap and the re-aimed inverse kinematics (revisions 49873e6 to
# 470fd70 of 2026-11-26); 3 = the settings here.
ARM_CONTROL_VERSION = 3

# Largest joint change (rad) per control step for a joint command, so that the first-order
# prediction of the hand's motion that slides it along the workspace walls (slide_joint_step)
# stays within millimetres.
MAX_LINEARIZED_JOINT_STEP = 0.1
# Bisection steps when a move is shortened to its feasible part: 2^-10 of the move.
_LIMIT_BISECTIONS = 10
# Inverse kinematics can miss its target by a fraction of a millimetre after re-aiming (more at
# the workspace's far corners, see _inverse_kinematics): a target on a wall of the box comes out
# just beyond it. Joint targets may lie this far outside the box.
TARGET_TOLERANCE_M = 0.001
# Re-aiming of the inverse kinematics (PandaWorld._inverse_kinematics): at most this many extra
# solves, while the solution misses the target by more than the tolerance on some axis.
IK_AIM_ROUNDS = 2
IK_AIM_TOLERANCE_M = 0.0002
# Largest change of each arm joint's target per control step (rad) under the motion limits. The
# position-controlled joints move towards a new target at very different rates (87 N m shoulder
# and elbow, 12 N m wrist): a large reconfiguration that inverse kinematics sometimes asks for near
# the workspace's edges (0.45 rad on joints 3 and 5 at once) leaves the linear joint-space path
# that limit_motion checks, and swung the hand 6 cm in one step. Expert episodes move joints 1-6
# at most 0.23 rad per step; joint 7 turns the hand about its own axis (pi/8 of yaw and the lag
# behind it: up to 0.5 rad).
MAX_JOINT_STEP = np.array([0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.6])

# A delta smaller than this is "no motion" on that axis: the axis keeps its previous target
# instead of being re-anchored on the measured pose, which sags a little under gravity.
POSITION_DEADBAND = 1e-4  # m
YAW_DEADBAND = 1e-3  # rad

# Elbow-up configuration close to the centre of the workspace with the gripper pointing down.
# Used as the null-space rest pose of the inverse kinematics and as the start of the home search.
_NEUTRAL_ARM_POSITIONS = np.array([0.0, 0.41, 0.0, -1.85, 0.0, 2.26, math.pi / 4])
# At the neutral pose the hand's yaw is 0 when joint 7 sits at pi/4 (the hand is mounted at 45
# degrees on the flange); turning joint 1 or joint 7 turns the hand in opposite senses.
_WRIST_YAW_OFFSET = math.pi / 4

HOME_EE_POSITION = np.array([0.45, 0.0, 0.25])
HOME_EE_YAW = 0.0


@dataclass(frozen=True)
class Workspace:
    """Axis-aligned box (metres, base_link) that the grasp point is kept in: by default the cell's
    box of ``equimanip.safety`` (WORKSPACE_LOW/HIGH), which the controllers' safety layer uses too.

    The lower z leaves the fingertips (1.1 cm below ``panda_grasptarget``) a few millimetres above
    the table so that the gripper never digs into it.
    """

    low: tuple[float, float, float] = WORKSPACE_LOW
    high: tuple[float, float, float] = WORKSPACE_HIGH

    @property
    def low_array(self) -> np.ndarray:
        return np.array(self.low)

    @property
    def high_array(self) -> np.ndarray:
        return np.array(self.high)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.low_array + self.high_array)

    def clip(self, position) -> np.ndarray:
        return np.clip(np.asarray(position, dtype=np.float64), self.low, self.high)


WORKSPACE = Workspace()


@dataclass(frozen=True)
class MotionLimits:
    """What every command is held to while ``enforce_limits`` is on, for the joint targets the arm
    is given: the grasp point stays in ``workspace``, moves at most ``max_step`` metres along each
    axis per control step, and the gripper's approach axis stays within ``max_tilt`` radians of
    straight down. The arm is a top-down manipulator: the observations, the experts and the
    learned policies all assume a gripper that points down, and a tilted hand sweeps its fingers
    through the table. The targets are checked with exact forward kinematics at ``path_samples``
    points along the joint-space move (:meth:`PandaWorld.limit_motion`); the measured pose
    follows them within the tracking error of the position-controlled arm
    (test/test_motion_limits.py measures it)."""

    workspace: Workspace = WORKSPACE
    max_step: float = MAX_STEP_M
    max_tilt: float = math.radians(10.0)
    path_samples: int = 4


MOTION_LIMITS = MotionLimits()


def tilt_of_quat_xyzw(q) -> float:
    """Angle (rad) between the gripper's approach axis (the end effector's z) and straight down."""
    x, y, z, w = (float(v) for v in q)
    # The z axis's vertical component is R[2, 2] = 1 - 2 (x^2 + y^2) / |q|^2; down is -1.
    cos_tilt = 2.0 * (x * x + y * y) / (x * x + y * y + z * z + w * w) - 1.0
    return math.acos(min(1.0, max(-1.0, cos_tilt)))


# The table: a box whose top face is z = 0, large enough to hold the robot base, the workspace and
# objects pushed a little beyond it.
TABLE_HALF_EXTENTS = (0.55, 0.6, 0.025)
TABLE_CENTER = (0.35, 0.0, -TABLE_HALF_EXTENTS[2])
TABLE_RGBA = (0.78, 0.72, 0.62, 1.0)


def aperture_from_finger_positions(finger_positions) -> float:
    """Gripper aperture in [0, 1] (0 closed, 1 fully open) from the two finger joint positions."""
    return gripper_aperture(finger_positions, FINGER_OPEN_POSITION)


class _KinematicModel:
    """Forward kinematics of the arm in configurations it is not in: a second PyBullet client
    holding only the robot, posed on request (the simulated arm cannot be moved to ask, and
    PyBullet computes link poses only for a body's current joint positions). About 12 us a pose."""

    def __init__(self, arm_joint_indices, ee_link: int):
        self.client = p.connect(p.DIRECT)
        self.robot = p.loadURDF(PANDA_URDF, useFixedBase=True, physicsClientId=self.client)
        self._arm_indices = list(arm_joint_indices)
        self._ee_link = ee_link

    def ee_pose(self, arm_positions) -> np.ndarray:
        """Pose7 of the grasp point with the arm joints at ``arm_positions`` (7)."""
        for joint, q in zip(self._arm_indices, arm_positions):
            p.resetJointState(self.robot, joint, float(q), 0.0, physicsClientId=self.client)
        state = p.getLinkState(self.robot, self._ee_link, computeForwardKinematics=True,
                               physicsClientId=self.client)
        return np.array(state[4] + state[5])

    def close(self) -> None:
        if self.client is not None:
            p.disconnect(physicsClientId=self.client)
            self.client = None


class PandaWorld:
    """A PyBullet client holding the table and a fixed-base Panda, with EE and joint controllers.

    The arm is position-controlled. :meth:`move_ee` turns a delta command into an end-effector
    target (one inverse-kinematics solve per call), :meth:`set_arm_targets` takes joint targets
    directly and :meth:`command_gripper` sets the finger targets. Nothing moves until
    :meth:`step` runs the physics.

    ``limits`` (a :class:`MotionLimits`, or None for a raw arm that executes what it is given)
    applies to every end-effector command and, through :meth:`limit_motion`, to the joint
    commands of the environment.
    """

    def __init__(self, physics_hz: float = 240.0, gui: bool = False, control_period: float = 0.1):
        self.physics_hz = float(physics_hz)
        # Seconds a joint target has to be reached in (the joint speed cap of set_arm_targets);
        # ManipulationEnv keeps it equal to its control period.
        self.control_period = float(control_period)
        self.client = p.connect(p.GUI if gui else p.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not connect to PyBullet (only one GUI client per process)")
        self._connected = True
        cid = self.client
        p.setGravity(0.0, 0.0, -9.81, physicsClientId=cid)
        p.setTimeStep(1.0 / self.physics_hz, physicsClientId=cid)
        if gui:
            p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=cid)

        self.table = self.create_box(TABLE_HALF_EXTENTS, TABLE_CENTER, mass=0.0, rgba=TABLE_RGBA)
        self.robot = p.loadURDF(PANDA_URDF, useFixedBase=True, physicsClientId=cid)
        self._check_robot_model()
        for finger in self._finger_indices:
            p.changeDynamics(self.robot, finger, lateralFriction=1.0, spinningFriction=0.001, physicsClientId=cid)

        limits = [p.getJointInfo(self.robot, j, physicsClientId=cid)[8:10] for j in self._joint_indices]
        self.joint_lower_limits = np.array([lo for lo, _ in limits])
        self.joint_upper_limits = np.array([hi for _, hi in limits])
        self.joint_max_velocities = np.array(
            [p.getJointInfo(self.robot, j, physicsClientId=cid)[11] for j in self._joint_indices]
        )
        self._ik_joint_ranges = (self.joint_upper_limits - self.joint_lower_limits).tolist()
        self._kinematics = _KinematicModel(self._arm_indices, self.ee_link)
        self.limits: MotionLimits | None = MOTION_LIMITS

        self._target_position = HOME_EE_POSITION.copy()
        self._target_yaw = HOME_EE_YAW
        self.home_arm_positions = self._solve_home_configuration()
        self.reset_robot()

    # ----------------------------------------------------------------------------------- setup
    def _check_robot_model(self) -> None:
        """Find the joints and the EE link by name, so a different URDF fails loudly here."""
        cid = self.client
        names = {}
        links = {}
        for j in range(p.getNumJoints(self.robot, physicsClientId=cid)):
            info = p.getJointInfo(self.robot, j, physicsClientId=cid)
            names[info[1].decode()] = j
            links[info[12].decode()] = j
        missing = [n for n in JOINT_NAMES if n not in names] + ([EE_LINK_NAME] if EE_LINK_NAME not in links else [])
        if missing:
            raise RuntimeError(f"{PANDA_URDF} lacks {missing}")
        self._arm_indices = [names[n] for n in ARM_JOINT_NAMES]
        self._finger_indices = [names[n] for n in FINGER_JOINT_NAMES]
        self._joint_indices = self._arm_indices + self._finger_indices
        self.ee_link = links[EE_LINK_NAME]
        # calculateInverseKinematics takes and returns one value per movable joint in index order;
        # the limit and rest-pose vectors below are in joint_states() order, so the two must agree.
        movable = [j for j in range(p.getNumJoints(self.robot, physicsClientId=cid))
                   if p.getJointInfo(self.robot, j, physicsClientId=cid)[2] != p.JOINT_FIXED]
        if movable != self._joint_indices:
            raise RuntimeError(f"{PANDA_URDF}: expected movable joints {self._joint_indices}, got {movable}")

    def _solve_home_configuration(self) -> np.ndarray:
        """Joint positions that put the EE at the home pose (IK iterated on a reset arm)."""
        q = _NEUTRAL_ARM_POSITIONS.copy()
        for _ in range(20):
            self._reset_arm(q)
            q = self._inverse_kinematics(HOME_EE_POSITION, HOME_EE_YAW)
        return q

    def _reset_arm(self, arm_positions) -> None:
        for joint, q in zip(self._arm_indices, arm_positions):
            p.resetJointState(self.robot, joint, float(q), 0.0, physicsClientId=self.client)

    # ----------------------------------------------------------------------------------- bodies
    def create_box(self, half_extents, position, mass: float, rgba, yaw: float = 0.0,
                   collision: bool = True, lateral_friction: float | None = None) -> int:
        """A box body; ``collision=False`` makes a visual-only marker (seen by cameras, not felt)."""
        cid = self.client
        visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=cid)
        shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half_extents, physicsClientId=cid) if collision else -1
        body = p.createMultiBody(mass if collision else 0.0, shape, visual, basePosition=position,
                                 baseOrientation=p.getQuaternionFromEuler((0.0, 0.0, yaw)), physicsClientId=cid)
        if lateral_friction is not None:
            p.changeDynamics(body, -1, lateralFriction=lateral_friction, physicsClientId=cid)
        return body

    def create_sphere_marker(self, radius: float, position, rgba) -> int:
        """A visual-only sphere (no collision shape)."""
        cid = self.client
        visual = p.createVisualShape(p.GEOM_SPHERE, radius=radius, rgbaColor=rgba, physicsClientId=cid)
        return p.createMultiBody(0.0, -1, visual, basePosition=position, physicsClientId=cid)

    def load_urdf(self, path: str, fixed_base: bool = False) -> int:
        return p.loadURDF(path, useFixedBase=fixed_base, physicsClientId=self.client)

    def body_pose(self, body: int) -> np.ndarray:
        """Pose7 of a body's base. PyBullet reports (and teleports) a base by its inertial frame,
        so the bodies made here and in the task assets keep that frame at the link origin."""
        position, orientation = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        return np.array(position + orientation)

    def link_pose(self, body: int, link: int) -> np.ndarray:
        state = p.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=self.client)
        return np.array(state[4] + state[5])

    def set_body_pose(self, body: int, pose7) -> None:
        """Teleport a body (velocities zeroed)."""
        pose7 = np.asarray(pose7, dtype=np.float64)
        cid = self.client
        p.resetBasePositionAndOrientation(body, pose7[:3].tolist(), pose7[3:].tolist(), physicsClientId=cid)
        p.resetBaseVelocity(body, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], physicsClientId=cid)

    # ----------------------------------------------------------------------------------- state
    def save_state(self) -> int:
        """Snapshot of every body's state and the contact cache (see :meth:`restore_state`)."""
        return p.saveState(physicsClientId=self.client)

    def restore_state(self, state_id: int) -> None:
        """Go back to a snapshot, forgetting every contact made since.

        Restoring before every reset makes an episode independent of the episodes before it.
        ``restoreState`` alone is not enough: it leaves the contact manifolds that formed after
        the snapshot in place, and their cached impulses warm-start the solver (measured: the
        same seed then drifts by 0.2 mm within ten steps depending on the previous episode).
        """
        self._drop_contacts()
        p.restoreState(stateId=state_id, physicsClientId=self.client)

    def _drop_contacts(self) -> None:
        """Move every body far away from all others and run collision detection: the broadphase
        then removes every overlapping pair, and with it every contact manifold."""
        cid = self.client
        for i in range(p.getNumBodies(physicsClientId=cid)):
            body = p.getBodyUniqueId(i, physicsClientId=cid)
            p.resetBasePositionAndOrientation(body, [1000.0 + 10.0 * i, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0],
                                              physicsClientId=cid)
        p.performCollisionDetection(physicsClientId=cid)

    def ee_pose(self) -> np.ndarray:
        """Measured pose7 of ``panda_grasptarget`` in base_link."""
        return self.link_pose(self.robot, self.ee_link)

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities of the 7 arm joints then the 2 finger joints."""
        states = p.getJointStates(self.robot, self._joint_indices, physicsClientId=self.client)
        positions = np.array([s[0] for s in states])
        velocities = np.array([s[1] for s in states])
        return positions, velocities

    def ee_linear_jacobian(self, joint_positions) -> np.ndarray:
        """3 x 7 Jacobian of the end-effector position with respect to the arm joints at
        ``joint_positions`` (9: arm then fingers)."""
        q = np.asarray(joint_positions, dtype=np.float64).tolist()
        zeros = [0.0] * len(q)
        linear, _ = p.calculateJacobian(self.robot, self.ee_link, [0.0, 0.0, 0.0], q, zeros, zeros,
                                        physicsClientId=self.client)
        return np.asarray(linear)[:, :7]

    def slide_joint_step(self, joint_positions, arm_target, max_step: float) -> tuple[np.ndarray, bool]:
        """Adjust the arm's move from ``joint_positions`` (9) towards ``arm_target`` (7) so that,
        to first order, the end effector moves at most ``max_step`` metres along each axis and
        stays in the workspace box. Only the end effector's displacement is changed (through the
        pseudo-inverse of the position Jacobian), so a move along a workspace wall slides along
        it instead of stopping; :meth:`limit_motion` then holds the result to the limits exactly.
        Returns (target, whether it was changed)."""
        current = np.asarray(joint_positions, dtype=np.float64)[:7]
        dq = np.asarray(arm_target, dtype=np.float64) - current
        J = self.ee_linear_jacobian(joint_positions)
        dp = J @ dq                                           # predicted EE displacement
        position = self.ee_pose()[:3]
        allowed = np.clip(dp, -max_step, max_step)
        # Inside the box after the move; a point already outside may only come back.
        allowed = np.clip(position + allowed, np.minimum(WORKSPACE.low_array, position),
                          np.maximum(WORKSPACE.high_array, position)) - position
        changed = not np.allclose(allowed, dp, atol=1e-9)
        if changed:
            dq = dq + np.linalg.pinv(J) @ (allowed - dp)
        # The prediction is first order: keep each joint's step small enough for it to hold
        # (a 0.1 rad turn of the shoulder is off by about 4 mm at the hand).
        largest = float(np.max(np.abs(dq)))
        if largest > MAX_LINEARIZED_JOINT_STEP:
            dq = dq * (MAX_LINEARIZED_JOINT_STEP / largest)
            changed = True
        return current + dq, changed

    def forward_kinematics(self, arm_positions) -> np.ndarray:
        """Pose7 of the grasp point if the arm joints were at ``arm_positions`` (7)."""
        return self._kinematics.ee_pose(arm_positions)

    def limit_motion(self, arm_target) -> tuple[np.ndarray, bool]:
        """The part of the move from the arm's current configuration towards ``arm_target`` (7)
        that keeps ``self.limits``, checked with exact forward kinematics at ``path_samples``
        points along the joint-space move, not only at its end: the grasp point stays in the
        workspace box, moves at most ``max_step`` along each axis from where it is, and the
        gripper tilts at most ``max_tilt`` from pointing down. A grasp point already outside the
        box (pushed there, or left there while the limits were off) may only come back, and an
        arm tilted beyond the limit may only straighten. The whole move is returned when it is
        feasible (the common case costs ``path_samples`` poses); otherwise its largest feasible
        fraction, found by bisection. Returns (target, whether it was shortened)."""
        limits = self.limits
        target = np.asarray(arm_target, dtype=np.float64)
        if limits is None:
            return target, False
        start = self.joint_states()[0][:7]
        move = target - start
        # Small joint steps keep the arm on the joint-space path checked below.
        largest = float(np.max(np.abs(move) / MAX_JOINT_STEP))
        if largest > 1.0:
            move = move / largest
        pose = self.forward_kinematics(start)  # the measured pose
        position = pose[:3]
        low = np.minimum(limits.workspace.low_array - TARGET_TOLERANCE_M, position)
        high = np.maximum(limits.workspace.high_array + TARGET_TOLERANCE_M, position)
        max_tilt = max(limits.max_tilt, tilt_of_quat_xyzw(pose[3:]))
        samples = np.arange(1, limits.path_samples + 1) / limits.path_samples

        def feasible(fraction: float) -> bool:
            for s in samples * fraction:
                reached = self.forward_kinematics(start + s * move)
                if (np.any(reached[:3] < low) or np.any(reached[:3] > high)
                        or np.any(np.abs(reached[:3] - position) > limits.max_step)
                        or tilt_of_quat_xyzw(reached[3:]) > max_tilt):
                    return False
            return True

        if feasible(1.0):
            return (target, False) if largest <= 1.0 else (start + move, True)
        good, bad = 0.0, 1.0  # staying put is always feasible
        for _ in range(_LIMIT_BISECTIONS):
            middle = 0.5 * (good + bad)
            if feasible(middle):
                good = middle
            else:
                bad = middle
        return start + good * move, True

    # ----------------------------------------------------------------------------------- control
    def reset_robot(self, arm_positions=None, aperture: float = 1.0) -> None:
        """Teleport the arm (home by default) and the fingers, and hold them there."""
        arm_positions = self.home_arm_positions if arm_positions is None else np.asarray(arm_positions)
        self._reset_arm(arm_positions)
        finger = FINGER_OPEN_POSITION * float(np.clip(aperture, 0.0, 1.0))
        for joint in self._finger_indices:
            p.resetJointState(self.robot, joint, finger, 0.0, physicsClientId=self.client)
        self.set_arm_targets(arm_positions)
        self.command_gripper(aperture)
        self.hold_measured_pose()

    def hold_measured_pose(self) -> None:
        """Make the measured EE pose the target that zero-delta commands hold."""
        pose = self.ee_pose()
        self._target_position = pose[:3]
        self._target_yaw = yaw_of_quat_xyzw(pose[3:])

    def command_gripper(self, aperture: float) -> None:
        """Finger targets for an aperture in [0, 1] (0 closed, 1 = 0.04 m per finger)."""
        finger = FINGER_OPEN_POSITION * float(np.clip(aperture, 0.0, 1.0))
        p.setJointMotorControlArray(self.robot, self._finger_indices, p.POSITION_CONTROL,
                                    targetPositions=[finger, finger], forces=[FINGER_MAX_FORCE] * 2,
                                    physicsClientId=self.client)

    def set_arm_targets(self, arm_positions) -> None:
        """Joint position targets for the 7 arm joints (no clipping: callers clip), reached within
        about one control period: each joint's speed is capped in proportion to its change (see
        ARM_POSITION_GAIN)."""
        target = np.asarray(arm_positions, dtype=np.float64)
        current = self.joint_states()[0][:7]
        max_speed = np.maximum(JOINT_SPEED_MARGIN * np.abs(target - current) / self.control_period,
                               JOINT_SPEED_FLOOR)
        for index, joint in enumerate(self._arm_indices):  # maxVelocity exists only per joint
            p.setJointMotorControl2(self.robot, joint, p.POSITION_CONTROL, targetPosition=float(target[index]),
                                    force=float(ARM_MAX_FORCES[index]), positionGain=ARM_POSITION_GAIN,
                                    maxVelocity=float(max_speed[index]), physicsClientId=self.client)

    def move_ee(self, delta_position, delta_yaw: float) -> None:
        """Move the EE target by a delta: target = measured + delta on the axes that move.

        Re-anchoring on the measured pose keeps a blocked arm from winding up a target far away;
        axes whose delta is (nearly) zero keep their previous target so that holding still does
        not follow the slow gravity sag of the measured pose.
        """
        delta_position = np.asarray(delta_position, dtype=np.float64)
        moving = np.abs(delta_position) > POSITION_DEADBAND
        turning = abs(delta_yaw) > YAW_DEADBAND
        if not moving.any() and not turning:
            return  # the joint targets of the held pose are still applied
        pose = self.ee_pose()
        position = np.where(moving, pose[:3] + delta_position, self._target_position)
        yaw = wrap_angle(yaw_of_quat_xyzw(pose[3:]) + delta_yaw) if turning else self._target_yaw
        self.set_ee_target(position, yaw)

    def set_ee_target(self, position, yaw: float) -> None:
        """Servo the EE to a pose with the gripper down, within the yaw limit and, unless the
        limits are off, the workspace box and :meth:`limit_motion`: the joint targets of the
        inverse-kinematics solution are shortened where reaching them would break a limit (at
        the workspace's far corners the solution can miss the pose by centimetres and tilt the
        hand; from a tilted hand it can swing the arm through a large arc)."""
        position = np.asarray(position, dtype=np.float64)
        yaw = float(np.clip(wrap_angle(yaw), -YAW_LIMIT, YAW_LIMIT))
        if self.limits is None:
            arm = self._inverse_kinematics(position, yaw)
        else:
            position = self.limits.workspace.clip(position)
            arm = self._inverse_kinematics(position, yaw)
        if not np.all(np.isfinite(arm)):
            return  # no solution for an absurd target (a raw arm told to go 1e300 m away): hold
        self._target_position, self._target_yaw = position, yaw
        arm, shortened = self.limit_motion(arm)
        if shortened:  # later moves along other axes start from where the arm will really be
            reached = self.forward_kinematics(arm)
            self._target_position, self._target_yaw = reached[:3], yaw_of_quat_xyzw(reached[3:])
        self.set_arm_targets(arm)

    def _inverse_kinematics(self, position, yaw: float) -> np.ndarray:
        """Arm joint positions for a downward EE pose: :meth:`_solve_inverse_kinematics`, aimed
        again past the target by its miss (at most IK_AIM_ROUNDS times) while the solution's
        forward kinematics misses the target by more than IK_AIM_TOLERANCE_M.

        A single solve misses by up to 6 mm along x (its pull towards the rest pose), which made
        steps towards and away from the base fall short where sideways ones did not. Re-aiming
        also keeps a target on a workspace wall from coming out beyond it, where limit_motion
        would hold the arm instead of letting it slide along. At unreachable targets (far top
        corners) the miss remains and limit_motion shortens the move.
        """
        position = np.asarray(position, dtype=np.float64)
        arm = self._solve_inverse_kinematics(position, yaw)
        aim = position
        for _ in range(IK_AIM_ROUNDS):
            miss = self.forward_kinematics(arm)[:3] - position
            if not np.all(np.isfinite(miss)) or np.max(np.abs(miss)) <= IK_AIM_TOLERANCE_M:
                break
            aim = aim - miss
            arm = self._solve_inverse_kinematics(aim, yaw)
        return arm

    def _solve_inverse_kinematics(self, position, yaw: float) -> np.ndarray:
        """One inverse-kinematics solve for a downward EE pose from the current configuration.

        The null-space rest pose keeps the elbow up; its first and last joints point the arm at
        the target and pre-turn the wrist to the requested yaw, which keeps the solver away from
        wrist flips. The pull towards the rest pose costs some accuracy (see _inverse_kinematics).
        """
        rest = np.concatenate([_NEUTRAL_ARM_POSITIONS, [0.0, 0.0]])
        base_heading = math.atan2(position[1], position[0])
        rest[0] = base_heading
        rest[6] = np.clip(_WRIST_YAW_OFFSET + base_heading - yaw,
                          self.joint_lower_limits[6], self.joint_upper_limits[6])
        solution = p.calculateInverseKinematics(
            self.robot, self.ee_link, list(position), down_quat_xyzw(yaw).tolist(),
            lowerLimits=self.joint_lower_limits.tolist(), upperLimits=self.joint_upper_limits.tolist(),
            jointRanges=self._ik_joint_ranges, restPoses=rest.tolist(),
            maxNumIterations=20, residualThreshold=1e-5, physicsClientId=self.client)
        arm = np.asarray(solution[:7])
        return np.clip(arm, self.joint_lower_limits[:7], self.joint_upper_limits[:7])

    def step(self, substeps: int) -> None:
        """Advance the physics by ``substeps`` time steps of 1 / physics_hz."""
        cid = self.client
        for _ in range(substeps):
            p.stepSimulation(physicsClientId=cid)

    def close(self) -> None:
        if self._connected:
            p.disconnect(physicsClientId=self.client)
            self._kinematics.close()
            self._connected = False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the pybullet module may already be gone
            pass
