"""Diagnostic: a cell parameter file whose camera is turned about the workspace centre.

`equimanip eval --rotate-scene DEG` turns every initial scene (objects and the hand's start) about
the vertical axis through the workspace centre; the camera and the arm's base stay where they are.
Evaluating with this file as well (`--params FILE`) turns the camera with the scene, so that only
the arm's base (its reach, its joints, the parts of it in view) is left unturned: what a policy
then loses against the unturned scene is the arm's, not the camera's.

    python scripts/turned_camera_params.py side_camera 90 --out /tmp/side_camera_turned90.yaml
    equimanip eval --checkpoint equimanip/checkpoints/block_pushing.pt --episodes 50 \\
        --seed 1500000000 --rotate-scene 90 --params /tmp/side_camera_turned90.yaml

The file is the given one with its ``camera_pose`` (position and orientation in the base frame)
turned; everything else in it is kept. Writes no results row; docs/imitation.md quotes it.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import yaml

from equimanip.config import config_file
from equimanip.envs.scene import rotate_xy, workspace_centre_xy
from equimanip.geometry import matrix_to_quat_xyzw, quat_xyzw_to_matrix, rotation_z


def turned_pose(pose7, degrees: float) -> list[float]:
    """``pose7`` [x, y, z, qx, qy, qz, qw] turned by ``degrees`` about the vertical axis through
    the workspace centre."""
    angle = math.radians(degrees)
    pose = np.asarray(pose7, dtype=np.float64)
    xy = rotate_xy(pose[:2], angle, workspace_centre_xy())
    quat = matrix_to_quat_xyzw(rotation_z(angle) @ quat_xyzw_to_matrix(pose[3:7]))
    return [float(v) for v in (*xy, pose[2], *quat)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", help="a parameter file with a camera_pose (a name in config/ or a path)")
    parser.add_argument("degrees", type=float, help="how far to turn the camera, as --rotate-scene")
    parser.add_argument("--out", default=None, help="where to write the file (default: standard output)")
    args = parser.parse_args(argv)
    try:
        content = yaml.safe_load(config_file(args.params).read_text())
        parameters = content["/**"]["ros__parameters"]
        parameters["camera_pose"] = turned_pose(parameters["camera_pose"], args.degrees)
    except (OSError, FileNotFoundError) as e:
        print(f"turned_camera_params: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError) as e:
        print(f"turned_camera_params: {args.params} has no /** ros__parameters camera_pose [x, y, z, qx, qy, qz, qw] "
              f"({e!r})", file=sys.stderr)
        return 1
    text = f"# {args.params} with its camera turned by {args.degrees:g} degrees about the workspace centre\n" + \
        yaml.safe_dump(content, sort_keys=False)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
