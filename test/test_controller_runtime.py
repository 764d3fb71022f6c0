"""The controller runtime (issue 7): safety layer, e-stop and enable, watchdog, control-period
check, timer mode with slop, diagnostics, stamped actions, live limits and bad input.

A real ControllerNode talks over DDS to ``Cell``, a node that plays the arm: it publishes robot
states (as the simulation or a real driver would) and records every command that comes back.
Negative checks ("nothing more was sent") spin until a later positive event that would have come
after the forbidden message, not for a fixed time alone.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import SetBool

from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.controller import ControllerNode

pytestmark = pytest.mark.ros

FORWARD = np.array([0.8, 0.03, 0.0, 0.0, 0.0])   # 3 cm along +x per step: 0.3 m/s at 10 Hz


class Scripted(ControllerNode):
    """Returns ``self.action`` (or raises it when it is an exception)."""

    def __init__(self, action=FORWARD, **kw):
        super().__init__("scripted", **kw)
        self.action = action
        self.calls = 0

    def act(self, messages):
        self.calls += 1
        if isinstance(self.action, BaseException):
            raise self.action
        return self.action


class Cell(Node):
    """Plays the arm: publishes states, records commands, e-stops, and the arm's metadata."""

    def __init__(self, **kw):
        super().__init__("cell", **kw)
        self.ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self.joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)
        self.estop = self.create_publisher(Bool, topics.ESTOP, qos.RELIABLE)
        self.metadata = self.create_publisher(String, topics.SIM_METADATA, qos.LATCHED)
        self.twists, self.grippers, self.actions, self.diagnostics = [], [], [], []
        self.create_subscription(TwistStamped, topics.TWIST, self.twists.append, qos.RELIABLE)
        self.create_subscription(Float64, topics.GRIPPER, lambda m: self.grippers.append(m.data), qos.RELIABLE)
        self.create_subscription(JointState, topics.ACTION, self.actions.append, qos.RELIABLE)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self.diagnostics.append, qos.RELIABLE)

    def state(self, stamp_s, position=(0.5, 0.0, 0.2), frame="base_link", joint_stamp_s=None):
        pose = list(position) + [1.0, 0.0, 0.0, 0.0]
        self.ee.publish(msgs.pose_stamped(pose, frame, stamp_s))
        self.joints.publish(msgs.joint_state(["j"], [0.0], [0.0], stamp_s if joint_stamp_s is None else joint_stamp_s))


def twist_values(t: TwistStamped):
    return np.array([t.twist.linear.x, t.twist.linear.y, t.twist.linear.z, t.twist.angular.z])


def bring_up(ros, action=FORWARD, **params):
    controller = ros.add(Scripted(action, context=ros.context,
                                  parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
    cell = ros.node(Cell)
    ros.spin_until(lambda: controller.inputs_connected() and cell.count_publishers(topics.TWIST) > 0
                   and cell.count_publishers(topics.ACTION) > 0 and cell.count_subscribers(topics.ESTOP) > 0,
                   what="discovery")
    return controller, cell


def step(ros, cell, stamp, n_expected, **state):
    cell.state(stamp, **state)
    ros.spin_until(lambda: len(cell.twists) >= n_expected, what=f"the answer to the state at {stamp}")
    return cell.twists[-1]


def test_commands_are_stamped_and_the_whole_action_goes_out(ros):
    controller, cell = bring_up(ros)
    twist = step(ros, cell, 3.0, 1)
    assert msgs.seconds(twist.header.stamp) == pytest.approx(3.0) and twist.header.frame_id == "base_link"
    np.testing.assert_allclose(twist_values(twist), [0.3, 0.0, 0.0, 0.0])
    ros.spin_until(lambda: len(cell.actions) == 1 and len(cell.grippers) == 1, what="the stamped action")
    action = cell.actions[0]
    assert msgs.seconds(action.header.stamp) == pytest.approx(3.0)
    np.testing.assert_allclose(msgs.action_from_msg(action), FORWARD)
    assert cell.grippers == [pytest.approx(0.8)]


def test_the_workspace_wall_cuts_the_step_and_the_arm_slides_along_it(ros):
    controller, cell = bring_up(ros, action=np.array([1.0, 0.04, 0.03, -0.05, 0.0]))
    # 1 cm from the +x wall and 2 cm above the floor: x may move 1 cm, z only 5 mm down, y freely.
    twist = step(ros, cell, 1.0, 1, position=(0.69, 0.0, 0.02))
    np.testing.assert_allclose(twist_values(twist), [0.1, 0.3, -0.05, 0.0], atol=1e-9)
    # Already 5 cm outside (an arm that drifted, or was moved by hand): sent back at the speed
    # limit, whatever the action asked for along that axis.
    controller.action = np.array([1.0, 0.02, -0.01, 0.0, 0.0])
    twist = step(ros, cell, 1.1, 2, position=(0.75, 0.0, 0.2))
    np.testing.assert_allclose(twist_values(twist), [-0.5, -0.1, 0.0, 0.0], atol=1e-9)
    controller.action = np.array([1.0, -0.02, 0.0, 0.0, 0.0])
    twist = step(ros, cell, 1.2, 3, position=(0.75, 0.0, 0.2))
    np.testing.assert_allclose(twist_values(twist), [-0.5, 0.0, 0.0, 0.0], atol=1e-9)
    assert controller.stats.reduced == 3


def test_speed_limits_are_parameters_that_apply_on_the_next_decision(ros):
    controller, cell = bring_up(ros, action=np.array([1.0, 0.05, 0.025, 0.0, 0.3]))
    np.testing.assert_allclose(twist_values(step(ros, cell, 1.0, 1)), [0.5, 0.25, 0.0, 3.0])
    result = controller.set_parameters([Parameter("safety.max_linear_speed", value=0.2),
                                        Parameter("safety.max_yaw_rate", value=1.0)])
    assert all(r.successful for r in result)
    # scaled as a whole: the direction is kept
    np.testing.assert_allclose(twist_values(step(ros, cell, 1.1, 2)), [0.2, 0.1, 0.0, 1.0])
    bad = controller.set_parameters([Parameter("safety.workspace_min", value=[0.8, -0.2, 0.0])])[0]
    assert not bad.successful and "must be below workspace_max" in bad.reason
    assert not controller.set_parameters([Parameter("safety.max_linear_speed", value=-1.0)])[0].successful


@pytest.mark.parametrize("bad", [np.array([0.5, math.nan, 0, 0, 0]), np.array([0.5, 0, 0, math.inf, 0]),
                                 np.array([0.5, 0.01, 0, 0]), np.array([0.5 + 1j, 0, 0, 0, 0]),
                                 ["0.5", "0", "0", "0", "0"], RuntimeError("policy blew up")])
def test_a_bad_action_or_a_failure_holds_the_arm_still(ros, bad):
    controller, cell = bring_up(ros, action=FORWARD)
    step(ros, cell, 1.0, 1)
    controller.action = bad
    held = step(ros, cell, 1.1, 2)
    np.testing.assert_array_equal(twist_values(held), 0.0)
    assert cell.grippers[-1] == pytest.approx(0.8)       # the gripper stays as it was
    assert controller.stats.failures == 1


def test_a_stop_before_any_gripper_command_commands_no_gripper(ros):
    """Nothing on the gripper topic, and a stamped action without ``p``: a simulation in sync mode
    takes the step's gripper from that action, and an open there would drop a held block."""
    controller, cell = bring_up(ros, action=RuntimeError("policy blew up"))
    held = step(ros, cell, 1.0, 1)
    np.testing.assert_array_equal(twist_values(held), 0.0)
    ros.spin_until(lambda: len(cell.actions) == 1, what="the stamped action")
    assert not msgs.commands_gripper(cell.actions[0]) and list(cell.actions[0].name) == ["dx", "dy", "dz", "dyaw"]
    assert cell.grippers == []
    controller.action = FORWARD                         # the next decision commands it again
    step(ros, cell, 1.1, 2)
    ros.spin_until(lambda: len(cell.actions) == 2, what="the stamped action")
    assert msgs.commands_gripper(cell.actions[1]) and cell.grippers == [pytest.approx(FORWARD[0])]


@pytest.mark.parametrize("state", [dict(position=(math.nan, 0.0, 0.2)), dict(frame="camera_link")])
def test_bad_robot_state_never_gives_a_non_zero_command(ros, state):
    controller, cell = bring_up(ros)
    held = step(ros, cell, 1.0, 1, **state)
    np.testing.assert_array_equal(twist_values(held), 0.0)


def test_an_interrupt_inside_act_stops_the_arm_before_it_propagates(ros):
    controller, cell = bring_up(ros, action=KeyboardInterrupt())
    cell.state(1.0)
    with pytest.raises(KeyboardInterrupt):
        ros.spin_until(lambda: False, timeout_s=10.0, what="the interrupt")
    ros.spin_until(lambda: len(cell.twists) == 1, what="the zero twist")
    np.testing.assert_array_equal(twist_values(cell.twists[0]), 0.0)


def test_estop_stops_at_once_and_stays_stopped_until_reenabled(ros):
    controller, cell = bring_up(ros)
    step(ros, cell, 1.0, 1)
    cell.estop.publish(Bool(data=True))
    ros.spin_until(lambda: len(cell.twists) == 2, what="the e-stop's zero twist")
    np.testing.assert_array_equal(twist_values(cell.twists[1]), 0.0)
    assert "e-stop" in controller.stop_reason()
    calls = controller.calls
    for stamp in (1.1, 1.2, 1.3):
        cell.state(stamp)
    enable = controller.create_client(SetBool, "/scripted/enable")

    def call(value: bool):
        future = enable.call_async(SetBool.Request(data=value))
        ros.spin_until(future.done, what="~/enable")
        return future.result()

    # the states above were delivered before this service answer came back: none was acted on
    refused = call(True)
    assert not refused.success and "e-stop is engaged" in refused.message
    assert controller.calls == calls and len(cell.twists) == 2
    cell.estop.publish(Bool(data=False))
    ros.spin_until(lambda: not controller._estop_engaged, what="the release")
    assert controller.stop_reason() is not None       # released is not re-enabled
    assert call(True).success
    twist = step(ros, cell, 1.4, 3)
    np.testing.assert_allclose(twist_values(twist), [0.3, 0.0, 0.0, 0.0])
    # disabling through the service: one zero twist, then silence
    assert call(False).success
    ros.spin_until(lambda: len(cell.twists) == 4, what="the zero twist of ~/enable false")
    np.testing.assert_array_equal(twist_values(cell.twists[3]), 0.0)


def test_start_enabled_false_waits_for_enable(ros):
    controller, cell = bring_up(ros, start_enabled=False)
    cell.state(1.0)
    ros.spin_until(lambda: controller._latest is not None, what="the state")
    assert controller.calls == 0 and not cell.twists
    ready, waiting = controller.readiness()
    assert not ready and "~/enable" in waiting


def test_watchdog_sends_one_zero_twist_then_silence_until_data_returns(ros):
    controller, cell = bring_up(ros, observation_timeout=0.3)
    step(ros, cell, 1.0, 1)
    ros.spin_until(lambda: len(cell.twists) == 2, timeout_s=5.0, what="the watchdog's zero twist")
    np.testing.assert_array_equal(twist_values(cell.twists[1]), 0.0)
    assert controller.diagnostics().message.startswith("holding")
    ros.spin_for(0.8)                                   # several timeouts long: still only one
    assert len(cell.twists) == 2
    twist = step(ros, cell, 2.0, 3)
    np.testing.assert_allclose(twist_values(twist), [0.3, 0.0, 0.0, 0.0])


def test_a_control_period_that_differs_from_the_arms_is_refused(ros):
    controller, cell = bring_up(ros, control_period=0.01)
    cell.metadata.publish(String(data=json.dumps({"control_period": 0.1})))
    ros.spin_until(lambda: controller.stop_reason() is not None, what="the arm's metadata")
    assert "differs from the arm's 0.1 s" in controller.stop_reason()
    cell.state(1.0)
    ros.spin_until(lambda: controller._latest is not None, what="the state")
    assert controller.calls == 0 and not cell.twists
    cell.metadata.publish(String(data=json.dumps({"control_period": 0.01})))
    ros.spin_until(lambda: controller.stop_reason() is None, what="matching metadata")
    step(ros, cell, 1.1, 1)


def test_timer_mode_pairs_within_slop_and_holds_the_rate(ros):
    """A real cell: joint states 20 ms after the pose, 30 Hz states, decisions at 10 Hz."""
    controller, cell = bring_up(ros, trigger="timer", rate_hz=10.0, sync_slop=0.025)
    start = time.monotonic()
    t = 0
    while controller.stats.decisions < 12:
        cell.state(100.0 + t / 30.0, joint_stamp_s=100.0 + t / 30.0 + 0.02)
        t += 1
        ros.spin_for(1.0 / 30.0)
        assert time.monotonic() - start < 20.0, "no decisions"
    elapsed = controller.stats.decision_times[-1] - controller.stats.decision_times[0]
    # 11 intervals at 10 Hz = 1.1 s; never every state (30 Hz). A loaded machine may stretch it.
    assert 1.0 < elapsed < 3.0 and controller.calls == controller.stats.decisions < t
    # A pose and joint states 50 ms apart (outside the slop) are never paired: the next decision
    # is on the well-paired state that follows them, and it is the only one.
    ros.spin_for(0.3)                      # the last 30 Hz state may still be decided on by a tick
    decided = controller.stats.decisions
    cell.state(200.0, joint_stamp_s=200.05)
    ros.spin_for(0.2)
    cell.state(300.0)
    ros.spin_until(lambda: controller.stats.decisions > decided, what="a decision on a paired state")
    ros.spin_for(0.2)
    assert controller.stats.decisions == decided + 1
    assert msgs.seconds(cell.twists[-1].header.stamp) == pytest.approx(300.0)


def test_diagnostics_say_how_the_controller_is_doing(ros):
    controller, cell = bring_up(ros, action=np.array([1.0, 0.09, 0.0, 0.0, 0.0]), observation_timeout=5.0)
    step(ros, cell, 1.0, 1)
    ros.spin_until(lambda: any(s.values and dict((kv.key, kv.value) for kv in s.values)["decisions"] == "1"
                               for d in cell.diagnostics for s in d.status), timeout_s=5.0, what="diagnostics")
    status = [s for d in cell.diagnostics for s in d.status][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == "scripted: controller" and status.message == "commanding"
    assert values["enabled"] == "true" and values["commands_reduced"] == "1"
    assert float(values["decision_latency_p50_ms"]) >= 0.0 and float(values["observation_age_s"]) >= 0.0
    for key in ("achieved_rate_hz", "missed_cycles", "decision_latency_p99_ms", "stop_reason", "trigger"):
        assert key in values


def test_metadata_is_latched_for_late_recorders(ros):
    controller, cell = bring_up(ros)
    got = []
    listener = cell.create_subscription(String, "/scripted/metadata", got.append, qos.LATCHED)
    ros.spin_until(lambda: got, what="the latched metadata")
    data = json.loads(got[0].data)
    assert data["controller"] == "Scripted" and data["action_names"] == ["p", "dx", "dy", "dz", "dyaw"]
    assert data["parameters"]["control_period"] == 0.1
    cell.destroy_subscription(listener)


class Slow(Scripted):
    """A decision that takes 1.5 control periods (a heavy planner on a loaded CPU)."""

    def act(self, messages):
        time.sleep(0.15)
        return super().act(messages)


def test_timer_mode_a_slow_controller_decides_again_as_soon_as_it_is_done(ros):
    controller = ros.add(Slow(FORWARD, context=ros.context, parameter_overrides=[
        Parameter("trigger", value="timer"), Parameter("rate_hz", value=10.0)]))
    cell = ros.node(Cell)
    ros.spin_until(lambda: controller.inputs_connected() and cell.count_publishers(topics.TWIST) > 0, what="discovery")
    t = 0
    while controller.stats.decisions < 8:
        cell.state(50.0 + t / 30.0)
        t += 1
        ros.spin_for(1.0 / 30.0)
        assert t < 600, "no decisions"
    gaps = np.diff(list(controller.stats.decision_times))
    # back to back: each gap is the 0.15 s decision plus a state's wait, never a further 0.75 period
    assert np.median(gaps) < 0.22, gaps
    assert controller.stats.missed_cycles >= 4          # it cannot hold 10 Hz, and says so


def test_a_stop_in_joint_trajectory_output_is_an_empty_trajectory(ros):
    """A ros2_control joint_trajectory_controller holds where the arm is on an empty trajectory; a
    target made from older joint positions would move it back."""
    from trajectory_msgs.msg import JointTrajectory

    controller, cell = bring_up(ros, output="joint_trajectory")
    trajectories = []
    cell.create_subscription(JointTrajectory, topics.JOINT_TRAJECTORY, trajectories.append, qos.RELIABLE)
    ros.spin_until(lambda: cell.count_publishers(topics.JOINT_TRAJECTORY) > 0, what="discovery")
    panda = [f"panda_joint{i}" for i in range(1, 8)]
    q = [0.0, 0.4, 0.0, -1.9, 0.0, 2.3, 0.8]
    cell.ee.publish(msgs.pose_stamped([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], "base_link", 1.0))
    cell.joints.publish(msgs.joint_state(panda, q, [0.0] * 7, 1.0))
    ros.spin_until(lambda: len(trajectories) == 1, what="the step as a trajectory")
    step = trajectories[0]
    assert step.joint_names == panda and len(step.points) == 1
    assert (step.header.stamp.sec, step.header.stamp.nanosec) == (0, 0)       # starts on receipt
    assert not np.allclose(step.points[0].positions, q)
    cell.estop.publish(Bool(data=True))
    ros.spin_until(lambda: len(trajectories) == 2, what="the stop")
    assert trajectories[1].points == []


def test_an_estop_never_moves_the_gripper_of_a_controller_that_has_not_commanded_it(ros):
    controller, cell = bring_up(ros, start_enabled=False)
    for _ in range(3):
        cell.estop.publish(Bool(data=True))      # an e-stop that repeats its state
    ros.spin_until(lambda: controller._estop_engaged, what="the e-stop")
    cell.state(1.0)                               # the answer to this would come after any e-stop output
    ros.spin_for(0.3)
    assert cell.twists == [] and cell.grippers == []


def test_a_long_control_period_never_makes_steps_longer_than_the_actions_limits(ros):
    controller, cell = bring_up(ros, action=np.array([1.0, 0.05, 0.0, 0.0, 0.5]), control_period=0.2)
    twist = step(ros, cell, 1.0, 1)
    # 0.5 m/s for 0.2 s would be 10 cm: held to 5 cm per step (0.25 m/s), pi/8 per step likewise
    np.testing.assert_allclose(twist_values(twist)[[0, 3]], [0.05 / 0.2, (math.pi / 8) / 0.2], rtol=1e-6)


def test_episode_events_wait_for_the_decision_but_the_e_stop_does_not(ros):
    """The simulation's episode events run their hooks on the decisions' thread, in order, after
    the decision in progress; meanwhile the executor keeps serving the e-stop (and the inputs a
    decision may wait for, such as a goal's object poses), instead of queueing behind it."""
    import threading

    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    class Hooked(Scripted):
        def __init__(self, **kw):
            super().__init__(FORWARD, **kw)
            self.deciding, self.release, self.hooks = threading.Event(), threading.Event(), []

        def act(self, messages):
            self.deciding.set()
            assert self.release.wait(30.0), "the test never released the decision"
            return self.action

        def on_episode_start(self):
            self.hooks.append(("start", threading.current_thread() is self._decider))

        def on_episode_end(self, success):
            self.hooks.append((f"end {success}", threading.current_thread() is self._decider))

    controller = ros.add(Hooked(context=ros.context))
    cell = ros.node(Cell)
    events = cell.create_publisher(DiagnosticArray, topics.SIM_EPISODE_EVENTS, qos.RELIABLE)
    ros.spin_until(lambda: controller.inputs_connected() and cell.count_subscribers(topics.ESTOP) > 0
                   and cell.count_subscribers(topics.SIM_EPISODE_EVENTS) > 0, what="discovery")
    cell.state(1.0)
    ros.spin_until(controller.deciding.is_set, what="a decision in progress")
    events.publish(DiagnosticArray(status=[
        DiagnosticStatus(name="episode_end", values=[KeyValue(key="success", value="true")]),
        DiagnosticStatus(name="episode_start")]))
    cell.estop.publish(Bool(data=True))
    ros.spin_until(lambda: controller._estop_engaged and len(controller._episode_events) == 2,
                   what="the e-stop and the events, while the decision runs")
    assert controller.hooks == []                        # not while the decision runs
    controller.release.set()
    ros.spin_until(lambda: len(controller.hooks) == 2, what="the hooks after the decision")
    assert controller.hooks == [("end True", True), ("start", True)]


def test_an_episode_start_that_came_in_with_the_new_state_runs_its_hook_before_that_state_is_answered(ros):
    """The arm publishes its episode_start event, then the new scene's first state. Both can come
    in while the decisions' thread is between running the queued hooks and deciding: the state is
    then answered only after the start hook (a policy's goal, an expert's phase, a planner's warm
    start are the new episode's), never with the episode before's memory."""
    import threading

    from diagnostic_msgs.msg import DiagnosticStatus

    class Racing(Scripted):
        def __init__(self, **kw):
            super().__init__(FORWARD, **kw)
            self.log, self.hold = [], False
            self.in_window, self.delivered = threading.Event(), threading.Event()

        def act(self, messages):
            self.log.append(f"act {msgs.seconds(messages[topics.EE_POSE].header.stamp):.1f}")
            return super().act(messages)

        def on_episode_start(self):
            self.log.append("start")

        def on_episode_end(self, success):
            self.log.append("end")

        def _run_episode_events(self):
            super()._run_episode_events()
            if self.hold:       # hold the thread in the window while the event and the state come in
                self.hold = False
                self.in_window.set()
                assert self.delivered.wait(30.0), "the test never delivered the event and the state"

    controller = ros.add(Racing(context=ros.context))
    cell = ros.node(Cell)
    events = cell.create_publisher(DiagnosticArray, topics.SIM_EPISODE_EVENTS, qos.RELIABLE)
    ros.spin_until(lambda: controller.inputs_connected() and cell.count_publishers(topics.TWIST) > 0
                   and cell.count_subscribers(topics.SIM_EPISODE_EVENTS) > 0, what="discovery")

    def event(name, stamp_s=0.0):
        events.publish(DiagnosticArray(header=msgs.header("base_link", stamp_s), status=[DiagnosticStatus(name=name)]))

    step(ros, cell, 1.0, 1)
    controller.hold = True
    event("episode_end")                        # wakes the decisions' thread: its hook, then the window
    ros.spin_until(controller.in_window.is_set, what="the decisions' thread in the window")
    event("episode_start", 1.1)
    cell.state(1.1)
    ros.spin_until(lambda: controller._latest is not None and controller._latest.stamp_ns == 1_100_000_000
                   and len(controller._episode_events) == 1, what="the event and the new state, in hand")
    controller.delivered.set()
    ros.spin_until(lambda: len(cell.twists) >= 2, what="the answer to the new episode's first state")
    assert controller.log == ["act 1.0", "end", "start", "act 1.1"]
    assert [round(msgs.seconds(t.header.stamp), 3) for t in cell.twists] == [1.0, 1.1]


def test_a_new_episode_does_not_answer_the_last_state_again(ros):
    """An episode event after the answer to the newest state: that state is not answered a second
    time (a command for a state the arm has left; in sync mode it would shift the steps), and the
    next state is answered as usual."""
    from diagnostic_msgs.msg import DiagnosticStatus

    controller, cell = bring_up(ros)
    events = cell.create_publisher(DiagnosticArray, topics.SIM_EPISODE_EVENTS, qos.RELIABLE)
    ros.spin_until(lambda: cell.count_subscribers(topics.SIM_EPISODE_EVENTS) > 0, what="discovery")
    step(ros, cell, 1.0, 1)
    starts = []
    controller.on_episode_start = lambda: starts.append(True)
    events.publish(DiagnosticArray(status=[DiagnosticStatus(name="episode_start")]))
    ros.spin_until(lambda: starts, what="the episode start")
    step(ros, cell, 1.1, 2)
    assert [msgs.seconds(t.header.stamp) for t in cell.twists] == [pytest.approx(1.0), pytest.approx(1.1)]


@pytest.mark.parametrize("start", ["~/reset", "episode_start stamped later"])
def test_a_state_from_before_a_new_episode_is_not_answered_in_it(ros, start):
    """The newest state when an episode starts is the episode before's (the runner resets the
    controller, then the arm; the arm's episode_start event is stamped with the new scene's first
    state): it is never answered, even if it was not answered yet (here: the controller was not
    ready for it, as a policy waits for its goal). In the simulation's sync mode its stale twist is
    dropped but its unstamped gripper command would count for the next state. A state stamped at
    the start event is the new episode's and is answered."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from std_srvs.srv import Trigger

    class Waiting(Scripted):
        """Decides only when ``ready``; records the stamps it was asked about."""

        def __init__(self, **kw):
            super().__init__(FORWARD, **kw)
            self.ready, self.asked, self.hooks, self.starts = True, [], [], []

        def ready_to_decide(self, inputs):
            self.asked.append(round(inputs.stamp_ns * 1e-9, 3))
            return self.ready

        def on_episode_start(self):
            self.hooks.append("start")
            self.starts.append(self.episode_start_ns)

        def on_episode_end(self, success):
            self.hooks.append("end")

    controller = ros.add(Waiting(context=ros.context))
    cell = ros.node(Cell)
    events = cell.create_publisher(DiagnosticArray, topics.SIM_EPISODE_EVENTS, qos.RELIABLE)
    reset = cell.create_client(Trigger, "/scripted/reset")
    ros.spin_until(lambda: controller.inputs_connected() and cell.count_publishers(topics.TWIST) > 0
                   and cell.count_subscribers(topics.SIM_EPISODE_EVENTS) > 0 and reset.service_is_ready(),
                   what="discovery")

    def offer_unready(stamp):
        """The state, in hand and looked at, but not answered: the controller is not ready."""
        controller.ready = False
        cell.state(stamp)
        ros.spin_until(lambda: stamp in controller.asked, what=f"the state at {stamp}, looked at")
        controller.ready = True                   # decided on at the next wake-up, if at all

    def event(name, stamp_s=0.0):
        events.publish(DiagnosticArray(header=msgs.header("base_link", stamp_s), status=[DiagnosticStatus(name=name)]))

    step(ros, cell, 1.0, 1)
    offer_unready(1.1)
    if start == "~/reset":
        future = reset.call_async(Trigger.Request())
        ros.spin_until(future.done, what="~/reset")
        event("episode_end")                      # wakes the decisions: the state at 1.1 is in hand
        ros.spin_until(lambda: controller.hooks == ["start", "end"], what="the reset and the event, handled")
    else:
        event("episode_start", 1.2)               # the new scene's first state will be stamped 1.2
        ros.spin_until(lambda: controller.hooks == ["start"], what="the event, handled")
    # The simulation republishes its last state while it waits for an answer: a new set of the
    # same stamp, not answered either (the check once compared sets, not stamps).
    old_set = controller._latest
    cell.state(1.1)
    ros.spin_until(lambda: controller._latest is not old_set, what="the republished state, in hand")
    ros.spin_for(0.3)                             # time for the decisions' thread to answer it
    assert len(cell.twists) == 1
    step(ros, cell, 1.2, 2)
    # The new episode's first state, in hand before its start event: answered.
    offer_unready(1.3)
    event("episode_start", 1.3)
    ros.spin_until(lambda: len(cell.twists) >= 3 and len(cell.actions) >= 3,
                   what="the answer to the new episode's first state")
    assert [round(msgs.seconds(t.header.stamp), 3) for t in cell.twists] == [1.0, 1.2, 1.3]
    assert [round(msgs.seconds(a.header.stamp), 3) for a in cell.actions] == [1.0, 1.2, 1.3]
    # What the hooks are told: the start event's stamp (a node's goal keeps the poses from then on).
    assert controller.starts == ([None] if start == "~/reset" else [1_200_000_000]) + [1_300_000_000]
    # A restarted cell whose start event was missed: its states, far older than the start, are
    # answered (ones within JUMP_BACK_S of it would be the episode before's).
    step(ros, cell, 0.1, 4)
    assert round(msgs.seconds(cell.twists[-1].header.stamp), 3) == 0.1
