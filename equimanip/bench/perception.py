"""``equimanip bench perception``: from a received PointCloud2 to what the policies see.

The input is a 640 x 480 organized x/y/z/rgb PointCloud2 with NaNs (307,200 points), ray-cast from
a tilted camera looking at a table with three boxes (``equimanip.perception.synthetic``). Reported,
as medians over ``--repeats`` runs:

* ``reference_decode_ms``: the reference approach (structured view, x/y/z to N x 3, drop NaN rows,
  as sensor_msgs_py does) measured in the same run, for comparison;
* ``decode_ms``: ``pointcloud2_to_xyz`` (message to (H, W, 3) float32, NaN for invalid);
* ``to_base_ms``: decode plus the move into the base frame (``cloud_msg_to_base_points``);
* ``heightmap_ms``: message to the 128 x 128 heightmap: decode, transform, workspace crop, projection;
* ``object_state_ms``: message to the object-centric state: decode, transform, crop, table plane,
  gripper removal, downsampling, clustering, box fits;
* ``observation_ms``: the whole ``build_observation`` from the message (heightmap and state);
* ``heightmap_<device>_ms`` where torch sees CUDA: the heightmap with the reduction on the GPU.
"""
from __future__ import annotations

import argparse

import numpy as np

from equimanip.bench.common import machine_info, median_ms, print_report
from equimanip.geometry import down_quat_xyzw
from equimanip.perception.frames import CameraPoseResolver
from equimanip.perception.observation import (
    ObservationConfig,
    build_observation,
    cloud_msg_to_base_points,
    crop_to_workspace,
    make_heightmap,
    make_object_state,
)
from equimanip.perception.pointcloud2 import pointcloud2_to_array, pointcloud2_to_xyz, xyz_rgb_to_pointcloud2
from equimanip.perception.synthetic import default_scene, render

CAMERA_FRAME = "camera_color_optical_frame"


def make_cloud_msg(width: int = 640, height: int = 480):
    """The benchmark cloud as a PointCloud2, and a resolver that knows its camera."""
    from std_msgs.msg import Header

    scene = default_scene(width=width, height=height)
    points, colours = render(scene)
    msg = xyz_rgb_to_pointcloud2(points, colours, Header(frame_id=CAMERA_FRAME))
    resolver = CameraPoseResolver()
    resolver.set_pose(CAMERA_FRAME, scene.camera_pose)
    return msg, resolver


def reference_decode(msg) -> np.ndarray:
    """The reference structured-array decode (REFERENCES.md section 6), as sensor_msgs_py's
    ``read_points_numpy(..., skip_nans=True)`` does it: a structured view, x/y/z to an unstructured
    N x 3 array, rows with a NaN dropped."""
    from numpy.lib.recfunctions import structured_to_unstructured

    cloud = pointcloud2_to_array(msg).reshape(-1)
    points = structured_to_unstructured(cloud[["x", "y", "z"]])
    return points[~np.isnan(points).any(axis=1)]


def run(repeats: int, width: int = 640, height: int = 480) -> tuple[dict, list[tuple[str, str]]]:
    msg, resolver = make_cloud_msg(width, height)
    config = ObservationConfig().validate()
    ee_pose = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.3)]

    def base_points():
        return crop_to_workspace(cloud_msg_to_base_points(msg, resolver), config.workspace_min, config.workspace_max)

    def heightmap(device=None):
        return make_heightmap(base_points(), ee_pose, 1.0, config, device=device)

    def object_state():
        return make_object_state(base_points(), ee_pose, 1.0, config)

    def observation():
        return build_observation(cloud_msg_to_base_points(msg, resolver), ee_pose, 1.0, 0.0, config)

    results = {
        "points": int(msg.width * msg.height),
        "points_in_workspace": int(base_points().shape[0]),
        "objects_found": len(object_state()[1]),
        "repeats": repeats,
        "reference_decode_ms": median_ms(lambda: reference_decode(msg), repeats),
        "decode_ms": median_ms(lambda: pointcloud2_to_xyz(msg), repeats),
        "to_base_ms": median_ms(lambda: cloud_msg_to_base_points(msg, resolver), repeats),
        "heightmap_ms": median_ms(heightmap, repeats),
        "object_state_ms": median_ms(object_state, repeats),
        "observation_ms": median_ms(observation, repeats),
    }
    try:
        import torch
        if torch.cuda.is_available():
            results["heightmap_cuda_ms"] = median_ms(lambda: heightmap("cuda"), repeats, warmup=5)
            results["cuda_device"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    rows = [
        ("cloud", f"{msg.width} x {msg.height} organized xyz+rgb, {results['points_in_workspace']} points "
                  f"in the workspace, {results['objects_found']} objects"),
        ("reference decode (structured)", f"{results['reference_decode_ms']:.2f} ms"),
        ("decode", f"{results['decode_ms']:.2f} ms"),
        ("decode + to base frame", f"{results['to_base_ms']:.2f} ms"),
        ("message -> 128 x 128 heightmap", f"{results['heightmap_ms']:.2f} ms   (goal < 8 ms)"),
        ("message -> object-centric state", f"{results['object_state_ms']:.2f} ms   (goal < 30 ms)"),
        ("message -> full Observation", f"{results['observation_ms']:.2f} ms"),
    ]
    if "heightmap_cuda_ms" in results:
        rows.append((f"heightmap, reduction on {results['cuda_device']}", f"{results['heightmap_cuda_ms']:.2f} ms"))
    return results, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equimanip bench perception", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per figure (median reported)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    results, rows = run(args.repeats, args.width, args.height)
    info = machine_info()
    rows.append(("machine", f"{info.get('cpu', info['machine'])}, {info['cpu_count']} cores, median of {args.repeats}"))
    print_report("perception: PointCloud2 -> observation", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
