"""Test isolation for everything that touches ROS.

Each test session gets a ROS domain of its own and localhost-only discovery, set before any DDS
participant exists, so tests never see (or disturb) another ROS graph on the machine. Each test
that needs a graph gets a fresh rclpy Context through the ``ros`` fixture, and its nodes are
destroyed when the test ends.
"""
from __future__ import annotations

import os

# Domains 1..101 keep Fast DDS's ports clear of the ephemeral range on Linux.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 101)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ.pop("ROS_LOCALHOST_ONLY", None)

import pytest  # noqa: E402


class RosGraph:
    """A private rclpy context with one executor; nodes added here are cleaned up after the test."""

    def __init__(self):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, node_class, **parameters):
        """Create ``node_class`` in this context with the given parameter overrides."""
        from rclpy.parameter import Parameter
        overrides = [Parameter(k, value=v) for k, v in parameters.items()]
        return self.add(node_class(context=self.context, parameter_overrides=overrides))

    def spin_until(self, condition, timeout_s: float = 10.0, what: str = "a condition"):
        from equimanip.bringup import spin_until
        spin_until(self.executor, condition, timeout_s, what)

    def spin_for(self, seconds: float):
        import time
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self):
        import rclpy
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def ros():
    graph = RosGraph()
    yield graph
    graph.close()
