"""A directory of episode bags -> (observation, action, next observation) samples at the control rate.

For each episode (see :mod:`equimanip.data.episode` for what a bag holds):

1. **States.** Every cloud is paired with the end-effector pose and the joint states of its own
   instant (header stamps equal, or within ``sync_slop`` for unsynchronised real cells: the rule
   of the nodes' ``ObservationInput``) and turned into an ``Observation`` by
   ``build_observation``, the function the controller nodes call: the cloud is moved into the
   base frame with the recorded ``/camera/pose``, the aperture read from the finger joints.
   Observation settings that show the task's goal (``goal_channel``, ``goal_in_state``) take the
   goal in effect at the state, as the nodes' ``GoalInput`` does: from the recorded
   ``/equimanip/goal`` (a real cell: whatever sets the goal publishes it there, latched, in the
   base frame), the newest one recorded before the state was; else from the task's goal row of the
   recorded ``/sim_node/object_poses`` (the simulation's), the newest stamped at or before the
   state; an episode with neither is reported.
2. **Actions.** The stamped action on ``/equimanip/action`` carries the stamp of the state it was
   computed from, so it pairs with that state exactly.
3. **Transitions.** State ``k`` with its action and state ``k + 1`` is a sample when the two states
   are one control period apart. A gap (a lost cloud, a missing action) is a *problem*: by default
   (``strict``) such an episode is left out and reported, never silently mixed in; with
   ``strict=False`` its intact transitions are used and the problems still listed.

Episodes recorded at another control period than the rest, unfinished ones (the recorder was
stopped mid-episode) and failed ones (``only_success``) are left out and reported too.

The processed arrays of each episode are cached next to the data (``DIR/.equimanip_cache``), under
a key made of the bag's files (size, modification time, metadata) and every setting that changes
the result (observation config, pairing, heightmaps), so an edited episode or a new setting
recomputes and nothing stale is ever read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from equimanip.action import ACTION_DIM, ACTION_NAMES, gripper_aperture
from equimanip.data import episode as ep
from equimanip.data.bag import Bag, list_bags, list_partial, read_bag
from equimanip.geometry import normalize_frame_id
from equimanip.perception.frames import CameraPoseResolver
from equimanip.perception.observation import ObservationConfig, build_observation, cloud_msg_to_base_points
from equimanip.sim.task_names import TABLE_GOAL_ROWS

CACHE_DIR = ".equimanip_cache"
CACHE_FORMAT = 3   # 3: goals in effect at a state (newest at or before it), /equimanip/goal; camera_pose
PERIOD_TOLERANCE = 0.02   # fraction of the control period two consecutive states may be off by


class DatasetError(ValueError):
    """A directory that gives no usable dataset; the text says why (and which episodes)."""


@dataclass
class DatasetConfig:
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    heightmaps: bool = False            # keep each observation's heightmap (2 x S x S float32)
    sync_slop: float = 0.0              # s; 0 pairs equal stamps only (the simulation)
    strict: bool = True                 # leave out episodes with missing messages (else keep their intact steps)
    only_success: bool = True           # leave out failed demonstrations
    include_unfinished: bool = False    # episodes whose recording was stopped mid-way
    control_period: Optional[float] = None   # None: the one every episode shares (error if mixed)
    base_frame: str = "base_link"
    gripper_joints: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")
    gripper_open_position: float = 0.04

    def cache_key(self) -> dict:
        """Every setting that changes the processed arrays."""
        d = dataclasses.asdict(self)
        for k in ("strict", "only_success", "include_unfinished", "control_period"):
            d.pop(k)   # selection, not processing
        return d


@dataclass
class EpisodeReport:
    """What one episode holds and whether it is used."""

    name: str
    task: str = ""
    success: Optional[bool] = None
    finished: Optional[bool] = None
    control_period: Optional[float] = None
    duration_s: float = 0.0
    states: int = 0
    transitions: int = 0
    topics: dict = field(default_factory=dict)      # name -> {type, count, rate_hz}
    camera_pose: Optional[list] = None               # the recorded /camera/pose, pose7 in the base frame
    problems: list = field(default_factory=list)    # missing messages and the like
    used: bool = False
    reason: str = ""                                 # why it is left out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EpisodeArrays:
    """The processed arrays of one episode (what the cache stores)."""

    states: np.ndarray           # (M, D) object-centric state of each synchronised state
    stamps: np.ndarray           # (M,) ns
    ee_poses: np.ndarray         # (M, 7) end-effector pose of each state (base frame)
    actions: np.ndarray          # (K, 5) the action of each transition
    pairs: np.ndarray            # (K, 2) indices into states: (state, next state)
    heightmaps: Optional[np.ndarray]   # (M, 2, S, S) or None
    report: EpisodeReport


# ------------------------------------------------------------------------------------ one episode


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _pose7(pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], dtype=np.float64)


def _nearest(stamps: np.ndarray, t: int, slop_ns: int) -> Optional[int]:
    """Index of the stamp nearest ``t`` within ``slop_ns``, or None."""
    if stamps.size == 0:
        return None
    i = int(np.searchsorted(stamps, t))
    best = None
    for j in (i - 1, i):
        if 0 <= j < stamps.size and abs(int(stamps[j]) - t) <= slop_ns:
            if best is None or abs(int(stamps[j]) - t) < abs(int(stamps[best]) - t):
                best = j
    return best


def control_period_of(bag: Bag) -> Optional[float]:
    """The episode's control period: from its record's run metadata, else the recorded
    /sim_node/metadata (or a controller's metadata) message."""
    run = bag.episode.get("run_metadata") or {}
    if isinstance(run, dict) and run.get("control_period"):
        return float(run["control_period"])
    if ep.SIM_METADATA in bag.topics:
        for _, _, msg in bag.messages([ep.SIM_METADATA]):
            try:
                period = json.loads(msg.data).get("control_period")
            except (json.JSONDecodeError, AttributeError):
                continue
            if period:
                return float(period)
    return None


def _topic_table(bag: Bag) -> dict:
    duration = max((bag.end_ns - bag.start_ns) * 1e-9, 1e-9)
    return {name: {"type": t.type, "count": t.count,
                   "rate_hz": round((t.count - 1) / duration, 3) if t.count > 1 else 0.0}
            for name, t in sorted(bag.topics.items())}


def process_episode(path: Path, config: DatasetConfig) -> EpisodeArrays:
    """Read one bag and build its states, actions and transitions (no cache)."""
    bag = read_bag(path)
    info = bag.episode
    report = EpisodeReport(name=path.name, task=str(info.get("task", "")), success=info.get("success"),
                           finished=info.get("finished"), control_period=control_period_of(bag),
                           duration_s=(bag.end_ns - bag.start_ns) * 1e-9, topics=_topic_table(bag))
    D = config.observation.object_state_dim
    S = config.observation.heightmap_size
    empty = EpisodeArrays(np.zeros((0, D), np.float32), np.zeros(0, np.int64), np.zeros((0, 7)),
                          np.zeros((0, ACTION_DIM), np.float32),
                          np.zeros((0, 2), np.int64), np.zeros((0, 2, S, S), np.float32) if config.heightmaps else None,
                          report)
    missing = [t.name for t in ep.EPISODE_TOPICS if t.required and bag.topics.get(t.name, None) is None]
    if missing:
        report.problems.append(f"topics missing: {', '.join(missing)}")
        return empty
    if report.control_period is None:
        report.problems.append("no control period recorded (no run metadata)")
        return empty
    # The task's goal, for observation settings that show it (goal_channel, goal_in_state).
    goals = None
    if config.observation.takes_goal:
        goals = _goal_track(bag, report, config.base_frame)
        if goals is None:
            return empty

    # Pass 1: the small messages, indexed by their header stamps (and when they were logged).
    ee, joints, actions, camera, logged = {}, {}, {}, None, {}
    for topic, log_ns, msg in bag.messages([ep.EE_POSE, ep.JOINT_STATES, ep.ACTION, ep.CAMERA_POSE]):
        if topic == ep.EE_POSE:
            ee[_ns(msg.header.stamp)] = _pose7(msg.pose)
            logged[(topic, _ns(msg.header.stamp))] = log_ns
        elif topic == ep.JOINT_STATES:
            joints[_ns(msg.header.stamp)] = msg
            logged[(topic, _ns(msg.header.stamp))] = log_ns
        elif topic == ep.CAMERA_POSE:
            camera = msg
        else:
            action = _action(msg)
            if action is None:
                report.problems.append(f"malformed action at {_ns(msg.header.stamp) * 1e-9:.3f} s: "
                                       f"names {list(msg.name)}")
                continue
            actions.setdefault(_ns(msg.header.stamp), action)   # a re-answer repeats the first
    ee_stamps = np.array(sorted(ee), dtype=np.int64)
    joint_stamps = np.array(sorted(joints), dtype=np.int64)
    slop_ns = int(round(config.sync_slop * 1e9))

    # The recorded /camera/pose places the cloud's frame in the base frame (as ObservationInput
    # does without tf2).
    resolver = CameraPoseResolver(config.base_frame)
    camera_pose = _pose7(camera.pose) if camera is not None else None
    report.camera_pose = None if camera_pose is None else camera_pose.tolist()

    # Pass 2: each cloud with the state of its instant -> Observation.
    states, stamps, apertures, images = [], [], [], []
    seen_clouds = set()
    for _, cloud_log_ns, cloud in bag.messages([ep.CLOUD]):
        t_cloud = _ns(cloud.header.stamp)
        if t_cloud in seen_clouds:   # a state published again (the simulation repeats an unanswered one)
            continue
        seen_clouds.add(t_cloud)
        i = _nearest(ee_stamps, t_cloud, slop_ns)
        if i is None:
            report.problems.append(f"cloud at {t_cloud * 1e-9:.3f} s has no end-effector pose of its instant")
            continue
        t_state = int(ee_stamps[i])
        j = _nearest(joint_stamps, t_state, slop_ns)
        if j is None:
            report.problems.append(f"state at {t_state * 1e-9:.3f} s has no joint states")
            continue
        try:
            if camera_pose is not None and cloud.header.frame_id not in resolver.known_frames():
                resolver.set_pose(cloud.header.frame_id, camera_pose)
            points = cloud_msg_to_base_points(cloud, resolver)
            aperture = _aperture(joints[int(joint_stamps[j])], config)
            goal = None
            if goals is not None:
                # A goal topic's: the newest received before this state was complete (as the
                # node's ~/goal, whatever the goal's stamp); the simulation's poses: by stamp.
                when = max(cloud_log_ns, logged[(ep.EE_POSE, t_state)],
                           logged[(ep.JOINT_STATES, int(joint_stamps[j]))]) if goals.by_log_time else t_state
                goal = goals.at(when)
                if goal is None:
                    report.problems.append(f"state at {t_state * 1e-9:.3f} s has no goal yet (none on "
                                           f"{goals.source} before it)")
                    continue
            obs = build_observation(points, ee[t_state], aperture, t_state * 1e-9, config.observation,
                                    cloud_stamp=t_cloud * 1e-9, goal_xy=goal)
        except (LookupError, ValueError) as e:   # FrameError, PointCloud2Error, missing joints, NaN
            report.problems.append(f"state at {t_state * 1e-9:.3f} s unusable: {e}")
            continue
        states.append(obs.object_state)
        stamps.append(t_state)
        apertures.append(aperture)
        if config.heightmaps:
            images.append(obs.heightmap)
    if not states:
        report.problems.append("no complete state (cloud + end-effector pose + joint states)")
        return empty
    order = np.argsort(stamps, kind="stable")
    stamps_arr = np.asarray(stamps, dtype=np.int64)[order]
    states_arr = np.stack(states).astype(np.float32)[order]
    apertures_arr = np.asarray(apertures, dtype=np.float32)[order]
    heightmaps = np.stack(images)[order].astype(np.float32) if config.heightmaps else None

    # Transitions at the control rate.
    period_ns = report.control_period * 1e9
    pairs, acts = [], []
    for k in range(len(stamps_arr) - 1):
        t, t_next = int(stamps_arr[k]), int(stamps_arr[k + 1])
        gap = t_next - t
        if abs(gap - period_ns) > PERIOD_TOLERANCE * period_ns:
            report.problems.append(f"{gap * 1e-9:.3f} s between the states at {t * 1e-9:.3f} s and "
                                   f"{t_next * 1e-9:.3f} s (control period {report.control_period} s): "
                                   f"missing messages")
            continue
        action = actions.get(t)
        if action is None:
            report.problems.append(f"no action for the state at {t * 1e-9:.3f} s")
            continue
        if np.isnan(action[0]):          # a stop that left the gripper as it was: its aperture
            action = action.copy()
            action[0] = apertures_arr[k]
        pairs.append((k, k + 1))
        acts.append(action)
    report.states = len(stamps_arr)
    report.transitions = len(pairs)
    return EpisodeArrays(states_arr, stamps_arr, np.stack([ee[int(t)] for t in stamps_arr]),
                         np.asarray(acts, dtype=np.float32).reshape(-1, ACTION_DIM),
                         np.asarray(pairs, dtype=np.int64).reshape(-1, 2), heightmaps, report)


@dataclass
class GoalTrack:
    """The goal (x, y) of an episode over time: ``at(t)`` is the newest at or before ``t``."""

    source: str                  # the topic it was read from
    stamps: np.ndarray           # (G,) ns, ascending: log times (by_log_time) or header stamps
    xy: np.ndarray               # (G, 2) base frame
    by_log_time: bool            # keyed by when the recorder got each goal, not by its stamp

    def at(self, t_ns: int) -> Optional[np.ndarray]:
        i = int(np.searchsorted(self.stamps, t_ns, side="right")) - 1
        return self.xy[i] if i >= 0 else None


def _goal_track(bag: Bag, report: EpisodeReport, base_frame: str) -> Optional[GoalTrack]:
    """The episode's goal from /equimanip/goal (a real cell's, preferred when recorded; by the time
    the recorder got each, as a node takes the newest ~/goal whatever its stamp, which a goal sent
    by hand often lacks) or the task's row of /sim_node/object_poses (the simulation's, by stamp);
    None with a problem appended when it has neither. Goals in another frame than the base frame
    (an empty frame is the base frame, as for the nodes) or not finite are reported and skipped."""
    found = []
    if getattr(bag.topics.get(ep.GOAL), "count", 0) > 0:
        source, by_log_time = ep.GOAL, True
        for _, log_ns, msg in bag.messages([ep.GOAL]):
            p = msg.pose.position
            if normalize_frame_id(msg.header.frame_id) not in ("", normalize_frame_id(base_frame)):
                report.problems.append(f"goal logged at {log_ns * 1e-9:.3f} s ignored: frame "
                                       f"'{msg.header.frame_id}', not the base frame '{base_frame}'")
            elif not np.all(np.isfinite([p.x, p.y])):
                report.problems.append(f"goal logged at {log_ns * 1e-9:.3f} s ignored: not finite")
            else:
                found.append((log_ns, p.x, p.y))
    elif getattr(bag.topics.get(ep.OBJECT_POSES), "count", 0) > 0:
        source, by_log_time = ep.OBJECT_POSES, False
        row = TABLE_GOAL_ROWS.get(report.task)
        if row is None:
            report.problems.append(f"the observation settings show the task's goal on the table and task "
                                   f"'{report.task}' has none in {ep.OBJECT_POSES} (tasks with one: "
                                   f"{', '.join(TABLE_GOAL_ROWS)}); a real cell records its goal on {ep.GOAL}")
            return None
        found = [(_ns(m.header.stamp), m.poses[row].position.x, m.poses[row].position.y)
                 for _, _, m in bag.messages([ep.OBJECT_POSES])
                 if len(m.poses) > row and np.isfinite([m.poses[row].position.x, m.poses[row].position.y]).all()]
    else:
        report.problems.append(f"the observation settings show the task's goal and the episode has none: "
                               f"record {ep.GOAL} (a real cell) or {ep.OBJECT_POSES} (the simulation)")
        return None
    if not found:
        report.problems.append(f"no usable goal in {source}")
        return None
    found.sort(key=lambda g: g[0])
    return GoalTrack(source, np.array([g[0] for g in found], dtype=np.int64),
                     np.array([g[1:] for g in found], dtype=np.float64), by_log_time)


def _action(msg) -> Optional[np.ndarray]:
    """[p, dx, dy, dz, dyaw] of a stamped action message, whatever order it names them in (as
    equimanip.nodes.msgs.action_from_msg); None when malformed or not finite. A stop that
    commanded no gripper has no ``p`` (msgs.action_msg): p is NaN then, for the caller to fill
    with the aperture the gripper kept."""
    if len(msg.name) != len(msg.position):
        return None
    values = dict(zip(msg.name, msg.position))
    if any(n not in values for n in ACTION_NAMES[1:]):
        return None
    action = np.array([values.get(n, math.nan) for n in ACTION_NAMES], dtype=np.float64)
    finite = np.all(np.isfinite(action[1:])) and (ACTION_NAMES[0] not in values or math.isfinite(action[0]))
    return action.astype(np.float32) if finite else None


def _aperture(joint_states, config: DatasetConfig) -> float:
    index = {n: i for i, n in enumerate(joint_states.name)}
    missing = [n for n in config.gripper_joints if n not in index or index[n] >= len(joint_states.position)]
    if missing:
        raise ValueError(f"joint states lack the gripper joints {missing}")
    fingers = np.array([joint_states.position[index[n]] for n in config.gripper_joints])
    if not np.all(np.isfinite(fingers)):
        raise ValueError(f"non-finite gripper joint positions {fingers.tolist()}")
    return gripper_aperture(fingers, config.gripper_open_position)


# ------------------------------------------------------------------------------------ the cache


def _fingerprint(path: Path) -> dict:
    """What identifies a bag's content: its files' names, sizes and modification times, and the
    metadata (a re-recorded episode of the same name differs in all of them)."""
    files = sorted(p for p in path.iterdir() if p.is_file())
    return {"files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
            "metadata": hashlib.sha1((path / "metadata.yaml").read_bytes()).hexdigest()}


def _cache_key(path: Path, config: DatasetConfig) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "bag": _fingerprint(path), "config": config.cache_key()},
                      sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_episode(path: Path, config: DatasetConfig, use_cache: bool = True) -> EpisodeArrays:
    """The processed arrays of one episode, from the cache when it is current."""
    path = Path(path)
    cache_dir = path.parent / CACHE_DIR
    key = _cache_key(path, config)
    cached = cache_dir / f"{path.name}.{key}.npz"
    if use_cache and cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                report = EpisodeReport(**json.loads(str(z["report"])))
                return EpisodeArrays(z["states"], z["stamps"], z["ee_poses"], z["actions"], z["pairs"],
                                     z["heightmaps"] if "heightmaps" in z else None, report)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable cache (an interrupted write): recompute
    arrays = process_episode(path, config)
    if use_cache:
        _write_cache(cache_dir, path.name, cached, arrays)
    return arrays


def _write_cache(cache_dir: Path, name: str, target: Path, arrays: EpisodeArrays) -> None:
    try:
        cache_dir.mkdir(exist_ok=True)
        for old in cache_dir.glob(f"{name}.*.npz"):   # stale versions of this episode
            old.unlink()
        tmp = target.with_suffix(".tmp.npz")
        extra = {"heightmaps": arrays.heightmaps} if arrays.heightmaps is not None else {}
        np.savez(tmp, states=arrays.states, stamps=arrays.stamps, ee_poses=arrays.ee_poses, actions=arrays.actions,
                 pairs=arrays.pairs,
                 report=np.array(json.dumps(arrays.report.to_dict())), **extra)
        tmp.replace(target)
    except OSError:
        pass  # a read-only data directory still reads, only slower


# ------------------------------------------------------------------------------------ the dataset


@dataclass
class Dataset:
    """Samples of every used episode, concatenated; ``reports`` says what each episode held."""

    config: DatasetConfig
    reports: list                      # EpisodeReport per bag, used or not
    partial: list                      # hidden half-written bags left by a killed recorder
    states: np.ndarray                 # (N, D) s_t
    actions: np.ndarray                # (N, 5) a_t
    next_states: np.ndarray            # (N, D) s_{t+1}
    ee_poses: np.ndarray               # (N, 7) end-effector pose at s_t
    next_ee_poses: np.ndarray          # (N, 7) at s_{t+1}
    episode: np.ndarray                # (N,) index into used_episodes
    step: np.ndarray                   # (N,) step within the episode
    heightmaps: Optional[np.ndarray] = None        # (N, 2, S, S)
    next_heightmaps: Optional[np.ndarray] = None
    control_period: Optional[float] = None

    @property
    def used_episodes(self) -> list:
        return [r for r in self.reports if r.used]

    def __len__(self) -> int:
        return len(self.actions)

    def summary(self) -> dict:
        used = self.used_episodes
        return {"episodes": len(self.reports), "used": len(used), "samples": len(self),
                "control_period": self.control_period,
                "success": sum(1 for r in self.reports if r.success),
                "left_out": {r.name: r.reason for r in self.reports if not r.used},
                "partial": [p.name for p in self.partial]}


def load_dataset(directory, config: Optional[DatasetConfig] = None, use_cache: bool = True,
                 progress: bool = False) -> Dataset:
    """Every usable episode of ``directory``. Raises DatasetError when none is usable, or when
    episodes of different control periods would be mixed (name the period to pick one)."""
    from tqdm import tqdm

    config = config or DatasetConfig()
    config.observation.validate()
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory of episodes")
    paths = list_bags(directory)
    if not paths:
        raise DatasetError(f"{directory} holds no episode bags (folders with a metadata.yaml)")
    episodes = [load_episode(p, config, use_cache) for p in tqdm(paths, desc="episodes", disable=not progress,
                                                                  leave=False)]
    _select(episodes, config)
    used = [e for e in episodes if e.report.used]
    if not used:
        reasons = "; ".join(f"{e.report.name}: {e.report.reason}" for e in episodes)
        raise DatasetError(f"no usable episode in {directory} ({reasons})")
    parts = {"states": [], "actions": [], "next": [], "ee": [], "next_ee": [], "episode": [], "step": [],
             "hm": [], "next_hm": []}
    for index, e in enumerate(used):
        first, second = e.pairs[:, 0], e.pairs[:, 1]
        parts["states"].append(e.states[first])
        parts["next"].append(e.states[second])
        parts["actions"].append(e.actions)
        parts["ee"].append(e.ee_poses[first])
        parts["next_ee"].append(e.ee_poses[second])
        parts["episode"].append(np.full(len(first), index))
        parts["step"].append(first)
        if config.heightmaps:
            parts["hm"].append(e.heightmaps[first])
            parts["next_hm"].append(e.heightmaps[second])
    cat = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    return Dataset(config=config, reports=[e.report for e in episodes], partial=list_partial(directory),
                   states=cat["states"], actions=cat["actions"], next_states=cat["next"],
                   ee_poses=cat["ee"], next_ee_poses=cat["next_ee"],
                   episode=cat["episode"].astype(np.int64), step=cat["step"].astype(np.int64),
                   heightmaps=cat["hm"], next_heightmaps=cat["next_hm"],
                   control_period=used[0].report.control_period)


def _select(episodes: list, config: DatasetConfig) -> None:
    """Mark which episodes are used and why the others are not."""
    for e in episodes:
        r = e.report
        if r.transitions == 0:
            r.reason = "no transition" + (f" ({r.problems[0]})" if r.problems else "")
        elif r.problems and config.strict:
            r.reason = f"{len(r.problems)} problem(s), e.g. {r.problems[0]}"
        elif r.finished is False and not config.include_unfinished:
            r.reason = "unfinished (the recording was stopped mid-episode)"
        elif config.only_success and not r.success:
            r.reason = "not a success"
        else:
            r.used = True
    periods = sorted({e.report.control_period for e in episodes if e.report.used})
    wanted = config.control_period
    if wanted is None and len(periods) > 1:
        counts = {p: sum(1 for e in episodes if e.report.used and e.report.control_period == p) for p in periods}
        raise DatasetError("episodes were recorded at different control periods "
                           f"({', '.join(f'{p} s: {n} episodes' for p, n in counts.items())}); "
                           "choose one (control_period) instead of mixing them")
    if wanted is not None:
        for e in episodes:
            if e.report.used and abs(e.report.control_period - wanted) > 1e-9:
                e.report.used = False
                e.report.reason = f"control period {e.report.control_period} s, not {wanted} s"


def dataset_info(directory, config: Optional[DatasetConfig] = None) -> dict:
    """What ``equimanip dataset info`` prints: episodes, steps, success, topics and rates, and
    every problem; never raises for a mixed or partly broken directory (that is what it reports)."""
    config = config or DatasetConfig()
    directory = Path(directory)
    paths = list_bags(directory)
    episodes = [load_episode(p, config) for p in paths]
    mixed = None
    try:
        _select(episodes, config)
    except DatasetError as e:
        mixed = str(e)
    topics: dict = {}
    for e in episodes:
        for name, t in e.report.topics.items():
            entry = topics.setdefault(name, {"type": t["type"], "count": 0, "rates_hz": []})
            entry["count"] += t["count"]
            entry["rates_hz"].append(t["rate_hz"])
    for entry in topics.values():
        entry["rate_hz"] = float(np.median(entry.pop("rates_hz")))
    reports = [e.report for e in episodes]
    return {
        "directory": str(directory),
        "episodes": len(reports),
        "successful": sum(1 for r in reports if r.success),
        "unfinished": sum(1 for r in reports if r.finished is False),
        "steps": sum(r.transitions for r in reports),
        "usable_episodes": sum(1 for r in reports if r.used),
        "usable_steps": sum(r.transitions for r in reports if r.used),
        "control_periods": sorted({r.control_period for r in reports if r.control_period is not None}),
        "mixed_control_periods": mixed,
        "tasks": sorted({r.task for r in reports if r.task}),
        "topics": topics,
        "partial": [p.name for p in list_partial(directory)],
        "per_episode": [r.to_dict() for r in reports],
    }


def select_episodes(dataset: Dataset, count: int) -> Dataset:
    """The same dataset restricted to its first ``count`` used episodes (in name order): a
    learning curve over the number of demonstrations from one recording."""
    used = dataset.used_episodes
    if not 1 <= count <= len(used):
        raise DatasetError(f"asked for {count} demonstrations; {len(used)} usable in the dataset")
    keep = dataset.episode < count
    dropped = {r.name for r in used[count:]}
    reports = [dataclasses.replace(r, used=False, reason="not selected (demonstration count)")
               if r.name in dropped else r for r in dataset.reports]

    def pick(a):
        return None if a is None else a[keep]

    return dataclasses.replace(dataset, reports=reports, states=dataset.states[keep], actions=dataset.actions[keep],
                               next_states=dataset.next_states[keep], ee_poses=dataset.ee_poses[keep],
                               next_ee_poses=dataset.next_ee_poses[keep], episode=dataset.episode[keep],
                               step=dataset.step[keep], heightmaps=pick(dataset.heightmaps),
                               next_heightmaps=pick(dataset.next_heightmaps))
