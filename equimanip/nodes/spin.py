"""The ``main()`` every node executable shares: start-up checks, spin, clean shutdown.

* A node that cannot start on its configuration (a missing or malformed parameter file, an
  invalid parameter value, bad ROS arguments) says why in one line on stderr and exits with code 2,
  without a traceback: there is nothing to debug in the code, only the configuration to fix.
* Ctrl-C (or SIGTERM) stops it with exit code 0. ``ros2 launch`` and the terminal both deliver
  Ctrl-C, so a second signal often arrives while the node is still cleaning up after the first:
  further signals are ignored from then on, so that clean-up finishes instead of ending in a
  KeyboardInterrupt traceback.
* While the node spins, a stop signal raises nothing: rclpy's own handler shuts the context down,
  which ends the spin. Python's default (KeyboardInterrupt at whatever line runs) could land inside
  rclpy taking a message, where pybind11 turns it into "RuntimeError: Unable to convert call
  argument '0'" before the context is down (a CI run saw that traceback), or inside rclpy's Task
  constructor, leaving a half-built object that complains when collected (1 of 25 stops in a loop).
"""
from __future__ import annotations

import gc
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import rclpy
import yaml
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

# Exit code of a node that did not start because of its configuration (as argparse uses).
EXIT_BAD_CONFIGURATION = 2


def parameter_files(args) -> list[str]:
    """The ``--params-file`` paths among ROS command-line arguments."""
    files = []
    inside_ros_args = False
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--ros-args":
            inside_ros_args = True
        elif arg == "--":
            inside_ros_args = False
        elif inside_ros_args and arg == "--params-file" and i + 1 < len(args):
            files.append(args[i + 1])
    return files


def _has_parameters(section) -> bool:
    """A node section ``{ros__parameters: {...}}``, or namespaces nesting such sections."""
    if not isinstance(section, dict) or not section:
        return False
    if "ros__parameters" in section:
        return isinstance(section["ros__parameters"], dict)
    return all(_has_parameters(value) for value in section.values())


def check_parameter_file(path: str) -> None:
    """ValueError naming the problem when ``path`` is not a ROS 2 parameter file: missing,
    unreadable, not YAML, or not a mapping of node names to ``ros__parameters`` mappings (rcl
    silently ignores, for example, a file holding just a string)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"parameter file '{path}' does not exist")
    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"parameter file '{path}' is not readable YAML: {' '.join(str(e).split())}") from None
    if not isinstance(content, dict) or not content:
        raise ValueError(f"parameter file '{path}' must map node names (or /**) to 'ros__parameters' "
                         f"sections; it holds {type(content).__name__} {str(content)[:60]!r}")
    for name, section in content.items():
        if not _has_parameters(section):
            raise ValueError(f"parameter file '{path}': section '{name}' has no 'ros__parameters' mapping")


class StopSignals:
    """The Python handler of SIGINT and SIGTERM for a node's process, installed before
    ``rclpy.init`` so that rclpy's handler (which shuts the contexts down) calls it afterwards.

    While the node starts, a signal raises KeyboardInterrupt in our own start-up code, which stops
    it there. From :meth:`spinning` on it only records the signal: the context's shutdown ends the
    spin, and an error raised in the middle of that shutdown counts as the stop it is. A callback
    that hangs keeps the spin from ending, though: a signal that comes ``INSIST_S`` or more after
    the first raises KeyboardInterrupt in it, as Python's own handler would have."""

    INSIST_S = 2.0

    def __init__(self):
        self.received = False
        self._first_at: Optional[float] = None
        self._raise = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)

    def __call__(self, signum, frame):
        now = time.monotonic()
        self.received = True
        if self._first_at is None:
            self._first_at = now
        if self._raise or now - self._first_at >= self.INSIST_S:
            raise KeyboardInterrupt

    def spinning(self) -> None:
        self._raise = False


def spin_node(node_class, args=None) -> None:
    """Start ``node_class`` from the command line and spin it until Ctrl-C or shutdown."""
    argv = sys.argv if args is None else args
    node = None
    stop = StopSignals()
    try:
        for path in parameter_files(argv):
            check_parameter_file(path)
        rclpy.init(args=args)
        node = node_class()
    except (KeyboardInterrupt, ExternalShutdownException):  # stopped while starting
        _shut_down(node)
        return
    except BaseException as e:
        # Ctrl-C during start-up can surface as any error (pybind11, torch or escnn code around
        # the KeyboardInterrupt, or the context shut down under a call): a stop all the same.
        if stop.received:
            _shut_down(node)
            return
        if not isinstance(e, (ValueError, _rclpy.RCLError, _rclpy.UnknownROSArgsError)):
            raise                                                         # a bug: its traceback
        # The configuration: say what is wrong in one line.
        reason = f"unknown ROS arguments {e}" if isinstance(e, _rclpy.UnknownROSArgsError) else str(e)
        print(f"{node_class.__name__} did not start: {' '.join(reason.split())}", file=sys.stderr)
        _shut_down(node)
        sys.exit(EXIT_BAD_CONFIGURATION)
    # One thread for the callbacks: a controller decides in a thread of its own (controller.py).
    executor = None
    try:
        freeze_start_up_objects()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.spinning()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shuts the context down under a callback that may be publishing right then; that
        # is a normal stop, anything else is a real error.
        if rclpy.ok() and not stop.received:
            raise
    finally:
        if executor is not None:
            executor.shutdown()
        _shut_down(node)


def freeze_start_up_objects() -> None:
    """Keep what start-up built (torch, escnn's groups and bases, the network: about 300,000
    objects for a policy node) out of Python's cyclic garbage collector from now on.

    A full collection walks every tracked object: with the shipped checkpoint loaded it took 86 ms
    on an idle core of the build machine, a pause at a moment nobody chooses, which a decision
    caught by it would add to its latency. Frozen objects are still freed by reference counting;
    only reference cycles among them are never collected, which for objects that live as long as
    the node costs nothing. Call again after loading something big later (a checkpoint swap).
    (It did not remove the policy node's worst latencies in `equimanip bench latency`: those came
    from rclpy's MultiThreadedExecutor, which controllers no longer use; see controller.py.)"""
    gc.collect()
    gc.freeze()


def _shut_down(node) -> None:
    """Destroy the node and shut rclpy down, deaf to further Ctrl-C and SIGTERM meanwhile."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if node is not None:
        node.destroy_node()
    rclpy.try_shutdown()
