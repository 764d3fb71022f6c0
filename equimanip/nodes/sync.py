"""Pairing messages from several topics that describe the same instant.

The simulation stamps everything of one control step with the same time. A controller must act on
a consistent set (the cloud, the joint states and the end-effector pose of one instant), never on a
new pose with an old cloud. ``ExactTimeSync`` keeps the newest few messages per topic and fires
once a stamp has arrived on every topic; older incomplete stamps are dropped. (message_filters does
this on a ROS install, but it is not available as a pip wheel.)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

from equimanip.nodes.msgs import seconds


class ExactTimeSync:
    def __init__(self, topics: Sequence[str], callback: Callable[[dict], None], queue_size: int = 10):
        self._topics = tuple(topics)
        self._callback = callback
        self._queue_size = queue_size
        self._pending: OrderedDict[int, dict] = OrderedDict()  # stamp (ns) -> {topic: msg}
        self._last_fired = -1

    def add(self, topic: str, msg) -> None:
        if topic not in self._topics:
            raise KeyError(f"unknown topic {topic}; expected one of {self._topics}")
        stamp_ns = round(seconds(msg.header.stamp) * 1e9)
        if stamp_ns < self._last_fired:
            return  # older than a set already delivered: a late duplicate
        group = self._pending.setdefault(stamp_ns, {})
        group[topic] = msg
        if len(group) == len(self._topics):
            # Everything up to this stamp is either complete now or can never complete in order.
            for key in [k for k in self._pending if k <= stamp_ns]:
                del self._pending[key]
            self._last_fired = stamp_ns
            self._callback(group)
            return
        while len(self._pending) > self._queue_size:
            self._pending.popitem(last=False)

    def clear(self) -> None:
        self._pending.clear()
        self._last_fired = -1
