"""``equimanip bench tracking``: how faithfully the simulated arm carries out a delta action, by
direction, and (with ``--checkpoint``) where a policy's rollout in a turned scene parts from the
turned rollout of the plain scene.

An equivariant policy given the turned observation answers with the turned action; the rollout
then stays the turned rollout only if the arm executes turned actions the same way. Reported:

* per direction of a 4 cm step in the horizontal plane (eight directions, starting with the hand
  at yaw 0 and at yaw 90 degrees), and down and up: the error between the commanded and the
  measured displacement over one control step (mean of three consecutive steps);
* with ``--checkpoint``: for each of ``--episodes`` held-out scenes of ``--task``, the plain scene
  and the scene turned by ``--angle`` degrees about the workspace centre, rolled out side by side:
  at step 0 the share of heightmap pixels that differ by more than 1 cm from the turned plain
  heightmap and the largest difference between the turned plain action and the turned scene's
  action (normalised units), then how far apart the grasp points are (after turning the plain one)
  at steps 3 and 6, and each rollout's outcome.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from equimanip.bench.common import machine_info


def tracking_errors(task: str = "reach", step_m: float = 0.04) -> list[dict]:
    from equimanip.sim.env import ManipulationEnv

    rows = []
    with ManipulationEnv(task=task, render=False) as env:
        for start_yaw in (0.0, math.pi / 2):
            for direction in np.arange(8) * math.pi / 4:
                obs = env.reset(seed=0)
                for _ in range(6):                       # turn the hand first
                    obs, *_ = env.step([1.0, 0.0, 0.0, 0.0, float(np.clip(start_yaw - obs.ee_yaw, -0.39, 0.39))])
                delta = step_m * np.array([math.cos(direction), math.sin(direction), 0.0])
                errors = []
                for _ in range(3):
                    before = obs.ee_pose[:3].copy()
                    obs, *_ = env.step([1.0, *delta, 0.0])
                    errors.append(float(np.linalg.norm(obs.ee_pose[:3] - before - delta)))
                rows.append({"start_yaw_deg": round(math.degrees(start_yaw)),
                             "direction_deg": round(math.degrees(direction)),
                             "error_mm": 1000 * float(np.mean(errors))})
        for name, sign in (("down", -1.0), ("up", 1.0)):  # down from home, then back up
            obs = env.reset(seed=0)
            if sign > 0:
                for _ in range(3):
                    obs, *_ = env.step([1.0, 0.0, 0.0, -step_m, 0.0])
            delta = np.array([0.0, 0.0, sign * step_m])
            errors = []
            for _ in range(3):
                before = obs.ee_pose[:3].copy()
                obs, *_ = env.step([1.0, *delta, 0.0])
                errors.append(float(np.linalg.norm(obs.ee_pose[:3] - before - delta)))
            rows.append({"start_yaw_deg": 0, "direction_deg": name, "error_mm": 1000 * float(np.mean(errors))})
    return rows


def paired_rollouts(checkpoint: str, task: str, episodes: int, angle_deg: float) -> list[dict]:
    import torch

    from equimanip import symmetry as sym
    from equimanip.checkpoint import load_policy
    from equimanip.envs import ManipulationGymEnv
    from equimanip.envs.scene import rotate_xy, workspace_centre_xy
    from equimanip.learning.evaluate import EVAL_SEED_BASE

    torch.set_num_threads(1)
    policy = load_policy(checkpoint)
    g = sym.GroupElement(math.radians(angle_deg))
    centre = workspace_centre_xy()
    rows = []
    for k in range(episodes):
        seed = EVAL_SEED_BASE + k
        envs = {a: ManipulationGymEnv(task, observation_config=policy.observation_config, rotate_scene=a,
                                      max_episode_steps=50) for a in (0.0, angle_deg)}
        obs = {a: env.reset(seed=seed)[0] for a, env in envs.items()}
        row = {"seed": seed}
        done = {a: None for a in envs}
        for t in range(50):
            actions = {a: policy.act(o) for a, o in obs.items()}
            if t == 0:
                diff = np.abs(sym.transform_heightmap(g, obs[0.0]) - obs[angle_deg])[0]
                row["heightmap_pixels_off"] = float((diff > 0.01).mean())
                turned_plain = sym.transform_action(g, actions[0.0])
                row["action_difference"] = float(np.abs(turned_plain - actions[angle_deg]).max())
            if t in (3, 6):
                plain = envs[0.0].unwrapped.last_observation.ee_pose
                turned = envs[angle_deg].unwrapped.last_observation.ee_pose
                apart = np.linalg.norm(rotate_xy(plain[:2], g.angle, centre) - turned[:2])
                row[f"apart_mm_step{t}"] = 1000 * float(apart)
            for a, env in envs.items():
                if done[a] is None:
                    obs[a], _, terminated, truncated, info = env.step(actions[a])
                    if terminated or truncated:
                        done[a] = bool(info.get("success"))
            if all(v is not None for v in done.values()):
                break
        row["plain_success"], row["turned_success"] = done[0.0], done[angle_deg]
        rows.append(row)
        for env in envs.values():
            env.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench tracking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a heightmap policy to roll out in plain and turned scenes")
    parser.add_argument("--task", default="block_picking")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--angle", type=float, default=90.0, help="degrees the scene is turned")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    errors = tracking_errors()
    print("error of one 4 cm step (mean of 3), by direction (degrees from +x):")
    for yaw in (0, 90):
        cells = [f"{r['direction_deg']:>3}: {r['error_mm']:.1f} mm" for r in errors
                 if r["start_yaw_deg"] == yaw and not isinstance(r["direction_deg"], str)]
        print(f"  hand at yaw {yaw:>2}:  " + "   ".join(cells))
    print("  vertical:        " + "   ".join(f"{r['direction_deg']}: {r['error_mm']:.1f} mm" for r in errors
                                            if isinstance(r["direction_deg"], str)))
    result = {"tracking": errors, "machine": machine_info()}
    if args.checkpoint:
        rows = paired_rollouts(args.checkpoint, args.task, args.episodes, args.angle)
        print(f"{args.task}, plain scene and the scene turned by {args.angle:g} degrees, side by side:")
        for r in rows:
            print(f"  seed {r['seed']}: step 0 heightmap pixels off {r['heightmap_pixels_off']:.1%}, action difference "
                  f"{r['action_difference']:.3f}; grasp points apart {r.get('apart_mm_step3', math.nan):.1f} mm at "
                  f"step 3, {r.get('apart_mm_step6', math.nan):.1f} mm at step 6; success plain {r['plain_success']}, "
                  f"turned {r['turned_success']}")
        result["rollouts"] = rows
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
