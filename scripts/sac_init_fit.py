"""Diagnostic: can a run seed's initial SAC actor learn the expert's actions at all?

Some SAC runs never take off (block_picking, C8, n_hidden 8: seed 1 with either camera). This
takes the networks a training run with each given seed starts from (``torch.manual_seed(seed)``,
then ``build_networks``, as ``equimanip train sac`` does), and fits each actor's deterministic
action ``tanh(mean)`` to the same 20 expert demonstrations (run seed 0's demonstration scenes) by
plain supervised learning: Adam 1e-3, batch 64, the same batches for every seed. An actor whose
loss stays where it started cannot pass what it sees to its action. It also reports the share of
the first layer's outputs that are positive over the demonstrations' heightmaps (0: the layer
passes nothing; 1: its ReLU never cuts).

    python scripts/sac_init_fit.py --seeds 0 1 2 3 4 5 6 --params side_camera
    python scripts/sac_init_fit.py --seeds 0 1 2 3 4 5 6 --params side_camera --center-inputs

Prints one line per seed and, with --json, one JSON line at the end. Appends no results row;
docs/equivariant_sac.md quotes it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from equimanip.envs import ManipulationGymEnv
from equimanip.envs.demos import collect_demonstrations
from equimanip.learning.evaluate import training_seeds
from equimanip.learning.replay import normalize_action
from equimanip.learning.sac import SACConfig, build_networks


def demonstrations(config: SACConfig, episodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(heightmaps, normalised expert actions) of run seed 0's demonstrations."""
    env = ManipulationGymEnv(config.task, **config.env_options())
    demos = collect_demonstrations(env, episodes, training_seeds(0)[1], progress=False)
    env.close()
    samples = [(obs, normalize_action(action)) for demo in demos for obs, action, *_ in demo.transitions()]
    return (torch.tensor(np.stack([s[0] for s in samples]), dtype=torch.float32),
            torch.tensor(np.stack([s[1] for s in samples]), dtype=torch.float32))


def first_layer_positive(actor, heightmaps: torch.Tensor) -> float:
    """Share of positive outputs of the actor's first convolution (before its ReLU)."""
    outputs = []
    first_conv = next(m for m in actor.encoder.modules() if isinstance(m, torch.nn.Conv2d) or
                      type(m).__name__ in ("R2Conv", "RelaxedR2Conv"))
    handle = first_conv.register_forward_hook(lambda m, i, o: outputs.append(getattr(o, "tensor", o)))
    with torch.no_grad():
        actor(heightmaps)
    handle.remove()
    return float((outputs[0] > 0).float().mean())


def fit(actor, heightmaps: torch.Tensor, actions: torch.Tensor, updates: int) -> list[float]:
    optimiser = torch.optim.Adam(actor.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(123)          # the same batches for every seed
    losses = []
    for _ in range(updates):
        index = torch.randint(len(heightmaps), (64,), generator=batches)
        mean, _ = actor(heightmaps[index])
        loss = ((torch.tanh(mean) - actions[index]) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--task", default="block_picking")
    parser.add_argument("--group", default="c8")
    parser.add_argument("--params", action="append", default=[], help="the cell, as train sac --params")
    parser.add_argument("--center-inputs", action="store_true", help="as train sac --center-inputs")
    parser.add_argument("--demos", type=int, default=20)
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = SACConfig(task=args.task, group=args.group, network="cpu", cell_params=tuple(args.params),
                       center_inputs=args.center_inputs).validate()
    config = dataclasses.replace(config, network_settings=config.network_config().to_dict())
    heightmaps, actions = demonstrations(config, args.demos)
    print(f"{len(heightmaps)} expert samples; {args.group}, n_hidden {config.network_config().n_hidden}, "
          f"center_inputs {args.center_inputs}", flush=True)
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        actor, _ = build_networks(config)
        started = time.perf_counter()
        positive = first_layer_positive(actor, heightmaps[:256])
        losses = fit(actor, heightmaps, actions, args.updates)
        row = {"seed": seed, "first_layer_positive": round(positive, 3),
               "loss_start": round(float(np.mean(losses[:20])), 4), "loss_end": round(float(np.mean(losses[-20:])), 4),
               "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(f"seed {seed}: first layer positive {positive:.2f}; loss {row['loss_start']:.3f} -> "
              f"{row['loss_end']:.3f} after {args.updates} updates ({row['seconds']:.0f} s)", flush=True)
    if args.json:
        print(json.dumps({"center_inputs": args.center_inputs, "params": args.params, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
