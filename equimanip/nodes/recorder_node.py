"""recorder_node: demonstrations from the ROS graph into episode bags.

Subscribes to the observation topics (point cloud, joint states, end-effector pose, camera pose,
the task's goal on ``/equimanip/goal`` where a cell publishes one, the simulation's object poses)
and the action topics (the stamped ``/equimanip/action``, the twist and gripper commands), whoever
publishes them: the scripted expert, ``teleop_keyboard``, a space mouse or any MoveIt Servo
client. Each episode becomes one rosbag2 bag directory (``equimanip.data.bag``: MCAP + metadata.yaml
v5) in ``output_dir``, named ``episode_NNNN``; the task, success, operator note, the run's metadata
(``/sim_node/metadata`` and every controller's ``~/metadata``, found by name) and this node's
parameters go into the bag's episode record.

Episodes are started, stopped and discarded through services, or follow the simulation's episode
events (``follow_episode_events``):

* ``~/start_episode`` (std_srvs/Trigger): a new bag; the latest latched messages (camera pose,
  goal, metadata) are written first so that every bag stands alone;
* ``~/stop_episode`` (std_srvs/SetBool, data = success): close and rename it into place;
* ``~/discard_episode`` (std_srvs/Trigger): drop it.

Messages arrive as serialized CDR (``raw=True`` subscriptions) and are written as they are, with no
decoding and no copy into Python message objects, so a 640 x 480 cloud at 15 Hz costs little more
than its bytes (``equimanip bench recorder``). Every received message of an open episode is
written; ``stats`` counts what was received and written per topic.

Nothing is lost: a bag is written under a hidden name and renamed into place when closed. Ctrl-C
or SIGTERM during an episode closes it properly: kept and marked unfinished, or discarded
(``on_interrupt``). An unwritable ``output_dir`` stops the node at start-up with the reason; a
full disk during an episode discards that episode with an error line and never touches earlier
ones.
"""
from __future__ import annotations

import collections
import importlib
import json
import queue
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from equimanip.data import episode as ep
from equimanip.data.bag import BagWriteError, BagWriter, check_writable, list_bags, list_partial
from equimanip.data.msgdefs import MessageDefinitionError, schema_text, starts_with_header
from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.params import ParamSpec, declare_parameters, param_values
from equimanip.nodes.spin import spin_node

try:
    from diagnostic_msgs.msg import DiagnosticArray
    _NO_EPISODE_EVENTS = ""
except ImportError as _e:  # an install requirement; without it the recorder says so (__init__)
    DiagnosticArray = None
    _NO_EPISODE_EVENTS = (f"follow_episode_events: following the simulation's episode events is unavailable, "
                          f"their message type diagnostic_msgs/DiagnosticArray cannot be imported ({_e}); no "
                          f"episode will start on its own. Install diagnostic_msgs (ros-$ROS_DISTRO-"
                          f"diagnostic-msgs; pip: ros-diagnostic-msgs) or use ~/start_episode and ~/stop_episode")

PARAMS = [
    ParamSpec("output_dir", "demos", "Directory the episode bags are written to (created if needed).",
              read_only=True),
    ParamSpec("topics", [t.name for t in ep.EPISODE_TOPICS], "Topics recorded into every episode.",
              read_only=True),
    ParamSpec("record_metadata_topics", True, "Also record every latched '<node>/metadata' topic "
              "(std_msgs/String JSON) found in the graph: the controllers' metadata.", read_only=True),
    ParamSpec("follow_episode_events", False, "Start and stop episodes on the simulation's "
              "episode_start / episode_end events (success from the event)."),
    ParamSpec("on_interrupt", "keep", "What Ctrl-C or SIGTERM during an episode does: keep it, "
              "marked unfinished, or discard it.", choices=("keep", "discard")),
    ParamSpec("task", "", "Task name stored with each episode; empty: from the run's metadata."),
    ParamSpec("source", "", "Who demonstrates (expert, keyboard, spacemouse, ...), stored with each episode."),
    ParamSpec("note", "", "Operator note stored with the next episode that closes."),
    ParamSpec("compression", "none", "MCAP chunk compression.", choices=("none", "zstd", "lz4"), read_only=True),
    ParamSpec("sensor_reliability", "best_effort", "How the point cloud is subscribed: best_effort matches "
              "every publisher; reliable only reliable ones (then DDS resends lost fragments of large clouds).",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("chunk_crc", False, "Write CRC-32 checksums of the MCAP chunks (about 3 ms per MB here; "
              "readers then verify them).", read_only=True),
    ParamSpec("max_queue_mb", 1024, "Messages waiting for the disk may hold at most this much memory (MB); "
              "beyond it new messages are dropped and counted (stats, an error line).", min=1, max=65536,
              read_only=True),
    ParamSpec("end_grace", 0.3, "After an episode_end event, keep writing messages of the final "
              "state (stamped at or before the event) for this long (s) before closing.", min=0.0, max=10.0),
]

ON_INTERRUPT = next(s for s in PARAMS if s.name == "on_interrupt")

# Pre-roll: messages received while no episode is open are kept this long, so that a state that
# arrives just before its episode_start event still lands in the episode.
PREROLL_S = 2.0


def message_class(type_name: str):
    """The Python class of ``pkg/msg/Type``."""
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _header_stamp_ns(data: bytes) -> Optional[int]:
    """The header stamp of a CDR message whose first field is a std_msgs/Header (little-endian
    encapsulation: 4 bytes, then int32 sec, uint32 nanosec)."""
    if len(data) < 12 or data[1] != 1:
        return None
    sec, nanosec = struct.unpack_from("<iI", data, 4)
    return sec * 1_000_000_000 + nanosec


@dataclass
class TopicStats:
    received: int = 0
    written: int = 0
    dropped: int = 0          # received but not written: the write queue was full


class _WriterThread:
    """Bag operations on a thread of their own, in the order they were queued: the node's callbacks
    only queue the bytes they receive, so a slow disk never keeps the executor from taking the next
    message off DDS. ``call`` runs an operation after everything queued before it and returns its
    result (or raises its exception); ``submit`` queues without waiting, within a memory bound."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="recorder_writer", daemon=True)
        self._thread.start()

    def submit(self, operation, size: int = 0) -> bool:
        with self._lock:
            if size and self.queued_bytes + size > self.max_bytes:
                return False
            self.queued_bytes += size
        self._queue.put((operation, size, None))
        return True

    def call(self, operation, timeout_s: float = 120.0):
        box: dict = {}
        done = threading.Event()
        self._queue.put((operation, 0, (done, box)))
        if not done.wait(timeout_s):
            raise TimeoutError(f"the recorder's disk writes did not finish within {timeout_s:.0f} s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            operation, size, waiter = item
            try:
                result = operation()
                if waiter is not None:
                    waiter[1]["result"] = result
            except Exception as e:  # noqa: BLE001 - handed to the caller that waits for it
                if waiter is not None:
                    waiter[1]["error"] = e
            finally:
                with self._lock:
                    self.queued_bytes -= size
                if waiter is not None:
                    waiter[0].set()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60.0)


@dataclass
class Episode:
    bag: BagWriter
    index: int
    started: float
    event_values: dict = field(default_factory=dict)
    start_stamp_ns: Optional[int] = None    # from episode_start: older states belong to no episode
    end_stamp_ns: Optional[int] = None      # set by episode_end: closing
    close_at: Optional[float] = None
    success: bool = False
    failed: Optional[str] = None            # a write failed (full disk): the bag is already discarded


class RecorderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("recorder_node", **node_kwargs)
        declare_parameters(self, PARAMS)
        p = param_values(self, PARAMS)
        try:
            self.output_dir = check_writable(Path(p["output_dir"]).expanduser())
        except BagWriteError as e:      # a configuration error: the node does not start (spin_node: exit 2)
            raise ValueError(str(e)) from None
        self._topic_types: dict[str, str] = {}
        self._stamped: dict[str, bool] = {}
        self._latched: dict[str, tuple[int, bytes]] = {}     # latched topic -> last (log time, data)
        self._preroll: collections.deque = collections.deque()
        self._metadata: dict[str, dict] = {}                 # metadata topic -> parsed JSON
        self.stats: dict[str, TopicStats] = collections.defaultdict(TopicStats)
        self.episode: Optional[Episode] = None
        self.closed_episodes: list[Path] = []
        self.errors: list[str] = []
        self._writer = _WriterThread(int(p["max_queue_mb"]) * 1_000_000)
        for name in p["topics"]:
            spec = ep.TOPICS_BY_NAME.get(name)
            if spec is None:
                self.get_logger().warning(f"not recording {name}: only the episode topics have known "
                                          f"types ({', '.join(ep.TOPICS_BY_NAME)})")
                continue
            self._subscribe(name, spec.type, spec.qos)
        if p["record_metadata_topics"]:
            self.create_timer(1.0, self._discover_metadata_topics)
        if DiagnosticArray is not None:
            self.create_subscription(DiagnosticArray, topics.SIM_EPISODE_EVENTS, self._on_episode_event,
                                     qos.RELIABLE)
        else:   # never silently: asked for at start-up or later, it would record nothing
            if p["follow_episode_events"]:
                self.get_logger().error(_NO_EPISODE_EVENTS)
            self.add_post_set_parameters_callback(self._on_follow_set)
        self.create_service(Trigger, "~/start_episode", self._srv_start)
        self.create_service(SetBool, "~/stop_episode", self._srv_stop)
        self.create_service(Trigger, "~/discard_episode", self._srv_discard)
        self.create_timer(0.05, self._on_timer)
        self.get_logger().info(f"recording {len(self._topic_types)} topics into {self.output_dir}")

    # ------------------------------------------------------------------------------ subscriptions
    def _subscribe(self, topic: str, type_name: str, bag_qos) -> None:
        try:
            cls = message_class(type_name)
            schema_text(type_name)          # the definition the bag will need, found now
        except (ImportError, AttributeError, MessageDefinitionError) as e:
            self.get_logger().warning(f"not recording {topic}: {e}")
            return
        if bag_qos.transient_local:
            profile = qos.LATCHED
        elif bag_qos.reliable or self.get_parameter("sensor_reliability").value == "reliable":
            profile = qos.RELIABLE
        else:
            profile = qos.SENSOR
        self._topic_types[topic] = type_name
        self._stamped[topic] = starts_with_header(type_name)
        self.create_subscription(cls, topic, lambda data, t=topic: self._on_message(t, data), profile, raw=True)

    def _discover_metadata_topics(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name.endswith("/metadata") and "std_msgs/msg/String" in types and name not in self._topic_types:
                self._subscribe(name, "std_msgs/msg/String", ep.TOPICS_BY_NAME[ep.SIM_METADATA].qos)

    def _on_message(self, topic: str, data: bytes) -> None:
        now_ns = self.get_clock().now().nanoseconds
        self.stats[topic].received += 1
        stamp = _header_stamp_ns(data) if self._stamped[topic] else None
        if self._is_latched(topic):
            self._latched[topic] = (now_ns, data)
            if topic.endswith("/metadata"):
                self._remember_metadata(topic, data)
        episode = self.episode
        if episode is not None and stamp is not None and episode.start_stamp_ns is not None \
                and stamp < episode.start_stamp_ns:
            return   # a state of the scene before (republished while nobody answered it): no episode's
        if episode is not None and (episode.end_stamp_ns is None or stamp is None or stamp <= episode.end_stamp_ns):
            self._write(topic, data, now_ns)
            return
        if self.get_parameter("follow_episode_events").value:   # only an event can start from the past
            self._preroll.append((topic, now_ns, data, stamp, time.monotonic()))
            while self._preroll and time.monotonic() - self._preroll[0][4] > PREROLL_S:
                self._preroll.popleft()

    def _is_latched(self, topic: str) -> bool:
        spec = ep.TOPICS_BY_NAME.get(topic)
        return topic.endswith("/metadata") or (spec is not None and spec.qos.transient_local)

    def _remember_metadata(self, topic: str, data: bytes) -> None:
        try:
            text = message_from_cdr(String, data).data
            self._metadata[topic] = json.loads(text)
        except (ValueError, TypeError) as e:
            self.get_logger().warning(f"unreadable metadata on {topic}: {e}", throttle_duration_sec=5.0)

    def _write(self, topic: str, data: bytes, log_ns: int) -> None:
        """Queue one message for the open episode's bag (written on the writer thread)."""
        episode = self.episode
        type_name, bag_qos, stats = self._topic_types[topic], self._bag_qos(topic), self.stats[topic]

        def write() -> None:
            if episode.failed:
                return
            try:
                episode.bag.add_topic(topic, type_name, bag_qos)
                episode.bag.write(topic, data, log_ns)
                stats.written += 1
            except BagWriteError as e:    # full disk: this episode is lost, earlier ones are untouched
                episode.failed = str(e)
                self.errors.append(str(e))
                self.get_logger().error(str(e))

        if not self._writer.submit(write, len(data)):
            stats.dropped += 1
            self.get_logger().error(f"dropped a message on {topic}: more than max_queue_mb waiting for the disk",
                                    throttle_duration_sec=1.0)

    def _bag_qos(self, topic: str):
        spec = ep.TOPICS_BY_NAME.get(topic)
        return spec.qos if spec is not None else ep.TOPICS_BY_NAME[ep.SIM_METADATA].qos

    def _fail(self, reason: str) -> None:
        self.errors.append(reason)
        self.get_logger().error(reason)
        if self.episode is not None:
            self.discard_episode()

    # ------------------------------------------------------------------------------ episodes
    def next_index(self) -> int:
        names = [p.name for p in list_bags(self.output_dir)] + [p.name[1:] for p in list_partial(self.output_dir)]
        indices = [int(n.split("_")[1].split(".")[0]) for n in names
                   if n.startswith("episode_") and n.split("_")[1].split(".")[0].isdigit()]
        return max(indices, default=-1) + 1

    def start_episode(self, event_values: Optional[dict] = None, from_stamp_ns: Optional[int] = None) -> Path:
        """Open a new episode bag (closing an open one as unfinished first). Raises BagWriteError."""
        if self.episode is not None:   # ended (episode_end seen, closing) or cut short by this start
            ended = self.episode.end_stamp_ns is not None
            self.stop_episode(self.episode.success if ended else False, finished=ended)
        index = self.next_index()
        p = param_values(self, PARAMS)
        bag = self._writer.call(lambda: BagWriter(self.output_dir, f"episode_{index:04d}",
                                                  compression=p["compression"], crc=p["chunk_crc"]))
        self.episode = Episode(bag=bag, index=index, started=time.time(), event_values=dict(event_values or {}),
                               start_stamp_ns=from_stamp_ns)
        for topic, (log_ns, data) in sorted(self._latched.items(), key=lambda kv: kv[1][0]):
            self._write(topic, data, log_ns)
        if from_stamp_ns is not None:   # the state that came just before its start event
            for topic, log_ns, data, stamp, _ in self._preroll:
                if stamp is not None and stamp >= from_stamp_ns and not self._is_latched(topic):
                    self._write(topic, data, log_ns)
        self._preroll.clear()
        self.get_logger().info(f"episode {index} started")
        return bag.final_path

    def stop_episode(self, success: bool, finished: bool = True) -> Optional[Path]:
        """Close the open episode and rename it into place; None when none is open."""
        episode, self.episode = self.episode, None
        if episode is None:
            return None
        p = param_values(self, PARAMS)
        run = self._metadata.get(topics.SIM_METADATA, {})
        values = episode.event_values
        controllers = {t: m for t, m in self._metadata.items() if t != topics.SIM_METADATA}
        stopped = time.time()

        def close() -> Optional[Path]:   # on the writer thread, after every queued message
            if episode.failed:
                return None
            return episode.bag.close(record())

        def record() -> dict:
            return {
                "format": ep.EPISODE_FORMAT,
                "task": p["task"] or run.get("task") or values.get("task", ""),
                "success": bool(success), "finished": bool(finished), "note": p["note"], "source": p["source"],
                "seed": _int_or_none(values.get("seed", run.get("seed"))),
                # The simulation's count where its episode_end said it; else the actions recorded.
                "steps": _int_or_none(values.get("steps")) or episode.bag.topic_counts().get(ep.ACTION, 0),
                "run_metadata": run, "controllers": controllers,
                "recorder": {k: v for k, v in p.items()},
                "wall_start": episode.started, "wall_stop": stopped,
            }

        try:
            path = self._writer.call(close)
        except (BagWriteError, TimeoutError) as e:
            episode.failed = str(e)
            self.errors.append(str(e))
        if episode.failed:
            self.get_logger().error(f"episode {episode.index} is lost: {episode.failed}")
            return None
        self.closed_episodes.append(path)
        outcome = "success" if success else "failure"
        self.get_logger().info(f"episode {episode.index} {'closed' if finished else 'closed unfinished'} "
                               f"({outcome}, {episode.bag.message_count} messages): {path}")
        if p["note"]:
            self.set_parameters([_string_param("note", "")])
        return path

    def discard_episode(self) -> bool:
        episode, self.episode = self.episode, None
        if episode is None:
            return False
        self._writer.call(episode.bag.discard)
        self.get_logger().info(f"episode {episode.index} discarded")
        return True

    # ------------------------------------------------------------------------------ events
    def _on_follow_set(self, params) -> None:
        if any(q.name == "follow_episode_events" and q.value for q in params):
            self.get_logger().error(_NO_EPISODE_EVENTS)

    def _on_episode_event(self, msg) -> None:
        if not self.get_parameter("follow_episode_events").value:
            return
        stamp = msgs.nanoseconds(msg.header.stamp)
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "episode_start":
                try:
                    self.start_episode(values, from_stamp_ns=stamp)
                except BagWriteError as e:
                    self._fail(str(e))
            elif status.name == "episode_end" and self.episode is not None:
                self.episode.end_stamp_ns = stamp
                self.episode.success = values.get("success", "false") == "true"
                self.episode.event_values.update(values)
                self.episode.close_at = time.monotonic() + self.get_parameter("end_grace").value

    def _on_timer(self) -> None:
        episode = self.episode
        if episode is not None and episode.close_at is not None and time.monotonic() >= episode.close_at:
            self.stop_episode(episode.success)

    # ------------------------------------------------------------------------------ services
    def _srv_start(self, _request, response):
        try:
            path = self.start_episode()
        except BagWriteError as e:
            self._fail(str(e))
            response.success, response.message = False, str(e)
            return response
        response.success, response.message = True, str(path)
        return response

    def _srv_stop(self, request, response):
        if self.episode is None:
            response.success, response.message = False, "no episode is being recorded"
            return response
        try:
            path = self.stop_episode(bool(request.data))
        except (BagWriteError, TimeoutError) as e:   # a full or stalled disk: say so, keep running
            self._fail(str(e))
            response.success, response.message = False, str(e)
            return response
        response.success = path is not None
        response.message = str(path) if path is not None else (self.errors[-1] if self.errors else "failed")
        return response

    def _srv_discard(self, _request, response):
        try:
            response.success = self.discard_episode()
        except (BagWriteError, TimeoutError) as e:
            self._fail(str(e))
            response.success, response.message = False, str(e)
            return response
        response.message = "discarded" if response.success else "no episode is being recorded"
        return response

    # ------------------------------------------------------------------------------ shutdown
    def destroy_node(self):
        """Ctrl-C / SIGTERM / shutdown: the open episode is closed properly, kept as unfinished
        or discarded (``on_interrupt``)."""
        if getattr(self, "episode", None) is not None:
            if self.get_parameter("on_interrupt").value == "keep":
                self.stop_episode(self.episode.success, finished=False)
            else:
                self.discard_episode()
        if hasattr(self, "_writer"):
            self._writer.close()
        return super().destroy_node()


@dataclass
class RecordConfig:
    """``equimanip record``: episodes of a task in the simulation, in this process, through ROS."""

    task: str = "block_picking"
    episodes: int = 10
    source: str = "expert"                  # expert | keyboard
    out: Path = Path("demos")
    seed: int = 0
    params_files: tuple = ("sim",)
    sim_overrides: dict = field(default_factory=dict)
    note: str = ""
    episode_timeout_s: float = 300.0
    on_interrupt: str = ON_INTERRUPT.default     # keep | discard: the episode in flight on Ctrl-C/SIGTERM


SOURCES = ("expert", "keyboard")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during ``record_demonstrations``."""


class _StopOnSignal:
    """SIGINT/SIGTERM set a flag that waits check between callbacks (main thread only)."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, _frame) -> None:
        self.signal = signum

    def guard(self, spin_until):
        def wait(condition, timeout_s, what):
            spin_until(lambda: self.signal is not None or condition(), timeout_s, what)
            if self.signal is not None:
                raise Interrupted(f"stopped by signal {self.signal} while waiting for {what}")
        return wait

    def __exit__(self, *exc) -> None:
        import signal
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def record_demonstrations(config: RecordConfig, on_episode=None) -> list[Path]:
    """Bring up sim_node, the demonstrator (scripted expert or teleop_keyboard) and recorder_node
    in one process and record ``config.episodes`` episodes; returns the bag paths. The bags are
    the ones ``recorder_node`` writes in any ROS graph: the recorder hears the same topics."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import Bool

    from equimanip.bringup import InProcessGraph
    from equimanip.sim.sim_node import SimNode

    if config.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got '{config.source}'")
    if config.on_interrupt not in ON_INTERRUPT.choices:
        raise ValueError(f"on_interrupt must be one of {', '.join(ON_INTERRUPT.choices)}, "
                         f"got '{config.on_interrupt}'")
    expert = config.source == "expert"
    paths: list[Path] = []
    # Ctrl-C and SIGTERM end the run between two callbacks (never inside a write): the graph then
    # closes, and the recorder keeps the episode in flight as unfinished or discards it
    # (config.on_interrupt, the recorder's on_interrupt).
    stop = _StopOnSignal()
    with stop, InProcessGraph(config.params_files) as graph:
        spin_until = stop.guard(graph.spin_until)
        # The expert answers at once (sync: one step per command); a person needs real time.
        sim = graph.node(SimNode, task=config.task, seed=config.seed, sync=expert, publish_cloud=True,
                         **config.sim_overrides)
        if expert:
            from equimanip.sim.expert_node import ExpertNode
            controller = graph.node(ExpertNode, task=config.task)
        else:
            from equimanip.nodes.teleop_keyboard import TeleopKeyboard
            controller = graph.add(TeleopKeyboard(context=graph.context))
        # The recorder follows the simulation's episode events, as it does in any graph.
        recorder = graph.node(RecorderNode, output_dir=str(config.out), task=config.task, source=config.source,
                              note=config.note, follow_episode_events=True, on_interrupt=config.on_interrupt)
        done = {"value": None}
        recorder.create_subscription(Bool, topics.SIM_EPISODE_DONE, lambda m: done.update(value=m.data), qos.RELIABLE)
        reset = recorder.create_client(Trigger, topics.SIM_RESET)
        wanted = [topics.CLOUD, topics.EE_POSE, topics.JOINT_STATES, topics.ACTION, topics.TWIST, topics.GRIPPER]
        spin_until(lambda: all(recorder.count_publishers(t) > 0 for t in wanted) and reset.service_is_ready()
                         and controller.inputs_connected() and topics.CAMERA_POSE in recorder._latched,
                         30.0, "the simulation, the demonstrator and the recorder to find each other")
        if expert:   # matched both ways: the expert's answer to the start-up state reaches the recorder
            spin_until(lambda: all(recorder.stats[t].received > 0 for t in wanted), 30.0,
                             "the first messages to reach the recorder")
        sim.set_parameters([Parameter("seed", value=config.seed)])
        for k in range(config.episodes):
            done["value"] = None
            closed = len(recorder.closed_episodes)
            if config.note:   # the recorder's note goes with one episode: this command's with every one
                recorder.set_parameters([Parameter("note", value=config.note)])
            future = reset.call_async(Trigger.Request())
            spin_until(future.done, 30.0, "the simulation to reset")
            spin_until(lambda: done["value"] is not None and sim.env.done, config.episode_timeout_s,
                             f"episode {k + 1} to end")
            spin_until(lambda: len(recorder.closed_episodes) > closed or recorder.errors, 30.0,
                             f"episode {k + 1} to be written")
            if recorder.errors:
                raise RuntimeError(f"episode {k + 1} could not be written: {recorder.errors[-1]}")
            path = recorder.closed_episodes[-1]
            paths.append(path)
            if on_episode is not None:
                on_episode(k, path, sim.env.success, sim.env.steps)
    return paths


def message_from_cdr(cls, data: bytes):
    from rclpy.serialization import deserialize_message
    return deserialize_message(data, cls)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _string_param(name: str, value: str):
    from rclpy.parameter import Parameter
    return Parameter(name, value=value)


def main(args=None):
    spin_node(RecorderNode, args)


if __name__ == "__main__":
    main()
