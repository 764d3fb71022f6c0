"""Where a controller's goal comes from: one helper for ``mppi_node`` and ``policy_node``.

``goal_source`` (fixed at start-up):

* ``topic``: the newest ``~/goal`` (geometry_msgs/PoseStamped in the base frame: position and
  yaw), refused with a reason when it is in another frame, not finite, or outside the workspace box;
* ``object_poses``: row ``goal_object`` of the simulated cell's ``/sim_node/object_poses``, the
  poses of the state's own instant (within ``sync_slop``) or the newest older ones, plus
  ``goal_offset``; the poses of an earlier episode are dropped by :meth:`GoalInput.reset`;
* ``nearest_object`` (where the node offers it): the top of the object nearest the gripper in the
  observation's object-centric state, plus ``goal_offset``.

The node declares ``goal_params(...)`` among its parameters and builds a ``GoalInput`` after the
controller runtime has started (it needs the runtime's base frame, limits and input callback group).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Optional

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped

from equimanip.geometry import normalize_frame_id, yaw_of_quat_xyzw
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import ParamSpec
from equimanip.nodes.sync import EpisodeStart

GOAL_SOURCES = ("topic", "object_poses", "nearest_object")
# Longest wait (s) of a decision for the simulated cell's object poses of its own state (goal_at).
# They follow the state within milliseconds, but on a loaded 2-core machine the executor delivered
# them more than 50 ms late (3 times in 6 episodes): the decision then held the arm still for a
# step, and sync-mode runs stopped being repeatable. A cell that publishes no poses at all makes
# each decision wait this long and hold still, with the warning saying what it waits for.
POSES_WAIT_S = 1.0
_SOURCE_HELP = {
    "topic": "'topic' (~/goal, PoseStamped in the base frame)",
    "object_poses": "'object_poses' (row goal_object of /sim_node/object_poses: the simulated cell's ground truth)",
    "nearest_object": "'nearest_object' (the top of the object nearest the gripper in the object-centric state)",
}


def goal_params(sources=GOAL_SOURCES, default_source: str = "topic", default_object: int = 0,
                object_help: str = "") -> list[ParamSpec]:
    """The goal parameters of a node that takes its goal from ``sources``."""
    return [
        ParamSpec("goal_source", default_source, "Where the goal comes from: "
                  + ", ".join(_SOURCE_HELP[s] for s in sources) + ".", choices=tuple(sources), read_only=True),
        ParamSpec("goal_object", default_object, "Row of /sim_node/object_poses that is the goal (goal_source "
                  "object_poses)" + object_help + ".", min=min(default_object, 0), max=63),
        ParamSpec("goal_offset", [0.0, 0.0, 0.0], "Added to an object's position to make the goal (m, base frame).",
                  length=3),
    ]


class GoalInput:
    """The goal of a controller node, from the source its ``goal_source`` parameter names."""

    def __init__(self, node, default_row: Callable[[], Optional[int]] = lambda: None, planar: bool = False):
        """``default_row()``: the object-poses row used when ``goal_object`` is negative (the task's).
        ``planar``: the goal is a place on the table, so a ~/goal is checked against the workspace
        box in (x, y) only (its height is the table's, below the box the hand must stay in)."""
        self._node = node
        self._planar = planar
        self.source = node.get_parameter("goal_source").value
        self._default_row = default_row
        self.topic_goal: Optional[tuple[np.ndarray, float]] = None        # (position, yaw)
        self._object_poses: deque = deque(maxlen=20)      # (stamp_ns, (K, 7) poses) of this episode
        # Poses stamped at or before this came before the last reset: a decision on such a state
        # (the last state of the episode before, decided after the reset) waits for nothing.
        self._earlier_episode_ns = -1
        # The start event's stamp (None after a ~/reset): poses stamped before it are the old
        # scene's even when they arrive after the event.
        self._episode_start = EpisodeStart()
        # Inputs and decisions run on different threads; a decision may wait for its poses.
        self._lock = threading.Lock()
        self._poses_arrived = threading.Condition(self._lock)
        if self.source == "topic":
            node.create_subscription(PoseStamped, "~/goal", self._on_goal, qos.LATCHED,
                                     callback_group=node._inputs_group)
        elif self.source == "object_poses":
            node.create_subscription(PoseArray, topics.SIM_OBJECT_POSES, self._on_object_poses, qos.RELIABLE,
                                     callback_group=node._inputs_group)

    # ------------------------------------------------------------------ inputs
    def _on_goal(self, msg: PoseStamped) -> None:
        node = self._node
        frame = normalize_frame_id(msg.header.frame_id)
        if frame not in ("", normalize_frame_id(node.base_frame)):
            node._log.warning("goal-frame", f"ignored a goal in frame '{msg.header.frame_id}': it must be in "
                                            f"'{node.base_frame}'")
            return
        pose = msgs.pose7(msg.pose)
        norm = float(np.linalg.norm(pose[3:]))
        if not np.all(np.isfinite(pose)) or not norm > 1e-6:
            node._log.warning("goal-bad", f"ignored a goal with non-finite values or no orientation: {pose.tolist()}")
            return
        axes = 2 if self._planar else 3
        low, high = np.asarray(node.limits.workspace_low)[:axes], np.asarray(node.limits.workspace_high)[:axes]
        if np.any(pose[:axes] < low - 1e-3) or np.any(pose[:axes] > high + 1e-3):
            node._log.warning("goal-outside", f"ignored a goal at {np.round(pose[:3], 3).tolist()}: outside the "
                                              f"workspace box {list(low)} .. {list(high)}"
                                              + (" in (x, y)" if self._planar else ""))
            return
        self.topic_goal = (pose[:3].copy(), yaw_of_quat_xyzw(pose[3:] / norm))

    def _on_object_poses(self, msg: PoseArray) -> None:
        poses = msgs.poses7(msg)
        if np.all(np.isfinite(poses)):
            stamp_ns = msgs.nanoseconds(msg.header.stamp)
            with self._poses_arrived:
                if stamp_ns == self._earlier_episode_ns:     # the last state before the reset, again
                    return
                if self._episode_start.precedes(stamp_ns):   # the old scene's, late
                    return
                if stamp_ns < self._earlier_episode_ns:      # the cell's clock went back (a restart)
                    self._earlier_episode_ns = -1
                self._object_poses.append((stamp_ns, poses))
                self._poses_arrived.notify_all()

    def reset(self, start_ns: Optional[int] = None) -> None:
        """A new episode: the old scene's poses must not steer the new one. ``start_ns``: the
        start event's stamp; poses stamped at or after it are the new scene's (its first state's
        poses can come before the event is handled) and are kept. None (a ~/reset, which comes
        before the new scene): every pose is the old scene's. Poses stamped before ``start_ns``
        that arrive later (the old scene's last, behind the event) are dropped too."""
        with self._lock:
            kept = [(s, poses) for s, poses in self._object_poses if start_ns is not None and s >= start_ns]
            if start_ns is not None:        # (also right when the cell's clock restarted)
                self._earlier_episode_ns = start_ns - 1
            elif self._object_poses:
                newest = max(s for s, _ in self._object_poses)
                self._earlier_episode_ns = max(self._earlier_episode_ns, newest)
            self._episode_start.ns = start_ns
            self._object_poses.clear()
            self._object_poses.extend(kept)

    # ------------------------------------------------------------------ the goal
    def goal_at(self, stamp: float, objects=(), wait_s: float = POSES_WAIT_S
                ) -> Optional[tuple[np.ndarray, Optional[float]]]:
        """(goal position, goal yaw or None when the source has no yaw) for a state taken at ``stamp``
        (seconds) whose detected objects are ``objects``; None while there is none.

        ``object_poses``: the simulated cell publishes the poses just after the state they belong
        to, and they are not part of the synchronised inputs, so a decision on the first state of
        an episode can come before them; it waits up to ``wait_s`` for the poses of its own instant
        (call it from the decision thread, never from an executor's), except for a state from
        before the last :meth:`reset`, whose poses are gone."""
        node = self._node
        if self.source == "topic":
            return self.topic_goal
        offset = np.asarray(node.get_parameter("goal_offset").value, dtype=np.float64)
        if self.source == "object_poses":
            stamp_ns = round(stamp * 1e9)
            slop_ns = round(node.get_parameter("sync_slop").value * 1e9)
            with self._poses_arrived:
                if stamp_ns > self._earlier_episode_ns:
                    self._poses_arrived.wait_for(
                        lambda: any(abs(s - stamp_ns) <= slop_ns for s, _ in self._object_poses), timeout=wait_s)
                candidates = [(s, poses) for s, poses in self._object_poses if s <= stamp_ns + slop_ns]
            row = node.get_parameter("goal_object").value
            if row < 0:
                row = self._default_row()
            if row is None or not candidates or row >= len(candidates[-1][1]):
                return None
            return candidates[-1][1][row, :3] + offset, None
        if not objects:
            return None
        nearest = objects[0]
        return nearest.centroid + np.array([0.0, 0.0, nearest.extents[2] / 2.0]) + offset, None

    def from_earlier_episode(self, stamp: float) -> bool:
        """Whether a state taken at ``stamp`` came before the last :meth:`reset` (object_poses
        only): its decision is moot, the cell has moved on, and holding still needs no warning."""
        with self._lock:
            return self.source == "object_poses" and round(stamp * 1e9) <= self._earlier_episode_ns

    def wait_text(self) -> str:
        """What the node is waiting for while it has no goal."""
        return {"topic": "publish a PoseStamped on ~/goal", "object_poses": f"{topics.SIM_OBJECT_POSES} of this "
                "state's instant", "nearest_object": "no object detected in the cloud"}[self.source]

    def waiting_on_topic(self) -> bool:
        """True while the source is ~/goal and none has come: readiness says so."""
        return self.source == "topic" and self.topic_goal is None
