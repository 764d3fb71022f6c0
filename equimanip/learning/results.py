"""Committed results of learning runs: one CSV row per finished run, and the tables and plot in the
docs regenerated from those rows by one command.

    python -m equimanip.learning.results add runs/pick_c8_s0          # append the run's row, then
    python -m equimanip.learning.results                              # regenerate tables and plot

Rows are append-only (``docs/results/<learner>.csv``); each holds what the run was (task, group,
network, seed, demonstrations, steps), what it reached (final success on held-out seeds, the best
evaluation, the evaluation curve), what it cost (wall-clock) and where and when it ran (machine,
date, git revision, the command). Another learner adds its own CSV with its own columns through
:func:`append_row` and its own table function; :func:`markdown_table`, :func:`replace_section` and
the machine/revision helpers are shared.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "docs" / "results"
SAC_RESULTS = RESULTS_DIR / "sac.csv"
SAC_DOC = REPO / "docs" / "equivariant_sac.md"
SAC_PLOT = RESULTS_DIR / "sac_success.png"

# best_success: the best periodic evaluation (on the first 20 test scenes until 2026-11-27, on
# validation scenes since); best_checkpoint_success: that checkpoint on the test scenes (since
# 2026-11-27; empty before).
SAC_FIELDS = ["experiment", "task", "group", "relaxed", "network", "arm", "seed", "demos", "steps", "success",
              "eval_episodes", "best_success", "best_step", "best_checkpoint_success", "yaw_sector",
              "success_all_yaw", "best_checkpoint_success_all_yaw", "wall_s", "machine", "date", "revision",
              "curve", "command"]


# ------------------------------------------------------------------------------------ provenance


def machine_description() -> str:
    """CPU model, cores, torch build and GPU: enough to compare wall-clock figures."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {gpu}"


def git_revision() -> str:
    """The short form of equimanip.checkpoint.git_revision (asked once per process, '-dirty'
    when tracked code was modified: a row from an uncommitted tree says so)."""
    from equimanip.checkpoint import git_revision as full_revision

    rev = full_revision()
    return rev if rev == "unknown" else rev[:7] + rev[40:]


def today() -> str:
    return datetime.date.today().isoformat()


# ------------------------------------------------------------------------------------ the rows


def append_row(path: Path, row: dict, fields: list[str]) -> None:
    """Append one row; the file is created with its header, and an existing header must match."""
    unknown = sorted(set(row) - set(fields))
    if unknown:
        raise ValueError(f"row has fields {unknown} that {path.name} does not have")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as f:
            header = next(csv.reader(f))
        if header != fields:
            raise ValueError(f"{path} has columns {header}, expected {fields}")
        new = False
    else:
        new = True
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in fields})


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# The training options a row's configuration names, in this order, where a run's summary differs
# from SACConfig's defaults (runs from before an option existed have its default).
_TRAINING_OPTIONS = (("pretrain_steps", "{} pre-training updates"),
                     ("demo_fraction", "demonstrations {:.0%} of each batch"),
                     ("demos_from_seed", "demonstrations of seed {}"),
                     ("sacfd_weight", "SACfD weight {:g}"),
                     ("updates_per_step", "{:g} updates per step"),
                     ("gamma", "gamma {:g}"),
                     ("sacfd_action_bound", "SACfD targets within +-{:g}"),
                     ("sacfd_target", "SACfD on the {}"),
                     ("actor_average", "actor averaged at {:g}"),
                     ("prioritized", "prioritized replay"),
                     ("cell_params", "camera of {}"))


def sac_row(summary: dict, **provenance) -> dict:
    """The results row of a finished SAC run from its ``summary.json``; ``provenance`` (machine,
    date, revision, command) fills what the summary lacks."""
    summary = provenance | {k: v for k, v in summary.items() if v is not None or k not in provenance}
    net = summary["network"]
    view = summary.get("heightmap_mode", "table")
    if view == "gripper" and summary.get("robot_removal", "above_grasp_point") != "above_grasp_point":
        view += f" ({summary['robot_removal'].replace('_', ' ')})"      # the view since 2026-11-26
    size = net["heightmap_size"]
    network = f"{size}x{size} {view} view, n_hidden {net['n_hidden']}, {net['top']} top"
    if summary.get("goal_channel"):
        network += ", goal channel"
    if net.get("center_inputs"):
        network += ", centred inputs"
    from equimanip.models.config import NetworkConfig

    # Network settings a run may change from NetworkConfig's defaults, named where it did.
    net_defaults = NetworkConfig()
    if net.get("relaxed"):
        for key, wording in (("relaxed_strength", "relaxed strength {:g}"), ("relaxed_banks", "{} kernel banks")):
            if net.get(key, getattr(net_defaults, key)) != getattr(net_defaults, key):
                network += ", " + wording.format(net[key])
    if net.get("group") == "so2" and net.get("so2_nonlinearity", net_defaults.so2_nonlinearity) != \
            net_defaults.so2_nonlinearity:
        network += f", {net['so2_nonlinearity']} nonlinearity"
    from .sac import SACConfig

    defaults = SACConfig()
    for option, wording in _TRAINING_OPTIONS:
        default, value = getattr(defaults, option), summary.get(option, getattr(defaults, option))
        if isinstance(default, tuple):              # lists of names (cell_params): compared and worded as text
            default, value = " ".join(default), " ".join(value)
        if value != default:
            network += ", " + wording.format(value)
    return {
        "experiment": "yaw_sector" if summary.get("yaw_sector") else "sample_efficiency",
        "task": summary["task"], "group": summary["group"], "relaxed": summary["relaxed"], "network": network,
        # The simulated arm's control (equimanip.sim.world.ARM_CONTROL_VERSION); runs before it was
        # recorded used version 1.
        "arm": summary.get("arm_control", 1),
        "seed": summary["seed"], "demos": summary["demos"], "steps": summary["steps"],
        "success": summary["success"], "eval_episodes": summary["eval_episodes"],
        "best_success": summary["best_success"], "best_step": summary["best_step"],
        "best_checkpoint_success": summary.get("best_checkpoint_success", ""),
        "yaw_sector": " ".join(f"{v:g}" for v in summary["yaw_sector"]) if summary.get("yaw_sector") else "",
        "success_all_yaw": summary.get("success_all_yaw", ""),
        "best_checkpoint_success_all_yaw": summary.get("best_checkpoint_success_all_yaw", ""),
        "wall_s": summary["wall_s"],
        "machine": summary["machine"], "date": summary["date"], "revision": summary["revision"],
        "curve": " ".join(f"{int(step)}:{success:g}" for step, success in summary["curve"]),
        "command": summary.get("command", ""),
    }


def parse_curve(text: str) -> list[tuple[int, float]]:
    return [(int(a), float(b)) for a, b in (item.split(":") for item in text.split())]


# ------------------------------------------------------------------------------------ tables


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _label(row: dict) -> str:
    return row["group"] + (" relaxed" if str(row["relaxed"]) == "True" else "")


def _mean_std(values: list[float]) -> str:
    import numpy as np

    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.0%}"
    return f"{np.mean(values):.0%} ± {np.std(values):.0%}"


REACHED = 0.9      # issue 8's goal: "reaches at least 90% success within 5,000 environment steps"


def _reached(runs: list[dict], level: float = REACHED) -> str:
    """How many runs had a periodic evaluation at ``level`` or above, and the median of the first
    steps where they did: the learning curve's reading of "reaches 90% within N steps", as
    equi_rl reports it (each periodic evaluation is only 20 episodes, so this reads higher than
    the final policy's 50)."""
    import numpy as np

    first = []
    for r in runs:
        steps = [step for step, success in parse_curve(r["curve"] or "") if success >= level - 1e-9]
        if steps:
            first.append(min(steps))
    if not first:
        return f"0 of {len(runs)}"
    return f"{len(first)} of {len(runs)} (step {int(np.median(first))})"


def step_budget(row: dict) -> int:
    """The environment steps a run was given (its command's last ``--steps``), which is more than
    the steps it took when a time limit (a GPU lease, say) stopped it: runs are grouped by what
    they were given, and the table says where the stopped ones got to."""
    words = str(row.get("command", "")).replace("--steps=", "--steps ").split()
    given = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--steps"]
    taken = int(row["steps"])
    return max(taken, int(given[-1])) if given and given[-1].isdigit() else taken


def _steps_cell(budget: int, runs: list[dict]) -> str:
    stopped = sorted(int(r["steps"]) for r in runs if int(r["steps"]) < budget)
    if not stopped:
        return str(budget)
    where = f"{stopped[0]}" if stopped[0] == stopped[-1] else f"{stopped[0]}-{stopped[-1]}"
    which = "" if len(stopped) == len(runs) else f"{len(stopped)} of {len(runs)} "
    return f"{budget} ({which}stopped at {where})"


def sac_tables(rows: list[dict]) -> str:
    """The Markdown of both experiments: sample efficiency and symmetry generalisation."""
    import numpy as np

    parts = []
    efficiency = [r for r in rows if r["experiment"] == "sample_efficiency"]
    groups = defaultdict(list)
    for r in efficiency:
        groups[(r["task"], _label(r), r["network"], r["arm"], step_budget(r), r["demos"])].append(r)
    table = []
    for (task, label, network, arm, budget, demos), runs in sorted(groups.items()):
        seeds = ", ".join(sorted((r["seed"] for r in runs), key=int))
        table.append([task, label, network, arm, demos, _steps_cell(budget, runs), len(runs), seeds,
                      _mean_std([float(r["success"]) for r in runs]),
                      _mean_std([float(r["best_success"]) for r in runs]), _reached(runs),
                      _mean_std([float(r["best_checkpoint_success"]) for r in runs if r["best_checkpoint_success"]]),
                      f"{np.mean([float(r['wall_s']) for r in runs]) / 60:.0f} min",
                      ", ".join(sorted({r["machine"] for r in runs}))])
    parts.append("**Sample efficiency** (final policy on held-out seeds after the given environment steps; "
                 "best = best periodic evaluation (20 episodes); reached 90% = the runs with a periodic evaluation at "
                 "90% or more, and the median step of the first; best checkpoint = the checkpoint of the best "
                 "periodic evaluation, chosen on validation scenes, on the held-out test scenes, over the runs "
                 "that measured it, since 2026-11-27):\n\n" + markdown_table(
                     ["task", "group", "network", "arm", "demos", "steps", "runs", "seeds", "success", "best",
                      "reached 90%", "best checkpoint", "wall-clock", "machine"], table))
    sector = [r for r in rows if r["experiment"] == "yaw_sector"]
    if sector:
        table = []
        for r in sector:
            inside, everywhere = float(r["success"]), float(r["success_all_yaw"])
            best = "–"
            if r["best_checkpoint_success"] and r["best_checkpoint_success_all_yaw"]:
                best_in, best_all = float(r["best_checkpoint_success"]), float(r["best_checkpoint_success_all_yaw"])
                best = f"{best_in:.0%} -> {best_all:.0%} ({(best_all - best_in) * 100:+.0f})"
            table.append([r["task"], _label(r), r["network"], r["arm"], r["yaw_sector"], r["seed"], r["steps"],
                          f"{inside:.0%}", f"{everywhere:.0%}", f"{(everywhere - inside) * 100:+.0f}", best,
                          f"{float(r['wall_s']) / 60:.0f} min"])
        parts.append("**Symmetry generalisation** (trained only on scenes whose scene yaw lies in the sector "
                     "[start, start + width) degrees; evaluated in the sector and over the whole circle):\n\n"
                     + markdown_table(["task", "group", "network", "arm", "sector", "seed", "steps", "in sector",
                                       "whole circle", "change (points)",
                                       "best checkpoint: in sector -> whole circle", "wall-clock"], table))
    return "\n\n".join(parts)


PANELS_PER_TASK = 3     # the newest comparisons of a task; older ones stay in the table


def plotted_panels(rows: list[dict]) -> list[tuple[str, str, str, dict[str, list[dict]]]]:
    """What :func:`plot_sac` draws: panels (task, arm, setting, {group: runs}). A setting is one
    network configuration (view, width, camera, options) at one step budget on the task's newest
    arm; a panel compares the groups run in it, so its lines differ in the group alone. Each task
    gets its settings that two or more groups were run in, the newest first (by the file's order:
    later rows are newer), at most PANELS_PER_TASK; a task with no such setting, the setting with
    the most runs. A run continued with --resume counts once, at its longest row."""
    longest: dict[tuple, dict] = {}
    for r in rows:
        if r["experiment"] == "sample_efficiency" and r["curve"]:
            key = (r["task"], _label(r), r["network"], r["arm"], r["seed"])
            if key not in longest or int(r["steps"]) > int(longest[key]["steps"]):
                longest[key] = r
    position = {id(r): k for k, r in enumerate(rows)}
    panels = []
    for task in sorted({r["task"] for r in longest.values()}):
        runs = [r for r in longest.values() if r["task"] == task]
        arm = max((r["arm"] for r in runs), key=lambda a: int(a) if str(a).isdigit() else -1)
        settings: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in runs:
            if r["arm"] == arm:
                settings[r["network"], step_budget(r)][_label(r)].append(r)

        def newest(setting):
            return max(position[id(r)] for members in settings[setting].values() for r in members)

        compared = sorted((s for s, groups in settings.items() if len(groups) > 1), key=newest, reverse=True)
        chosen = compared[:PANELS_PER_TASK] or [max(settings, key=lambda s: (
            sum(len(m) for m in settings[s].values()), newest(s)))]
        for setting in chosen:
            groups = settings[setting]
            panels.append((task, arm, setting[0], {g: sorted(groups[g], key=lambda r: int(r["seed"]))
                                                   for g in sorted(groups)}))
    return panels


def plot_sac(rows: list[dict], path: Path) -> Path:
    """Success against environment steps, one panel per :func:`plotted_panels` comparison: one
    line per group (the mean over its seeds, their range shaded). Runs of different settings are
    never averaged together; every variant tried is in the table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = plotted_panels(rows) or [("(no runs yet)", None, "", {})]
    columns = min(4, len(panels))
    rows_of_panels = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(6.5 * columns, 5.4 * rows_of_panels),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (task, arm, network, shown) in zip(axes.flat, panels):
        for group, members in shown.items():
            curves = [dict(parse_curve(m["curve"])) for m in members]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[s] for s in steps] for c in curves])
            line, = ax.plot(steps, values.mean(0), "o-",
                            label=f"{group} ({len(curves)} seed{'s' * (len(curves) > 1)})")
            if len(curves) > 1:  # the seeds' range, in the colour of their mean
                ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        detail = network.replace(" view", "").replace(", compact top", "").replace("camera of ", "")
        ax.set_title(f"{task} (arm {arm})\n{detail}" if arm is not None else task, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate (held-out seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def replace_section(doc: Path, name: str, text: str) -> None:
    """Put ``text`` between the markers ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``."""
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    content = doc.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{doc} lacks the markers {start} ... {end}")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{text}\n{end}{after}")


def regenerate_section(results: Path, doc: Path, section: str, render) -> str:
    """Rewrite ``section`` of ``doc`` from the rows of ``results`` with ``render(rows) -> Markdown``."""
    rows = read_rows(results)
    text = render(rows) if rows else "No runs recorded yet."
    replace_section(doc, section, text)
    return text


def regenerate(results: Path = SAC_RESULTS, doc: Path = SAC_DOC, plot: Path = SAC_PLOT) -> str:
    """Tables into ``<results>.md`` (beside the CSV) and into ``doc``'s results section; the plot."""
    rows = read_rows(results)
    text = sac_tables(rows) if rows else "No runs recorded yet."
    results.with_suffix(".md").write_text(f"# SAC results\n\nGenerated from `{results.name}` by "
                                          f"`python -m equimanip.learning.results`; do not edit.\n\n{text}\n\n"
                                          f"![success against environment steps]({plot.name})\n")
    replace_section(doc, "sac", text)
    plot_sac(rows, plot)
    return text


# ------------------------------------------------------------------------------------ the command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equimanip.learning.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    add = sub.add_parser("add", help="append the row of finished SAC runs to the results file")
    add.add_argument("runs", nargs="+", type=Path, help="run directories (each with summary.json)")
    add.add_argument("--results", type=Path, default=SAC_RESULTS)
    add.add_argument("--revision", default=None,
                     help="revision the run was trained at, where its summary lacks it (default: HEAD)")
    add.add_argument("--command-line", default=None, help="the training command, where its summary lacks it")
    regen = sub.add_parser("regenerate", help="rewrite the tables in the docs and the plot (the default)")
    regen.add_argument("--results", type=Path, default=SAC_RESULTS)
    args = parser.parse_args(argv)
    if args.command == "add":
        for run in args.runs:
            path = run / "summary.json"
            if not path.exists():
                print(f"{path} not found: is the run finished?", file=sys.stderr)
                return 1
            summary = json.loads(path.read_text())
            date = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
            provenance = {"machine": machine_description(), "date": date, "revision": args.revision or git_revision(),
                          "command": args.command_line or ""}
            if (run / "last.pt").exists():      # the heightmap the policy saw, from its checkpoint
                from equimanip.checkpoint import load_checkpoint
                observation = load_checkpoint(run / "last.pt").observation_config
                provenance["heightmap_mode"] = observation.heightmap_mode
                provenance["robot_removal"] = observation.robot_removal
                provenance["goal_channel"] = observation.goal_channel
            append_row(args.results, sac_row(summary, **provenance), SAC_FIELDS)
            print(f"{run}: row appended to {args.results}")
        return 0
    results = getattr(args, "results", SAC_RESULTS)
    print(regenerate(results))
    print(f"\ntables written to {results.with_suffix('.md')} and {SAC_DOC}, plot to {SAC_PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
