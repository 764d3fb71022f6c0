"""The runtime every controller shares, on the simulated cell and on a real one.

A controller (the scripted expert, an Equivariant SAC or BMIL policy, the MPPI planner) is a
subclass that says what to do; this base class makes sure it is done safely and on time:

**Inputs.** The robot state (``/ee_pose``, ``/joint_states``) plus whatever the subclass reads are
paired by ``TimeSync``: equal stamps in the simulation, within ``sync_slop`` seconds on a real
cell, where the camera and the arm never share a stamp. Only the newest complete set is kept.
``ObservationController`` adds the point cloud and hands its subclass the ``Observation`` that
``build_observation`` makes, the same one training uses.

**When to decide** (``trigger``):

* ``state``: once per complete set, at once (the simulation's sync mode steps once per answer);
* ``timer``: on a real arm, ``rate_hz`` times a second on the newest complete set. Decisions
  follow a schedule of one per period: a set that arrives when the next decision is due (or up to
  a quarter period before) is decided on at once, so the latency is the decision's own cost and
  not a wait for a tick; when no new set arrives by then, a timer decides on the newest one as
  soon as it is in. Decisions run in their own callback group and always take the newest set, so
  a slow decision never queues stale data; a decision that starts more than a quarter period late
  counts as a missed cycle, and the schedule then starts again from that decision (a controller
  slower than the rate decides again as soon as it is done; missed cycles are not made up later
  by deciding faster).

**Output.** Every action passes the safety layer (``equimanip.safety.limit_action``: the measured
grasp point kept in the workspace box, sliding along its walls; per-axis speed limits; finite
values only) and goes out as the gripper aperture on ``/gripper_command``, the motion as a MoveIt
Servo twist (per-step displacement / ``control_period``) and the whole action on
``/equimanip/action``, all stamped with the instant of the state it was computed from.

**Staying safe.** An exception or a malformed action from the subclass, bad input, an e-stop
(``/estop`` true: latched until ``~/enable`` is called) or a stop through ``~/enable`` give one zero
twist and then silence. The observation watchdog does the same when no fresh complete set came in
for ``observation_timeout`` seconds (as MoveIt Servo halts on stale commands), until data returns.
Where the arm publishes its metadata (the simulation's ``/sim_node/metadata``) the controller
refuses to command with a control period that differs from the arm's.

**Health.** ``/diagnostics`` once a second (enabled or stopped and why, observation age, decision
latency p50/p99, achieved rate, missed cycles, commands reduced by the safety layer),
``readiness()`` (inputs connected, first complete set, model warmed up) for whoever starts the
controller, and the run's metadata on the latched ``~/metadata`` for recorders. Episode hooks
(``on_episode_start`` / ``on_episode_end``) follow ``~/reset`` and the simulation's episode events,
so a planner can drop its warm start and a policy its memory.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState, PointCloud2
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from equimanip.action import ACTION_HIGH, ACTION_LOW, ACTION_NAMES, clip_action
from equimanip.geometry import normalize_frame_id
from equimanip.kinematics import PANDA
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import BASE_FRAME, CONTROL_PERIOD, ParamSpec, declare_parameters, param_values
from equimanip.nodes.sync import EpisodeStart, TimeSync
from equimanip.nodes.throttle import ReasonThrottle
from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW, CommandRejected, SafetyLimits, as_action, limit_action

_LIMITS = SafetyLimits()


def _floor6(value: float) -> float:
    """A limit written with six decimals, rounded down: never above the arm's own (pi / 8 per
    step rounded up would make the simulation clamp, and log, every full-speed turn)."""
    return math.floor(value * 1e6) / 1e6


CONTROLLER_PARAMS = [
    CONTROL_PERIOD,
    BASE_FRAME,
    ParamSpec("trigger", "state", "When to decide: 'state' once per complete set of inputs (the "
              "simulation's sync mode), 'timer' rate_hz times a second on the newest "
              "complete set (a real arm).", choices=("state", "timer"), read_only=True),
    ParamSpec("rate_hz", 10.0, "Decisions per second in timer mode.", min=0.5, max=100.0),
    ParamSpec("sync_slop", 0.0, "Largest stamp difference (s) within one set of inputs; 0 pairs "
              "equal stamps only (the simulation), a real cell needs about one camera period.",
              min=0.0, max=1.0),
    ParamSpec("observation_timeout", 0.5, "No fresh complete set of inputs for this long (s): one "
              "zero twist, then silence until data returns.", min=0.01, max=10.0),
    ParamSpec("start_enabled", True, "Command the arm from the start; false waits for ~/enable.",
              read_only=True),
    ParamSpec("arm_metadata_topic", topics.SIM_METADATA, "Latched JSON metadata of the arm "
              "(control_period) to check this controller against; empty for an arm that publishes "
              "none.", read_only=True),
    ParamSpec("episode_events_topic", topics.SIM_EPISODE_EVENTS, "Stamped episode start/end "
              "events (diagnostic_msgs/DiagnosticArray) that call the episode hooks; empty for none.",
              read_only=True),
    ParamSpec("output", "twist", "What goes to the arm: 'twist' (MoveIt Servo), 'joint_trajectory' (a "
              "ros2_control joint_trajectory_controller: one point, the action's step through the Panda's "
              "kinematics, equimanip.kinematics) or 'both'. The gripper command goes out either way.",
              choices=("twist", "joint_trajectory", "both")),
    ParamSpec("safety.enabled", True, "Keep the grasp point in the workspace box and within the "
              "speed limits. Turn off only for an arm that enforces both itself; finite values and "
              "the action limits are enforced regardless.", read_only=True),
    ParamSpec("safety.workspace_min", list(WORKSPACE_LOW), "Lower corner of the box the measured "
              "grasp point must stay in (m, base frame).", length=3),
    ParamSpec("safety.workspace_max", list(WORKSPACE_HIGH), "Upper corner of that box (m, base frame).",
              length=3),
    ParamSpec("safety.max_linear_speed", _LIMITS.max_linear_speed, "Largest speed along any axis "
              "(m/s); faster steps are scaled down keeping their direction.", min=0.0, max=2.0),
    ParamSpec("safety.max_yaw_rate", _floor6(_LIMITS.max_yaw_rate), "Largest yaw rate (rad/s).",
              min=0.0, max=10.0),
    ParamSpec("safety.max_yaw", _floor6(_LIMITS.max_yaw), "Largest gripper yaw either way (rad) "
              "about the vertical; the wrist's range, kept with a margin.", min=0.0, max=3.14159),
]

# A state offered again this long after it was answered is answered again: the first answer
# was probably lost (a publisher not yet matched), and the simulation repeats a state once a second.
REANSWER_AFTER_S = 0.5
# Timer mode: a set may be decided on this share of a period before its decision is due, and a
# decision later than that share after it is a missed cycle.
DUE_TOLERANCE = 0.25
# Timer mode: the fallback tick (deciding on the newest set, however old) comes this share of a
# period after the due time, not at it. A camera faster than the rate (30 Hz clouds, 10 Hz
# decisions) often has a set in a few ms after the due time; a tick at the due time took the set
# before it, one camera period older, so every few cycles a decision was 30 ms late for nothing.
FALLBACK_GRACE = 0.2

# The robot state every controller reads. Topic name -> (message type, QoS).
STATE_TOPICS = {topics.EE_POSE: (PoseStamped, qos.RELIABLE), topics.JOINT_STATES: (JointState, qos.RELIABLE)}


@dataclass
class InputSet:
    """One complete, consistent set of input messages (topic -> message)."""
    messages: dict
    stamp: object          # builtin_interfaces/Time of the end-effector pose: the state's instant
    stamp_ns: int
    received: float        # time.monotonic() when the set became complete


class ControllerStats:
    """Counters and recent timings for /diagnostics and the benchmarks (thread-safe enough: each
    field is written by one callback group)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Start counting again (e.g. after start-up, which is not the runtime's cost)."""
        self.decisions = 0
        self.failures = 0
        self.reduced = 0
        self.missed_cycles = 0
        self.latencies_ms: deque = deque(maxlen=2000)     # set complete -> command published
        self.decision_times: deque = deque(maxlen=2000)   # time.monotonic() of each publish

    def latency_percentiles(self) -> tuple[float, float]:
        values = np.array(tuple(self.latencies_ms))   # a snapshot: another thread appends
        if values.size == 0:
            return math.nan, math.nan
        return float(np.percentile(values, 50)), float(np.percentile(values, 99))

    def achieved_rate(self, window_s: float = 2.0) -> float:
        now = time.monotonic()
        recent = [t for t in tuple(self.decision_times) if now - t <= window_s]   # a snapshot
        return len(recent) / window_s


class ControllerNode(Node):
    """Base of every controller. Subclasses implement ``act(messages) -> action`` (topic ->
    message, for controllers that read raw topics, e.g. the scripted expert) or derive from
    ``ObservationController`` and implement ``act(observation)``."""

    def __init__(self, name: str, params: Sequence[ParamSpec] = (), extra_topics: dict | None = None,
                 **node_kwargs):
        """``extra_topics`` maps further topics to read in step with the state to (type, QoS)."""
        super().__init__(name, **node_kwargs)
        self._own_specs = list(params)
        declare_parameters(self, [*CONTROLLER_PARAMS, *params])
        p = param_values(self, CONTROLLER_PARAMS)
        self.control_period = p["control_period"]
        self.base_frame = p["base_frame"]
        self.trigger = p["trigger"]
        self._limits = self._limits_from(p)
        self._log = ReasonThrottle(self.get_logger(), period_s=2.0)
        self.stats = ControllerStats()
        self._lock = threading.Lock()

        # Decisions run in a thread of their own (``_decision_loop``), so that the executor, which
        # runs everything else (inputs, e-stop, enable, watchdog, diagnostics, services), never
        # waits for a slow decision. rclpy's MultiThreadedExecutor did this with callback groups,
        # but under a 30 Hz stream of 4.9 MB clouds it left gaps of 0.2-2 s in which no input
        # was handed to the node (`equimanip bench latency`: p99 167-237 ms and 9-26 missed
        # cycles in 30 s, against 25-31 ms and none with the decisions in their own thread).
        # ``_decision_mutex`` keeps decisions and the episode hooks from running at the same time.
        # The simulation's episode events are queued for the decisions' thread, which runs their
        # hooks between two decisions: the executor's thread, which also delivers the e-stop and
        # the inputs a decision may be waiting for (a goal's object poses), never waits for a
        # decision on their account. (~/reset, a person's call, still waits for one decision.)
        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._safety_group = MutuallyExclusiveCallbackGroup()
        self._decision_mutex = threading.Lock()
        self._episode_events: deque = deque()   # (name, values, stamp ns) for the decisions' thread
        self._wake_decider = threading.Event()
        self._stop_decider = threading.Event()
        self._fallback_at = -math.inf      # timer mode: when the fallback tick is due

        self._pub_gripper = self.create_publisher(Float64, topics.GRIPPER, qos.RELIABLE)
        self._pub_twist = self.create_publisher(TwistStamped, topics.TWIST, qos.RELIABLE)
        self._pub_action = self.create_publisher(JointState, topics.ACTION, qos.RELIABLE)
        self._pub_trajectory = self.create_publisher(JointTrajectory, topics.JOINT_TRAJECTORY, qos.RELIABLE)
        self._arm_positions: Optional[np.ndarray] = None   # from the last input set, for trajectories
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE)
        self._pub_metadata = self.create_publisher(String, "~/metadata", qos.LATCHED)

        # Created before the inputs' subscriptions: rclpy's executor takes what is ready in the
        # order of creation, so a start event and the new scene's first state that arrive together
        # (the simulation sends the event first) run the episode's start hook before that state is
        # decided on, not after it (which would clear a planner's warm start from that decision).
        if p["episode_events_topic"]:
            self.create_subscription(DiagnosticArray, p["episode_events_topic"], self._on_episode_event,
                                     qos.RELIABLE, callback_group=self._safety_group)
        subscribed = {**STATE_TOPICS, **(extra_topics or {})}
        self._sync = TimeSync(list(subscribed), self._on_set, slop=p["sync_slop"])
        reliable_sensors = self.has_parameter("sensor_reliability") and \
            self.get_parameter("sensor_reliability").value == "reliable"
        for topic, (msg_type, profile) in subscribed.items():
            if profile is qos.SENSOR and reliable_sensors:
                profile = qos.RELIABLE_SENSOR
            self.create_subscription(msg_type, topic, partial(self._sync.add, topic), profile,
                                     callback_group=self._inputs_group)

        # Safety state. _enabled: ~/enable, start_enabled, latched off by the e-stop.
        self._enabled = p["start_enabled"]
        self._stop_reason = None if self._enabled else "waiting for ~/enable (start_enabled is false)"
        self._estop_engaged = False
        self._period_mismatch: Optional[str] = None
        self._holding = False              # the watchdog sent its zero twist; silent until new data
        self._commanded = False            # something non-zero went out since the last hold
        self._latest: Optional[InputSet] = None
        self._last_decided_ns = -1
        # Sets not answered in this episode (see _start_episode): stamped before the start event,
        # or at the stamp of the newest set of the episode before (republished in sync mode).
        self._episode_start = EpisodeStart()
        self._stale_stamp_ns: Optional[int] = None
        self.episode_start_ns: Optional[int] = None      # during on_episode_start: the event's stamp
        self._last_answer = -math.inf      # time.monotonic() of the last command published
        self._last_decision = -math.inf    # time.monotonic() of the last decision published
        self._next_due = -math.inf         # timer mode: when the next decision is due
        self._last_input = time.monotonic()  # the watchdog counts from start-up
        self._last_gripper: Optional[float] = None

        # Volatile, so that every reliable publisher matches (a latching subscription would refuse
        # `ros2 topic pub` and make every e-stop source warn): an e-stop source should repeat its
        # state (as e-stop bridges do), and a real cell's controllers start disabled (robot.yaml).
        self.create_subscription(Bool, topics.ESTOP, self._on_estop, qos.RELIABLE, callback_group=self._safety_group)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=self._safety_group)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._safety_group)
        if p["arm_metadata_topic"]:
            self.create_subscription(String, p["arm_metadata_topic"], self._on_arm_metadata, qos.LATCHED,
                                     callback_group=self._safety_group)

        # A KeyboardInterrupt or SystemExit inside a decision is raised again in the executor's
        # thread (the one that spins, as before the decision thread), after the arm is held.
        self._decider_interrupt: Optional[BaseException] = None
        self._reraise = self.create_guard_condition(self._reraise_interrupt, callback_group=self._safety_group)
        self._decider = threading.Thread(target=self._decision_loop, name=f"{name}-decisions", daemon=True)
        self._decider.start()
        self._watchdog = self.create_timer(self._watchdog_period(), self._on_watchdog,
                                           callback_group=self._safety_group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._safety_group)
        self.add_on_set_parameters_callback(self._validate_limits)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._publish_metadata()

    # ------------------------------------------------------------------ what subclasses provide
    def act(self, messages: dict) -> np.ndarray:
        """Action [p, dx, dy, dz, dyaw] for one consistent set of messages (topic -> message)."""
        raise NotImplementedError

    def action_for(self, inputs: InputSet) -> np.ndarray:
        """The subclass's decision for one input set (ObservationController builds the
        Observation here first)."""
        return self.act(inputs.messages)

    def on_episode_start(self) -> None:
        """A new episode begins (``~/reset`` or the simulation's episode_start): drop memory.
        While it runs, ``self.episode_start_ns`` is the start event's stamp (None for ~/reset or
        a direct call): what is stamped at or after it belongs to the new episode already."""

    def on_episode_end(self, success: bool) -> None:
        """The episode ended (the simulation's episode_end)."""

    def is_warmed_up(self) -> bool:
        """Whether the controller's model is ready to decide quickly (e.g. after a warm-up run)."""
        return True

    def metadata(self) -> dict:
        """What a recorder should know about this controller besides the runtime's settings."""
        return {}

    # ------------------------------------------------------------------ readiness and state
    def inputs_connected(self) -> bool:
        """Every topic this controller reads has a publisher (discovery is done)."""
        return not self._unconnected_inputs()

    def _unconnected_inputs(self) -> list[str]:
        resolved = [self.resolve_topic_name(t) for t in self._sync.topics]   # after remapping
        return [t for t in resolved if self.count_publishers(t) == 0]

    def readiness(self) -> tuple[bool, str]:
        """(ready, what it is waiting for): inputs connected, a first complete set of inputs, the
        model warmed up, and commanding allowed."""
        missing = self._unconnected_inputs()
        if missing:
            return False, f"publishers on {', '.join(missing)}"
        if self._latest is None and self.stats.decisions == 0:
            return False, f"a first complete set of {', '.join(self._sync.topics)}"
        if not self.is_warmed_up():
            return False, "the model to warm up"
        reason = self.stop_reason()
        if reason is not None:
            return False, f"commanding to be allowed ({reason})"
        return True, ""

    def stop_reason(self) -> Optional[str]:
        """Why this controller does not command the arm now, or None."""
        with self._lock:
            if not self._enabled:
                return self._stop_reason
            return self._period_mismatch

    @property
    def limits(self) -> SafetyLimits:
        return self._limits

    # ------------------------------------------------------------------ inputs and decisions
    def _on_set(self, messages: dict) -> None:
        stamp = messages[topics.EE_POSE].header.stamp
        inputs = InputSet(messages, stamp, msgs.nanoseconds(stamp), time.monotonic())
        with self._lock:
            self._latest = inputs
            self._last_input = inputs.received
            self._holding = False
        self._wake_decider.set()

    def _decision_loop(self) -> None:
        """The decisions' thread: decide when a set comes in, and in timer mode also at the fallback
        tick (a fifth of a period after the due time, then once a period) on the newest set."""
        while not self._stop_decider.is_set():
            timeout = None
            if self.trigger == "timer":
                period = 1.0 / self.get_parameter("rate_hz").value
                now = time.monotonic()
                if self._fallback_at <= now:
                    self._fallback_at = now + period
                timeout = self._fallback_at - now
            self._wake_decider.wait(timeout)
            self._wake_decider.clear()
            if self._stop_decider.is_set():
                break
            try:
                with self._decision_mutex:
                    self._run_episode_events()
                    self._decide()
            except (KeyboardInterrupt, SystemExit) as e:
                # The arm is held already (_decide_on); the spinning thread stops the node.
                self._decider_interrupt = e
                self._reraise.trigger()
                return
            except Exception as e:  # noqa: BLE001 - the thread must outlive any one decision
                self._log.error("decision-loop", f"decision failed outside the safety net: {_short(e)}")

    def _reraise_interrupt(self) -> None:
        if self._decider_interrupt is not None:
            raise self._decider_interrupt

    def destroy_node(self):
        self._stop_decider.set()
        self._wake_decider.set()
        if self._decider is not threading.current_thread():
            self._decider.join(timeout=5.0)
        return super().destroy_node()

    def _decide(self) -> None:
        now = time.monotonic()
        with self._lock:
            inputs = self._latest
            if self._episode_events:
                # An episode event came in after this turn ran the hooks. The executor thread
                # queues events and hands over sets in the order they arrive, so it may have come
                # before this set: if it starts an episode, this set is that episode's first state
                # and must not be answered with the episode before's memory. Hooks first (next turn).
                self._wake_decider.set()
                return
            if inputs is None or self._from_before_episode(inputs) or not self._enabled or \
                    self._period_mismatch:
                return
            if self.trigger == "state":
                if inputs.stamp_ns == self._last_decided_ns and now - self._last_answer < REANSWER_AFTER_S:
                    return  # the same state again, just answered (a republish that crossed our answer)
            else:
                period = 1.0 / self.get_parameter("rate_hz").value
                if inputs.stamp_ns == self._last_decided_ns or now < self._next_due - DUE_TOLERANCE * period:
                    return
            if not self.ready_to_decide(inputs):
                return                          # not marked decided: decided on once it can be
            self._last_decided_ns = inputs.stamp_ns
        self._decide_on(inputs)

    def ready_to_decide(self, inputs: InputSet) -> bool:
        """Whether ``inputs`` can be decided on yet (readiness() says what is missing); a set that
        cannot is kept, not counted as a failure."""
        return True

    def _decide_on(self, inputs: InputSet) -> None:
        started = time.monotonic()
        try:
            action = self.action_for(inputs)
            ee = msgs.pose7(inputs.messages[topics.EE_POSE].pose)
            frame = normalize_frame_id(inputs.messages[topics.EE_POSE].header.frame_id)
            if frame not in ("", normalize_frame_id(self.base_frame)):
                raise CommandRejected(f"the end-effector pose is in frame '{frame}', not '{self.base_frame}'")
            if self.get_parameter("safety.enabled").value:
                limited = limit_action(action, ee, self.control_period, self._limits)
                safe, reductions = limited.action, limited.reductions
            else:
                safe, clipped = clip_action(as_action(action))
                reductions = ("clipped to the action limits",) if clipped else ()
        except (KeyboardInterrupt, SystemExit):
            self._hold(inputs.stamp, "interrupted while deciding")  # stop the arm first, then go
            raise
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the arm must hold still
            self.stats.failures += 1
            self._log.error(f"fail:{type(e).__name__}", f"no valid action ({type(e).__name__}: "
                      f"{_short(e)}); holding the arm still")
            with self._lock:
                if self._enabled and not self._period_mismatch:   # a stop meanwhile has held already
                    self._hold(inputs.stamp, None)
            return
        if reductions:
            self.stats.reduced += 1
            self._log.warning("reduced:" + reductions[0].split(" ")[0],
                      "safety layer reduced a command: " + "; ".join(reductions))
        now = time.monotonic()
        with self._lock:
            if not self._enabled or self._period_mismatch:
                return  # stopped while deciding: the stop's zero twist stands
            if now - inputs.received > self.get_parameter("observation_timeout").value:
                self._log.warning("stale", f"dropped a decision on inputs {now - inputs.received:.2f} s "
                          "old (older than observation_timeout)")
                return
            if self.trigger == "timer":
                self._keep_schedule(started, inputs.received)
            self._arm_positions = _arm_positions(inputs.messages[topics.JOINT_STATES])
            self._publish(safe, inputs.stamp)
            self._last_decision = now
            self.stats.decisions += 1
            self.stats.decision_times.append(now)
            self.stats.latencies_ms.append((time.monotonic() - inputs.received) * 1000.0)

    def _keep_schedule(self, started: float, available_since: float) -> None:
        """Timer mode: count the cycles this decision missed and set when the next one is due.

        A cycle is missed when a decision starts more than a quarter period after it was due while
        the previous decision was still running, or with data in hand (``available_since``: when
        the set decided on came in); a gap in the data is the watchdog's business, not a missed
        cycle. A late decision restarts the schedule from
        its own start, so a controller slower than the rate decides again as soon as it is done,
        on the newest data, and never makes up for the cycles it missed by deciding faster."""
        period = 1.0 / self.get_parameter("rate_hz").value
        # Late from the due time when the previous decision was still running then (data may have
        # waited in the queue meanwhile), else from when the data came in.
        busy_past_due = self._last_decision > self._next_due
        late_with_data = started - (self._next_due if busy_past_due else max(self._next_due, available_since))
        if late_with_data > DUE_TOLERANCE * period and self._next_due > -math.inf:
            self.stats.missed_cycles += int((late_with_data - DUE_TOLERANCE * period) // period) + 1
        if self._next_due == -math.inf or started - self._next_due > 0.5 * period:
            self._next_due = started + period
        else:
            self._next_due += period
        # The fallback tick comes a little after the next decision is due (then once a period again).
        self._fallback_at = self._next_due + FALLBACK_GRACE * period

    # ------------------------------------------------------------------ output
    def _publish(self, action: np.ndarray, stamp, hold: bool = False) -> None:
        """Send one action (already through the safety layer) as gripper, twist and stamped action.
        The last guard: nothing non-finite ever leaves this function. ``hold``: a stop, whose
        trajectory output is an empty trajectory (the controller then holds where the arm is) and
        whose gripper command is only the one this node sent last, if any."""
        if not np.all(np.isfinite(action)):
            self._log.error("nonfinite", f"refused to publish a non-finite action {action.tolist()}")
            action = np.array([self._last_gripper if self._last_gripper is not None else 1.0, 0, 0, 0, 0])
            hold = True
        # Never open or close a gripper on a stop: a stop before any gripper command sends none,
        # and its stamped action has no gripper either (a simulation in sync mode takes the
        # step's gripper from it: open would drop a block).
        commands_gripper = not (hold and self._last_gripper is None)
        if commands_gripper:
            self._last_gripper = float(action[0])
            self._pub_gripper.publish(Float64(data=self._last_gripper))
        output = self.get_parameter("output").value
        if output in ("twist", "both"):
            msg = TwistStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = self.base_frame
            v = action[1:5] / self.control_period
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(x) for x in v[:3])
            msg.twist.angular.z = float(v[3])
            self._pub_twist.publish(msg)
        if output in ("joint_trajectory", "both"):
            self._publish_trajectory(None if hold else action)
        self._pub_action.publish(msgs.action_msg(action, stamp, self.base_frame, gripper=commands_gripper))
        self._last_answer = time.monotonic()
        self._commanded = bool(np.any(action[1:5] != 0.0))

    def _publish_trajectory(self, action: Optional[np.ndarray]) -> None:
        """The step as a one-point JointTrajectory, reached one control period after it arrives
        (stamp zero: a stamp in the past would shorten the move and speed it up). ``None``: a stop,
        sent as an empty trajectory, which a joint_trajectory_controller takes as "hold where you
        are" (a target from the last known positions could move the arm back). Without joint
        positions yet there is nothing safe to send."""
        if action is None:
            self._pub_trajectory.publish(JointTrajectory(joint_names=list(PANDA.joint_names), points=[]))
            return
        if self._arm_positions is None:
            return
        try:
            target = PANDA.joint_step(self._arm_positions, action[1:5], self.control_period)
        except ValueError as e:
            self._log.error("trajectory", f"no joint trajectory for this step: {_short(e)}")
            return
        whole = int(self.control_period)
        reach_in = Duration(sec=whole, nanosec=int(round((self.control_period - whole) * 1e9)))
        point = JointTrajectoryPoint(positions=[float(v) for v in target], time_from_start=reach_in)
        self._pub_trajectory.publish(JointTrajectory(joint_names=list(PANDA.joint_names), points=[point]))

    def _hold(self, stamp, reason: Optional[str]) -> None:
        """One zero twist (the gripper kept as it is), e.g. after a failure or on a stop."""
        if reason:
            self.get_logger().warning(f"holding the arm still: {reason}")
        gripper = self._last_gripper if self._last_gripper is not None else 1.0   # not sent when None
        self._publish(np.array([gripper, 0.0, 0.0, 0.0, 0.0]), stamp if stamp is not None else self._now_stamp(),
                      hold=True)

    def _now_stamp(self):
        return self.get_clock().now().to_msg()

    # ------------------------------------------------------------------ safety callbacks
    def _on_watchdog(self) -> None:
        with self._lock:
            age = time.monotonic() - self._last_input
            if age <= self.get_parameter("observation_timeout").value or self._holding:
                return
            self._holding = True
            if not (self._enabled and not self._period_mismatch and self._commanded):
                return  # nothing moving to stop
            self._hold(None, None)
        self.get_logger().warning(f"no fresh complete set of inputs for {age:.2f} s: sent one zero "
                                  "twist; silent until data returns")

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            was_engaged = self._estop_engaged
            self._estop_engaged = bool(msg.data)
            if not msg.data:
                if was_engaged:
                    self.get_logger().info("e-stop released; call ~/enable to command again")
                return
            stopping = self._enabled
            self._enabled = False
            self._stop_reason = "e-stop (/estop true); call ~/enable after releasing it"
            if stopping and self._commanded:        # once, on the stop; not again on a repeated true
                self._hold(None, None)
        if stopping:
            self.get_logger().error("e-stop: stopped commanding the arm")

    def _on_enable(self, request, response):
        with self._lock:
            if request.data and self._estop_engaged:
                response.success, response.message = False, "the e-stop is engaged (/estop true); release it first"
            elif request.data:
                self._enabled, self._stop_reason = True, None
                response.success = True
                response.message = ("enabled" if not self._period_mismatch
                                    else f"enabled, but not commanding: {self._period_mismatch}")
            else:
                was = self._enabled
                self._enabled, self._stop_reason = False, "disabled through ~/enable"
                if was and self._commanded:
                    self._hold(None, None)
                response.success, response.message = True, "disabled"
        self.get_logger().info(f"~/enable {request.data}: {response.message}")
        return response

    def _on_arm_metadata(self, msg: String) -> None:
        try:
            arm_period = float(json.loads(msg.data)["control_period"])
        except (ValueError, KeyError, TypeError) as e:
            self._log.warning("arm-metadata", f"ignored unreadable arm metadata: {_short(e)}")
            return
        with self._lock:
            before = self._period_mismatch
            if abs(arm_period - self.control_period) > 1e-9:
                self._period_mismatch = (f"control_period {self.control_period} s differs from the arm's "
                                         f"{arm_period} s: the twists would be {arm_period / self.control_period:.3g}x "
                                         "too fast or slow")
                if before is None and self._commanded:
                    self._hold(None, None)
            else:
                self._period_mismatch = None
        if self._period_mismatch and self._period_mismatch != before:
            self.get_logger().error(f"not commanding: {self._period_mismatch}")
        elif before and not self._period_mismatch:
            self.get_logger().info("control period matches the arm's again")

    # ------------------------------------------------------------------ episodes
    def _on_reset(self, _request, response):
        with self._decision_mutex:             # between two decisions
            self._start_episode("~/reset")
        response.success, response.message = True, "controller state cleared"
        return response

    def _on_episode_event(self, msg: DiagnosticArray) -> None:
        """Queue the events for the decisions' thread (see ``_decision_mutex``) and wake it."""
        stamp_ns = msgs.nanoseconds(msg.header.stamp)
        for status in msg.status:
            if status.name in ("episode_start", "episode_end"):
                self._episode_events.append((status.name, {kv.key: kv.value for kv in status.values}, stamp_ns))
        self._wake_decider.set()

    def _run_episode_events(self) -> None:
        """The queued episode events' hooks, in order (the decisions' thread, between two decisions)."""
        while self._episode_events:
            name, values, stamp_ns = self._episode_events.popleft()
            if name == "episode_start":
                # Unstamped (0): as a ~/reset, whatever is here is from before.
                self._start_episode("episode_start", stamp_ns if stamp_ns > 0 else None)
            else:
                try:
                    self.on_episode_end(values.get("success", "false") == "true")
                except Exception as e:  # noqa: BLE001 - a hook must not take the node down
                    self._log.error("hook-end", f"on_episode_end failed: {_short(e)}")

    def _start_episode(self, why: str, start_ns: Optional[int] = None) -> None:
        """A new episode (``~/reset``, or the arm's episode_start event stamped ``start_ns``)."""
        with self._lock:
            # Stamps decided before do not hold in a new episode (a cell whose clock restarts
            # repeats them). The newest set is not answered in it when it is the episode before's:
            # when it was answered already, when a ~/reset comes (between episodes, before the new
            # scene's first state), or when it is stamped before the start event. Its answer would
            # command a state the arm has left; in the simulation's sync mode the twist is then
            # dropped as stale but its unstamped gripper command is taken as the next state's, so
            # the gripper could lag a step for the rest of the run (and a sampling planner would
            # draw its random numbers once more): sync-mode runs would not repeat.
            # By stamp, not by the set: the simulation republishes its last state while it waits,
            # and each republish is a new set of the same stamp.
            latest = self._latest
            self._episode_start.ns = start_ns
            before = latest is not None and (start_ns is None or latest.stamp_ns < start_ns
                                             or latest.stamp_ns == self._last_decided_ns)
            self._stale_stamp_ns = latest.stamp_ns if before else None
            self._last_decided_ns = -1
        self.episode_start_ns = start_ns          # for the hook only
        try:
            self.on_episode_start()
        except Exception as e:  # noqa: BLE001
            self._log.error("hook-start", f"on_episode_start ({why}) failed: {_short(e)}")
        finally:
            self.episode_start_ns = None

    def _from_before_episode(self, inputs: InputSet) -> bool:
        """Whether ``inputs`` belongs to the episode before this one (see _start_episode). Stamps
        below the start event's are; below a ~/reset's newest set they need not be (a cell whose
        clock restarted), only that set's own stamp is taken as the episode before's."""
        # (Far older than the start: the cell's clock restarted, e.g. a new simulation whose start
        # event was missed while discovery went on, not a late state: its states are answered.)
        return self._episode_start.precedes(inputs.stamp_ns) or inputs.stamp_ns == self._stale_stamp_ns

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _limits_from(values: dict) -> SafetyLimits:
        return SafetyLimits(tuple(values["safety.workspace_min"]), tuple(values["safety.workspace_max"]),
                            values["safety.max_linear_speed"], values["safety.max_yaw_rate"],
                            values["safety.max_yaw"])

    def _validate_limits(self, params) -> SetParametersResult:
        values = param_values(self, CONTROLLER_PARAMS)
        values.update({q.name: q.value for q in params if q.name in values})
        try:
            self._limits_from(values).validate()
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, params) -> None:
        names = {q.name for q in params}
        values = param_values(self, CONTROLLER_PARAMS)
        self._limits = self._limits_from(values)
        if "sync_slop" in names:
            self._sync.slop = values["sync_slop"]
        if "rate_hz" in names:
            self._wake_decider.set()           # the decisions' thread reads the new period
        if "observation_timeout" in names:
            self._watchdog.timer_period_ns = int(self._watchdog_period() * 1e9)
        self._publish_metadata()

    def _watchdog_period(self) -> float:
        return min(self.control_period, self.get_parameter("observation_timeout").value / 2.0)

    # ------------------------------------------------------------------ health
    def _publish_metadata(self) -> None:
        values = param_values(self, [*CONTROLLER_PARAMS, *self._own_specs])
        data = {"node": self.get_fully_qualified_name(), "controller": type(self).__name__,
                "action_names": list(ACTION_NAMES), "action_low": ACTION_LOW.tolist(),
                "action_high": ACTION_HIGH.tolist(), "parameters": values, **self.metadata()}
        self._pub_metadata.publish(String(data=json.dumps(data, default=str)))

    def diagnostics(self) -> DiagnosticStatus:
        reason = self.stop_reason()
        age = time.monotonic() - self._last_input
        p50, p99 = self.stats.latency_percentiles()
        ready, waiting = self.readiness()
        if reason is not None:
            level = DiagnosticStatus.ERROR if self._estop_engaged else DiagnosticStatus.WARN
            message = f"stopped: {reason}"
        elif self._holding:
            level, message = DiagnosticStatus.WARN, f"holding: no fresh inputs for {age:.1f} s"
        elif not ready:
            level, message = DiagnosticStatus.WARN, f"waiting for {waiting}"
        else:
            level, message = DiagnosticStatus.OK, "commanding"
        values = {
            "enabled": reason is None, "stop_reason": reason or "", "ready": ready, "waiting_for": waiting,
            "trigger": self.trigger, "observation_age_s": f"{age:.3f}",
            "decision_latency_p50_ms": f"{p50:.2f}", "decision_latency_p99_ms": f"{p99:.2f}",
            "achieved_rate_hz": f"{self.stats.achieved_rate():.2f}", "decisions": self.stats.decisions,
            "failures": self.stats.failures, "commands_reduced": self.stats.reduced,
            "missed_cycles": self.stats.missed_cycles,
        }
        return DiagnosticStatus(level=level, name=f"{self.get_name()}: controller", message=message,
                                hardware_id=self.get_fully_qualified_name(),
                                values=[KeyValue(key=k, value=str(v).lower() if isinstance(v, bool) else str(v))
                                        for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics()])
        msg.header.stamp = self._now_stamp()
        self._pub_diagnostics.publish(msg)


OBSERVATION_CONTROLLER_PARAMS = [
    ParamSpec("sensor_reliability", "best_effort", "How the point cloud is subscribed: best_effort "
              "matches every publisher; reliable only reliable ones, and DDS then resends lost "
              "fragments of large clouds (set it for a driver that publishes reliably).",
              choices=("best_effort", "reliable"), read_only=True),
]


class ObservationController(ControllerNode):
    """Base of learned controllers: ``act(observation) -> action`` on the ``Observation`` that
    ``build_observation`` makes of the newest (cloud, end-effector pose, joint states) set, with the
    perception parameters (``observation.*``, camera pose source) of ``ObservationInput``."""

    def __init__(self, name: str, params: Sequence[ParamSpec] = (), extra_topics: dict | None = None,
                 **node_kwargs):
        from equimanip.nodes.observation_input import ObservationInput

        super().__init__(name, [*OBSERVATION_CONTROLLER_PARAMS, *params],
                         {topics.CLOUD: (PointCloud2, qos.SENSOR), **(extra_topics or {})}, **node_kwargs)
        self.observations = ObservationInput(self, self.base_frame)
        self.last_observation = None    # the Observation of the last decision
        self._warm_up_perception()

    def _warm_up_perception(self) -> None:
        """Run the perception pipeline once on a small synthetic scene, so that the first real
        decision does not pay for imports and first-call set-up (about half a second here)."""
        from equimanip.perception.observation import build_observation

        rng = np.random.default_rng(0)
        config = self.observations.config
        lo, hi = np.asarray(config.workspace_min), np.asarray(config.workspace_max)
        points = rng.uniform(lo, hi, size=(2000, 3)).astype(np.float32)
        points[:, 2] = np.where(rng.random(2000) < 0.8, config.table_z, points[:, 2])
        ee = np.concatenate([(lo + hi) / 2, [1.0, 0.0, 0.0, 0.0]])
        build_observation(points, ee, 1.0, 0.0, config)

    def act(self, observation) -> np.ndarray:  # noqa: D401 - the observation, not raw messages
        """Action [p, dx, dy, dz, dyaw] for one Observation."""
        raise NotImplementedError

    def observation_config(self):
        """The perception settings of the next observation (a policy node overrides the ones its
        network depends on with its checkpoint's)."""
        return self.observations.config

    def observe(self, inputs: InputSet, goal_xy=None):
        """The Observation of one input set (``goal_xy``: the goal its goal channel shows, for a
        network that has one). Raises ValueError for a blind camera, as for any bad input."""
        m = inputs.messages
        observation = self.observations.build(m[topics.CLOUD], m[topics.EE_POSE], m[topics.JOINT_STATES],
                                              self.observation_config(), goal_xy=goal_xy)
        if observation.points_in_workspace == 0:
            # An empty heightmap is not "an empty table": a policy must not act on a blind camera.
            raise ValueError("the cloud has no valid point inside the observation crop box "
                             "(observation.workspace_min/max): is the camera covered, or its pose wrong?")
        self.last_observation = observation
        return observation

    def action_for(self, inputs: InputSet) -> np.ndarray:
        return self.act(self.observe(inputs))

    def ready_to_decide(self, inputs: InputSet) -> bool:
        """Not before any camera pose is known: the latched camera pose may come in after the first
        cloud (at start-up, or on a cell whose pose publisher starts later). Once one is known, a
        cloud in a frame that cannot be placed is decided on, and fails: the arm is held."""
        if not self.observations.awaiting_camera_pose():
            return True
        frame = inputs.messages[topics.CLOUD].header.frame_id
        self._log.warning("camera-pose", f"waiting for the pose of the camera frame '{frame}' (tf2, "
                          "/camera/pose or camera_pose) before deciding")
        return False

    def readiness(self) -> tuple[bool, str]:
        ready, waiting = super().readiness()
        if ready and self._latest is not None:
            frame = self._latest.messages[topics.CLOUD].header.frame_id
            if not self.observations.can_resolve(frame):
                return False, f"the pose of the camera frame '{frame}' (tf2, /camera/pose or camera_pose)"
        return ready, waiting

    def metadata(self) -> dict:
        observations = getattr(self, "observations", None)  # None while the base class starts
        return {} if observations is None else {"observation": observations.config.__dict__}


def _arm_positions(joint_states) -> Optional[np.ndarray]:
    """The Panda's arm joints from a JointState, or None when some are missing or not finite."""
    try:
        q = msgs.joint_positions(joint_states, PANDA.joint_names)
    except KeyError:
        return None
    return q if np.all(np.isfinite(q)) else None


def _short(e: BaseException, limit: int = 200) -> str:
    """An exception's text cut to a readable length (a 1e308 value must not print 309 digits)."""
    text = str(e)
    return text if len(text) <= limit else text[:limit] + "..."
