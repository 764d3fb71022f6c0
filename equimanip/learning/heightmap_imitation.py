"""BC and BMIL on heightmaps, with the backwards models in the encoder's feature space.

    from equimanip.learning.heightmap_imitation import HeightmapConfig, train_on_heightmaps
    policy, models, log = train_on_heightmaps(dataset, BCConfig(group="c8"), HeightmapConfig())       # BC
    policy, models, log = train_on_heightmaps(dataset, cfg.policy, HeightmapConfig(), bmil=cfg)        # BMIL

``equimanip train bc|bmil --input heightmap`` is the command. The policy
(``models.heightmap_policy.HeightmapPolicyNet``) sees what Equivariant SAC's actor sees (the
gripper-centred heightmap of ``heightmap_mode: gripper``, fingers drawn in, the goal as a channel
with ``goal_channel``), encodes it with the SAC encoder into a typed feature vector, and maps that
to the action with an MLP head; group, width and heightmap size are ``HeightmapConfig``'s.

**BMIL in feature space.** An imagined heightmap is not something a backwards model can draw, so
the models work on the encoder's features z, as the issue asks. Each epoch:

1. encode every demonstration state and next state with the current encoder (no gradient);
2. refit the backwards models (``learning.backward``, not reinitialised) on (z_t, a_t, z_{t+1}):
   the features drift as the encoder learns, and the refit follows them;
3. imagine traces back from every demonstration's z, as BMIL does with states;
4. policy steps on minibatches that mix demonstrations (through the encoder and the head, so the
   encoder learns from them) and imagined transitions (through the head only: their z has no
   heightmap).

With an equivariant group the features are typed by ``feature_layout``, so the backwards models
are equivariant in the same types and the imagined traces of a rotated scene are the rotated
traces, as on the object-centric state.

Everything else is as BC and BMIL on the object-centric state (``bc.py``, ``bmil.py``): the
reference's hyperparameters, normalised actions with a linear output, MSE. No input
standardisation: the networks take the channels as the SAC networks do (the depth channels in
metres, the aperture channel in [0, 1]); a per-pixel standardisation would also break the
rotation symmetry the encoder relies on unless it were the same for every pixel.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from equimanip import symmetry as sym
from equimanip.action import normalize_action
from equimanip.learning.backward import BackwardModels, trace_length
from equimanip.learning.bc import physical_action
from equimanip.models.config import NetworkConfig
from equimanip.models.heightmap_policy import HeightmapPolicyNet
from equimanip.perception.observation import Observation, ObservationConfig

# Checkpoint network settings beyond NetworkConfig's.
HEAD_KEYS = ("features", "hidden", "depth")


@dataclass
class HeightmapConfig:
    """The encoder's size (NetworkConfig.cpu's by default: C8 group from the policy config,
    n_hidden 8, 64 x 64, compact top) and the feature vector's copies."""

    n_hidden: int = NetworkConfig.n_hidden
    heightmap_size: int = NetworkConfig.heightmap_size
    features: int = 8                     # copies of (scalar, pseudoscalar, freq-1 and freq-2 vector)

    def network(self, group: str, in_channels: int) -> NetworkConfig:
        return NetworkConfig.cpu(group=group, n_hidden=self.n_hidden, heightmap_size=self.heightmap_size,
                                 in_channels=in_channels)

    def validate(self) -> "HeightmapConfig":
        if self.features < 1:
            raise ValueError(f"features must be >= 1, got {self.features}")
        self.network("none", 2)           # width and size checked by the models
        return self


def heightmap_observation(observation: ObservationConfig, config: HeightmapConfig) -> ObservationConfig:
    """The observation a heightmap imitation policy sees: Equivariant SAC's view
    (``heightmap_mode`` gripper) at the network's size; the object-centric state is not needed, and
    a goal asked for in the state (``goal_in_state``, block_pushing's setting) comes as the goal
    channel, as the SAC networks take it."""
    return dataclasses.replace(observation, heightmap_size=config.heightmap_size, heightmap_mode="gripper",
                               compute_object_state=False, goal_in_state=False,
                               goal_channel=observation.goal_channel or observation.goal_in_state).validate()


class HeightmapImitationPolicy(torch.nn.Module):
    """heightmap -> normalised action; ``act(observation)`` gives the physical action."""

    input_kind = "heightmap"

    def __init__(self, net: HeightmapPolicyNet, observation: ObservationConfig):
        super().__init__()
        if net.config.in_channels != observation.heightmap_channels:
            raise ValueError(f"the network takes {net.config.in_channels} heightmap channels, the observation "
                             f"settings make {observation.heightmap_channels}")
        if net.config.heightmap_size != observation.heightmap_size:
            raise ValueError(f"the network takes {net.config.heightmap_size} px heightmaps, the observation "
                             f"settings make {observation.heightmap_size}")
        if observation.heightmap_mode != "gripper":
            # The symmetry the network carries is a turn about the image centre: the gripper's
            # vertical axis only in the gripper-centred view (heightmap_observation).
            raise ValueError(f"a heightmap policy sees the gripper-centred view (heightmap_mode 'gripper'); "
                             f"these observation settings have heightmap_mode '{observation.heightmap_mode}'")
        self.net, self.observation = net, observation

    def forward(self, heightmaps: torch.Tensor) -> torch.Tensor:
        return self.net(heightmaps)

    def network_settings(self) -> dict:
        head = self.net.head
        return {**self.net.config.to_dict(), "features": self.net.layout.count("scalar"),
                "hidden": head.hidden, "depth": head.depth}

    def act(self, observation: Observation) -> np.ndarray:
        return physical_action(self, torch.as_tensor(np.asarray(observation.heightmap, dtype=np.float32))[None])


@dataclass
class HeightmapDemos:
    heightmaps: torch.Tensor          # (N, C, S, S)
    actions: torch.Tensor             # (N, 5) normalised
    next_heightmaps: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset) -> "HeightmapDemos":
        if dataset.heightmaps is None or dataset.next_heightmaps is None:
            raise ValueError("the dataset was loaded without heightmaps (DatasetConfig(heightmaps=True))")
        return cls(torch.as_tensor(dataset.heightmaps), torch.as_tensor(normalize_action(dataset.actions)),
                   torch.as_tensor(dataset.next_heightmaps))

    def __len__(self) -> int:
        return len(self.actions)


@torch.no_grad()
def encode(net: HeightmapPolicyNet, heightmaps: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([net.features(chunk) for chunk in heightmaps.split(batch)])


def train_on_heightmaps(dataset, policy_config, heightmap: Optional[HeightmapConfig] = None, bmil=None,
                        progress: bool = False, on_epoch: Optional[Callable[[int, dict], None]] = None):
    """BC (``bmil`` None) or BMIL (``bmil`` a BMILConfig, whose ``policy`` should be
    ``policy_config``) on the dataset's heightmaps. Returns ``(policy, backward models or None,
    log)`` with one row per epoch."""
    from tqdm import trange

    pc = policy_config.validate()
    heightmap = (heightmap or HeightmapConfig()).validate()
    if bmil is not None:
        bmil.validate()
    torch.set_num_threads(pc.threads)
    torch.manual_seed(pc.seed)
    generator = torch.Generator().manual_seed(pc.seed)
    observation = dataset.config.observation
    demos = HeightmapDemos.from_dataset(dataset)
    net = HeightmapPolicyNet(heightmap.network(pc.group, observation.heightmap_channels),
                             features=heightmap.features, hidden=pc.hidden, depth=pc.depth)
    policy = HeightmapImitationPolicy(net, observation)
    optimiser = torch.optim.Adam(policy.parameters(), lr=pc.lr)
    models = None if bmil is None else BackwardModels(net.layout, sym.ACTION_LAYOUT, pc.group, bmil.backward)
    demo_batch = pc.batch_size if bmil is None else int(bmil.demo_ratio * pc.batch_size)
    log, start = [], time.perf_counter()
    bar = trange(pc.epochs, desc=f"{'bc' if bmil is None else 'bmil'} heightmap ({pc.group})", disable=not progress)
    for epoch in bar:
        row: dict = {"epoch": epoch + 1}
        if models is not None:
            features, next_features = encode(net, demos.heightmaps), encode(net, demos.next_heightmaps)
            repeat = bmil.demo_repeat
            fit = models.fit(features.repeat(repeat, 1), demos.actions.repeat(repeat, 1),
                             next_features.repeat(repeat, 1), generator)
            length = trace_length(epoch, bmil.schedule(), bmil.trace_lengths)
            imagined = models.imagine(features.repeat(bmil.samples_per_start, 1), length, generator).flat()
            row.update(trace_length=length, fit_epochs=fit["epochs"], heldout=fit["heldout"])
        policy.train()
        losses = []
        for _ in range(pc.steps_per_epoch):
            predicted, target = [], []
            if demo_batch > 0:
                d = torch.randint(len(demos), (demo_batch,), generator=generator)
                predicted.append(net(demos.heightmaps[d]))
                target.append(demos.actions[d])
            if models is not None and demo_batch < pc.batch_size:
                m = torch.randint(len(imagined[0]), (pc.batch_size - demo_batch,), generator=generator)
                predicted.append(net.head(imagined[0][m]))
                target.append(imagined[1][m])
            loss = torch.mean((torch.cat(predicted) - torch.cat(target)) ** 2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        row.update(loss=float(np.mean(losses)), wall_s=time.perf_counter() - start)
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", **({"heldout": f"{row['heldout']:.4f}"} if models else {}))
        if on_epoch is not None:
            on_epoch(epoch, row)
    policy.eval()
    return policy, models, log


# ------------------------------------------------------------------------------------ checkpoints


def build_policy(checkpoint, device: str, optimize: bool):
    """load_policy's builder for 'bc' and 'bmil' checkpoints of input kind 'heightmap': the
    network's plain-torch export behind the shared ``Policy`` (which checks the heightmap)."""
    from equimanip.checkpoint import Policy

    where = checkpoint.path or "checkpoint"
    settings = dict(checkpoint.network)
    head = {k: settings.pop(k) for k in HEAD_KEYS if k in settings}
    try:
        net = HeightmapPolicyNet(NetworkConfig.from_dict(settings), **head)
        HeightmapImitationPolicy(net, checkpoint.observation_config)       # channels and size agree
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: network settings: {e}") from None
    if "policy" not in checkpoint.state_dicts:
        raise ValueError(f"{where}: no policy weights (has {sorted(checkpoint.state_dicts)})")
    try:
        net.load_state_dict(checkpoint.state_dicts["policy"])
    except RuntimeError as e:
        raise ValueError(f"{where}: the weights do not fit the network the checkpoint describes "
                         f"({net.config.group}, n_hidden {net.config.n_hidden}, {net.config.heightmap_size} px): "
                         f"{' '.join(str(e).split())[:200]}") from None
    return Policy(net.export().to(device), checkpoint, device)


__all__ = ["HeightmapConfig", "HeightmapImitationPolicy", "heightmap_observation", "train_on_heightmaps",
           "build_policy"]
