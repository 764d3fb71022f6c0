"""Behaviour cloning from recorded demonstrations, plain or equivariant.

    from equimanip.data.dataset import load_dataset
    from equimanip.learning.bc import BCConfig, train_bc
    policy, log = train_bc(load_dataset("demos/"), BCConfig(group="c8"))
    action = policy.act(observation)          # Observation in, [p, dx, dy, dz, dyaw] out

As the BC baseline of BMIL's reference code (jypark0/bmil, conf/policy/bc.yaml and the Fetch
experiments): a deterministic MLP of 3 hidden layers of 256 (``depth`` = 4 linear layers),
trained with the mean squared error on minibatches of 64, Adam lr 3e-4, 200 epochs of 100 steps.

**What the policy sees.** The object-centric state of the perception pipeline
(``Observation.object_state``: gripper yaw and aperture, object slots relative to the gripper) and
the gripper's height above the table. The height is added because the state is relative to the
gripper: with the default overhead camera the hand hides the object once it is above it, and
without the height the policy cannot tell when to stop descending and close. Under a rotation
about the gripper's vertical axis the height is invariant, so the equivariant layout is
``object_state_layout(n)`` plus one scalar. A policy trained with ``goal_in_state`` (block_pushing)
also sees the goal's offset from the gripper.

**Inputs are standardised** (``standardise_inputs``, on by default; not in the reference) with
statistics of the demonstrations, per field so the symmetry survives (``input_standardisation``);
docs/imitation.md compares raw and standardised inputs on block_pushing (the ``inputs`` column).

**Actions** are learnt in a normalised space: each entry divided by its half-range (the in-plane
pair by the same number, so rotations commute with the scaling; the aperture also shifted to
[-1, 1], which only a scalar may be). The network output is linear, not squashed: ``tanh`` on
(dx, dy) component-wise is not rotation-equivariant; the controller's safety layer clips.

**Equivariant option** (``group`` = c4, c8, d4, ...): the policy is an
``equimanip.models.mlp.EquivariantMLP`` from the state layout to ``symmetry.ACTION_LAYOUT``, so a
rotated scene gives the rotated action by construction.

**On heightmaps** (``equimanip train bc|bmil --input heightmap``): see
:mod:`equimanip.learning.heightmap_imitation`; this module's command, checkpoint format and loader
serve both inputs.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from equimanip import symmetry as sym
from equimanip.action import ACTION_HIGH, ACTION_LOW, normalize_action, unnormalize_action
from equimanip.perception.observation import Observation, ObservationConfig

# ------------------------------------------------------------------------------------ features


def state_layout(max_objects: int, goal: bool = False) -> sym.Layout:
    """The imitation state: the object-centric state (with the goal entries when ``goal``, the
    observation's ``goal_in_state``) and the gripper's height above the table."""
    return sym.Layout(sym.object_state_layout(max_objects, goal).fields + (sym.scalar("ee_height"),))


def state_features(object_state: np.ndarray, ee_pose: np.ndarray, table_z: float) -> np.ndarray:
    """(..., D + 1) float32: ``object_state`` with the gripper's height above the table appended."""
    object_state = np.asarray(object_state, dtype=np.float32)
    height = (np.asarray(ee_pose, dtype=np.float64)[..., 2] - table_z).astype(np.float32)
    return np.concatenate([object_state, height[..., None]], axis=-1)


def observation_features(observation: Observation, config: ObservationConfig) -> np.ndarray:
    return state_features(observation.object_state, observation.ee_pose, config.table_z)


# Left as they are by default (BCConfig.standardise_aperture): the gripper aperture, already in
# [0, 1], is the trace of the policy's own last gripper command. Demonstrations hold it at 1 (open)
# or at the block's width (closed), never between; BC answers the open/close switch with a command
# near 0 (MSE averages the two), the fingers stop half-way, and a network that weighs the aperture
# strongly (standardised: x 4.4) keeps commanding half-closed there, an aperture it never saw.
# Measured (scripts/bc_input_scaling.py, block_picking, seed 0): standardised 7 % in
# distribution, aperture raw 100 %; every other group raw 4-18 %. docs/imitation.md.
RAW_ENTRIES = ("gripper_aperture",)


def input_standardisation(layout: sym.Layout, features: np.ndarray, keep_raw=()) -> tuple[list, list]:
    """(shift, scale) per input entry, from the demonstrations' features: the network sees
    ``(x - shift) * scale``. Offsets in metres (a few centimetres) and unit cosines otherwise reach
    the first layer at very different sizes. Chosen so the symmetry survives: a scalar is centred
    and scaled to unit deviation; a vector or a pseudoscalar, which turns or flips with the scene
    (its mean must stay zero), is only scaled, by its root-mean-square norm. Entries that do not
    vary in the data (an empty slot) and the fields named in ``keep_raw`` are left as they are."""
    features = np.asarray(features, dtype=np.float64)
    shift, scale = np.zeros(layout.size), np.ones(layout.size)
    for f in layout.fields:
        if any(n in keep_raw for n in f.names):
            continue
        idx = [layout.index(n) for n in f.names]
        x = features[:, idx]
        if f.kind == "scalar":
            spread = float(x.std())
            if spread > 1e-6:
                shift[idx], scale[idx] = float(x.mean()), 1.0 / spread
        else:
            norm = float(np.sqrt(np.mean(np.sum(x ** 2, axis=1))))
            if norm > 1e-6:
                scale[idx] = 1.0 / norm
    return shift.tolist(), scale.tolist()


# ------------------------------------------------------------------------------------ the policy


@dataclass
class PolicySpec:
    """Everything needed to rebuild a policy network and what it sees (stored in checkpoints)."""

    group: str = "none"
    hidden: int = 256
    depth: int = 4                       # linear layers: 3 hidden layers of ``hidden``
    max_objects: int = 4
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    # input_standardisation's (shift, scale), one per input entry; None: raw features (checkpoints
    # trained before it, or BCConfig.standardise_inputs off).
    input_shift: Optional[list] = None
    input_scale: Optional[list] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PolicySpec":
        d = dict(d)
        obs = d.pop("observation", {})
        obs = {k: tuple(v) if isinstance(v, list) else v for k, v in obs.items()}
        return cls(observation=ObservationConfig(**obs), **d)


def standardisation_tensors(spec: PolicySpec, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's input (shift, scale) as float32 tensors of ``size`` (zeros and ones without one)."""
    if spec.input_shift is None or spec.input_scale is None:
        return torch.zeros(size), torch.ones(size)
    shift, scale = (torch.as_tensor(v, dtype=torch.float32) for v in (spec.input_shift, spec.input_scale))
    finite = bool(torch.isfinite(shift).all() and torch.isfinite(scale).all())
    if shift.shape != (size,) or scale.shape != (size,) or not finite:
        raise ValueError(f"input_shift and input_scale must be {size} finite numbers each (the policy's inputs)")
    return shift, scale


def make_mlp(in_layout: sym.Layout, out_layout: sym.Layout, group: str, hidden: int, depth: int) -> nn.Module:
    from equimanip.models.mlp import EquivariantMLP
    return EquivariantMLP(in_layout, out_layout, group=group, hidden=hidden, depth=depth)


class ImitationPolicy(nn.Module):
    """state features -> normalised action; ``act(observation)`` gives the physical action."""

    def __init__(self, spec: PolicySpec):
        super().__init__()
        if spec.observation.max_objects != spec.max_objects:
            raise ValueError(f"the policy's max_objects ({spec.max_objects}) must be the observation's "
                             f"({spec.observation.max_objects})")
        self.spec = spec
        self.layout = state_layout(spec.max_objects, spec.observation.goal_in_state)
        shift, scale = standardisation_tensors(spec, self.layout.size)
        self.register_buffer("input_shift", shift, persistent=False)   # kept in the spec, not the weights
        self.register_buffer("input_scale", scale, persistent=False)
        self.net = make_mlp(self.layout, sym.ACTION_LAYOUT, spec.group, spec.hidden, spec.depth)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net((states - self.input_shift) * self.input_scale)

    def act(self, observation: Observation) -> np.ndarray:
        """Physical action [p, dx, dy, dz, dyaw] for one Observation, inside the action limits."""
        return physical_action(self, torch.as_tensor(observation_features(observation, self.spec.observation))[None])


@torch.no_grad()
def physical_action(policy: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The physical action, inside the limits, of a policy that maps a batch of one input ``x`` to
    normalised actions; evaluated in eval mode, the policy's mode restored after."""
    was_training = policy.training
    policy.eval()
    try:
        a = unnormalize_action(policy(x)[0].numpy()).astype(np.float64)
    finally:
        policy.train(was_training)
    return np.clip(a, ACTION_LOW, ACTION_HIGH)


# ------------------------------------------------------------------------------------ training


@dataclass
class BCConfig:
    """Behaviour cloning; defaults are the reference's (jypark0/bmil, Fetch experiments)."""

    group: str = "none"          # none = plain MLP; c4, c8, d4, ... = equivariant
    hidden: int = 256
    depth: int = 4               # linear layers (3 hidden layers of 256, as the reference's Net)
    lr: float = 3e-4
    batch_size: int = 64
    epochs: int = 200
    steps_per_epoch: int = 100
    seed: int = 0
    threads: int = 1             # torch threads: 1 is fastest for these small nets on a shared CPU
    standardise_inputs: bool = True   # input_standardisation from the demonstrations (not the reference's)
    standardise_aperture: bool = False  # also the gripper aperture (RAW_ENTRIES: the rows before 2026-11-26 night)

    def validate(self) -> "BCConfig":
        from equimanip.symmetry import GROUPS
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, got '{self.group}'")
        for name in ("hidden", "depth", "batch_size", "epochs", "steps_per_epoch", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        return self


@dataclass
class DemoArrays:
    """The dataset as the learners use it: features and normalised actions (float32 tensors)."""

    states: torch.Tensor         # (N, D + 1)
    actions: torch.Tensor        # (N, 5) normalised
    next_states: torch.Tensor    # (N, D + 1)
    episodes: int

    @classmethod
    def from_dataset(cls, dataset) -> "DemoArrays":
        table_z = dataset.config.observation.table_z
        return cls(torch.as_tensor(state_features(dataset.states, dataset.ee_poses, table_z)),
                   torch.as_tensor(normalize_action(dataset.actions)),
                   torch.as_tensor(state_features(dataset.next_states, dataset.next_ee_poses, table_z)),
                   len(dataset.used_episodes))

    def __len__(self) -> int:
        return len(self.actions)


def policy_spec(config, dataset, demos: DemoArrays) -> PolicySpec:
    """The policy to train on ``dataset``; its input standardisation from ``demos.states`` (the
    features the learner already built from it)."""
    observation = dataset.config.observation
    spec = PolicySpec(group=config.group, hidden=config.hidden, depth=config.depth,
                      max_objects=observation.max_objects, observation=observation)
    if config.standardise_inputs:
        spec.input_shift, spec.input_scale = input_standardisation(
            state_layout(observation.max_objects, observation.goal_in_state), demos.states.numpy(),
            keep_raw=() if config.standardise_aperture else RAW_ENTRIES)
    return spec


def bc_step(policy: ImitationPolicy, optimiser, states: torch.Tensor, actions: torch.Tensor) -> float:
    loss = torch.mean((policy(states) - actions) ** 2)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def train_bc(dataset, config: Optional[BCConfig] = None, progress: bool = False,
             on_epoch: Optional[Callable[[int, dict], None]] = None) -> tuple[ImitationPolicy, list]:
    """Fit a policy to the dataset's (state, action) pairs. Returns the policy and one log row per
    epoch ({epoch, loss, wall_s})."""
    from tqdm import trange

    config = (config or BCConfig()).validate()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    demos = DemoArrays.from_dataset(dataset)
    policy = ImitationPolicy(policy_spec(config, dataset, demos))
    optimiser = torch.optim.Adam(policy.parameters(), lr=config.lr)
    log, start = [], time.perf_counter()
    bar = trange(config.epochs, desc="bc", disable=not progress)
    for epoch in bar:
        losses = []
        for _ in range(config.steps_per_epoch):
            idx = torch.randint(len(demos), (config.batch_size,), generator=generator)
            losses.append(bc_step(policy, optimiser, demos.states[idx], demos.actions[idx]))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "wall_s": time.perf_counter() - start}
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if on_epoch is not None:
            on_epoch(epoch, row)
    policy.eval()
    return policy, log


# ------------------------------------------------------------------------------------ checkpoints


def save_policy(path, policy: ImitationPolicy, kind: str, task: str, metadata: Optional[dict] = None,
                command: Optional[str] = None):
    """The policy as an equimanip checkpoint of ``kind`` ('bc' or 'bmil'): input kind
    'object_state' (plus the gripper's height, see the module doc), network = the PolicySpec; or,
    for a ``heightmap_imitation.HeightmapImitationPolicy``, input kind 'heightmap' with its encoder's
    and head's settings;
    ``command``: the command line that trained it (default: this process's)."""
    from equimanip.checkpoint import save_checkpoint

    if getattr(policy, "input_kind", "object_state") == "heightmap":     # heightmap_imitation's
        return save_checkpoint(path, kind, network_config=policy.network_settings(),
                               observation_config=policy.observation, task=task, input_kind="heightmap",
                               metadata=metadata or {}, command=command, policy=policy.net)
    spec = policy.spec
    network = {k: v for k, v in spec.to_dict().items() if k != "observation"}
    return save_checkpoint(path, kind, network_config=network, observation_config=spec.observation, task=task,
                           input_kind="object_state", metadata=metadata or {}, command=command,
                           policy=policy.net)


def _build_policy(checkpoint, device: str, optimize: bool):
    """load_policy's builder for kinds 'bc' and 'bmil': the policy network's plain-torch export
    (of input kind 'object_state' here; 'heightmap' in heightmap_imitation)."""
    from equimanip.checkpoint import Policy

    if checkpoint.input_kind == "heightmap":
        from equimanip.learning.heightmap_imitation import build_policy
        return build_policy(checkpoint, device, optimize)
    where = checkpoint.path or "checkpoint"
    try:
        spec = PolicySpec(observation=checkpoint.observation_config, **checkpoint.network)
        policy = ImitationPolicy(spec)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: network settings: {e}") from None
    if "policy" not in checkpoint.state_dicts:
        raise ValueError(f"{where}: no policy weights (has {sorted(checkpoint.state_dicts)})")
    try:
        policy.net.load_state_dict(checkpoint.state_dicts["policy"])
    except RuntimeError as e:
        raise ValueError(f"{where}: the weights do not fit the network the checkpoint describes "
                         f"({spec.group}, hidden {spec.hidden}, depth {spec.depth}): "
                         f"{' '.join(str(e).split())[:200]}") from None
    network = policy.net.export().to(device)
    table_z = checkpoint.observation_config.table_z
    shift, scale = policy.input_shift.numpy(), policy.input_scale.numpy()

    class _ImitationPolicy(Policy):
        def network_input(self, observation) -> torch.Tensor:
            if not isinstance(observation, Observation):
                raise ValueError("an imitation policy needs the whole Observation (state and gripper height)")
            state = super().network_input(observation.object_state)[0].cpu().numpy()
            if observation.ee_pose is None or not np.all(np.isfinite(np.asarray(observation.ee_pose, float))):
                raise ValueError("the end-effector pose is missing or has non-finite entries; no action for it")
            features = (state_features(state, observation.ee_pose, table_z) - shift) * scale
            return torch.from_numpy(features.astype(np.float32))[None].to(self.device)

    return _ImitationPolicy(network, checkpoint, device)


def _register() -> None:
    from equimanip.checkpoint import register_policy_kind
    register_policy_kind("bc", _build_policy)
    register_policy_kind("bmil", _build_policy)


_register()


# ------------------------------------------------------------------------------------ the command


def add_common_arguments(parser) -> None:
    """Options of ``equimanip train bc`` that ``train bmil`` shares (defaults: the reference's)."""
    d = BCConfig()
    parser.add_argument("--demos", required=True, help="directory of recorded episodes (equimanip record)")
    parser.add_argument("--out", default=None, help="run directory (default runs/<learner>_<group>_s<seed>)")
    parser.add_argument("--group", default=d.group, help="none (plain MLP), c4, c8, c16, d4, d8, so2")
    parser.add_argument("--hidden", type=int, default=d.hidden)
    parser.add_argument("--depth", type=int, default=d.depth, help="linear layers of the policy")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=d.threads)
    parser.add_argument("--raw-inputs", action="store_true", help="feed the features as they are (no "
                        "standardisation from the demonstrations; the reference's way)")
    parser.add_argument("--standardise-aperture", action="store_true", help="standardise the gripper aperture "
                        "too (left as it is by default, see bc.RAW_ENTRIES; the behaviour before 2026-11-26 night)")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="the cell's parameter file the demonstrations were recorded with (a path or a "
                             "name in config/, e.g. side_camera): its observation.* settings")
    parser.add_argument("--observation", action="append", default=[], metavar="NAME=VALUE",
                        help="an ObservationConfig setting (e.g. cluster_eps=0.02), as the policy will see; "
                             "over --params")
    parser.add_argument("--demo-count", type=int, default=None, help="use only the first N usable episodes")
    from equimanip.data.dataset import DatasetConfig

    data = DatasetConfig()
    parser.add_argument("--control-period", type=float, default=data.control_period, metavar="S",
                        help="use only the episodes recorded at this control period, in seconds (default: the "
                             "one every episode shares; a directory that mixes several needs it)")
    parser.add_argument("--sync-slop", type=float, default=data.sync_slop, metavar="S",
                        help="pair a cloud with the pose and joint states within S seconds of it (default %(default)s: "
                             "equal stamps only, as the simulation records them)")
    parser.add_argument("--keep-intact-steps", action="store_true",
                        help="keep the intact steps of episodes with missing messages (default: leave such "
                             "episodes out)")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also use episodes whose recording was stopped mid-way (left out by default)")
    parser.add_argument("--include-failed", action="store_true",
                        help="also use failed demonstrations (left out by default)")
    from equimanip.learning.heightmap_imitation import HeightmapConfig

    h = HeightmapConfig()
    parser.add_argument("--input", choices=("state", "heightmap"), default="state",
                        help="what the policy sees: the object-centric state (default) or the gripper-centred "
                             "heightmap through Equivariant SAC's encoder (BMIL then imagines in its feature space)")
    parser.add_argument("--n-hidden", type=int, default=h.n_hidden, help="--input heightmap: the encoder's width")
    parser.add_argument("--heightmap-size", type=int, default=h.heightmap_size, help="--input heightmap: pixels")
    parser.add_argument("--features", type=int, default=h.features,
                        help="--input heightmap: copies of (scalar, pseudoscalar, two vectors) in the feature vector")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")


def observation_config_from(settings: list[str], params_files=()) -> ObservationConfig:
    """The observation settings of ``equimanip train bc|bmil``: the ``observation.*`` of the
    parameter files (``--params``, as ``equimanip record`` took them), then ``--observation``."""
    import yaml

    from equimanip.config import cell_parameters, settings_from_parameters

    params = cell_parameters(params_files)
    known = {f.name for f in dataclasses.fields(ObservationConfig)}
    for text in settings:          # a flag is one more observation.* parameter, read the same way
        name, sep, value = text.partition("=")
        if not sep or name not in known:
            raise ValueError(f"--observation takes NAME=VALUE with NAME one of {', '.join(sorted(known))}; "
                             f"got '{text}'")
        params[f"observation.{name}"] = yaml.safe_load(value)
    return settings_from_parameters(ObservationConfig(), params, "observation.").validate()


def bc_config_from(args) -> BCConfig:
    return BCConfig(group=args.group, hidden=args.hidden, depth=args.depth, lr=args.lr, batch_size=args.batch_size,
                    epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                    threads=args.threads, standardise_inputs=not args.raw_inputs,
                    standardise_aperture=args.standardise_aperture).validate()


def dataset_config_from(args, observation: Optional[ObservationConfig] = None):
    """The DatasetConfig of ``equimanip train bc|bmil``: which episodes are used and how steps pair,
    for ``observation`` (default: ObservationConfig(); load_demos passes --params' and --observation's)."""
    from equimanip.data.dataset import DatasetConfig

    if args.control_period is not None and not (args.control_period > 0 and math.isfinite(args.control_period)):
        raise ValueError(f"--control-period must be a positive number of seconds, got {args.control_period}")
    if not (args.sync_slop >= 0 and math.isfinite(args.sync_slop)):
        raise ValueError(f"--sync-slop must be a finite number of seconds >= 0, got {args.sync_slop}")
    return DatasetConfig(observation=observation or ObservationConfig(), heightmaps=args.input == "heightmap",
                         sync_slop=args.sync_slop, strict=not args.keep_intact_steps,
                         only_success=not args.include_failed, include_unfinished=args.include_unfinished,
                         control_period=args.control_period)


def heightmap_config_from(args):
    from equimanip.learning.heightmap_imitation import HeightmapConfig

    return HeightmapConfig(n_hidden=args.n_hidden, heightmap_size=args.heightmap_size,
                           features=args.features).validate()


def load_demos(args):
    """The dataset the command trains on (``--demo-count``: the first N usable episodes)."""
    from equimanip.data.dataset import load_dataset, select_episodes
    from equimanip.learning.heightmap_imitation import heightmap_observation

    observation = observation_config_from(args.observation, args.params)
    if args.input == "heightmap":
        observation = heightmap_observation(observation, heightmap_config_from(args))
    dataset = load_dataset(args.demos, dataset_config_from(args, observation), progress=not args.json)
    if args.demo_count is not None:
        dataset = select_episodes(dataset, args.demo_count)
    return dataset


def recorded_camera_pose(dataset) -> Optional[list]:
    """The demonstrations' camera pose (the recorded /camera/pose of the first used episode that
    has one), with a warning when the episodes disagree by more than policy_node tolerates
    (CAMERA_TOLERANCE)."""
    import sys

    from equimanip.checkpoint import camera_moved

    poses = [r.camera_pose for r in dataset.used_episodes if r.camera_pose is not None]
    if not poses:
        return None
    moved = [m for m in (camera_moved(poses[0], p) for p in poses[1:]) if m is not None]
    if moved:
        print(f"warning: the demonstrations' camera moved between episodes (up to {max(d for d, _ in moved):.2f} m, "
              f"{max(a for _, a in moved):.0f} degrees); the checkpoint records the first episode's", file=sys.stderr)
    return [round(float(v), 6) for v in poses[0]]


def command_line(kind: str, argv) -> str:
    """``equimanip train <kind> ...`` as the user typed it, for the checkpoint (as SAC's)."""
    import shlex
    import sys

    return f"equimanip train {kind} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


def run_command(kind: str, args, train, command: Optional[str] = None) -> int:
    """Shared body of ``equimanip train bc|bmil``: load, train (``train(dataset) -> (policy, log,
    config dict)``), write the epoch log (CSV), the checkpoint (recording ``command``), and a
    summary."""
    import csv
    import json
    import sys
    from pathlib import Path

    from equimanip.data.bag import BagReadError
    from equimanip.data.dataset import DatasetError

    try:
        dataset = load_demos(args)
    except (DatasetError, BagReadError, ValueError, OSError) as e:
        print(f"equimanip train {kind}: {e}", file=sys.stderr)
        return 1
    tasks = sorted({r.task for r in dataset.used_episodes if r.task})
    if len(tasks) > 1:
        print(f"equimanip train {kind}: the demonstrations mix tasks {tasks}", file=sys.stderr)
        return 1
    out = Path(args.out or f"runs/{kind}_{args.group}_s{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    policy, log, config = train(dataset)
    wall = time.perf_counter() - start
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    summary = {"kind": kind, "task": tasks[0] if tasks else "", "demos": len(dataset.used_episodes),
               "samples": len(dataset), "train_wall_s": round(wall, 1), "final_loss": log[-1]["loss"],
               # The cell the demonstrations came from: `equimanip eval` sets it up again by default,
               # and policy_node compares the live camera with the recorded one.
               "cell_params": list(args.params), "camera_pose": recorded_camera_pose(dataset), "config": config}
    path = save_policy(out / "policy.pt", policy, kind, summary["task"], metadata=summary, command=command)
    print(f"{kind} ({args.group}) on {summary['demos']} demonstrations ({summary['samples']} steps): "
          f"final loss {summary['final_loss']:.4f}, {wall:.0f} s; checkpoint {path}")
    if args.json:
        print(json.dumps({**summary, "checkpoint": str(path)}))
    return 0


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="equimanip train bc", description="Behaviour cloning from recorded "
                                     "demonstrations (defaults: the BMIL reference's BC baseline).")
    add_common_arguments(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = bc_config_from(args)
        dataset_config_from(args)          # its options checked before the dataset is read
    except ValueError as e:
        parser.error(str(e))

    def train(dataset):
        if args.input == "heightmap":
            from equimanip.learning.heightmap_imitation import train_on_heightmaps
            heightmap = heightmap_config_from(args)
            policy, _, log = train_on_heightmaps(dataset, config, heightmap, progress=not args.json)
            return policy, log, {**dataclasses.asdict(config), "heightmap": dataclasses.asdict(heightmap)}
        policy, log = train_bc(dataset, config, progress=not args.json)
        return policy, log, dataclasses.asdict(config)

    return run_command("bc", args, train, command_line("bc", argv))
