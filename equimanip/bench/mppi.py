"""``equimanip bench mppi``: one MPPI planning cycle, ours against pytorch-mppi, side by side.

Both planners get the same problem: the point-mass dynamics (``equimanip.planning.PointMass``, a
double integrator written as one linear map) and the quadratic running cost
(``equimanip.planning.QuadraticCost``), float32, the same K, T, noise, temperature and action box,
and the same number of torch intra-op threads (``--threads``, default 1: on a busy 2-core machine
torch's default of 2 threads makes small-tensor timings swing by large factors, REFERENCES.md
section 7). Ours runs with the settings that make it the same algorithm as pytorch-mppi's MPPI
(every sample around the previous plan, MPPI's control cost on); its other defaults cost the same.

How much faster ours is depends on the callables: pytorch-mppi calls dynamics and cost once per
horizon step, ours calls the cost on many steps at once, so every torch operation in the cost
costs pytorch-mppi T calls. The problem runs twice: with ``lean`` callables (equimanip.planning's
PointMass and QuadraticCost, the fewest operations: the headline figure, the hardest case for us)
and with ``plain`` ones (the same functions written with slices and sums, as a newcomer would).

For each size (K samples x T steps) the planners are timed in alternating blocks so that all of
them see the same machine load; the figures are medians of single ``command(state)`` calls:

* ``ours``: ``equimanip.planning.MPPI`` (eager PyTorch);
* ``pytorch_mppi``: ``pytorch_mppi.MPPI`` (pip package pytorch-mppi);
* ``symmetric``: ours with symmetric sampling under d4 (8 elements, the same total K: K / 8 base
  sequences and their orbits);
* with ``--compile`` (the default; ``--no-compile`` skips it) the same three under
  ``torch.compile``: ``ours_compiled`` and ``symmetric_compiled`` with ``MPPIConfig.compile`` (the
  whole cycle after the random draw as one compiled function, ``equimanip.planning.mppi.
  COMPILE_OPTIONS``), and ``pytorch_mppi_compiled``, pytorch-mppi with its rollout-and-cost method
  (``_compute_rollout_costs``: its horizon loop, dynamics and costs) compiled with the same
  options, its sampling, bounds, control cost and weighting staying eager: pytorch-mppi has no
  compile setting, so this is what a user could do by hand with one line, not a like-for-like
  rewrite. Compile times of the first cycles are reported apart, and ours compiled, plain and
  symmetric, must plan what ours eager plans from the same seed over three cycles (the benchmark
  exits with status 1 otherwise).

A closed-loop run (K = 1000, T = 20, 40 steps from the same start) shows that the planners reach
the same cost, so that speed is not bought by planning less. Last, the built-in end-effector
planner's cycle (kinematic model, goal, point-cloud collision, limits, smoothness) and the cost of
building its distance field once per cycle. ``--results`` appends one row per
size to a CSV file (docs/results/mppi.csv).

With ``--json`` the last line is one JSON object. Its headline (K = 1000, T = 20, lean) is ours at
its fastest setting against pytorch-mppi as it ships: ``ours_ms`` and ``speedup_vs_pytorch_mppi``
are ours compiled (``ours_mode`` "compiled"; eager with ``--no-compile``), beside
``speedup_eager_vs_pytorch_mppi`` and ``speedup_both_compiled``; ``goals`` gives each goal's
verdict per pairing, and ``configurations`` every figure of every size.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from equimanip.bench.common import print_report

SIZES = ((1000, 20), (4096, 30), (256, 15))      # the first, with the lean callables, is the headline
HEADLINE = SIZES[0]
GOAL_SPEEDUP = 2.0                               # ours vs pytorch-mppi, sample-steps per second
GOAL_SYMMETRIC = 1.2                             # symmetric within this factor of plain
SIGMA, TEMPERATURE, LIMIT = 0.5, 1.0, 1.0
START = (1.0, -0.8, 0.0, 0.0)
STATE_WEIGHTS, ACTION_WEIGHTS = (1.0, 1.0, 0.1, 0.1), (0.01, 0.01)
REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "docs" / "results" / "mppi.csv"
DOC = REPO / "docs" / "mppi.md"
RESULT_FIELDS = ["date", "machine", "threads", "device", "load_average", "callables", "samples", "horizon", "ours_ms",
                 "pytorch_mppi_ms", "speedup_vs_pytorch_mppi", "symmetric_ms", "symmetric_vs_plain",
                 "ours_compiled_ms", "revision", "command", "compile_scope", "symmetric_compiled_ms",
                 "pytorch_mppi_compiled_ms", "speedup_compiled_vs_pytorch_mppi"]
# What ours_compiled_ms covered: "rollout" (runs before 2026-11-26: the rollout and costs only) or
# "cycle" (everything after the random draw; and pytorch-mppi compiled beside it).
COMPILE_SCOPE = "cycle"


DT = 0.05


def plain_point_mass(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """PointMass written the way a newcomer writes it: slices, element-wise steps and a cat."""
    position, velocity = state[:, :2], state[:, 2:]
    position = position + DT * velocity + (0.5 * DT * DT) * action
    velocity = velocity + DT * action
    return torch.cat([position, velocity], dim=1)


def plain_quadratic_cost(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """QuadraticCost written with squares and sums per group of entries."""
    return ((state[:, :2] ** 2).sum(dim=1) + 0.1 * (state[:, 2:] ** 2).sum(dim=1)
            + 0.01 * (action ** 2).sum(dim=1))


def _problem(device: str, callables: str = "lean"):
    """The point-mass problem as ``lean`` callables (equimanip.planning's PointMass and QuadraticCost:
    one linear map, matrix-vector products, the fewest torch operations) or ``plain`` ones (the same
    functions written with slices and sums: more, smaller operations per call)."""
    from equimanip.planning import PointMass, QuadraticCost
    if callables == "plain":
        return plain_point_mass, plain_quadratic_cost
    return PointMass(dt=DT, device=device), QuadraticCost(STATE_WEIGHTS, ACTION_WEIGHTS, device=device)


def make_ours(samples: int, horizon: int, device: str, group: str = "none", compiled: bool = False, seed: int = 0,
              callables: str = "lean"):
    from equimanip.planning import MPPI, MPPIConfig, PointMass
    dynamics, cost = _problem(device, callables)
    config = MPPIConfig(action_low=(-LIMIT, -LIMIT), action_high=(LIMIT, LIMIT), noise_sigma=(SIGMA, SIGMA),
                        num_samples=samples, horizon=horizon, temperature=TEMPERATURE, rest_share=0.0,
                        include_nominal=False, control_cost_scale=1.0, group=group, seed=seed, device=device,
                        compile=compiled)
    return MPPI(dynamics, config, running_cost=cost, action_layout=PointMass.action_layout)


def make_pytorch_mppi(samples: int, horizon: int, device: str, callables: str = "lean", compiled: bool = False):
    from pytorch_mppi import MPPI as PytorchMPPI

    from equimanip.planning.mppi import COMPILE_OPTIONS
    dynamics, cost = _problem(device, callables)
    limit = torch.full((2,), LIMIT, device=device)
    planner = PytorchMPPI(dynamics, cost, 4, noise_sigma=torch.eye(2, device=device) * SIGMA ** 2,
                          num_samples=samples, horizon=horizon, device=device, lambda_=TEMPERATURE,
                          u_min=-limit, u_max=limit)
    if compiled:
        # its horizon loop, dynamics and costs (sampling, bounds and weighting stay eager)
        options = COMPILE_OPTIONS if device == "cpu" else None
        planner._compute_rollout_costs = torch.compile(planner._compute_rollout_costs, dynamic=False,
                                                       options=options)
    return planner


def _have_pytorch_mppi() -> bool:
    try:
        import pytorch_mppi  # noqa: F401
        return True
    except ImportError:
        return False


def time_planners(planners: dict, state: torch.Tensor, blocks: int, repeats: int, device: str) -> dict:
    """Milliseconds of single ``command`` calls, each planner timed in turn, block after block."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    samples = {name: [] for name in planners}
    for planner in planners.values():
        for _ in range(5):
            planner.command(state)
    sync()
    for _ in range(blocks):
        for name, planner in planners.items():
            for _ in range(repeats):
                t0 = time.perf_counter()
                planner.command(state)
                sync()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def closed_loop_cost(planner, steps: int = 40) -> float:
    """Sum of the quadratic cost over a closed-loop run from START (lower is better)."""
    dynamics, cost = _problem("cpu")
    state = torch.tensor(START)
    total = 0.0
    for _ in range(steps):
        action = planner.command(state).cpu()
        state = dynamics(state[None], action[None])[0]
        total += float(cost(state[None], action[None])[0])
    return total


def measure(samples: int, horizon: int, callables: str, args, with_reference: bool) -> dict:
    state = torch.tensor(START, device=args.device)
    size = (samples, horizon, args.device)
    planners = {"ours": make_ours(*size, callables=callables),
                "symmetric": make_ours(*size, group="d4", callables=callables)}
    if with_reference:
        planners["pytorch_mppi"] = make_pytorch_mppi(*size, callables)
    compile_s, compiled_matches = {}, None
    if args.compile:
        # name -> (how to build it, the group of its eager twin; None: no twin)
        compiled = {"ours_compiled": (lambda: make_ours(*size, compiled=True, callables=callables), "none"),
                    "symmetric_compiled": (lambda: make_ours(*size, group="d4", compiled=True, callables=callables),
                                           "d4")}
        if with_reference:
            compiled["pytorch_mppi_compiled"] = (lambda: make_pytorch_mppi(*size, callables, compiled=True), None)
        compiled_matches = True
        for name, (make, twin_group) in compiled.items():
            t0 = time.perf_counter()
            planners[name] = planner = make()
            planner.command(state)                                   # the first cycle compiles
            compile_s[name] = time.perf_counter() - t0
            if twin_group is not None:
                # same seed, same draws: an eager twin plans alike, cycle after cycle (the warm start too)
                twin = make_ours(*size, group=twin_group, callables=callables)
                twin.command(state)
                compiled_matches &= bool(torch.allclose(planner.nominal, twin.nominal, atol=1e-4))
                for _ in range(2):
                    compiled_matches &= bool(torch.allclose(planner.plan(state).actions, twin.plan(state).actions,
                                                            atol=1e-4))
    ms = time_planners(planners, state, args.blocks, args.repeats, args.device)

    def ratio(a, b):
        return ms[a] / ms[b] if a in ms and b in ms else None

    return {"callables": callables, "samples": samples, "horizon": horizon, "ours_ms": ms["ours"],
            "symmetric_ms": ms["symmetric"], "symmetric_vs_plain": ratio("symmetric", "ours"),
            "ours_msteps_per_s": samples * horizon / ms["ours"] / 1e3,
            "pytorch_mppi_ms": ms.get("pytorch_mppi"), "speedup_vs_pytorch_mppi": ratio("pytorch_mppi", "ours"),
            "ours_compiled_ms": ms.get("ours_compiled"), "symmetric_compiled_ms": ms.get("symmetric_compiled"),
            "symmetric_compiled_vs_plain": ratio("symmetric_compiled", "ours_compiled"),
            "pytorch_mppi_compiled_ms": ms.get("pytorch_mppi_compiled"),
            "speedup_compiled_vs_pytorch_mppi": ratio("pytorch_mppi", "ours_compiled"),
            "speedup_compiled_vs_pytorch_mppi_compiled": ratio("pytorch_mppi_compiled", "ours_compiled"),
            "compile_scope": COMPILE_SCOPE if args.compile else None,
            "compile_s": compile_s, "compiled_matches_eager": compiled_matches}


def end_effector_figures(device: str, repeats: int, compiled: bool = False) -> dict:
    """What the built-in end-effector planner costs per cycle (K = 1000, T = 15, c8 and plain, and
    both compiled with ``compiled``), with the collision cost against a synthetic cloud (a post on the
    table, 8000 points) and the distance field built from that cloud at 1 cm."""
    import numpy as np

    from equimanip.bench.common import median_ms
    from equimanip.planning import MPPI, EndEffectorCost, KinematicEndEffector, MPPIConfig, PointCloudDistance
    from equimanip.symmetry import ACTION_LAYOUT

    rng = np.random.default_rng(0)
    cloud = np.concatenate([rng.uniform([0.45, -0.05, 0.0], [0.55, 0.05, 0.2], (3000, 3)),
                            rng.uniform([0.3, -0.3, 0.0], [0.75, 0.3, 0.005], (5000, 3))])
    field_ms = median_ms(lambda: PointCloudDistance.from_points(cloud, device=device), max(3, repeats // 3))
    obstacles = PointCloudDistance.from_points(cloud, device=device)
    state = torch.tensor([0.38, 0.0, 0.3, 0.0, 1.0], device=device)
    out = {"distance_field_ms": field_ms, "points": len(cloud)}
    for group in ("none", "c8"):
        for compile_ in (False, True) if compiled else (False,):
            cost = EndEffectorCost(goal_position=(0.62, 0.1, 0.25), goal_yaw=0.0, obstacles=obstacles,
                                   device=device)
            config = MPPIConfig.for_end_effector(seed=0, group=group, device=device, compile=compile_)
            planner = MPPI(KinematicEndEffector(device=device), config, trajectory_cost=cost,
                           action_layout=ACTION_LAYOUT)
            name = f"cycle_{group}_compiled_ms" if compile_ else f"cycle_{group}_ms"
            out[name] = median_ms(lambda: planner.plan(state), repeats)
    return out


def _fmt(value, spec=".3f", unit="") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench mppi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every planner")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks per size")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per planner and block")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the planners under torch.compile (default: on)")
    parser.add_argument("--results", type=Path, default=None, metavar="CSV",
                        help="append one row per size to this file (e.g. docs/results/mppi.csv)")
    parser.add_argument("--table", type=Path, nargs="?", const=DEFAULT_RESULTS, default=None, metavar="CSV",
                        help="measure nothing: regenerate the results table of docs/mppi.md from the CSV")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.table is not None:
        text = regenerate_table(args.table)
        print(text)
        return 0
    if args.threads < 1 or args.blocks < 1 or args.repeats < 1:
        parser.error("--threads, --blocks and --repeats must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible to torch here")

    torch.set_num_threads(args.threads)
    if args.compile:
        # torch.compile keeps at most 8 compiled versions of one function per process; this process
        # builds one per planner and size (an application has one planner and a few shapes).
        import torch._dynamo as dynamo
        dynamo.config.recompile_limit = max(dynamo.config.recompile_limit, 64)
    with_reference = _have_pytorch_mppi()
    load_before = os.getloadavg()[0]
    rows = [measure(K, T, "lean", args, with_reference) for K, T in SIZES]
    rows += [measure(K, T, "plain", args, with_reference) for K, T in SIZES[:2]]
    quality = {"ours": closed_loop_cost(make_ours(*HEADLINE, "cpu", seed=1)),
               "symmetric": closed_loop_cost(make_ours(*HEADLINE, "cpu", group="d4", seed=1))}
    if with_reference:
        torch.manual_seed(1)
        quality["pytorch_mppi"] = closed_loop_cost(make_pytorch_mppi(*HEADLINE, "cpu"))
    end_effector = end_effector_figures(args.device, args.repeats, args.compile)
    load = (load_before + os.getloadavg()[0]) / 2

    head = rows[0]
    # The headline is ours at its fastest setting, compiled where it was timed ("ours_mode" says
    # which), against pytorch-mppi as it ships; every other pairing is beside it, named.
    mode = "compiled" if head["ours_compiled_ms"] is not None else "eager"
    headline = {"ours_mode": mode, "ours_ms": head["ours_compiled_ms" if mode == "compiled" else "ours_ms"],
                "pytorch_mppi_ms": head["pytorch_mppi_ms"],
                "speedup_vs_pytorch_mppi": head["speedup_compiled_vs_pytorch_mppi" if mode == "compiled"
                                                else "speedup_vs_pytorch_mppi"],
                "ours_eager_ms": head["ours_ms"], "speedup_eager_vs_pytorch_mppi": head["speedup_vs_pytorch_mppi"],
                "pytorch_mppi_compiled_ms": head["pytorch_mppi_compiled_ms"],
                "speedup_both_compiled": head["speedup_compiled_vs_pytorch_mppi_compiled"],
                "symmetric_ms": head["symmetric_compiled_ms" if mode == "compiled" else "symmetric_ms"],
                "symmetric_vs_plain": head["symmetric_compiled_vs_plain" if mode == "compiled"
                                           else "symmetric_vs_plain"],
                "symmetric_eager_vs_plain": head["symmetric_vs_plain"]}
    results = {
        **headline, "samples": HEADLINE[0], "horizon": HEADLINE[1],
        "threads": args.threads, "device": args.device, "load_average": load, "configurations": rows,
        "goals": goal_verdicts(rows), "closed_loop_cost": quality, "goal_speedup": GOAL_SPEEDUP,
        "goal_symmetric_vs_plain": GOAL_SYMMETRIC, "end_effector": end_effector,
    }
    table = []
    for row in rows:
        name = f"{row['callables']}, K = {row['samples']}, T = {row['horizon']}"
        table.append((name, f"ours {row['ours_ms']:.3f} ms ({row['ours_msteps_per_s']:.1f} M sample-steps/s), "
                            f"pytorch-mppi {_fmt(row['pytorch_mppi_ms'], '.3f', ' ms')}, "
                            f"speedup {_fmt(row['speedup_vs_pytorch_mppi'], '.2f', 'x')} (goal >= {GOAL_SPEEDUP}x)"))
        table.append(("", f"symmetric d4 {row['symmetric_ms']:.3f} ms = {row['symmetric_vs_plain']:.2f} x plain "
                          f"(goal <= {GOAL_SYMMETRIC}x)"))
        if row["ours_compiled_ms"] is not None:
            table.append(("", f"compiled: ours {row['ours_compiled_ms']:.3f} ms = "
                              f"{_fmt(row['speedup_compiled_vs_pytorch_mppi'], '.2f', 'x')} pytorch-mppi, "
                              f"{_fmt(row['speedup_compiled_vs_pytorch_mppi_compiled'], '.2f', 'x')} pytorch-mppi "
                              f"compiled ({_fmt(row['pytorch_mppi_compiled_ms'], '.3f', ' ms')}); symmetric "
                              f"{row['symmetric_compiled_ms']:.3f} ms = {row['symmetric_compiled_vs_plain']:.2f} x "
                              f"plain; compile " + ", ".join(f"{k} {v:.1f} s" for k, v in row["compile_s"].items())
))
    table.append(("closed-loop cost, 40 steps", ", ".join(f"{k} {v:.2f}" for k, v in quality.items())))
    table.append(("end effector, K = 1000, T = 15", f"{end_effector['cycle_none_ms']:.1f} ms per cycle plain, "
                                                     f"{end_effector['cycle_c8_ms']:.1f} ms c8, with collision"
                  + (f" (compiled {end_effector['cycle_none_compiled_ms']:.1f} / "
                     f"{end_effector['cycle_c8_compiled_ms']:.1f} ms)" if args.compile else "")
                  + f"; distance field (1 cm, {end_effector['points']} points) "
                    f"{end_effector['distance_field_ms']:.1f} ms"))
    for name, verdict in results["goals"].items():
        table.append((f"goal: {name}", verdict))
    table.append(("torch threads / device / load", f"{args.threads} / {args.device} / {load:.1f}"))
    if not with_reference:
        table.append(("pytorch-mppi", "not installed (pip install -e .[bench])"))
    if args.results is not None:
        _append_results(args, rows, load)
        table.append(("results", f"{len(rows)} rows appended to {args.results}"))
    mismatch = [f"{r['callables']} {r['samples']} x {r['horizon']}" for r in rows
                if r["compiled_matches_eager"] is False]
    if mismatch:
        table.append(("COMPILED PLANS DIFFER FROM EAGER", ", ".join(mismatch)))
    print_report("equimanip bench mppi (medians of single planning cycles)", table, results, args.json)
    return 1 if mismatch else 0


def goal_verdicts(rows: list[dict]) -> dict:
    """Met or not, per way of running ours, for the issue's goals at the two sizes it names
    (K = 1000, T = 20 and K = 4096, T = 30) with the lean callables."""
    named = [r for r in rows if r["callables"] == "lean" and (r["samples"], r["horizon"]) in SIZES[:2]]

    def verdict(key, goal, above):
        values = [r[key] for r in named]
        if any(v is None for v in values):
            return "not measured"
        met = all(v >= goal if above else v <= goal for v in values)
        return f"{'met' if met else 'not met'} ({', '.join(f'{v:.2f}' for v in values)})"

    return {f"speedup >= {GOAL_SPEEDUP}x, eager": verdict("speedup_vs_pytorch_mppi", GOAL_SPEEDUP, True),
            f"speedup >= {GOAL_SPEEDUP}x, ours compiled": verdict("speedup_compiled_vs_pytorch_mppi", GOAL_SPEEDUP,
                                                                   True),
            f"speedup >= {GOAL_SPEEDUP}x, both compiled": verdict("speedup_compiled_vs_pytorch_mppi_compiled",
                                                                   GOAL_SPEEDUP, True),
            f"symmetric <= {GOAL_SYMMETRIC}x plain, eager": verdict("symmetric_vs_plain", GOAL_SYMMETRIC, False),
            f"symmetric <= {GOAL_SYMMETRIC}x plain, compiled": verdict("symmetric_compiled_vs_plain", GOAL_SYMMETRIC,
                                                                        False)}


def _append_results(args, rows: list[dict], load: float) -> None:
    from equimanip.learning.results import append_row, git_revision, machine_description
    common = {"date": datetime.date.today().isoformat(), "machine": machine_description(), "threads": args.threads,
              "device": args.device, "load_average": f"{load:.1f}", "revision": git_revision(),
              "command": "equimanip bench mppi " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "mppi"]
                                                             else sys.argv[1:])}
    for row in rows:
        values = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items() if k in RESULT_FIELDS}
        append_row(args.results, {**common, **values}, RESULT_FIELDS)


def results_table(rows: list[dict]) -> str:
    """Markdown: per machine, callables and size, the range over the recorded runs; the runs whose
    compiled figure covered the rollout only (before 2026-11-26) in a table of their own."""
    from equimanip.learning.results import markdown_table

    def number(row, field):
        value = row.get(field)
        return None if value in (None, "", "None") else float(value)

    def quotient(row, a, b):
        x, y = number(row, a), number(row, b)
        return None if x is None or y is None else x / y

    def span(group, field, spec):
        values = [v for v in (number(r, field) for r in group) if v is not None]
        if not values:
            return "-"
        low, high = min(values), max(values)
        return f"{low:{spec}}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}} - {high:{spec}}"

    current = [r for r in rows if r.get("compile_scope") != "rollout"]
    earlier = [r for r in rows if r.get("compile_scope") == "rollout"]
    for row in current:
        row["compiled_vs_compiled"] = quotient(row, "pytorch_mppi_compiled_ms", "ours_compiled_ms")
        row["symmetric_compiled_vs_plain"] = quotient(row, "symmetric_compiled_ms", "ours_compiled_ms")
    layouts = {
        "current": (["ours", "pytorch-mppi", "speedup", "ours compiled", "pytorch-mppi compiled",
                     "speedup, ours compiled", "speedup, both compiled", "symmetric / plain",
                     "symmetric / plain, compiled"],
                    [("ours_ms", ".3f"), ("pytorch_mppi_ms", ".3f"), ("speedup_vs_pytorch_mppi", ".2f"),
                     ("ours_compiled_ms", ".3f"), ("pytorch_mppi_compiled_ms", ".3f"),
                     ("speedup_compiled_vs_pytorch_mppi", ".2f"), ("compiled_vs_compiled", ".2f"),
                     ("symmetric_vs_plain", ".2f"), ("symmetric_compiled_vs_plain", ".2f")]),
        "earlier": (["ours", "pytorch-mppi", "speedup", "symmetric d4", "symmetric / plain",
                     "ours compiled (rollout only)"],
                    [("ours_ms", ".3f"), ("pytorch_mppi_ms", ".3f"), ("speedup_vs_pytorch_mppi", ".2f"),
                     ("symmetric_ms", ".3f"), ("symmetric_vs_plain", ".2f"), ("ours_compiled_ms", ".3f")]),
    }
    parts = []
    for kind, selected in (("current", current), ("earlier", earlier)):
        headers, columns = layouts[kind]
        groups: dict = {}
        for row in selected:
            key = (row["machine"], row["threads"], row["device"], row["callables"], int(row["samples"]),
                   int(row["horizon"]))
            groups.setdefault(key, []).append(row)
        for machine in dict.fromkeys(k[0] for k in groups):
            table = [[callables, f"{K} x {T}", len(group), *(span(group, f, spec) for f, spec in columns),
                      f"{threads} / {device}", span(group, "load_average", ".1f")]
                     for (m, threads, device, callables, K, T), group in groups.items() if m == machine]
            dates = sorted({r["date"] for r in selected if r["machine"] == machine})
            title = "" if kind == "current" else "Earlier runs, before the whole cycle was compiled: "
            parts.append(f"{title}{machine} ({', '.join(dates)}), milliseconds per planning cycle, ranges over "
                         f"runs:\n\n" + markdown_table(["callables", "K x T", "runs", *headers, "threads / device",
                                                          "load average"], table))
    return "\n\n".join(parts)


def regenerate_table(results: Path = DEFAULT_RESULTS, doc: Path = DOC) -> str:
    from equimanip.learning.results import read_rows, replace_section

    rows = read_rows(results)
    text = results_table(rows) if rows else "No runs recorded yet."
    replace_section(doc, "mppi", text)
    return text
