"""teleop_keyboard: drive the arm from a plain terminal, as every controller does.

It is a ``ControllerNode``: a key held down becomes an action ``[p, dx, dy, dz, dyaw]`` and goes out
through the same safety layer as the policies' (workspace box, speed limits), as the same MoveIt
Servo twist, gripper command and stamped ``/equimanip/action``, stamped with the state it answers,
so ``recorder_node`` records a person's demonstration exactly as an expert's.

Keys (a terminal repeats a held key; a key counts for ``hold_time`` seconds after its last repeat)::

    w / s   +x / -x        a / d   +y / -y        r / f   up / down
    q / e   turn left / right      space   open / close the gripper (toggles)
    x       stop (zero motion now)

Run it in its own terminal with the simulation in real time (``trigger`` is ``timer`` by default
here: a person needs the arm to wait for them)::

    sim_node --ros-args -p auto_reset:=true &
    teleop_keyboard
"""
from __future__ import annotations

import os
import select
import sys
import threading
import time
from typing import Optional

import numpy as np

from equimanip.action import MAX_STEP_M, MAX_STEP_YAW
from equimanip.nodes.controller import ControllerNode
from equimanip.nodes.params import ParamSpec
from equimanip.nodes.spin import spin_node

PARAMS = [
    ParamSpec("speed", 0.5, "Fraction of the largest step per control period a key commands.", min=0.05, max=1.0),
    ParamSpec("hold_time", 0.3, "Seconds a key keeps acting after it was last seen (terminal key "
              "repeat fills the gaps while it is held).", min=0.05, max=2.0),
]

# Key -> (index in [dx, dy, dz, dyaw], direction).
MOTION_KEYS = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "f": (2, -1),
               "q": (3, 1), "e": (3, -1)}
HELP = "w/s: x  a/d: y  r/f: up/down  q/e: turn  space: gripper  x: stop  Ctrl-C: quit"


class KeyState:
    """What the keys pressed so far command (thread-safe: the reader thread presses, the
    controller reads)."""

    def __init__(self, speed: float, hold_time: float):
        self.speed, self.hold_time = speed, hold_time
        self.gripper = 1.0                        # open
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def press(self, key: str, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if key == " ":
                self.gripper = 0.0 if self.gripper > 0.5 else 1.0
            elif key == "x":
                self._last_seen.clear()
            elif key in MOTION_KEYS:
                # Opposite keys cancel: the newest wins.
                axis = MOTION_KEYS[key][0]
                for other, (a, _) in MOTION_KEYS.items():
                    if a == axis:
                        self._last_seen.pop(other, None)
                self._last_seen[key] = now

    def action(self, now: Optional[float] = None) -> np.ndarray:
        now = time.monotonic() if now is None else now
        delta = np.zeros(4)
        with self._lock:
            for key, seen in list(self._last_seen.items()):
                if now - seen > self.hold_time:
                    del self._last_seen[key]
                    continue
                axis, sign = MOTION_KEYS[key]
                delta[axis] = sign * self.speed * (MAX_STEP_YAW if axis == 3 else MAX_STEP_M)
            return np.array([self.gripper, *delta])


class TeleopKeyboard(ControllerNode):
    def __init__(self, read_terminal: bool = True, key_fd: int = 0, **node_kwargs):
        """``read_terminal``: read keys from file descriptor ``key_fd`` (0: standard input)."""
        overrides = node_kwargs.pop("parameter_overrides", None) or []
        from rclpy.parameter import Parameter
        if not any(p.name == "trigger" for p in overrides):   # a person needs the arm to wait
            overrides = [*overrides, Parameter("trigger", value="timer")]
        super().__init__("teleop_keyboard", PARAMS, parameter_overrides=overrides, **node_kwargs)
        self.keys = KeyState(self.get_parameter("speed").value, self.get_parameter("hold_time").value)
        self._stop = threading.Event()
        self._reader = None
        self._key_fd = key_fd
        if read_terminal:
            self._reader = threading.Thread(target=self._read_keys, daemon=True)
            self._reader.start()

    def metadata(self) -> dict:
        return {"controller": "teleop_keyboard"}

    def act(self, messages: dict) -> np.ndarray:
        return self.keys.action()

    def _read_keys(self) -> None:
        """Characters from stdin, one key each: raw (no Enter needed) on a terminal, else as they
        come (a pipe)."""
        fd = self._key_fd
        restore = None
        if os.isatty(fd):
            import termios
            import tty
            restore = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            print(HELP, file=sys.stderr, flush=True)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(fd, 32)
                if not data:        # end of input
                    return
                for ch in data.decode(errors="ignore"):
                    self.keys.press(ch.lower())
        finally:
            if restore is not None:
                import termios
                termios.tcsetattr(fd, termios.TCSADRAIN, restore)

    def destroy_node(self):
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=1.0)
        return super().destroy_node()


def main(args=None):
    spin_node(TeleopKeyboard, args)


if __name__ == "__main__":
    main()
