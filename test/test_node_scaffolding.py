"""Parameter tables, message pairing and conversions shared by all nodes."""
import math

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.parameter import Parameter

from equimanip.nodes import msgs
from equimanip.nodes.params import ParamSpec, declare_parameters
from equimanip.nodes.sync import TimeSync

SPECS = [
    ParamSpec("rate", 10.0, "A rate (Hz).", min=0.1, max=100.0),
    ParamSpec("mode", "a", "A mode.", choices=("a", "b")),
    ParamSpec("fixed", 3, "Fixed after start.", read_only=True),
    ParamSpec("pose", [0.0] * 6 + [1.0], "A pose.", length=7),
]


class _ParamNode(Node):
    def __init__(self, **kw):
        super().__init__("param_node", **kw)
        declare_parameters(self, SPECS)


def test_descriptors_say_what_a_parameter_means(ros):
    node = ros.node(_ParamNode)
    d = node.describe_parameter("rate")
    assert d.description == "A rate (Hz)."
    assert d.floating_point_range[0].from_value == 0.1 and d.floating_point_range[0].to_value == 100.0
    assert "one of: a, b" in node.describe_parameter("mode").additional_constraints
    assert node.describe_parameter("fixed").read_only


@pytest.mark.parametrize("name,value,reason", [
    ("rate", -1.0, "out of range"),
    ("rate", math.nan, "out of range"),
    ("mode", "c", "must be one of a, b"),
    ("fixed", 4, "read-only"),
    ("pose", [0.0, 1.0], "exactly 7"),
])
def test_invalid_sets_are_rejected_with_a_reason(ros, name, value, reason):
    node = ros.node(_ParamNode)
    before = node.get_parameter(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert reason in result.reason
    assert node.get_parameter(name).value == before


def test_invalid_start_up_override_refuses_to_start(ros):
    with pytest.raises(ValueError, match="mode must be one of a, b"):
        ros.node(_ParamNode, mode="z")


def _pose(stamp_s):
    return msgs.pose_stamped([0, 0, 0, 0, 0, 0, 1], "base_link", stamp_s)


def test_exact_time_sync_pairs_equal_stamps_only():
    fired = []
    sync = TimeSync(["a", "b"], lambda group: fired.append(msgs.seconds(group["a"].header.stamp)))
    sync.add("a", _pose(1.0))
    sync.add("a", _pose(1.1))
    assert fired == []
    sync.add("b", _pose(1.1))
    assert fired == [pytest.approx(1.1)]
    sync.add("b", _pose(1.0))  # late partner of an older stamp: never fires out of order
    assert len(fired) == 1
    with pytest.raises(KeyError):
        sync.add("c", _pose(2.0))


def test_stamp_round_trip():
    for t in [0.0, 0.1, 12.3456789, 1e6 + 0.999999999]:
        assert msgs.seconds(msgs.time_msg(t)) == pytest.approx(t, abs=1e-9)
    pose = np.array([0.1, 0.2, 0.3, 0.0, 0.0, math.sin(0.2), math.cos(0.2)])
    assert np.allclose(msgs.pose7(msgs.pose_msg(pose)), pose)
    assert isinstance(msgs.pose_stamped(pose, "base_link", 1.0), PoseStamped)


def test_time_sync_with_slop_pairs_the_nearest_within_it():
    fired = []
    sync = TimeSync(["cloud", "state"], lambda g: fired.append(
        (msgs.seconds(g["cloud"].header.stamp), msgs.seconds(g["state"].header.stamp))), slop=0.03)
    sync.add("state", _pose(1.00))
    sync.add("state", _pose(1.05))
    sync.add("cloud", _pose(1.04))   # nearest state 1.05, 10 ms away: fires
    assert fired == [(pytest.approx(1.04), pytest.approx(1.05))]
    sync.add("cloud", _pose(1.20))   # no state within 30 ms yet
    sync.add("state", _pose(1.10))   # 100 ms from the cloud: still nothing
    assert len(fired) == 1
    sync.add("state", _pose(1.21))
    assert fired[-1] == (pytest.approx(1.20), pytest.approx(1.21))
    with pytest.raises(ValueError):
        TimeSync(["a"], print, slop=-1.0)


def test_time_sync_starts_over_when_time_jumps_back():
    fired = []
    sync = TimeSync(["a", "b"], lambda g: fired.append(msgs.seconds(g["a"].header.stamp)))
    for t in (100.0, 5.0):  # a restarted simulation
        sync.add("a", _pose(t))
        sync.add("b", _pose(t))
    assert fired == [pytest.approx(100.0), pytest.approx(5.0)]
