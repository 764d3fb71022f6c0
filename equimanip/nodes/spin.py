"""The ``main()`` every node executable shares: init, spin, clean shutdown on Ctrl-C."""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException


def spin_node(node_class, args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:
        if node is None and isinstance(e, ValueError):  # invalid parameters at start-up
            print(f"{node_class.__name__} did not start: {e}", file=sys.stderr)
            rclpy.try_shutdown()
            sys.exit(2)
        # Ctrl-C shuts the context down under a callback that may be publishing right then; that
        # is a normal stop, anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
