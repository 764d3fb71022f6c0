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


@pytest.fixture
def ros():
    """A private in-process ROS graph; its nodes are destroyed after the test."""
    from equimanip.bringup import InProcessGraph
    graph = InProcessGraph()
    yield graph
    graph.close()
