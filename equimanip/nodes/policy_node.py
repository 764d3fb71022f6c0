"""policy_node: a trained policy on a real or simulated arm.

It loads any equimanip checkpoint (Equivariant SAC actor, BC or BMIL policy; equivariant or not),
takes from it the observation settings the network was trained with, and runs the network's
plain-PyTorch export on the newest complete (cloud, pose, joint states) set, on the GPU when asked
and there is one. Everything else (pairing, timer mode, the safety layer, e-stop, watchdog,
diagnostics, readiness, stamped outputs) is the controller runtime's
(``equimanip.nodes.controller``).

Live tuning. Every parameter can be set while it runs and takes effect at the next decision. A new
``checkpoint`` is read and checked when it is set (a missing file, or one that is not an equimanip
checkpoint, is refused with the reason and the old policy keeps running); the network is then
built and warmed up on a thread of its own, off the control loop, and swapped in between two
decisions. If building fails, the old policy keeps running and the parameter goes back to it.

Health. Besides the runtime's diagnostics, once a second the node runs the network on the current
observation turned by a quarter turn about the gripper and turns the answer back: for an exactly
equivariant network the difference is rounding; for a relaxed one it shows how far from symmetric
the policy has drifted, and for a plain CNN how far it is from symmetric at all.

Goals. A network trained with the goal channel (block_pushing: the goal on the table as a
heightmap channel, ``ObservationConfig.goal_channel``, or an imitation policy trained with it in its
object-centric state, ``goal_in_state``) needs the goal at every decision. It comes
from ``goal_source`` (``equimanip.nodes.goal_input``): ``~/goal`` on a real cell (the default), or
the simulated cell's object poses (``equimanip run`` and ``sim.launch.py`` set ``object_poses``;
``goal_object`` -1 takes the task's goal row). Without a goal the node holds the arm and says what
it waits for (and, waiting for ``~/goal``, is not ready).

The camera. A policy learns its view as much as its task. At its first decision the node compares
the live camera (the cloud frame's pose) with where the policy's data was recorded (the
checkpoint's ``camera_pose``, or its ``cell_params`` files') and warns once, with both poses, when
they are further apart than ``checkpoint.CAMERA_TOLERANCE``; ``camera_offset`` in the diagnostics.
"""
from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter

from equimanip import symmetry as sym
from equimanip.nodes import msgs, topics
from equimanip.nodes.controller import ObservationController
from equimanip.nodes.devices import check_device, resolve_device
from equimanip.nodes.goal_input import GoalInput, goal_params
from equimanip.nodes.params import TASK, ParamSpec
from equimanip.nodes.spin import freeze_start_up_objects, spin_node
from equimanip.perception.observation import NETWORK_OBSERVATION_FIELDS
from equimanip.sim.task_names import TABLE_GOAL_ROWS

# Where `make checkpoints` puts the shipped policies: one per task, used when `checkpoint` is empty.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
WARM_UP_RUNS = 3
QUARTER_TURN = sym.GroupElement(math.pi / 2)


def shipped_checkpoint(task: str) -> Path:
    return SHIPPED_DIR / f"{task}.pt"


PARAMS = [
    TASK,
    ParamSpec("checkpoint", "", "Checkpoint to run (equimanip train ...); empty: the one shipped for "
              "the task. Set while running to swap policies without stopping."),
    ParamSpec("device", "auto", "Where the network runs: auto (a GPU when there is one), cpu, cuda or "
              "cuda:N.", validate=check_device),
    ParamSpec("torch_threads", 1, "Torch intra-op threads on the CPU. 1 is fastest for these small "
              "networks on a busy small CPU (more threads were 10-100x slower on 2 cores).", min=1, max=64),
    ParamSpec("equivariance_check", True, "Once a second, report in /diagnostics how far the policy's "
              "answer to the observation turned by 90 degrees is from its turned answer."),
    *goal_params(sources=("topic", "object_poses"), default_object=-1,
                 object_help="; -1: the task's goal (block_pushing: row 1). Only for a policy trained with "
                             "the goal channel"),
]


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy and where it came from, swapped as one object (one assignment: atomic)."""
    policy: object        # equimanip.checkpoint.Policy
    path: Path

    @functools.cached_property
    def training_camera(self) -> Optional[np.ndarray]:
        """Where the camera was when the policy's data was recorded (pose7), None when unknown."""
        from equimanip.checkpoint import training_camera_pose
        return training_camera_pose(self.policy.metadata)


class PolicyNode(ObservationController):
    def __init__(self, **node_kwargs):
        super().__init__("policy_node", PARAMS, **node_kwargs)
        import torch

        torch.set_num_threads(self.get_parameter("torch_threads").value)
        self._equivariance_error: Optional[float] = None
        self._loader: Optional[threading.Thread] = None
        self._load_error: Optional[str] = None
        self._installing = False
        path = self._resolve(self.get_parameter("checkpoint").value)
        # A policy that cannot be loaded at start-up is a configuration error: the node says why
        # in one line and does not start (spin_node, exit code 2).
        self._loaded: Optional[LoadedPolicy] = None
        self._waiting_for_goal = 0
        self._camera_checked: Optional[LoadedPolicy] = None     # the policy _check_camera last compared
        self.camera_offset: Optional[tuple[float, float]] = None   # (m, degrees) from its training camera
        self.goals = GoalInput(self, default_row=lambda: TABLE_GOAL_ROWS.get(self._deciding_with.policy.task),
                               planar=True)
        self._install(LoadedPolicy(self._build(path), path))
        self._deciding_with = self._loaded
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._on_policy_parameters)
        # Two network runs a second: in a group of their own, never in the way of the e-stop.
        self.create_timer(1.0, self._check_equivariance, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"running {self._describe()} on {self._device()}")

    # ------------------------------------------------------------------ the policy
    def _resolve(self, value: str) -> Path:
        return Path(value).expanduser() if value else shipped_checkpoint(self.get_parameter("task").value)

    def _device(self) -> str:
        return resolve_device(self.get_parameter("device").value)

    def _build(self, path: Path):
        """Load, rebuild and warm up the policy at ``path`` (ValueError, FileNotFoundError)."""
        from equimanip.checkpoint import load_policy

        if not path.is_file():
            if self.get_parameter("checkpoint").value:
                raise FileNotFoundError(f"no checkpoint at {path}")
            shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))
            raise FileNotFoundError(
                f"no policy is shipped for task {self.get_parameter('task').value!r} (looked for {path}; "
                f"shipped: {', '.join(shipped) or 'none'}): set the checkpoint parameter to one trained "
                "with `equimanip train sac|bc|bmil`, or use another controller (mppi plans for any goal)")
        policy = load_policy(path, device=self._device())
        dummy = _dummy_input(policy)
        for _ in range(WARM_UP_RUNS):      # the first calls pay for TorchScript and CUDA set-up
            action = policy.act(dummy)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{path}: the network answers a blank observation with {action.tolist()}")
        return policy

    def _install(self, loaded: LoadedPolicy) -> None:
        """Swap ``loaded`` in between two decisions; show its observation settings as parameters."""
        self._loaded = loaded
        self._equivariance_error = None
        self.last_observation = None      # shaped for the old network: not for the new one's check
        config = loaded.policy.observation_config
        # goal_channel and goal_in_state are not observation.* parameters: only a checkpoint turns them on
        # (a node with one on needs a goal source), and the node's goal_* parameters say where it comes from.
        updates = [Parameter(f"observation.{name}", value=_param_value(getattr(config, name)))
                   for name in NETWORK_OBSERVATION_FIELDS if self.has_parameter(f"observation.{name}")]
        self._installing = True
        try:
            results = self.set_parameters(updates)
        finally:
            self._installing = False
        refused = [f"{u.name}: {r.reason}" for u, r in zip(updates, results) if not r.successful]
        if refused:
            self.get_logger().warning(f"checkpoint settings not shown as parameters: {refused}")
        self._publish_metadata()

    def _describe(self) -> str:
        loaded = self._loaded
        network = loaded.policy.checkpoint.network
        trained = loaded.policy.metadata.get("best_success")
        record = "" if trained is None else f", {float(trained):.0%} success in its best training evaluation"
        goal = f", the task's goal from {self.goals.source}" if self.needs_goal(loaded) else ""
        # A policy sees the cell through its camera: say which cell it learnt in, so that a log
        # shows a mismatch (the shipped pushing policy: side_camera).
        cell = loaded.policy.metadata.get("cell_params")
        learnt = f", learnt in the cell of --params {' '.join(cell)}" if cell else ""
        return (f"'{loaded.policy.checkpoint.kind}' policy from {loaded.path} (task {loaded.policy.task}, "
                f"group {network.get('group', 'none')}, {loaded.policy.input_kind} input{goal}{record}{learnt})")

    @property
    def policy(self):
        return self._loaded.policy

    def is_warmed_up(self) -> bool:
        return self._loaded is not None

    def readiness(self) -> tuple[bool, str]:
        ready, waiting = super().readiness()
        if ready and self.needs_goal(self._loaded) and self.goals.waiting_on_topic():
            return False, "a goal on ~/goal (geometry_msgs/PoseStamped in the base frame): the policy takes one"
        return ready, waiting

    def observation_config(self):
        """The cell's perception settings with the ones the network depends on from its checkpoint.
        A heightmap policy skips the object-centric state (about 10 ms of a 640 x 480 cloud)."""
        policy = self._deciding_with.policy       # the decision's policy, whatever swaps meanwhile
        trained = {name: getattr(policy.observation_config, name) for name in NETWORK_OBSERVATION_FIELDS}
        if policy.input_kind == "heightmap":
            trained["compute_object_state"] = False
        return replace(self.observations.config, **trained)

    def action_for(self, inputs) -> np.ndarray:
        loaded = self._loaded             # one policy for the whole decision, whatever swaps meanwhile
        self._deciding_with = loaded
        goal = None
        if self.needs_goal():
            stamp = msgs.seconds(inputs.messages[topics.EE_POSE].header.stamp)
            goal = self.goals.goal_at(stamp)
            if goal is None:
                if not self.goals.from_earlier_episode(stamp):
                    self._waiting_for_goal += 1
                    self._log.warning("no-goal", f"the policy takes the task's goal and there is none yet "
                                                 f"({self.goals.wait_text()}): holding still")
                aperture = self.observations.aperture(inputs.messages[topics.JOINT_STATES])
                return np.array([aperture, 0.0, 0.0, 0.0, 0.0])
        self._check_camera(loaded, inputs)
        return self.act(self.observe(inputs, goal_xy=None if goal is None else goal[0][:2]))

    def _check_camera(self, loaded: LoadedPolicy, inputs) -> None:
        """Once per policy: warn when the live camera is far from the one its data was recorded with."""
        from equimanip.checkpoint import camera_moved
        from equimanip.geometry import matrix_to_pose7, pose_difference
        from equimanip.perception.frames import FrameError

        if self._camera_checked is loaded:
            return
        trained = loaded.training_camera
        if trained is None:
            self._camera_checked, self.camera_offset = loaded, None
            return
        try:
            live = matrix_to_pose7(self.observations.resolver.lookup(inputs.messages[topics.CLOUD].header.frame_id))
        except FrameError:
            return                       # no pose yet: observe() says so; checked at a later decision
        self._camera_checked = loaded
        self.camera_offset = pose_difference(trained, live)
        moved = camera_moved(trained, live)
        if moved is not None:
            distance, angle = moved
            cell = loaded.policy.metadata.get("cell_params")
            self.get_logger().warning(
                f"the camera is {distance:.2f} m and {angle:.0f} degrees from where this policy's data was "
                f"recorded{' (the cell of --params ' + ' '.join(cell) + ')' if cell else ''}: live "
                f"{np.round(live, 3).tolist()}, trained {np.round(trained, 3).tolist()} (pose7 in the base "
                "frame). A policy learns its view: expect it to do worse here; give it its training "
                "camera or record demonstrations with this one")

    def needs_goal(self, loaded: Optional[LoadedPolicy] = None) -> bool:
        """Whether a policy's network (by default the deciding one's) shows the goal on the table."""
        return bool((loaded or self._deciding_with).policy.observation_config.takes_goal)

    def on_episode_start(self) -> None:
        super().on_episode_start()
        self.goals.reset(self.episode_start_ns)

    def act(self, observation) -> np.ndarray:
        return self._deciding_with.policy.act(observation)

    def metadata(self) -> dict:
        data = super().metadata()
        loaded = getattr(self, "_loaded", None)
        if loaded is not None:
            data["checkpoint"] = {"path": str(loaded.path), **loaded.policy.metadata}
        return data

    # ------------------------------------------------------------------ live changes
    def _check_parameters(self, params) -> SetParametersResult:
        """A new checkpoint must exist and be an equimanip checkpoint (read and checked here; the
        network is built off the control loop afterwards). The settings a network was trained on
        come from its checkpoint and cannot be changed on their own."""
        from equimanip.checkpoint import load_checkpoint

        for p in params:
            loading = self._loader is not None and self._loader.is_alive()
            if p.name == "device" and loading and threading.current_thread() is not self._loader:
                return SetParametersResult(successful=False, reason="a checkpoint is still loading")
            if p.name in ("checkpoint", "task"):
                value = p.value if p.name == "checkpoint" else self.get_parameter("checkpoint").value
                path = Path(value).expanduser() if value else shipped_checkpoint(
                    p.value if p.name == "task" else self.get_parameter("task").value)
                try:
                    load_checkpoint(path)
                except (FileNotFoundError, ValueError) as e:
                    return SetParametersResult(successful=False, reason=f"checkpoint refused: {e}")
                loading = self._loader is not None and self._loader.is_alive()
                if loading and threading.current_thread() is not self._loader:
                    return SetParametersResult(successful=False, reason="another checkpoint is still loading")
            field = p.name.removeprefix("observation.")
            if field in NETWORK_OBSERVATION_FIELDS and p.name != field and not self._installing:
                trained = _param_value(getattr(self._loaded.policy.observation_config, field))
                if p.value != trained:
                    return SetParametersResult(successful=False, reason=(
                        f"{p.name} is {trained!r} in the checkpoint: the network was trained on it; "
                        "load another checkpoint to change it"))
        return SetParametersResult(successful=True)

    def _on_policy_parameters(self, params) -> None:
        import torch

        names = {p.name for p in params}
        if "torch_threads" in names:
            torch.set_num_threads(self.get_parameter("torch_threads").value)
        if names & {"checkpoint", "task", "device"}:
            path = self._resolve(self.get_parameter("checkpoint").value)
            if "device" in names or path != self._loaded.path:
                self._loader = threading.Thread(target=self._load_in_background, args=(path,), daemon=True,
                                                name="checkpoint-loader")
                self._loader.start()

    def _load_in_background(self, path: Path) -> None:
        started = time.monotonic()
        old = self._loaded.path
        try:
            self._install(LoadedPolicy(self._build(path), path))
            freeze_start_up_objects()       # the new network's objects: out of the collector's walks
            self._load_error = None
            self.get_logger().info(f"now running {self._describe()} (loaded in {time.monotonic() - started:.2f} s, "
                                   "off the control loop)")
        except Exception as e:  # noqa: BLE001 - whatever failed, the old policy keeps running
            self._load_error = f"{path}: {e}"
            self.get_logger().error(f"could not load {path}: {e}; still running {old}")
            self.set_parameters([Parameter("checkpoint", value=str(old))])

    # ------------------------------------------------------------------ health
    def _check_equivariance(self) -> None:
        observation = self.last_observation
        if not self.get_parameter("equivariance_check").value or observation is None:
            return
        try:
            self._equivariance_error = equivariance_error(self._loaded.policy, observation)
        except Exception as e:  # noqa: BLE001 - a health check must not take the node down
            self._log.warning("equivariance", f"equivariance check failed: {e}")

    def diagnostics(self):
        status = super().diagnostics()
        error = self._equivariance_error
        status.values.append(KeyValue(key="equivariance_error", value="n/a" if error is None else f"{error:.3g}"))
        status.values.append(KeyValue(key="checkpoint", value=str(self._loaded.path)))
        if self.needs_goal(self._loaded):
            status.values.append(KeyValue(key="goal_source", value=self.goals.source))
            status.values.append(KeyValue(key="waiting_for_goal", value=str(self._waiting_for_goal)))
        if self.camera_offset is not None:
            distance, angle = self.camera_offset
            status.values.append(KeyValue(key="camera_offset", value=f"{distance:.3f} m, {angle:.1f} deg from "
                                                                     "the policy's training camera"))
        if self._load_error:
            status.values.append(KeyValue(key="last_load_error", value=self._load_error[:300]))
        return status


def _param_value(value):
    """A setting as a ROS parameter value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def _dummy_input(policy):
    """A blank Observation of the shapes the policy takes (for the warm-up): an empty table under a
    hand 20 cm up, open."""
    from equimanip.perception.observation import Observation

    config = policy.observation_config
    channels = int(policy.checkpoint.network.get("in_channels", 2))
    return Observation(heightmap=np.zeros((channels, config.heightmap_size, config.heightmap_size), np.float32),
                       object_state=np.zeros(config.object_state_dim, np.float32),
                       ee_pose=np.array([0.5, 0.0, config.table_z + 0.2, 1.0, 0.0, 0.0, 0.0]), gripper_aperture=1.0)


def equivariance_error(policy, observation, g: sym.GroupElement = QUARTER_TURN) -> float:
    """|g^-1 . policy(g . o) - policy(o)| / (|policy(o)| + 1e-6) for one observation: zero for a policy
    that commutes with ``g`` (a quarter turn is exact on the heightmap grid and for every group
    equimanip offers). Turning about the gripper changes neither its height nor its aperture."""
    if policy.input_kind == "heightmap":
        turned = replace(observation, heightmap=sym.transform_heightmap(g, np.asarray(observation.heightmap)))
    else:
        state = sym.transform_object_state(g, np.asarray(observation.object_state, dtype=np.float64),
                                           policy.observation_config.max_objects,
                                           policy.observation_config.goal_in_state).astype(np.float32)
        turned = replace(observation, object_state=state)
    answer = policy.act(observation)
    back = sym.transform_action(g.inverse(), policy.act(turned))
    return float(np.linalg.norm(back - answer) / (np.linalg.norm(answer) + 1e-6))


def main(args=None):
    spin_node(PolicyNode, args)


if __name__ == "__main__":
    main()
