"""One checkpoint format for every learner, and the Policy a controller runs from it.

API::

    from equimanip.checkpoint import save_checkpoint, load_checkpoint, load_policy

    save_checkpoint("runs/pick_c8/best.pt", kind="sac", actor=actor, critic=critic,
                    network_config=net_cfg, observation_config=obs_cfg, task="block_picking",
                    command="equimanip train sac ...", metadata={"step": 5000})
    ckpt = load_checkpoint(path, kind="sac")          # validated Checkpoint (no network built)
    policy = load_policy(path, device="cpu")          # Policy
    action = policy.act(observation)                   # np.ndarray [5]: p, dx, dy, dz, dyaw (physical units)
    policy.observation_config, policy.input_kind, policy.task, policy.metadata

A checkpoint is one ``torch.save`` file of plain data (read back with ``weights_only=True``, so
loading one runs no code from it):

=================  ==========================================================================
``format``         "equimanip-checkpoint"; ``format_version`` (this code writes and reads 1)
``kind``           the learner: 'sac' here; 'bc', 'bmil' ... register their own (below)
``input_kind``     what the network takes: 'heightmap' or 'object_state'
``network``        the network's configuration as a dict (for 'sac' a ``NetworkConfig``)
``state_dicts``    name -> state dict (for 'sac': 'actor' and 'critic')
``observation``    the ``ObservationConfig`` the network was trained with, as a dict
``action_low/high``  the action limits the network's [-1, 1] outputs are scaled to
``task``, ``command``, ``revision``, ``created``   what trained it, from which git revision, when
``metadata``       the learner's own JSON-like extras (steps, evaluation results, ...)
=================  ==========================================================================

Loading validates all of it and fails with a ValueError naming the problem (FileNotFoundError
for a missing file): not a checkpoint, a newer format, a different kind than asked for, weights
that do not fit the network the configuration describes, an observation that does not fit the
network, bad action limits.

**Policies of other learners.** ``register_policy_kind(kind, builder)`` with
``builder(checkpoint, device, optimize) -> Policy``; the modules in ``KIND_MODULES`` are imported
on first use of their kind, so ``load_policy`` works for every learner without the caller
importing it first. A 'sac' policy runs the actor's plain-torch export (``Actor.export``; on CPU
also ``models.inference.optimize_for_cpu``), deterministically: ``tanh(mean)`` scaled to the limits.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from equimanip.action import ACTION_DIM, ACTION_HIGH, ACTION_LOW, ACTION_NAMES
from equimanip.perception.observation import Observation, ObservationConfig

FORMAT = "equimanip-checkpoint"
FORMAT_VERSION = 1
INPUT_KINDS = ("heightmap", "object_state")
# Modules that register a policy kind when imported (looked up on first use of the kind).
KIND_MODULES = {"bc": "equimanip.learning.bc", "bmil": "equimanip.learning.bmil"}


@dataclass
class Checkpoint:
    """A validated checkpoint's contents (see the module docstring)."""

    kind: str
    input_kind: str
    network: dict
    state_dicts: dict
    observation_config: ObservationConfig
    action_low: np.ndarray
    action_high: np.ndarray
    task: str
    command: str = ""
    revision: str = "unknown"
    created: str = ""
    metadata: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: Optional[Path] = None

    def describe(self) -> dict:
        """What a Policy exposes as ``metadata``: the learner's extras plus the provenance."""
        return {**self.metadata, "kind": self.kind, "input_kind": self.input_kind, "network": dict(self.network),
                "task": self.task, "command": self.command, "revision": self.revision, "created": self.created,
                "format_version": self.format_version, "checkpoint": str(self.path) if self.path else None}


# ------------------------------------------------------------------------------------ saving


def save_checkpoint(path, kind: str, *, network_config, observation_config: ObservationConfig, task: str,
                    input_kind: str = "heightmap", command: Optional[str] = None, revision: Optional[str] = None,
                    metadata: Optional[dict] = None, action_low=ACTION_LOW, action_high=ACTION_HIGH,
                    state_dicts: Optional[dict] = None, **modules: torch.nn.Module) -> Path:
    """Write a checkpoint to ``path`` (atomically: a temporary file renamed into place).

    ``network_config``: a dataclass with ``to_dict()`` or a dict. The weights come from the keyword
    ``modules`` (``actor=..., critic=...``: their state dicts, moved to the CPU) and/or
    ``state_dicts``. ``command`` defaults to this process's command line, ``revision`` to the git
    revision of the source tree (with '-dirty' when it has uncommitted changes)."""
    path = Path(path)
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    weights = {name: _cpu_state_dict(m.state_dict()) for name, m in modules.items()}
    weights.update({name: _cpu_state_dict(sd) for name, sd in (state_dicts or {}).items()})
    if not weights:
        raise ValueError("a checkpoint needs the weights of at least one network")
    network = network_config.to_dict() if hasattr(network_config, "to_dict") else dict(network_config)
    low, high = _check_limits(action_low, action_high)
    content = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": str(kind), "input_kind": input_kind,
        "network": _plain(network, "network"), "state_dicts": weights,
        "observation": _plain(dataclasses.asdict(observation_config.validate()), "observation"),
        "action_low": low.tolist(), "action_high": high.tolist(), "action_names": list(ACTION_NAMES),
        "task": str(task), "command": command if command is not None else " ".join(sys.argv),
        "revision": revision if revision is not None else git_revision(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metadata": _plain(metadata or {}, "metadata"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(content, tmp)
    tmp.replace(path)
    return path


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """This source tree's :func:`tree_revision`, asked once per process: a training run that takes
    an hour reports the tree it started from, not a commit made while it ran
    (equimanip.learning.sac.train asks at its start)."""
    return tree_revision(Path(__file__).resolve().parent.parent)


def tree_revision(root: Path) -> str:
    """The git revision of the checkout at ``root`` ('unknown' outside one), '-dirty' if a tracked
    file outside the documentation (docs/, *.md) is modified: results rows added to docs/results
    while a run trains do not make the next run's revision dirty."""
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)docs", ":(exclude)*.md"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def _cpu_state_dict(state: dict) -> dict:
    return {k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


def _plain(value, where: str):
    """JSON-like data only (what ``weights_only`` loading accepts): numpy scalars and arrays become
    Python numbers and lists, paths strings; anything else is refused here rather than at load."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {where} of type {type(value).__name__} in a checkpoint (plain data only)")


def _check_limits(low, high) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if low.shape != (ACTION_DIM,) or high.shape != (ACTION_DIM,):
        raise ValueError(f"action limits need {ACTION_DIM} entries {ACTION_NAMES}, got {low.shape} and {high.shape}")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(f"action limits must be finite with low < high, got {low.tolist()} / {high.tolist()}")
    return low, high


# ------------------------------------------------------------------------------------ loading


def load_checkpoint(path, kind: Optional[str] = None) -> Checkpoint:
    """Read and validate a checkpoint (no network is built); ``kind``: refuse any other kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not one of ours
        raise ValueError(f"{path} is not an equimanip checkpoint (cannot be read: {str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{path} is not an equimanip checkpoint (no '{FORMAT}' marker)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {version}, newer than this equimanip reads "
                         f"({FORMAT_VERSION}): update equimanip")
    missing = [k for k in ("kind", "input_kind", "network", "state_dicts", "observation", "action_low",
                           "action_high", "task") if k not in raw]
    if missing:
        raise ValueError(f"{path} is missing {', '.join(missing)}")
    if kind is not None and raw["kind"] != kind:
        raise ValueError(f"{path} is a '{raw['kind']}' checkpoint, expected '{kind}'")
    if raw["input_kind"] not in INPUT_KINDS:
        raise ValueError(f"{path}: unknown input kind {raw['input_kind']!r} (expected one of {INPUT_KINDS})")
    try:
        low, high = _check_limits(raw["action_low"], raw["action_high"])
        observation_config = _observation_config(raw["observation"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return Checkpoint(kind=raw["kind"], input_kind=raw["input_kind"], network=dict(raw["network"]),
                      state_dicts=dict(raw["state_dicts"]), observation_config=observation_config,
                      action_low=low, action_high=high, task=str(raw["task"]), command=raw.get("command", ""),
                      revision=raw.get("revision", "unknown"), created=raw.get("created", ""),
                      metadata=dict(raw.get("metadata", {})), format_version=version, path=path)


def _observation_config(data: dict) -> ObservationConfig:
    known = {f.name: f for f in dataclasses.fields(ObservationConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown observation settings {unknown} (written by a newer equimanip?)")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    # Written before the gripper view had a choice of robot removal: rebuild the view it was trained on.
    values.setdefault("robot_removal", "above_grasp_point")
    return ObservationConfig(**values).validate()


# How far (m, degrees) the live camera may be from where a policy's data was recorded before
# policy_node warns: a policy learns the view as much as the task (the shipped pushing policy,
# trained with config/side_camera.yaml's camera: 92 % there, 32 % with the default camera).
CAMERA_TOLERANCE = (0.10, 15.0)


def camera_moved(pose_a, pose_b) -> Optional[tuple[float, float]]:
    """(m, degrees) between two camera poses (pose7) when beyond CAMERA_TOLERANCE, else None."""
    from equimanip.geometry import pose_difference

    distance, angle = pose_difference(pose_a, pose_b)
    return (distance, angle) if distance > CAMERA_TOLERANCE[0] or angle > CAMERA_TOLERANCE[1] else None


def training_camera_pose(metadata: dict) -> Optional[np.ndarray]:
    """Where the camera was (pose7 of the cloud's frame in the base frame) when the policy's data
    was recorded: the checkpoint's ``camera_pose`` (imitation: the demonstrations' recorded
    /camera/pose), else the ``camera_pose`` of its ``cell_params`` files; None when unknown."""
    pose = metadata.get("camera_pose")
    if pose is None and metadata.get("cell_params"):
        from equimanip.config import cell_parameters
        try:
            pose = cell_parameters(metadata["cell_params"]).get("camera_pose")
        except Exception:  # noqa: BLE001 - a file of another machine, missing or unreadable: unknown
            pose = None
    try:
        pose = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return pose if pose.shape == (7,) and np.all(np.isfinite(pose)) and np.linalg.norm(pose[3:]) > 0 else None


# ------------------------------------------------------------------------------------ policies


class Policy:
    """What a controller runs: ``act(observation) -> action [5]`` in physical units.

    ``network`` maps a batch of inputs (heightmaps [1, C, S, S] or object states [1, D]) to
    normalised actions in [-1, 1]^5; they are scaled affinely to the checkpoint's action limits
    (the same map as the training code's) and clipped."""

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor], checkpoint: Checkpoint, device="cpu"):
        self.network, self.checkpoint, self.device = network, checkpoint, torch.device(device)
        self.observation_config = checkpoint.observation_config
        self.input_kind = checkpoint.input_kind
        self.task = checkpoint.task
        self.metadata = checkpoint.describe()
        self._mid = (checkpoint.action_high + checkpoint.action_low) / 2.0
        self._scale = (checkpoint.action_high - checkpoint.action_low) / 2.0

    def network_input(self, observation) -> torch.Tensor:
        """The network's input of one Observation (or of the bare array of ``input_kind``), checked."""
        if isinstance(observation, Observation):
            array = observation.heightmap if self.input_kind == "heightmap" else observation.object_state
        else:
            array = observation
        array = np.asarray(array, dtype=np.float32)
        oc = self.observation_config
        if self.input_kind == "heightmap":
            expected = (int(self.checkpoint.network.get("in_channels", 2)), oc.heightmap_size, oc.heightmap_size)
        else:
            expected = (oc.object_state_dim,)
        if array.shape != expected:
            raise ValueError(f"the policy takes a {self.input_kind} of shape {expected}, got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"the {self.input_kind} has non-finite entries; no action for it")
        return torch.from_numpy(array)[None].to(self.device)

    @torch.no_grad()
    def act(self, observation) -> np.ndarray:
        u = self.network(self.network_input(observation))[0].detach().cpu().numpy().astype(np.float64)
        return np.clip(u * self._scale + self._mid, self.checkpoint.action_low, self.checkpoint.action_high)


PolicyBuilder = Callable[[Checkpoint, str, bool], Policy]
_BUILDERS: dict[str, PolicyBuilder] = {}


def register_policy_kind(kind: str, builder: PolicyBuilder) -> None:
    """Make ``load_policy`` build policies of ``kind`` with ``builder(checkpoint, device, optimize)``."""
    _BUILDERS[kind] = builder


def load_policy(path, device: str = "cpu", optimize: bool = True, kind: Optional[str] = None) -> Policy:
    """The Policy of the checkpoint at ``path`` (validated; see the module docstring).

    ``optimize``: on CPU, run the actor through ``optimize_for_cpu`` (per-layer memory format and a
    frozen TorchScript graph: same function, results equal to float rounding, about 2x faster at
    batch 1); False runs the plain export as it is."""
    checkpoint = load_checkpoint(path, kind)
    if checkpoint.kind not in _BUILDERS and checkpoint.kind in KIND_MODULES:
        importlib.import_module(KIND_MODULES[checkpoint.kind])
    builder = _BUILDERS.get(checkpoint.kind)
    if builder is None:
        raise ValueError(f"{path}: no policy for checkpoint kind '{checkpoint.kind}' "
                         f"(known: {', '.join(sorted(_BUILDERS))})")
    return builder(checkpoint, str(device), optimize)


# ----------------------------------------------------------------------------- kind 'sac'


def _sac_policy(checkpoint: Checkpoint, device: str, optimize: bool) -> Policy:
    from equimanip.models import NetworkConfig, make_actor
    from equimanip.models.inference import optimize_for_cpu

    where = checkpoint.path or "checkpoint"
    if checkpoint.input_kind != "heightmap":
        raise ValueError(f"{where}: a 'sac' policy takes heightmaps, the checkpoint says {checkpoint.input_kind!r}")
    try:
        cfg = NetworkConfig.from_dict(checkpoint.network)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: network settings: {e}") from None
    if cfg.in_channels != checkpoint.observation_config.heightmap_channels:
        raise ValueError(f"{where}: the network takes {cfg.in_channels} heightmap channels but the observation "
                         f"settings make {checkpoint.observation_config.heightmap_channels} (goal_channel "
                         f"{checkpoint.observation_config.goal_channel})")
    if cfg.heightmap_size != checkpoint.observation_config.heightmap_size:
        raise ValueError(f"{where}: the network takes {cfg.heightmap_size} x {cfg.heightmap_size} heightmaps but the "
                         f"observation settings make {checkpoint.observation_config.heightmap_size} x "
                         f"{checkpoint.observation_config.heightmap_size}")
    if "actor" not in checkpoint.state_dicts:
        raise ValueError(f"{where}: no actor weights (has {sorted(checkpoint.state_dicts)})")
    actor = make_actor(cfg)
    try:
        actor.load_state_dict(checkpoint.state_dicts["actor"])
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise ValueError(f"{where}: the actor weights do not fit the network the checkpoint describes "
                         f"({cfg.group}, n_hidden {cfg.n_hidden}, {cfg.heightmap_size} px): {detail}") from None
    plain = actor.export()
    if device == "cpu" and optimize:
        fast, _ = optimize_for_cpu(plain)
        run = fast
    else:
        plain = plain.to(device)
        run = plain

    def network(x: torch.Tensor) -> torch.Tensor:
        mean, _ = run(x)
        return torch.tanh(mean)

    return Policy(network, checkpoint, device)


register_policy_kind("sac", _sac_policy)


__all__ = ["Checkpoint", "Policy", "save_checkpoint", "load_checkpoint", "load_policy", "register_policy_kind",
           "git_revision", "FORMAT_VERSION", "KIND_MODULES"]
