"""Pairing messages from several topics that describe the same instant.

A controller must act on a consistent set (the cloud, the joint states and the end-effector pose
of one instant), never on a new pose with an old cloud. The simulation stamps everything of one
control step with the same time, so there the sets match exactly (``slop = 0``). A real cell's
camera and arm are not synchronised: there a set may spread over ``slop`` seconds.

``TimeSync`` keeps the newest few messages per topic. Each arrival is the pivot: for every other
topic it takes the message nearest the pivot's stamp, and when all are within ``slop`` of it the
set fires and everything up to it is dropped (sets fire in stamp order, each message at most once).
A stamp more than ``jump_back`` seconds older than the last set means time jumped backwards: the
queues start over, as tf2 does.
message_filters does this on a ROS install, but it is not available as a pip wheel.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

from equimanip.nodes.msgs import seconds

# A stamp this much older than the newest one seen means the cell's clock went back (a restarted
# simulation or driver), not a late message: TimeSync starts over, and the controller and its goal
# stop taking such stamps for the episode before's.
JUMP_BACK_S = 1.0


class EpisodeStart:
    """The stamp of the current episode's start event, to tell the episode before's messages that
    arrive after it (stamped up to JUMP_BACK_S before it) from a restarted cell's (stamped far
    before it: its clock went back, so the start is forgotten and its messages are this episode's).
    Shared by the controller's states and its goal's object poses."""

    def __init__(self):
        self.ns: int | None = None      # None: no start event (or a restarted clock)

    def precedes(self, stamp_ns: int) -> bool:
        """Whether a message stamped ``stamp_ns`` is the episode before's."""
        if self.ns is None or stamp_ns >= self.ns:
            return False
        if self.ns - stamp_ns <= JUMP_BACK_S * 1e9:
            return True
        self.ns = None
        return False


class TimeSync:
    def __init__(self, topics: Sequence[str], callback: Callable[[dict], None], slop: float = 0.0,
                 queue_size: int = 10, jump_back: float = JUMP_BACK_S):
        if slop < 0:
            raise ValueError(f"slop must be >= 0, got {slop}")
        self._topics = tuple(topics)
        self._callback = callback
        self._slop_ns = round(slop * 1e9)
        self._queues = {t: deque(maxlen=queue_size) for t in self._topics}  # (stamp_ns, msg)
        self._last_fired_ns = -1
        self._jump_back_ns = round(jump_back * 1e9)

    @property
    def topics(self) -> tuple:
        return self._topics

    @property
    def slop(self) -> float:
        return self._slop_ns / 1e9

    @slop.setter
    def slop(self, value: float) -> None:
        """Change the slop from the next arrival on (e.g. a parameter set at run time)."""
        if not value >= 0:
            raise ValueError(f"slop must be >= 0, got {value}")
        self._slop_ns = round(value * 1e9)

    def add(self, topic: str, msg) -> None:
        if topic not in self._queues:
            raise KeyError(f"unknown topic {topic}; expected one of {self._topics}")
        pivot_ns = round(seconds(msg.header.stamp) * 1e9)
        if pivot_ns < self._last_fired_ns - self._jump_back_ns:
            self.clear()  # time jumped backwards (a restarted simulation, a looping bag): start over
        elif pivot_ns < self._last_fired_ns:
            return  # older than a set already delivered
        self._queues[topic].append((pivot_ns, msg))
        group = {topic: msg}
        stamps = [pivot_ns]
        for other, queue in self._queues.items():
            if other == topic:
                continue
            candidates = [(abs(s - pivot_ns), s, m) for s, m in queue if s >= self._last_fired_ns]
            if not candidates:
                return
            gap, stamp, best = min(candidates, key=lambda c: c[0])
            if gap > self._slop_ns:
                return
            group[other] = best
            stamps.append(stamp)
        newest = max(stamps)
        for queue in self._queues.values():
            while queue and queue[0][0] <= newest:
                queue.popleft()
        self._last_fired_ns = newest
        self._callback(group)

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()
        self._last_fired_ns = -1
