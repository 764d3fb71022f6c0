"""Log lines throttled per reason, not per call site.

rclpy's ``throttle_duration_sec`` throttles per call site: one ``_reject(...)`` helper that logs
every kind of rejected command then says only the first reason each second, and in sync mode
(many commands a second) most kinds of bad input are never reported at all. ``ReasonThrottle``
keeps one clock per reason instead: every distinct reason gets its line, each reason at most once
per period, and the next line of a reason says how many of its lines were held back.

    throttle = ReasonThrottle(node.get_logger(), period_s=1.0)
    throttle.warning("twist: non-finite", f"rejected twist: {reason}")

A reason key should name the kind of problem, not the values (``reason_key`` strips numbers and
quoted names from a message). The table of reasons is bounded, so a sender that makes up a new
reason with every message cannot grow it without end, and every line is cut to ``max_chars``.
"""
from __future__ import annotations

import re
import time

# Numbers (with sign, decimals, exponent), nan/inf, quoted names and bracketed lists: the parts of
# a message that vary between two occurrences of the same problem.
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]?|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")


def reason_key(text: str) -> str:
    """The kind of problem a message describes: the message with its values taken out."""
    return _VARYING.sub("#", text)[:200]


class ReasonThrottle:
    def __init__(self, logger, period_s: float = 1.0, max_reasons: int = 256, max_chars: int = 400,
                 clock=time.monotonic):
        self._logger = logger
        self.period_s = period_s
        self.max_reasons = max_reasons
        self.max_chars = max_chars
        self._clock = clock
        self._last: dict[str, float] = {}     # reason -> when its last line went out
        self._held: dict[str, int] = {}       # reason -> lines held back since

    # Each level calls the logger from a line of its own: rclpy ties a severity to the call site
    # and raises when one site logs at two levels.
    def warning(self, reason: str, text: str) -> bool:
        line = self._line(reason, text)
        if line is not None:
            self._logger.warning(line)
        return line is not None

    def error(self, reason: str, text: str) -> bool:
        line = self._line(reason, text)
        if line is not None:
            self._logger.error(line)
        return line is not None

    def info(self, reason: str, text: str) -> bool:
        line = self._line(reason, text)
        if line is not None:
            self._logger.info(line)
        return line is not None

    def _line(self, reason: str, text: str):
        """The line to log for ``text``, or None when ``reason`` was logged less than a period ago."""
        now = self._clock()
        if reason not in self._last and len(self._last) >= self.max_reasons:
            reason = "(other reasons)"   # a full table: the rest share one clock
        last = self._last.get(reason)
        if last is not None and now - last < self.period_s:
            self._held[reason] = self._held.get(reason, 0) + 1
            return None
        held = self._held.pop(reason, 0)
        if len(text) > self.max_chars:
            text = text[:self.max_chars] + f"... ({len(text) - self.max_chars} more characters)"
        if held:
            text += f" [{held} more like this in the last {now - last:.1f} s]"
        self._last[reason] = now
        return text
