"""The replay buffer of Equivariant SAC: rotation augmentation and optional prioritized replay.

**Augmentation (equi_rl's buffer augmentation).** Every transition is stored together with
``copies`` (4) copies rotated by random continuous angles about the gripper: the heightmap and the
next heightmap turned by the same angle (``symmetry.transform_heightmaps``; the heightmap is centred
on the gripper, so its centre is the gripper's axis; channels constant over the image, the tiled
gripper aperture, stay as they are), the action turned by
``symmetry.transform_action`` (only (dx, dy) changes) and clipped to the action limits, reward,
termination and the expert flag unchanged. The copies are full buffer items, sampled and
prioritised like the original. They are kept as (transition, angle) pairs and turned when they are
sampled, which gives the same tensors as storing turned images (the same bilinear resampling of
the same data) at a fifth of the memory.

**Prioritized replay (Schaul et al. 2016), as equi_rl uses it.** Item i is drawn with probability
``P(i) = p_i^alpha / sum_j p_j^alpha``; new items get the largest priority so far; after an update
``p_i = |TD error| + eps``, plus ``expert_bonus`` for expert items (so demonstrations stay in
play); importance weights ``(N P(i))^-beta`` normalised by the largest possible weight, with beta
annealed by the caller (0.4 -> 1).

Actions are stored normalised to [-1, 1] per entry (``normalize_action``): what the tanh-squashed
policy outputs and the critic reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from equimanip.action import ACTION_HIGH, ACTION_LOW, normalize_action, unnormalize_action  # noqa: F401 (re-exported)
from equimanip.symmetry import GroupElement, group, transform_action, transform_heightmaps


def rotate_transitions(elements, obs: torch.Tensor, actions_u: np.ndarray, next_obs: torch.Tensor):
    """Transitions turned about the gripper, ``elements[b]`` turning transition b: both heightmaps
    (float tensors (B, C, S, S), on any device, turned there in one batch), and the normalised
    actions (B, 5) turned in physical units and clipped to the limits (entries other than
    (dx, dy) unchanged)."""
    both = torch.cat([obs, next_obs], dim=1)
    turned = transform_heightmaps(elements, both)
    # A channel that is the same everywhere (the gripper aperture tiled over the image) is a
    # scalar field: turning leaves it as it is. Resampling would pad its corners with zeros.
    flat = both.flatten(2)
    constant = flat.amax(-1) == flat.amin(-1)                   # (B, 2C)
    turned[constant] = both[constant]
    actions = [np.clip(transform_action(g, unnormalize_action(u)), ACTION_LOW, ACTION_HIGH)
               for g, u in zip(elements, actions_u)]
    channels = obs.shape[1]
    return turned[:, :channels], normalize_action(np.asarray(actions, dtype=np.float32)), turned[:, channels:]


def rotate_transition(g: GroupElement, obs: np.ndarray, action_u: np.ndarray, next_obs: np.ndarray):
    """One transition (C, S, S) heightmaps and a normalised action, turned by ``g``: see
    :func:`rotate_transitions`."""
    def one(x):
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)[None]

    turned_obs, turned_u, turned_next = rotate_transitions([g], one(obs), np.asarray(action_u)[None], one(next_obs))
    return turned_obs[0], turned_u[0], turned_next[0]


@dataclass
class Batch:
    """A sampled batch, as float32 tensors on the learner's device (rewards, terminations and
    weights as (B, 1) columns, is_expert as (B,) bool)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    is_expert: torch.Tensor
    weights: torch.Tensor
    indices: np.ndarray


class ReplayBuffer:
    """Transitions of heightmap observations ``obs_shape`` = (C, S, S); see the module docstring.

    ``capacity`` counts stored transitions (each is 1 + ``copies`` items); when full, the oldest
    transitions are overwritten. Heightmaps are kept as float16 (heights up to 0.5 m to within
    0.25 mm), halving the memory."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_dim: int = 5, copies: int = 4,
                 prioritized: bool = False, alpha: float = 0.6, eps: float = 1e-6, expert_bonus: float = 1.0,
                 seed: int = 0):
        if capacity < 1 or copies < 0:
            raise ValueError(f"capacity must be >= 1 and copies >= 0, got {capacity}, {copies}")
        self.capacity, self.copies = int(capacity), int(copies)
        self.prioritized, self.alpha, self.eps, self.expert_bonus = prioritized, alpha, eps, expert_bonus
        self.rng = np.random.default_rng(seed)
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float16)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float16)
        self.action = np.zeros((capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.is_expert = np.zeros(capacity, dtype=bool)
        # Item (i, k) is transition i turned by angles[i, k]; k = 0 is the transition as observed.
        self.angles = np.zeros((capacity, 1 + copies), dtype=np.float64)
        self.priorities = np.zeros((capacity, 1 + copies), dtype=np.float64)  # p^alpha per item
        self.max_priority = 1.0
        self.size = 0           # transitions stored
        self.next_index = 0
        self._so2 = group("so2")

    def __len__(self) -> int:
        """Items (transitions and their rotated copies) available for sampling."""
        return self.size * (1 + self.copies)

    def add(self, obs, action_u, reward: float, next_obs, terminated: bool, is_expert: bool = False) -> None:
        """Store one transition (action normalised to [-1, 1]) and draw its copies' angles."""
        i = self.next_index
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.action[i] = action_u
        self.reward[i] = reward
        self.terminated[i] = float(terminated)
        self.is_expert[i] = is_expert
        self.angles[i, 0] = 0.0
        self.angles[i, 1:] = [g.angle for g in self._so2.sample(self.rng, self.copies)]
        self.priorities[i] = self.max_priority
        self.next_index = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    # ----------------------------------------------------------------------------------- sampling
    def sample(self, batch_size: int, beta: float = 0.4, device="cpu", expert_fraction: float = 0.0) -> Batch:
        """``batch_size`` items; ``expert_fraction`` of them drawn uniformly from the expert items
        (weight 1), the rest from the whole buffer as configured (uniform or prioritized)."""
        n = len(self)
        if n == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        experts = np.flatnonzero(self.is_expert[:self.size]) if expert_fraction > 0 else np.zeros(0, dtype=int)
        n_expert = int(round(expert_fraction * batch_size)) if experts.size else 0
        n_rest = batch_size - n_expert
        if self.prioritized:
            p = self.priorities[:self.size].reshape(-1)
            probs = p / p.sum()
            indices = self.rng.choice(n, size=n_rest, p=probs)
            weights = (n * probs[indices]) ** (-beta) / (n * probs.min()) ** (-beta)
        else:
            indices = self.rng.integers(0, n, size=n_rest)
            weights = np.ones(n_rest)
        if n_expert:
            # Any of an expert transition's items: the transition itself or one of its rotated copies.
            item = self.rng.choice(experts, n_expert) * (1 + self.copies) + self.rng.integers(0, 1 + self.copies,
                                                                                            n_expert)
            indices, weights = np.concatenate([indices, item]), np.concatenate([weights, np.ones(n_expert)])
        transition, copy = np.divmod(indices, 1 + self.copies)
        # Heightmaps go to the learner's device as stored (float16) and are turned there, in one
        # batch: turned one by one on the CPU, a batch of 64 128 x 128 heightmaps took 57 ms, more
        # than a whole SAC update on a GPU.
        obs = torch.as_tensor(self.obs[transition]).to(device).float()
        next_obs = torch.as_tensor(self.next_obs[transition]).to(device).float()
        action = self.action[transition].copy()
        turned = np.flatnonzero(copy)
        if turned.size:
            elements = [GroupElement(float(a)) for a in self.angles[transition[turned], copy[turned]]]
            rows = torch.as_tensor(turned, device=obs.device)
            obs[rows], action[turned], next_obs[rows] = rotate_transitions(elements, obs[rows], action[turned],
                                                                           next_obs[rows])

        def column(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float32)[:, None], device=device)

        return Batch(obs=obs, action=torch.as_tensor(action, device=device),
                     reward=column(self.reward[transition]), next_obs=next_obs,
                     terminated=column(self.terminated[transition]),
                     is_expert=torch.as_tensor(self.is_expert[transition], device=device),
                     weights=column(weights), indices=indices)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities from the absolute TD errors of the items just used (prioritized only)."""
        if not self.prioritized:
            return
        transition, copy = np.divmod(np.asarray(indices), 1 + self.copies)
        raw = np.abs(np.asarray(td_errors, dtype=np.float64).reshape(-1)) + self.eps
        raw = raw + self.expert_bonus * self.is_expert[transition]
        self.priorities[transition, copy] = raw ** self.alpha
        self.max_priority = max(self.max_priority, float(raw.max() ** self.alpha))

    # ----------------------------------------------------------------------------------- saving
    _ARRAYS = ("obs", "next_obs", "action", "reward", "terminated", "is_expert", "angles", "priorities")

    def save(self, path) -> None:
        """Everything needed to continue (for resuming a run), as one .npz file."""
        np.savez(path, **{k: getattr(self, k)[:self.size] for k in self._ARRAYS},
                 meta=np.array([self.size, self.next_index, self.max_priority]),
                 rng=np.array(repr(self.rng.bit_generator.state)))

    def load(self, path) -> None:
        import ast

        with np.load(path) as data:
            size = int(data["meta"][0])
            if size > self.capacity or data["obs"].shape[1:] != self.obs.shape[1:] \
                    or data["angles"].shape[1] != 1 + self.copies:
                raise ValueError(f"{path}: a buffer of {size} transitions shaped {data['obs'].shape[1:]} "
                                 f"with {data['angles'].shape[1] - 1} copies does not fit this one")
            for k in self._ARRAYS:
                getattr(self, k)[:size] = data[k]
            self.size, self.next_index = size, int(data["meta"][1]) % self.capacity
            self.max_priority = float(data["meta"][2])
            self.rng.bit_generator.state = ast.literal_eval(str(data["rng"]))


__all__ = ["ReplayBuffer", "Batch", "normalize_action", "unnormalize_action", "rotate_transition",
           "rotate_transitions"]
