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
    except Exception:
        # Ctrl-C shuts the context down under a callback that may be publishing right then; that
        # is a normal stop, anything else is a real error.
        if rclpy.ok():
            raise
    except ValueError as e:  # invalid parameters at start-up: say why, exit non-zero
        print(f"{node_class.__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
