"""``equimanip bench policy [--json]``: what an Equivariant SAC decision and update cost.

Medians over repeated runs in one process, one torch thread (``torch.set_num_threads(1)``: on the
shared 2-core machine a second intra-op thread only waits for a core, REFERENCES section 7):

* ``actor_ms``: the actor a controller runs (``load_policy``'s: the plain-torch export, per-layer
  memory format, frozen TorchScript), CPU configuration (``NetworkConfig.cpu()``), batch 1;
* ``escnn_actor_ms``: escnn's own eval-mode module of the same network, same weights, same input,
  measured in alternating blocks with ``actor_ms`` (how equi_rl runs its policy);
  ``actor_variants_ms`` the steps in between (plain export; + channels-last everywhere; + frozen
  TorchScript alone), to show what each step buys;
* ``actor_paper_ms`` / ``escnn_actor_paper_ms``: the same at the paper configuration
  (``NetworkConfig.paper()``: C8, n_hidden 64, 128 x 128);
* ``sac_update_ms``: one full SAC update at the CPU configuration, batch 64 (critic, actor with the
  SACfD term, temperature, target critic: ``equimanip.learning.sac.SAC.update``) on random data;
  ``sac_update_cpu_time_ms`` the same in process CPU time (what it costs without waiting for a core);
* parameter counts of actor and critic for both configurations;
* with a GPU: the same on CUDA (``*_cuda_ms``; batch 1 decisions, batch 64 updates, synchronised).

Goals (issue 8): actor_ms <= 5, escnn_actor_ms / actor_ms >= 1.5, sac_update_ms < 200.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from equimanip.bench.common import print_report, time_ms
from equimanip.symmetry import ACTION_LAYOUT

GOAL_ACTOR_MS = 5.0
GOAL_SPEEDUP = 1.5
GOAL_UPDATE_MS = 200.0


def _interleaved(fns: dict, repeats: int, blocks: int = 5) -> dict:
    """Median ms of each callable, timed in alternating blocks so that a busy spell on the shared
    machine falls on all of them alike."""
    samples = {name: [] for name in fns}
    per_block = max(1, repeats // blocks)
    for _ in range(blocks):
        for name, fn in fns.items():
            samples[name] += time_ms(fn, per_block, warmup=2)
    return {name: statistics.median(s) for name, s in samples.items()}


def _actor_timings(cfg, repeats: int, device: str = "cpu") -> dict:
    from equimanip.models import make_actor
    from equimanip.models.inference import optimize_for_cpu

    torch.manual_seed(0)
    actor = make_actor(cfg).eval()
    S = cfg.heightmap_size
    x = torch.rand(1, cfg.in_channels, S, S)
    with torch.no_grad():
        plain = actor.export()
        if device != "cpu":
            actor, plain, x = actor.to(device), plain.to(device), x.to(device)

            def synced(fn):
                def run():
                    fn()
                    torch.cuda.synchronize()
                return run
            times = _interleaved({"escnn": synced(lambda: actor(x)), "export": synced(lambda: plain(x))}, repeats)
            return {"escnn": times["escnn"], "export": times["export"], "params": actor.parameter_count()}
        fast, plan = optimize_for_cpu(plain)
        channels_last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(torch.jit.trace(_Outputs(plain).eval(), x))
        assert torch.allclose(fast(x)[0], actor(x)[0], atol=1e-5)
        times = _interleaved({"escnn": lambda: actor(x), "optimized": lambda: fast(x),
                              "export": lambda: plain(x), "channels_last": lambda: channels_last(x_cl),
                              "jit_freeze": lambda: frozen(x)}, repeats)
    return {**times, "params": actor.parameter_count(), "plan": plan}


class _Outputs(torch.nn.Module):
    """The exported actor without its Python-side shape check, for tracing."""

    def __init__(self, actor):
        super().__init__()
        self.encoder, self.head = actor.encoder, actor.head

    def forward(self, x):
        out = self.head(self.encoder(x)).flatten(1)
        return out[:, :ACTION_LAYOUT.size], out[:, ACTION_LAYOUT.size:]


def _update_ms(cfg, repeats: int, device: str = "cpu") -> tuple[float, float, int]:
    """Median wall-clock and CPU-time ms of SAC.update at batch 64 on random data (a quarter of it
    flagged expert). The CPU time is the process's own work: on the shared machine the wall clock
    also counts the time the one thread waits for a core that other jobs hold."""
    from equimanip.learning.replay import Batch
    from equimanip.learning.sac import SAC, SACConfig
    from equimanip.models import make_actor, make_critic

    torch.manual_seed(0)
    config = SACConfig()
    actor, critic = make_actor(cfg), make_critic(cfg)
    learner = SAC(actor, critic, config, device=device)
    B, S = config.batch_size, cfg.heightmap_size

    def batch() -> Batch:
        heightmaps = torch.rand(2, B, cfg.in_channels, S, S, device=device) * 0.05
        column = dict(size=(B, 1), device=device)
        return Batch(obs=heightmaps[0], next_obs=heightmaps[1], action=torch.rand(B, 5, device=device) * 2 - 1,
                     reward=(torch.rand(**column) < 0.1).float(), terminated=torch.zeros(**column),
                     is_expert=torch.arange(B, device=device) < B // 4, weights=torch.ones(**column), indices=None)
    batches = [batch() for _ in range(4)]
    counter = iter(range(10 ** 9))

    def update():
        learner.update(batches[next(counter) % len(batches)])
        if device != "cpu":
            torch.cuda.synchronize()

    for _ in range(3):
        update()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        update()
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu), critic.parameter_count()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench policy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    parser.add_argument("--repeats", type=int, default=200, help="timed decisions per actor (CPU configuration)")
    parser.add_argument("--update-repeats", type=int, default=20, help="timed SAC updates")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper configuration (slow to build)")
    candidate = parser.add_argument_group("measure another configuration in the CPU configuration's place")
    candidate.add_argument("--group", help="symmetry group (default: the CPU configuration's)")
    candidate.add_argument("--n-hidden", type=int)
    candidate.add_argument("--heightmap-size", type=int)
    candidate.add_argument("--top", choices=["paper", "compact"])
    candidate.add_argument("--relaxed", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 5 or args.update_repeats < 1:
        parser.error("--repeats must be >= 5 and --update-repeats >= 1")

    from equimanip.models import NetworkConfig

    torch.set_num_threads(1)
    overrides = {k: v for k, v in (("group", args.group), ("n_hidden", args.n_hidden), ("top", args.top),
                                   ("heightmap_size", args.heightmap_size)) if v is not None}
    if args.relaxed:
        overrides["relaxed"] = True
    try:
        cpu_cfg, paper_cfg = NetworkConfig.cpu(**overrides), NetworkConfig.paper()
    except ValueError as e:
        parser.error(str(e))
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]     # a shared machine: say how busy it was
    cpu = _actor_timings(cpu_cfg, args.repeats)
    update_ms, update_cpu_ms, critic_params = _update_ms(cpu_cfg, args.update_repeats)
    results = {
        "threads": torch.get_num_threads(),
        "cpu_config": cpu_cfg.to_dict(), "is_default_cpu_config": not overrides,
        "actor_ms": cpu["optimized"], "escnn_actor_ms": cpu["escnn"],
        "speedup_vs_escnn": cpu["escnn"] / cpu["optimized"],
        "actor_variants_ms": {k: cpu[k] for k in ("export", "channels_last", "jit_freeze")},
        "actor_plan": cpu["plan"],
        "sac_update_ms": update_ms, "sac_update_cpu_time_ms": update_cpu_ms,
        "actor_params": cpu["params"], "critic_params": critic_params,
    }
    described = (f"{cpu_cfg.group} n_hidden {cpu_cfg.n_hidden}, {cpu_cfg.heightmap_size} x {cpu_cfg.heightmap_size}, "
                 f"top {cpu_cfg.top}{', relaxed' if cpu_cfg.relaxed else ''}; one torch thread")
    rows = [("configuration under test" if overrides else "CPU configuration", described),
            ("actor (exported, optimized)", f"{cpu['optimized']:.3f} ms  (goal <= {GOAL_ACTOR_MS:g} ms)"),
            ("actor (escnn eval module)", f"{cpu['escnn']:.3f} ms  -> {results['speedup_vs_escnn']:.2f}x "
                                          f"(goal >= {GOAL_SPEEDUP:g}x)"),
            ("  plain export / channels-last / jit freeze",
             f"{cpu['export']:.3f} / {cpu['channels_last']:.3f} / {cpu['jit_freeze']:.3f} ms"),
            ("SAC update, batch 64", f"{update_ms:.1f} ms  (goal < {GOAL_UPDATE_MS:g} ms); "
                                     f"CPU time {update_cpu_ms:.1f} ms"),
            ("parameters actor / critic", f"{cpu['params']:,} / {critic_params:,}")]
    if not args.no_paper:
        paper = _actor_timings(paper_cfg, max(10, args.repeats // 10))
        results.update({"actor_paper_ms": paper["optimized"], "escnn_actor_paper_ms": paper["escnn"],
                        "actor_paper_params": paper["params"]})
        rows += [("paper configuration", "c8 n_hidden 64, 128 x 128"),
                 ("actor paper (exported, optimized)", f"{paper['optimized']:.2f} ms"),
                 ("actor paper (escnn eval module)", f"{paper['escnn']:.2f} ms"),
                 ("parameters actor paper", f"{paper['params']:,}")]
    if torch.cuda.is_available():
        cuda_cpu = _actor_timings(cpu_cfg, args.repeats, device="cuda")
        cuda_paper = _actor_timings(paper_cfg, args.repeats, device="cuda")
        update_cuda, _, _ = _update_ms(cpu_cfg, args.update_repeats, device="cuda")
        update_paper_cuda, _, _ = _update_ms(paper_cfg, args.update_repeats, device="cuda")
        results.update({"gpu": torch.cuda.get_device_name(0), "actor_cuda_ms": cuda_cpu["export"],
                        "escnn_actor_cuda_ms": cuda_cpu["escnn"], "actor_paper_cuda_ms": cuda_paper["export"],
                        "escnn_actor_paper_cuda_ms": cuda_paper["escnn"], "sac_update_cuda_ms": update_cuda,
                        "sac_update_paper_cuda_ms": update_paper_cuda})
        rows += [("CUDA", results["gpu"]),
                 ("actor CPU config / paper (export)", f"{cuda_cpu['export']:.2f} / {cuda_paper['export']:.2f} ms"),
                 ("actor CPU config / paper (escnn)", f"{cuda_cpu['escnn']:.2f} / {cuda_paper['escnn']:.2f} ms"),
                 ("SAC update CPU config / paper", f"{update_cuda:.1f} / {update_paper_cuda:.1f} ms")]
    results["goals_met"] = {"actor_ms": results["actor_ms"] <= GOAL_ACTOR_MS,
                            "speedup": results["speedup_vs_escnn"] >= GOAL_SPEEDUP,
                            "sac_update_ms": results["sac_update_ms"] < GOAL_UPDATE_MS}
    results["wall_s"] = time.perf_counter() - t0
    results["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    rows.append(("load average (1 min) before / after", " / ".join(map(str, results["load_average_1min"]))))
    print_report("equimanip bench policy (medians, batch 1 decisions)", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
