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


@pytest.fixture(autouse=True)
def same_random_state_for_every_test():
    """Each test starts from the same global random state (torch, NumPy's legacy generator,
    random), whatever ran before it. Without this, a test's network initialisation depended on
    how many random numbers earlier tests drew, which for tests with ROS in the loop depends on
    timing (how many states a policy answered): a fit once missed its bound in CI that way."""
    import random

    import numpy as np
    import torch
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
