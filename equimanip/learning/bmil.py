"""BMIL: behaviour cloning on demonstrations plus imagined traces that lead back into them.

Park and Wong, "Robust Imitation of a Few Demonstrations with a Backwards Model" (NeurIPS 2022);
reference code jypark0/bmil (``src/trainer/bc.py``, ``src/policy/bc.py``, ``conf/``). Each epoch:

1. refit the backwards models (:mod:`equimanip.learning.backward`) on the demonstrations until the
   held-out error stops improving (not reinitialised);
2. from every demonstration state, imagine one trace of ``trace_length(epoch)`` steps backwards
   (length growing linearly over the epochs: pick-and-place 1 -> 3, push 1); the imagined
   transitions end at demonstration states, so they teach the policy how to get back;
3. ``steps_per_epoch`` policy steps, each on a minibatch of which ``demo_ratio`` comes from the
   demonstrations and the rest from the imagined transitions (MSE, as BC).

**Trace order.** The reference reverses each trace with ``np.flipud`` "to add traces to the buffer
in correct order", but the result is never assigned, so nothing is reversed. It does not matter:
every stored sample is a whole (s_t, a_t, s_{t+1}) transition and minibatches are drawn uniformly,
so the order in the buffer never reaches the loss. We store the transitions as they are and do not
flip anything (a sequence-sampling learner would need forward order; none is used).

With ``group`` other than ``none`` the policy and both backwards models are equivariant (see
:mod:`equimanip.learning.bc` and :mod:`equimanip.learning.backward`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from equimanip import symmetry as sym
from equimanip.learning.backward import BackwardConfig, BackwardModels, trace_length
from equimanip.learning.bc import BCConfig, DemoArrays, ImitationPolicy, bc_step, policy_spec


@dataclass
class BMILConfig:
    """BMIL; defaults are the reference's Fetch pick-and-place experiment (conf/experiment/bmil/)."""

    policy: BCConfig = field(default_factory=BCConfig)             # lr 3e-4, batch 64, 200 x 100, 3 x 256
    backward: BackwardConfig = field(default_factory=BackwardConfig)
    demo_ratio: float = 0.5               # fraction of each policy minibatch from the demonstrations
    trace_lengths: tuple[int, int] = (1, 3)        # first and last trace length (push: (1, 1))
    trace_epochs: Optional[tuple[int, int]] = None  # epochs over which it grows; None: (1, epochs)
    samples_per_start: int = 1            # traces per demonstration state
    demo_repeat: int = 10                 # copies of each demonstration in the backward models' data

    def validate(self) -> "BMILConfig":
        self.policy.validate()
        self.backward.validate()
        if not 0 <= self.demo_ratio <= 1:
            raise ValueError(f"demo_ratio must be in [0, 1], got {self.demo_ratio}")
        if not 1 <= self.trace_lengths[0] <= self.trace_lengths[1]:
            raise ValueError(f"trace_lengths must be (first, last) with 1 <= first <= last, got {self.trace_lengths}")
        if self.trace_epochs is not None and not 0 <= self.trace_epochs[0] <= self.trace_epochs[1]:
            raise ValueError(f"trace_epochs must be (start, end) with 0 <= start <= end, got {self.trace_epochs}")
        if self.demo_repeat < 1:
            raise ValueError(f"demo_repeat must be >= 1, got {self.demo_repeat}")
        if self.samples_per_start < 1:
            raise ValueError(f"samples_per_start must be >= 1, got {self.samples_per_start}")
        return self

    @property
    def group(self) -> str:
        return self.policy.group

    def schedule(self) -> tuple[int, int]:
        return self.trace_epochs if self.trace_epochs is not None else (1, self.policy.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train_bmil(dataset, config: Optional[BMILConfig] = None, progress: bool = False,
               on_epoch: Optional[Callable[[int, dict], None]] = None):
    """Train a policy with BMIL on ``dataset``. Returns ``(policy, backward_models, log)`` with one
    log row per epoch (policy loss, refit epochs and held-out error, trace length, wall time)."""
    from tqdm import trange

    config = (config or BMILConfig()).validate()
    pc = config.policy
    torch.set_num_threads(pc.threads)
    torch.manual_seed(pc.seed)
    generator = torch.Generator().manual_seed(pc.seed)
    demos = DemoArrays.from_dataset(dataset)
    spec = policy_spec(pc, dataset, demos)
    policy = ImitationPolicy(spec)
    models = BackwardModels(policy.layout, sym.ACTION_LAYOUT, pc.group, config.backward)
    optimiser = torch.optim.Adam(policy.parameters(), lr=pc.lr)
    starts = demos.states.repeat(config.samples_per_start, 1)
    # The reference fills its buffer with every demonstration 10 times and refits the backwards
    # models on the whole buffer: 10x the gradient steps per refit epoch, and a held-out fifth that
    # mostly repeats training samples (so "convergence" is on the training error). Kept as is.
    fit_data = [x.repeat(config.demo_repeat, 1) for x in (demos.states, demos.actions, demos.next_states)]
    demo_batch = int(config.demo_ratio * pc.batch_size)
    log, start = [], time.perf_counter()
    bar = trange(pc.epochs, desc=f"bmil ({pc.group})", disable=not progress)
    for epoch in bar:
        fit = models.fit(*fit_data, generator)
        length = trace_length(epoch, config.schedule(), config.trace_lengths)
        imagined = models.imagine(starts, length, generator).flat()
        policy.train()
        losses = []
        for _ in range(pc.steps_per_epoch):
            d = torch.randint(len(demos), (demo_batch,), generator=generator)
            m = torch.randint(len(imagined[0]), (pc.batch_size - demo_batch,), generator=generator)
            states = torch.cat([demos.states[d], imagined[0][m]])
            actions = torch.cat([demos.actions[d], imagined[1][m]])
            losses.append(bc_step(policy, optimiser, states, actions))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "trace_length": length,
               "fit_epochs": fit["epochs"], "heldout": fit["heldout"], "wall_s": time.perf_counter() - start}
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", heldout=f"{fit['heldout']:.4f}", L=length)
        if on_epoch is not None:
            on_epoch(epoch, row)
    policy.eval()
    return policy, models, log


# ------------------------------------------------------------------------------------ the command

# The reference's two Fetch settings (conf/experiment/bmil/fetch_pick.yaml, fetch_push.yaml).
PRESETS = {"pick": {"trace_lengths": (1, 3), "scale_coef": 30.0}, "push": {"trace_lengths": (1, 1), "scale_coef": 3.0}}


def build_parser():
    import argparse

    from equimanip.learning.bc import add_common_arguments

    b, m = BackwardConfig(), BMILConfig()
    parser = argparse.ArgumentParser(prog="equimanip train bmil", description="BMIL: behaviour cloning with "
                                     "traces imagined by backwards models (defaults: the reference's).")
    add_common_arguments(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="pick",
                        help="the reference's pick-and-place (traces 1 -> 3, scale 30) or push (1, scale 3) setting")
    parser.add_argument("--demo-ratio", type=float, default=m.demo_ratio)
    parser.add_argument("--trace-lengths", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"))
    parser.add_argument("--trace-epochs", type=int, nargs=2, default=None, metavar=("START", "END"),
                        help="epochs over which the trace length grows from FIRST to LAST, counted from 0 "
                             "(default: 1 to --epochs, the reference's; the last length is then never reached)")
    parser.add_argument("--samples-per-start", type=int, default=m.samples_per_start)
    parser.add_argument("--demo-repeat", type=int, default=m.demo_repeat,
                        help="copies of each demonstration in the backwards models' data (the reference: 10; "
                             "1 refits about ten times faster, what docs/imitation.md's runs use)")
    parser.add_argument("--scale-coef", type=float, default=None)
    parser.add_argument("--noise-mode", choices=("entropy", "plain"), default=b.noise_mode)
    parser.add_argument("--noise-scale", choices=("variance", "std"), default=b.noise_scale)
    parser.add_argument("--logvar-clamp", choices=("soft", "reference"), default=b.logvar_clamp)
    parser.add_argument("--backward-hidden", type=int, default=b.hidden)
    parser.add_argument("--backward-depth", type=int, default=b.depth)
    parser.add_argument("--backward-lr", type=float, default=b.lr)
    parser.add_argument("--backward-weight-decay", type=float, default=b.weight_decay)
    parser.add_argument("--backward-batch-size", type=int, default=b.batch_size)
    parser.add_argument("--bounds-weight", type=float, default=b.bounds_weight,
                        help="weight of the log-variance bounds term in the backwards models' loss "
                             "(default %(default)s, the reference's)")
    parser.add_argument("--holdout", type=float, default=b.holdout)
    parser.add_argument("--patience", type=int, default=b.patience)
    parser.add_argument("--improvement", type=float, default=b.improvement)
    parser.add_argument("--max-fit-epochs", type=int, default=b.max_fit_epochs,
                        help="most epochs of one refit of the backwards models, converged or not "
                             "(default %(default)s: a safety cap)")
    parser.add_argument("--no-bound-action", dest="bound_action", action="store_false",
                        help="leave the action model's mean unclamped (default: clamped to the action limits, "
                             "the reference's bounded_act)")
    parser.add_argument("--no-clip-imagined-actions", dest="clip_imagined_actions", action="store_false",
                        help="leave imagined actions outside the action limits, as the reference does (default: "
                             "clipped, since our policy's output is linear, not squashed; see backward.py)")
    return parser


def bmil_config_from(args) -> BMILConfig:
    """The BMILConfig of ``equimanip train bmil``'s options (the preset's where not given)."""
    from equimanip.learning.bc import bc_config_from

    preset = PRESETS[args.preset]
    return BMILConfig(
        policy=bc_config_from(args),
        backward=BackwardConfig(hidden=args.backward_hidden, depth=args.backward_depth, lr=args.backward_lr,
                                weight_decay=args.backward_weight_decay, batch_size=args.backward_batch_size,
                                holdout=args.holdout, patience=args.patience, improvement=args.improvement,
                                max_fit_epochs=args.max_fit_epochs, bounds_weight=args.bounds_weight,
                                bound_action=args.bound_action, clip_imagined_actions=args.clip_imagined_actions,
                                noise_mode=args.noise_mode, noise_scale=args.noise_scale,
                                logvar_clamp=args.logvar_clamp,
                                scale_coef=args.scale_coef if args.scale_coef is not None else preset["scale_coef"]),
        demo_ratio=args.demo_ratio, samples_per_start=args.samples_per_start, demo_repeat=args.demo_repeat,
        trace_lengths=tuple(args.trace_lengths) if args.trace_lengths else preset["trace_lengths"],
        trace_epochs=tuple(args.trace_epochs) if args.trace_epochs else None).validate()


def main(argv=None) -> int:
    from equimanip.learning.bc import command_line, dataset_config_from, run_command

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = bmil_config_from(args)
        dataset_config_from(args)          # its options checked before the dataset is read
    except ValueError as e:
        parser.error(str(e))

    def train(dataset):
        if args.input == "heightmap":
            from equimanip.learning.bc import heightmap_config_from
            from equimanip.learning.heightmap_imitation import train_on_heightmaps
            heightmap = heightmap_config_from(args)
            policy, _, log = train_on_heightmaps(dataset, config.policy, heightmap, bmil=config,
                                                 progress=not args.json)
            return policy, log, {**config.to_dict(), "heightmap": dataclasses.asdict(heightmap)}
        policy, _, log = train_bmil(dataset, config, progress=not args.json)
        return policy, log, config.to_dict()

    return run_command("bmil", args, train, command_line("bmil", argv))
