"""Expert episodes of ``ManipulationEnv`` written straight into episode bags, without a ROS graph.

For tests and benchmarks that need demonstrations quickly: the bags have the topics, messages,
stamps and episode record that ``recorder_node`` writes from a live graph (the simulation's
cloud, camera pose, joint states and end-effector pose, each state stamped with its simulated
instant; the stamped action answering it, the twist and gripper command; the run's metadata and
ground-truth object poses). The product path for recording is ``recorder_node`` /
``equimanip record``; this writer is its stand-in where a ROS graph would only cost time.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from equimanip.action import ACTION_HIGH, ACTION_LOW, ACTION_NAMES
from equimanip.data import episode as ep
from equimanip.data.bag import BagWriter
from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2

BASE_FRAME = "base_link"
CAMERA_FRAME = "camera_depth_optical_frame"


def stamp_fields(seconds: float) -> dict:
    """builtin_interfaces/Time fields of a time in seconds (as equimanip.nodes.msgs.time_msg)."""
    sec = math.floor(seconds)
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return {"sec": int(sec), "nanosec": nanosec}


def stamp_ns(seconds: float) -> int:
    s = stamp_fields(seconds)
    return s["sec"] * 1_000_000_000 + s["nanosec"]


def _header(frame: str, seconds: float) -> dict:
    return {"stamp": stamp_fields(seconds), "frame_id": frame}


def _pose(p) -> dict:
    return {"position": {"x": float(p[0]), "y": float(p[1]), "z": float(p[2])},
            "orientation": {"x": float(p[3]), "y": float(p[4]), "z": float(p[5]), "w": float(p[6])}}


def sim_metadata(env, task: str, seed: int) -> dict:
    """The run metadata the simulation publishes on /sim_node/metadata (INTERFACES.md)."""
    from equimanip.safety import WORKSPACE_HIGH, WORKSPACE_LOW

    config = env.config
    return {"task": task, "seed": seed, "control_period": config.control_period,
            "physics_hz": config.physics_hz, "workspace_low": list(WORKSPACE_LOW),
            "workspace_high": list(WORKSPACE_HIGH), "action_low": ACTION_LOW.tolist(),
            "action_high": ACTION_HIGH.tolist(), "action_names": list(ACTION_NAMES),
            "enforce_limits": True, "sync": True, "base_frame": BASE_FRAME, "camera_frame": CAMERA_FRAME}


class _EpisodeBag:
    """One open episode bag with every episode topic declared."""

    def __init__(self, out_dir: Path, name: str, have_events: bool):
        self.bag = BagWriter(out_dir, name)
        for topic in ep.EPISODE_TOPICS:
            if topic.name == ep.EPISODE_EVENTS and not have_events:
                continue
            self.bag.add_topic(topic.name, topic.type, topic.qos)

    def state(self, obs, t: float) -> None:
        """Everything the simulation publishes for one state, all stamped ``t``."""
        ns = stamp_ns(t)
        header = _header(CAMERA_FRAME, t)
        cloud = xyz_rgb_to_pointcloud2(obs.points_camera, obs.colors, None)
        cloud_fields = {"header": header, "height": cloud.height, "width": cloud.width, "fields": cloud.fields,
                        "is_bigendian": cloud.is_bigendian, "point_step": cloud.point_step,
                        "row_step": cloud.row_step, "data": cloud.data, "is_dense": cloud.is_dense}
        self.bag.write(ep.CLOUD, cloud_fields, ns)
        self.bag.write(ep.JOINT_STATES, {"header": _header("", t), "name": list(obs.joint_names),
                                         "position": obs.joint_positions.tolist(),
                                         "velocity": obs.joint_velocities.tolist(), "effort": []}, ns)
        self.bag.write(ep.EE_POSE, {"header": _header(BASE_FRAME, t), "pose": _pose(obs.ee_pose)}, ns)
        self.bag.write(ep.OBJECT_POSES, {"header": _header(BASE_FRAME, t),
                                         "poses": [_pose(p) for p in obs.object_poses]}, ns)

    def action(self, action: np.ndarray, t: float, control_period: float) -> None:
        """The stamped action answering the state of instant ``t``, then the commands sent."""
        ns = stamp_ns(t) + 1  # answered just after the state arrived
        self.bag.write(ep.ACTION, {"header": _header(BASE_FRAME, t), "name": list(ACTION_NAMES),
                                   "position": [float(v) for v in action], "velocity": [], "effort": []}, ns)
        self.bag.write(ep.GRIPPER, {"data": float(action[0])}, ns)
        linear = action[1:4] / control_period
        self.bag.write(ep.TWIST, {"header": _header(BASE_FRAME, t), "twist": {
            "linear": {"x": float(linear[0]), "y": float(linear[1]), "z": float(linear[2])},
            "angular": {"x": 0.0, "y": 0.0, "z": float(action[4] / control_period)}}}, ns)

    def event(self, name: str, t: float, values: dict, message: str) -> None:
        if ep.EPISODE_EVENTS not in self.bag.topic_counts():
            return
        status = {"level": 0, "name": name, "message": message, "hardware_id": "sim_node",
                  "values": [{"key": k, "value": str(v)} for k, v in values.items()]}
        self.bag.write(ep.EPISODE_EVENTS, {"header": _header(BASE_FRAME, t), "status": [status]}, stamp_ns(t))


def _have_definition(type_name: str) -> bool:
    from equimanip.data.msgdefs import MessageDefinitionError, schema_text
    try:
        schema_text(type_name)
        return True
    except MessageDefinitionError:
        return False


def record_expert_episodes(out_dir, task: str, episodes: int, seed: int = 0, only_success: bool = True,
                           max_attempts: Optional[int] = None, progress: bool = False,
                           first_index: int = 0, **sim_overrides) -> list[Path]:
    """Write ``episodes`` scripted-expert episodes of ``task`` (scene seeds ``seed, seed + 1, ...``;
    failed ones skipped when ``only_success``) as bags ``episode_NNNN`` in ``out_dir``."""
    from tqdm import tqdm

    from equimanip.sim.env import ManipulationEnv, expert_input

    out_dir = Path(out_dir)
    max_attempts = 2 * episodes + 10 if max_attempts is None else max_attempts
    have_events = _have_definition("diagnostic_msgs/msg/DiagnosticArray")
    written: list[Path] = []
    with ManipulationEnv(task=task, **sim_overrides) as env, \
            tqdm(total=episodes, desc=f"recording {task}", disable=not progress, leave=False) as bar:
        period = env.config.control_period
        for attempt in range(max_attempts):
            if len(written) == episodes:
                break
            episode_seed = seed + attempt
            index = first_index + len(written)
            obs = env.reset(seed=episode_seed)
            expert = env.make_expert()
            expert.reset()
            out = _EpisodeBag(out_dir, f"episode_{index:04d}", have_events)
            meta = sim_metadata(env, task, episode_seed)
            out.bag.write(ep.SIM_METADATA, {"data": json.dumps(meta)}, stamp_ns(obs.time))
            out.bag.write(ep.CAMERA_POSE, {"header": _header(BASE_FRAME, obs.time), "pose": _pose(obs.camera_pose)},
                          stamp_ns(obs.time))
            out.event("episode_start", obs.time, {"task": task, "seed": episode_seed, "episode": index},
                      f"episode {index} of {task} started")
            out.state(obs, obs.time)
            done, info = False, {"success": False, "steps": 0, "truncated": False}
            while not done:
                action = np.clip(expert.act(expert_input(obs)), ACTION_LOW, ACTION_HIGH)
                t = obs.time
                out.action(action, t, period)
                obs, _, done, info = env.step(action)
                out.state(obs, obs.time)
            success = bool(info["success"])
            out.event("episode_end", obs.time, {"task": task, "seed": episode_seed, "episode": index,
                                                "success": str(success).lower(), "steps": info["steps"],
                                                "truncated": str(bool(info["truncated"])).lower()},
                      f"episode {index} ended: {'success' if success else 'failure'}")
            if only_success and not success:
                out.bag.discard()
                continue
            written.append(out.bag.close({
                "format": ep.EPISODE_FORMAT, "task": task, "success": success, "finished": True,
                "note": "", "source": "expert (sim_writer)", "seed": episode_seed, "steps": info["steps"],
                "run_metadata": meta, "recorder": {"writer": "equimanip.data.sim_writer"}}))
            bar.update(1)
    if len(written) < episodes:
        raise RuntimeError(f"only {len(written)} of {episodes} expert episodes of {task} succeeded "
                           f"in {max_attempts} attempts")
    return written
