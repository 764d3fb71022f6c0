"""Diagnostic: how does a block_picking policy fail, and where are the scenes it fails in?

Runs a checkpoint that sees the 'gripper' heightmap (SAC's, or the shipped picking policy) on
held-out episodes, in the cell it was trained in unless --params says otherwise, and sorts every
failure by what the block and the hand did, read from the simulation's ground truth (which the
policy never sees):

* ``never closed``: the fingers never closed (measured aperture stayed above half open);
* ``closed, not lifted``: they closed, but the block never rose 1 cm off the table (a miss, or a
  grasp that slipped at once);
* ``lifted, dropped``: the block rose at least 1 cm and ended on the table again;
* ``held, too low``: the block was off the table when the episode ran out, below the 8 cm of success.

For every episode it also notes where the block started (its distance and bearing from the
workspace centre), its yaw against the hand's start (modulo 90 degrees: the cube's symmetry), the
step of the first closing, and how many heightmap pixels showed the block in the first
observation: 0 means the policy could not see it at all (the default camera looks down from
beyond the workspace, so the hand and wrist hide a patch of table on the robot's side of the
hand, and more of it as the hand moves there). The summary splits the success rate between the
robot's half of the workspace (blocks nearer the robot's base than the workspace centre, where
the hand starts) and the far half. Prints a summary, then one line per failure; with --json, one
JSON line. Appends no results row; docs/equivariant_sac.md quotes it.

    python scripts/pick_failures.py runs/pick_c8_s4/last.pt --episodes 50
    python scripts/pick_failures.py runs/pick_c8_s4/last.pt --params side_camera   # another camera
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

LIFTED = 0.01          # m above the table: the block counts as lifted
CLOSED = 0.5           # measured aperture (0 closed .. 1 open) below which the fingers count as closed
# A heightmap pixel shows the block when it is at least this much above the table (m); pixels less
# than FINGER_DEPTH below the grasp point are the fingers drawn in (the 'gripper' view's depths).
ABOVE_TABLE = 0.015
FINGER_DEPTH = 0.02


def block_pixels(observation) -> int:
    """Pixels of the policy's first heightmap that show something standing on the table (the block).
    Channel 0 of the 'gripper' view holds depths below the grasp point; the table is the most common
    depth."""
    depths = observation.heightmap[0]
    table = float(np.median(depths))
    return int(((depths < table - ABOVE_TABLE) & (depths > FINGER_DEPTH)).sum())


def episode(policy, env, seed: int) -> dict:
    from equimanip.envs.scene import workspace_centre_xy
    from equimanip.geometry import yaw_of_quat_xyzw
    from equimanip.sim.tasks.block_picking import BLOCK_SIZE

    inner = env.unwrapped
    env.reset(seed=seed)
    start = inner.sim.observe(render=False)
    block0 = start.object_poses[0]
    visible = block_pixels(inner.last_observation)
    offset = block0[:2] - workspace_centre_xy()
    relative_yaw = math.degrees(yaw_of_quat_xyzw(block0[3:7]) - start.ee_yaw) % 90.0
    table = float(block0[2] - BLOCK_SIZE / 2.0)
    first_close, close_height, highest, height, steps = None, None, 0.0, 0.0, 0
    now = start
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.clip(policy.act(inner.last_observation), env.action_space.low, env.action_space.high)
        if close_height is None and action[0] < CLOSED:      # where the hand is when it decides to close
            close_height = float(now.ee_pose[2]) - table
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        now = inner.sim.observe(render=False)
        if first_close is None and now.gripper_aperture < CLOSED:
            first_close = steps
        height = float(now.object_poses[0, 2] - BLOCK_SIZE / 2.0) - table     # the block's bottom above the table
        highest = max(highest, height)
    if terminated:
        outcome = "success"
    elif first_close is None:
        outcome = "never closed"
    elif highest < LIFTED:
        outcome = "closed, not lifted"
    elif height < LIFTED:
        outcome = "lifted, dropped"
    else:
        outcome = "held, too low"
    return {"seed": seed, "outcome": outcome, "steps": steps, "first_close_step": first_close,
            # The grasp point's height above the table when the policy first commanded the fingers
            # below half open (the block is 4 cm tall).
            "close_command_height_m": None if close_height is None else round(close_height, 3),
            "highest_m": round(highest, 3), "block_from_centre_m": round(float(np.linalg.norm(offset)), 3),
            "block_bearing_deg": round(math.degrees(math.atan2(offset[1], offset[0])) % 360.0, 1),
            "block_yaw_vs_hand_deg": round(relative_yaw, 1), "block_pixels_at_start": visible,
            "robot_half": bool(offset[0] < 0.0)}


def main(argv=None) -> int:
    from equimanip.checkpoint import load_policy
    from equimanip.learning.evaluate import EVAL_SEED_BASE, policy_env

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a block_picking checkpoint on the 'gripper' heightmap (SAC's best.pt or "
                                           "last.pt, or the shipped one)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="first held-out episode seed")
    parser.add_argument("--params", action="append", default=None, metavar="YAML",
                        help="the cell to run in (its camera), as `equimanip eval --params` (default: the cell "
                             "the policy was trained in)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the text report")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        policy = load_policy(args.checkpoint, device="cpu")
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"cannot load {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    if policy.task != "block_picking":
        print(f"{args.checkpoint} was trained on {policy.task}, not block_picking", file=sys.stderr)
        return 2
    if policy.observation_config.heightmap_mode != "gripper":
        print(f"{args.checkpoint} does not see the 'gripper' heightmap this script reads", file=sys.stderr)
        return 2
    params = args.params if args.params is not None else list(policy.metadata.get("cell_params") or [])
    env = policy_env(policy, params)
    try:
        episodes = [episode(policy, env, seed) for seed in range(args.seed, args.seed + args.episodes)]
    finally:
        env.close()
    outcomes = ["success", "never closed", "closed, not lifted", "lifted, dropped", "held, too low"]
    counts = {name: sum(e["outcome"] == name for e in episodes) for name in outcomes}
    failures = [e for e in episodes if e["outcome"] != "success"]
    successes = [e for e in episodes if e["outcome"] == "success"]

    def median(rows, key):
        values = [r[key] for r in rows if r[key] is not None]
        return round(float(np.median(values)), 3) if values else None

    def success_rate(rows):
        return round(sum(r["outcome"] == "success" for r in rows) / len(rows), 3) if rows else None

    hidden = [e for e in episodes if e["block_pixels_at_start"] == 0]
    halves = {"robot": [e for e in episodes if e["robot_half"]], "far": [e for e in episodes if not e["robot_half"]]}
    summary = {"checkpoint": args.checkpoint, "params": params, "episodes": args.episodes, **counts,
               "success_by_half": {name: {"episodes": len(rows), "success": success_rate(rows)}
                                   for name, rows in halves.items()},
               "block_hidden_at_start": len(hidden),
               "failures_with_block_hidden_at_start": sum(e["outcome"] != "success" for e in hidden),
               "median_block_from_centre_m": {"success": median(successes, "block_from_centre_m"),
                                              "failure": median(failures, "block_from_centre_m")},
               "median_block_yaw_vs_hand_deg": {"success": median(successes, "block_yaw_vs_hand_deg"),
                                                "failure": median(failures, "block_yaw_vs_hand_deg")},
               "median_close_command_height_m": {"success": median(successes, "close_command_height_m"),
                                                 "failure": median(failures, "close_command_height_m")},
               "failures": failures}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{args.checkpoint}: " + ", ".join(f"{name} {count}" for name, count in counts.items())
          + f" (of {args.episodes}; camera of {' '.join(params) or 'the default cell'})")
    print("success in the robot's half of the workspace " + ", in the far half ".join(
        f"{summary['success_by_half'][name]['success']} ({summary['success_by_half'][name]['episodes']} episodes)"
        for name in ("robot", "far")))
    print(f"block hidden from the first heightmap in {len(hidden)} episodes, "
          f"{summary['failures_with_block_hidden_at_start']} of them failures")
    distance, yaw = summary["median_block_from_centre_m"], summary["median_block_yaw_vs_hand_deg"]
    close = summary["median_close_command_height_m"]
    print(f"medians, successes / failures: block from the workspace centre {distance['success']} / "
          f"{distance['failure']} m, block yaw against the hand (mod 90) {yaw['success']} / {yaw['failure']} deg, "
          f"hand height at the closing command {close['success']} / {close['failure']} m")
    for e in failures:
        print("  " + ", ".join(f"{k} {v}" for k, v in e.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
