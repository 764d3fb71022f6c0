"""Learned dynamics of the object-centric state, for MPPI: ``equimanip train dynamics``.

    equimanip train dynamics --explore 300 --quadrant 0 --group c8 --out runs/push_c8
    equimanip train dynamics --demos demos/ --group c8 --out runs/dyn_demos     # recorded episodes

    from equimanip.learning.dynamics import load_dynamics
    model = load_dynamics("runs/push_c8/dynamics.pt")          # plain torch, eval mode
    next_states = model(states, actions)                       # (K, D), (K, 5) -> (K, D): MPPI's dynamics

**What it predicts.** ``s_{t+1} = s_t + f(s_t, a_t)``: the change of the state over one control step,
given the state and the action ``[p, dx, dy, dz, dyaw]``. ``f`` is an
``equimanip.models.mlp.EquivariantMLP`` from the state's layout plus ``symmetry.ACTION_LAYOUT`` to
the state's layout (``group`` none: a plain MLP), so for a rotation g about the gripper
``f(g.s, g.a) = g.f(s, a)`` holds by construction. Inputs and outputs are normalised field by field
in ways that commute with the group (a vector's two entries share one scale and are not shifted; a
scalar may be shifted), and the statistics travel in the checkpoint with the weights.

**States** (``state``):

* ``object_state``: the perception pipeline's object-centric state
  (``symmetry.object_state_layout(max_objects)``), from recorded episodes (``equimanip.data``);
* ``push``: a block and the gripper, for planar pushing with a closed gripper, from the simulation's
  ground truth (:func:`push_state`): the gripper's yaw as a frequency-2 pair (a closed Panda hand
  looks the same turned half way round, and the wrist cannot turn a full circle: with frequency 1 a
  scene turned by 180 degrees would need a yaw the arm cannot take), the block's offset from the
  grasp point (dx, dy, dz) and the cube's yaw as a frequency-4 pair (a cube looks the same every
  quarter turn).

**Exploration** (``--explore N``): N short episodes of ``block_pushing`` in ``ManipulationEnv``: the
closed gripper at pushing height in the middle of the workspace, the block 5 to 9 cm from it in
one quadrant around it (``--quadrant``, or anywhere), and steps of up to 3 cm mostly towards the
block (pushes), sometimes anywhere. With ``--quadrant`` the data never shows a block pushed in the
other three quadrants: the symmetry experiment (``equimanip.bench.mppi_push``) asks whether the
planner pushes there anyway.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from equimanip import symmetry as sym
from equimanip.action import ACTION_HALF_RANGE, ACTION_HIGH, ACTION_LOW, ACTION_MID
from equimanip.perception.observation import ObservationConfig

KIND = "dynamics"
STATES = ("push", "object_state")

# ------------------------------------------------------------------------------------ states

PUSH_STATE_LAYOUT = sym.Layout((sym.vector("cos2_gripper_yaw", "sin2_gripper_yaw", 2),
                                sym.vector("block_dx", "block_dy", 1), sym.scalar("block_dz"),
                                sym.vector("cos4_block_yaw", "sin4_block_yaw", 4)))
PUSH_BLOCK_XY = (2, 3)         # where the block's in-plane offset sits in a push state


def state_layout(state: str, max_objects: int = 1) -> sym.Layout:
    if state == "push":
        return PUSH_STATE_LAYOUT
    if state == "object_state":
        return sym.object_state_layout(max_objects)
    raise ValueError(f"state must be one of {STATES}, got {state!r}")


def push_state(ee_pose, block_pose) -> np.ndarray:
    """(7,) float32 push state of an end-effector pose7 and a block pose7 (base frame)."""
    from equimanip.geometry import yaw_of_quat_xyzw

    ee_pose, block_pose = np.asarray(ee_pose, dtype=np.float64), np.asarray(block_pose, dtype=np.float64)
    g, b = yaw_of_quat_xyzw(ee_pose[3:]), yaw_of_quat_xyzw(block_pose[3:])
    offset = block_pose[:3] - ee_pose[:3]
    return np.array([math.cos(2 * g), math.sin(2 * g), *offset, math.cos(4 * b), math.sin(4 * b)], dtype=np.float32)


# Actions normalised as every learner does (equimanip.action.normalize_action): each entry by its
# half-range, the in-plane pair by one number, only the scalar p shifted.
ACTION_SCALE = ACTION_HALF_RANGE.astype(np.float32)
ACTION_OFFSET = ACTION_MID.astype(np.float32)


def field_statistics(layout: sym.Layout, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) per entry that commute with the group: scalars shifted by their mean and
    scaled by their spread; vectors and pseudoscalars only scaled (by the root mean square of their
    entries, one number for both entries of a vector)."""
    x = np.asarray(x, dtype=np.float64)
    shift, scale = np.zeros(layout.size), np.ones(layout.size)
    start = 0
    for f in layout.fields:
        part = x[:, start:start + f.size]
        if f.kind == "scalar":
            shift[start] = part.mean()
            spread = part.std()
        else:
            spread = math.sqrt(float(np.mean(part ** 2)))
        scale[start:start + f.size] = spread if spread > 1e-6 else 1.0
        start += f.size
    return shift.astype(np.float32), scale.astype(np.float32)


# ------------------------------------------------------------------------------------ the model


@dataclass
class DynamicsSpec:
    """Everything needed to rebuild a dynamics network (stored in checkpoints)."""

    state: str = "push"
    max_objects: int = 1
    group: str = "c8"
    hidden: int = 128
    depth: int = 3

    def layout(self) -> sym.Layout:
        return state_layout(self.state, self.max_objects)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicsSpec":
        return cls(**{k: d[k] for k in ("state", "max_objects", "group", "hidden", "depth") if k in d})


class DynamicsModel(nn.Module):
    """``(states (K, D), actions (K, 5)) -> next states (K, D)``; see the module docstring."""

    def __init__(self, spec: DynamicsSpec, net: Optional[nn.Module] = None):
        super().__init__()
        from equimanip.models.mlp import EquivariantMLP

        self.spec = spec
        self.layout = spec.layout()
        in_layout = sym.Layout(self.layout.fields + sym.ACTION_LAYOUT.fields)
        self.net = net if net is not None else EquivariantMLP(in_layout, self.layout, spec.group, spec.hidden,
                                                              spec.depth)
        D = self.layout.size
        for name, size in (("state_shift", D), ("state_scale", D), ("delta_shift", D), ("delta_scale", D)):
            self.register_buffer(name, torch.zeros(size) if "shift" in name else torch.ones(size))
        self.register_buffer("action_shift", torch.as_tensor(ACTION_OFFSET))
        self.register_buffer("action_scale", torch.as_tensor(ACTION_SCALE))

    def set_statistics(self, states: np.ndarray, deltas: np.ndarray) -> None:
        for prefix, values in (("state", states), ("delta", deltas)):
            shift, scale = field_statistics(self.layout, values)
            getattr(self, f"{prefix}_shift").copy_(torch.as_tensor(shift))
            getattr(self, f"{prefix}_scale").copy_(torch.as_tensor(scale))

    def normalised_delta(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(states - self.state_shift) / self.state_scale,
                       (actions - self.action_shift) / self.action_scale], dim=-1)
        return self.net(x)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + self.normalised_delta(states, actions) * self.delta_scale + self.delta_shift

    def export(self) -> "DynamicsModel":
        """The same function in plain torch (no escnn at run time), eval mode: for planning."""
        plain = DynamicsModel.__new__(DynamicsModel)
        nn.Module.__init__(plain)
        plain.spec, plain.layout = self.spec, self.layout
        plain.net = self.net.export() if hasattr(self.net, "export") else self.net
        for name, buffer in self.named_buffers(recurse=False):
            plain.register_buffer(name, buffer.detach().clone())
        return plain.eval()


# ------------------------------------------------------------------------------------ data


@dataclass
class Transitions:
    """(state, action, next state) samples; ``episode`` says which episode each came from."""

    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray
    episode: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, states=self.states, actions=self.actions, next_states=self.next_states,
                            episode=self.episode)
        return path

    @classmethod
    def load(cls, path) -> "Transitions":
        with np.load(path) as data:
            missing = {"states", "actions", "next_states", "episode"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a transitions file (missing {sorted(missing)})")
            return cls(data["states"], data["actions"], data["next_states"], data["episode"])

    @classmethod
    def from_dataset(cls, dataset) -> "Transitions":
        """The object-centric samples of recorded episodes (``equimanip.data.dataset.Dataset``)."""
        return cls(dataset.states.astype(np.float32), dataset.actions.astype(np.float32),
                   dataset.next_states.astype(np.float32), dataset.episode)


# Pushing scenes: the closed gripper at pushing height here (the middle of the workspace), the
# block this far from the grasp point, the gripper's yaw 0 unless the scene is turned.
PUSH_CENTRE = (0.5, 0.0)
PUSH_DISTANCE = (0.05, 0.09)
PUSH_STEP = 0.03               # m, the longest exploration step (the expert pushes at 3 cm a step)
PUSH_TOWARDS_SHARE = 0.7       # of exploration steps go towards the block (the rest anywhere)


class PushScene:
    """Puts a ``block_pushing`` environment into a pushing scene: the gripper closed at pushing
    height at ``PUSH_CENTRE`` with a given yaw, the block at a given offset and yaw. Shared by the
    exploration here and the experiment (``equimanip.bench.mppi_push``)."""

    def __init__(self, env):
        from equimanip.sim.tasks.block_pushing import BLOCK_SIZE

        self.env = env
        self.push_z = BLOCK_SIZE / 2.0

    def place(self, seed: int, block_offset, block_yaw: float, gripper_yaw: float = 0.0, goal_xy=None):
        """Reset to ``seed``'s scene, move the gripper there (the block parked out of the way), then
        put the block (and the goal patch, if given) in place. Returns the observation."""
        from equimanip.sim.env import expert_input
        from equimanip.sim.experts import move_towards
        from equimanip.sim.tasks.base import upright_pose7

        env, task = self.env, self.env.task
        obs = env.reset(seed)
        env.world.set_body_pose(task.block, upright_pose7((0.5, 0.45, self.push_z), 0.0))   # off the workspace
        start = np.array([*PUSH_CENTRE, self.push_z])
        for _ in range(30):
            if np.linalg.norm(obs.ee_pose[:3] - start) < 0.002 and abs(obs.ee_yaw - gripper_yaw) < 0.01:
                break
            obs = env.step(move_towards(expert_input(obs), start, gripper_yaw, aperture=0.0))[0]
        block_xy = np.asarray(PUSH_CENTRE) + np.asarray(block_offset, dtype=np.float64)
        env.world.set_body_pose(task.block, upright_pose7((*block_xy, self.push_z), block_yaw))
        if goal_xy is not None:
            env.world.set_body_pose(task.goal, upright_pose7((*goal_xy, 0.001), 0.0))
        obs = env.hold()[0]
        return obs


def explore_pushing(episodes: int, steps: int, quadrant: Optional[int], seed: int,
                    progress: bool = False) -> Transitions:
    """Random pushing data (see the module docstring): ``episodes`` x ``steps`` transitions."""
    from tqdm import trange

    from equimanip.sim.env import ManipulationEnv

    rng = np.random.default_rng(seed)
    states, actions, next_states, episode = [], [], [], []
    with ManipulationEnv(task="block_pushing", render=False) as env:
        scene = PushScene(env)
        for k in trange(episodes, desc="exploring", disable=not progress):
            low = 0.0 if quadrant is None else quadrant * math.pi / 2
            angle = rng.uniform(low, low + (2 * math.pi if quadrant is None else math.pi / 2))
            offset = rng.uniform(*PUSH_DISTANCE) * np.array([math.cos(angle), math.sin(angle)])
            obs = scene.place(seed * 100_000 + k, offset, rng.uniform(-math.pi, math.pi))
            for _ in range(steps):
                block = obs.object_poses[0]
                to_block = block[:2] - obs.ee_pose[:2]
                towards = math.atan2(to_block[1], to_block[0])
                heading = (towards + rng.uniform(-0.6, 0.6) if rng.random() < PUSH_TOWARDS_SHARE
                           else rng.uniform(-math.pi, math.pi))
                step = rng.uniform(0.0, PUSH_STEP)
                action = np.array([0.0, step * math.cos(heading), step * math.sin(heading), 0.0, 0.0])
                # Keep the gripper at pushing height: dz holds it there against the arm's sag.
                action[3] = np.clip(scene.push_z - obs.ee_pose[2], -0.005, 0.005)
                state = push_state(obs.ee_pose, block)
                obs = env.step(action)[0]
                states.append(state)
                actions.append(action.astype(np.float32))
                next_states.append(push_state(obs.ee_pose, obs.object_poses[0]))
                episode.append(k)
    return Transitions(np.stack(states), np.stack(actions), np.stack(next_states), np.asarray(episode))


# ------------------------------------------------------------------------------------ training


@dataclass
class DynamicsConfig:
    """One training run. ``validate()`` raises ValueError naming the first bad setting."""

    spec: DynamicsSpec = field(default_factory=DynamicsSpec)
    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    validation_share: float = 0.1       # of the episodes, held out (by episode, not by sample)
    seed: int = 0
    threads: int = 1                    # torch threads (1: small networks on a busy small CPU)

    def validate(self) -> "DynamicsConfig":
        from equimanip.models.fields import check_group_name

        check_group_name(self.spec.group)
        state_layout(self.spec.state, self.spec.max_objects)
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if not 0 <= self.validation_share < 1:
            raise ValueError(f"validation_share must be in [0, 1), got {self.validation_share}")
        if self.spec.hidden < 1 or self.spec.depth < 1:
            raise ValueError("hidden and depth must be >= 1")
        return self


def split_by_episode(data: Transitions, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) sample indices; whole episodes go to one side."""
    episodes = np.unique(data.episode)
    rng = np.random.default_rng(seed)
    held = rng.choice(episodes, size=int(round(share * len(episodes))), replace=False) if share > 0 else []
    validation = np.isin(data.episode, held)
    return np.flatnonzero(~validation), np.flatnonzero(validation)


def train_dynamics(data: Transitions, config: Optional[DynamicsConfig] = None, progress: bool = False
                   ) -> tuple[DynamicsModel, list[dict]]:
    """Fit a dynamics model to ``data``; returns the model (the epoch with the lowest validation
    error, or the last without validation data) and the per-epoch log."""
    from tqdm import trange

    config = (config or DynamicsConfig()).validate()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    layout = config.spec.layout()
    if data.states.shape[1] != layout.size:
        raise ValueError(f"the data's states have {data.states.shape[1]} entries, the '{config.spec.state}' "
                         f"layout {layout.size}")
    train_idx, val_idx = split_by_episode(data, config.validation_share, config.seed)
    model = DynamicsModel(config.spec)
    model.set_statistics(data.states[train_idx], (data.next_states - data.states)[train_idx])
    tensors = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in
               (("s", data.states), ("a", data.actions), ("n", data.next_states))}
    with torch.no_grad():
        targets = (tensors["n"] - tensors["s"] - model.delta_shift) / model.delta_scale
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    log, best, best_state = [], math.inf, None
    for epoch in trange(config.epochs, desc="training", disable=not progress):
        model.train()
        order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        total, started = 0.0, time.perf_counter()
        for i in range(0, len(order), config.batch_size):
            batch = order[i:i + config.batch_size]
            loss = (model.normalised_delta(tensors["s"][batch], tensors["a"][batch]) - targets[batch]).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        row = {"epoch": epoch + 1, "loss": total / len(order), "epoch_s": time.perf_counter() - started}
        if len(val_idx):
            row["validation_loss"] = evaluate_loss(model, tensors, targets, val_idx)
            if row["validation_loss"] < best:
                best = row["validation_loss"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), log


def evaluate_loss(model: DynamicsModel, tensors: dict, targets: torch.Tensor, index) -> float:
    model.eval()
    with torch.no_grad():
        index = torch.as_tensor(index)
        return float((model.normalised_delta(tensors["s"][index], tensors["a"][index]) - targets[index])
                     .square().mean())


# ------------------------------------------------------------------------------------ checkpoints


def save_dynamics(path, model: DynamicsModel, task: str, metadata: Optional[dict] = None) -> Path:
    """An equimanip checkpoint of kind 'dynamics' (``equimanip.checkpoint``: one format for all)."""
    from equimanip.checkpoint import save_checkpoint

    return save_checkpoint(path, KIND, network_config=model.spec.to_dict(), input_kind="object_state",
                           observation_config=ObservationConfig(max_objects=model.spec.max_objects), task=task,
                           state_dicts={"model": model.state_dict()}, metadata=metadata,
                           action_low=ACTION_LOW, action_high=ACTION_HIGH)


def load_dynamics(path, device: str = "cpu", export: bool = True) -> DynamicsModel:
    """The model of a 'dynamics' checkpoint (ValueError when it is another kind or does not fit),
    by default as plain torch in eval mode, ready to plan with."""
    from equimanip.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path, kind=KIND)
    try:
        spec = DynamicsSpec.from_dict(checkpoint.network)
        model = DynamicsModel(spec)
        model.load_state_dict(checkpoint.state_dicts["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: the weights do not fit the dynamics network it describes ({str(e)[:200]})") from None
    model = model.eval()
    return (model.export() if export else model).to(device)


# ------------------------------------------------------------------------------------ command


def main(argv=None) -> int:
    import argparse
    import csv
    import json
    import sys

    d, s = DynamicsConfig(), DynamicsSpec()
    parser = argparse.ArgumentParser(prog="equimanip train dynamics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--explore", type=int, metavar="EPISODES", help="random pushing episodes in the simulation")
    source.add_argument("--demos", help="directory of recorded episodes (object-centric state)")
    source.add_argument("--data", help="a transitions file written by --save-data")
    parser.add_argument("--steps", type=int, default=15, help="steps per exploration episode")
    parser.add_argument("--quadrant", type=int, choices=(0, 1, 2, 3), default=None,
                        help="exploration: the block starts in this quadrant around the gripper (default anywhere)")
    parser.add_argument("--state", choices=STATES, default=None,
                        help="state layout (default: push for --explore/--data, object_state for --demos)")
    parser.add_argument("--max-objects", type=int, default=s.max_objects)
    parser.add_argument("--group", default=s.group, help="none (plain MLP), c4, c8, c16, d4, d8, so2")
    parser.add_argument("--hidden", type=int, default=s.hidden)
    parser.add_argument("--depth", type=int, default=s.depth)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=d.threads)
    parser.add_argument("--save-data", default=None, help="also write the transitions here (.npz)")
    parser.add_argument("--out", default=None, help="run directory (default runs/dynamics_<group>_s<seed>)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    state = args.state or ("object_state" if args.demos else "push")
    try:
        config = DynamicsConfig(DynamicsSpec(state, args.max_objects, args.group, args.hidden, args.depth),
                                args.epochs, args.batch_size, args.lr, seed=args.seed, threads=args.threads).validate()
    except ValueError as e:
        parser.error(str(e))
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        if args.explore:
            data = explore_pushing(args.explore, args.steps, args.quadrant, args.seed, progress=not args.json)
            task = "block_pushing"
        elif args.data:
            data, task = Transitions.load(args.data), "block_pushing"
        else:
            from equimanip.data.dataset import DatasetConfig, load_dataset

            observation = ObservationConfig(max_objects=args.max_objects)
            dataset = load_dataset(args.demos, DatasetConfig(observation=observation), progress=not args.json)
            data = Transitions.from_dataset(dataset)
            task = next((r.task for r in dataset.used_episodes if r.task), "")
    except (OSError, ValueError) as e:
        print(f"equimanip train dynamics: {e}", file=sys.stderr)
        return 1
    collect_s = time.perf_counter() - started
    out = Path(args.out or f"runs/dynamics_{args.group}_s{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    if args.save_data:
        data.save(args.save_data)
    try:
        model, log = train_dynamics(data, config, progress=not args.json)
    except ValueError as e:
        print(f"equimanip train dynamics: {e}", file=sys.stderr)
        return 1
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[-1]))
        writer.writeheader()
        writer.writerows(log)
    final = log[-1]
    summary = {"kind": KIND, "task": task, "samples": len(data), "episodes": int(len(np.unique(data.episode))),
               "quadrant": args.quadrant, "collect_s": round(collect_s, 1),
               "train_s": round(sum(r["epoch_s"] for r in log), 1), "final_loss": final["loss"],
               "best_validation_loss": min((r["validation_loss"] for r in log if "validation_loss" in r), default=None),
               "config": {**dataclasses.asdict(config)}}
    path = save_dynamics(out / "dynamics.pt", model, task, metadata=summary)
    print(f"dynamics ({config.spec.group}, {config.spec.state}) on {len(data)} transitions: training loss "
          f"{final['loss']:.4f}, best validation loss {summary['best_validation_loss']}; checkpoint {path}")
    if args.json:
        print(json.dumps({**summary, "checkpoint": str(path)}))
    return 0


__all__ = ["DynamicsModel", "DynamicsSpec", "DynamicsConfig", "Transitions", "PushScene", "PUSH_STATE_LAYOUT",
           "push_state", "explore_pushing", "train_dynamics", "save_dynamics", "load_dynamics", "state_layout"]
