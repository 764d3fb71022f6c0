"""Symmetry experiment: pushing with MPPI over a learned dynamics model, in all four quadrants.

    equimanip train dynamics --explore 300 --quadrant 0 --group c8 --save-data runs/push_q0.npz --out runs/push_c8
    equimanip train dynamics --data runs/push_q0.npz --group none --out runs/push_plain
    python -m equimanip.bench.mppi_push --model runs/push_c8/dynamics.pt --group c8 --results docs/results/mppi_push.csv
    python -m equimanip.bench.mppi_push --model runs/push_plain/dynamics.pt --group none --results ...
    python -m equimanip.bench.mppi_push --table          # regenerate docs/mppi.md's table from the CSV

The models were trained only on pushes where the block started in quadrant 0 around the gripper
(``equimanip.learning.dynamics``, exploration). Every test episode draws a scene from that same
distribution (the closed gripper at pushing height in the middle of the workspace with yaw 0,
the block 5 to 9 cm from it at an angle in [0, 90) degrees, the goal 12 cm beyond the block within
35 degrees of straight ahead) and turns it about the gripper by 0, 90, 180 or 270 degrees: block,
goal and the gripper's yaw (modulo the closed hand's half turn). Quadrant 0 is the training
distribution; the others are the same scenes turned. An episode succeeds when the block's centre
comes within 5 cm of the goal (``block_pushing``'s test) within ``--steps`` steps.

The planner: MPPI (``equimanip.planning.MPPI``) over in-plane steps (dx, dy) of at most 3 cm (the
exploration's longest), symmetric sampling under ``--group``, the learned model for the block and
exact kinematics for the goal's offset from the gripper, and a cost that is invariant under turns
about the gripper: the block's distance to the goal each step (more at the last) and, lightly, the
gripper's distance to the block. The gripper is held at pushing height as in the exploration.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from equimanip import symmetry as sym
from equimanip.learning.dynamics import PUSH_BLOCK_XY, PUSH_CENTRE, PUSH_DISTANCE, PUSH_STEP, PushScene, push_state

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "mppi_push.csv"
DOC = Path(__file__).resolve().parents[2] / "docs" / "mppi.md"
FIELDS = ["model", "model_group", "sampling_group", "episodes_per_quadrant", "seed", "success_q0", "success_q1",
          "success_q2", "success_q3", "success_all", "mean_final_distance_mm", "plan_ms_p50", "samples", "horizon",
          "wall_s", "load_average", "machine", "date", "revision", "command"]
GOAL_DISTANCE = 0.12              # m beyond the block
GOAL_SPREAD = math.radians(35)    # the goal's direction off straight ahead (gripper -> block)
PLAN_ACTION = sym.Layout((sym.vector("dx", "dy"),))


class PushPlanningModel:
    """MPPI's dynamics over ``[push state (7), goal offset from the gripper (2)]`` and actions
    ``(dx, dy)``: the learned model moves the block, the gripper's own step moves the goal's offset."""

    def __init__(self, model):
        self.model = model

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(actions[:, :1])
        full = torch.cat([zeros, actions, zeros, zeros], dim=1)             # [p, dx, dy, dz, dyaw]
        push = self.model(states[:, :7], full)
        return torch.cat([push, states[:, 7:9] - actions], dim=1)


class PushCost:
    """Trajectory cost: block-to-goal distance each step (``terminal`` times more at the last) plus
    ``approach`` times the gripper-to-block distance. Invariant under turns and mirrors about the gripper."""

    def __init__(self, goal: float = 10.0, terminal: float = 4.0, approach: float = 2.0):
        self.goal, self.terminal, self.approach = goal, terminal, approach

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        after = states[:, 1:]
        block = after[..., PUSH_BLOCK_XY[0]:PUSH_BLOCK_XY[1] + 1]
        to_goal = torch.linalg.vector_norm(block - after[..., 7:9], dim=-1)
        weights = torch.ones(after.shape[1], dtype=states.dtype, device=states.device)
        weights[-1] += self.terminal
        return self.goal * (to_goal @ weights) + self.approach * torch.linalg.vector_norm(block, dim=-1).sum(1)


def make_planner(model, group: str, samples: int, horizon: int, seed: int):
    from equimanip.planning import MPPI, MPPIConfig

    config = MPPIConfig(action_low=(-PUSH_STEP, -PUSH_STEP), action_high=(PUSH_STEP, PUSH_STEP),
                        noise_sigma=(0.015, 0.015), num_samples=samples, horizon=horizon, temperature=0.05,
                        vector_norm_max=PUSH_STEP, control_cost_scale=0.0, group=group, seed=seed)
    return MPPI(PushPlanningModel(model), config, trajectory_cost=PushCost(), action_layout=PLAN_ACTION)


def scene(rng: np.random.Generator, quadrant: int) -> dict:
    """A training-distribution scene turned by ``quadrant`` quarter turns about the gripper."""
    angle = rng.uniform(0.0, math.pi / 2)
    distance = rng.uniform(*PUSH_DISTANCE)
    block_yaw = rng.uniform(-math.pi, math.pi)
    goal_angle = angle + rng.uniform(-GOAL_SPREAD, GOAL_SPREAD)
    turn = quadrant * math.pi / 2
    block = distance * np.array([math.cos(angle + turn), math.sin(angle + turn)])
    goal = block + GOAL_DISTANCE * np.array([math.cos(goal_angle + turn), math.sin(goal_angle + turn)])
    # The closed hand looks the same turned half way round; the wrist takes yaws within +-135 deg.
    return {"block": block, "goal": goal, "block_yaw": block_yaw + turn, "gripper_yaw": (quadrant % 2) * math.pi / 2}


def run_episode(env, push_scene: PushScene, planner, setup: dict, seed: int, steps: int,
                plan_ms: list) -> tuple[bool, float]:
    from equimanip.sim.tasks.block_pushing import SUCCESS_DISTANCE

    goal_xy = np.asarray(PUSH_CENTRE) + setup["goal"]
    obs = push_scene.place(seed, setup["block"], setup["block_yaw"], setup["gripper_yaw"], goal_xy=goal_xy)
    distance = math.inf
    for _ in range(steps):
        block = obs.object_poses[0]
        distance = float(np.linalg.norm(block[:2] - goal_xy))
        if distance <= SUCCESS_DISTANCE:
            return True, distance
        state = np.concatenate([push_state(obs.ee_pose, block), goal_xy - obs.ee_pose[:2]]).astype(np.float32)
        started = time.perf_counter()
        with torch.no_grad():
            dx, dy = planner.command(torch.as_tensor(state)).tolist()
        plan_ms.append((time.perf_counter() - started) * 1000.0)
        hold_height = float(np.clip(push_scene.push_z - obs.ee_pose[2], -0.005, 0.005))
        obs = env.step(np.array([0.0, dx, dy, hold_height, 0.0]))[0]
    distance = float(np.linalg.norm(obs.object_poses[0][:2] - goal_xy))
    return distance <= SUCCESS_DISTANCE, distance


def results_table(rows: list[dict]) -> str:
    from equimanip.learning.results import markdown_table

    header = ["dynamics model", "symmetric sampling", "episodes per quadrant", "quadrant 0 (training)", "quadrant 1",
              "quadrant 2", "quadrant 3", "all", "mean final distance (mm)", "plan (ms)", "model", "date"]
    body = [[r["model_group"] if r["model_group"] != "none" else "plain MLP", r["sampling_group"],
             r["episodes_per_quadrant"], *(f"{float(r[f'success_q{q}']):.0%}" for q in range(4)),
             f"{float(r['success_all']):.0%}", r["mean_final_distance_mm"], r["plan_ms_p50"], r["model"], r["date"]]
            for r in rows]
    machines = sorted({r["machine"] for r in rows})
    return "Machine: " + "; ".join(machines) + "\n\n" + markdown_table(header, body)


def regenerate_table(results: Path = RESULTS, doc: Path = DOC) -> str:
    from equimanip.learning.results import regenerate_section

    return regenerate_section(results, doc, "mppi_push", results_table)


def main(argv=None) -> int:
    from equimanip.learning.dynamics import load_dynamics
    from equimanip.learning.results import append_row, git_revision, machine_description, today
    from equimanip.sim.env import ManipulationEnv

    parser = argparse.ArgumentParser(prog="python -m equimanip.bench.mppi_push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a 'dynamics' checkpoint (equimanip train dynamics)")
    parser.add_argument("--group", default="c8", help="symmetric sampling group of the planner (none, c4, c8, d4, d8)")
    parser.add_argument("--episodes-per-quadrant", type=int, default=25)
    parser.add_argument("--seed", type=int, default=20000, help="scenes from seed, seed + 1, ... (not training's)")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="step limit of an episode")
    parser.add_argument("--results", type=Path, default=None, help=f"append a row to this CSV (e.g. {RESULTS})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", action="store_true", help=f"only regenerate the table in {DOC} from {RESULTS}")
    args = parser.parse_args(argv)
    if args.table:
        print(regenerate_table())
        return 0
    if args.model is None:
        parser.error("--model is required")
    torch.set_num_threads(1)
    try:
        model = load_dynamics(args.model)
    except (OSError, ValueError) as e:
        print(f"mppi_push: {e}", file=sys.stderr)
        return 1
    spec = model.spec
    if spec.state != "push":
        print(f"mppi_push: {args.model} models the '{spec.state}' state, not 'push'", file=sys.stderr)
        return 1
    started = time.monotonic()
    per_quadrant, distances, plan_ms = [], [], []
    with ManipulationEnv(task="block_pushing", render=False) as env:
        push_scene = PushScene(env)
        for quadrant in range(4):
            wins = 0
            for i in range(args.episodes_per_quadrant):
                seed = args.seed + i                        # the same scenes, turned, in every quadrant
                setup = scene(np.random.default_rng(seed), quadrant)
                # A planner seeded by the scene: a turned scene gets the same random draw, so with
                # symmetric sampling and an equivariant model it gets the turned plan.
                planner = make_planner(model, args.group, args.samples, args.horizon, seed)
                success, distance = run_episode(env, push_scene, planner, setup, seed, args.steps, plan_ms)
                wins += success
                distances.append(distance)
                print(f"quadrant {quadrant}  scene {i + 1:3d}  {'success' if success else 'failure'}  "
                      f"block {distance * 100:4.1f} cm from the goal", flush=True)
            per_quadrant.append(wins / args.episodes_per_quadrant)
    wall = time.monotonic() - started
    load = os.getloadavg()[0]
    summary = {"model": str(args.model), "model_group": spec.group, "sampling_group": args.group,
               "success_per_quadrant": per_quadrant, "success_all": float(np.mean(per_quadrant)),
               "mean_final_distance_mm": float(np.mean(distances) * 1000.0), "wall_s": wall, "load_average": load}
    print(f"model {spec.group}, sampling {args.group}: success per quadrant "
          f"{' '.join(f'{s:.0%}' for s in per_quadrant)} (all {summary['success_all']:.0%}), {wall:.0f} s")
    if args.results is not None:
        row = {"model": str(args.model), "model_group": spec.group, "sampling_group": args.group,
               "episodes_per_quadrant": args.episodes_per_quadrant, "seed": args.seed,
               **{f"success_q{q}": f"{s:.3f}" for q, s in enumerate(per_quadrant)},
               "success_all": f"{summary['success_all']:.3f}",
               "mean_final_distance_mm": f"{summary['mean_final_distance_mm']:.1f}",
               "plan_ms_p50": f"{np.median(plan_ms):.1f}", "samples": args.samples,
               "horizon": args.horizon, "wall_s": f"{wall:.0f}", "load_average": f"{load:.1f}",
               "machine": machine_description(), "date": today(), "revision": git_revision(),
               "command": "python -m equimanip.bench.mppi_push " + " ".join(sys.argv[1:] if argv is None else argv)}
        append_row(args.results, row, FIELDS)
        print(f"row appended to {args.results}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
