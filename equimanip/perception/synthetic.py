"""A ray-cast table-top scene for benchmarks and unit tests that must not need PyBullet.

A pinhole depth camera (ROS optical frame: z forward, x right, y down) looks at a table (the plane
``z = table_z`` of the base frame) with upright boxes on it. Every pixel's ray is intersected with the
table and with each box (slab test in the box's own frame), vectorised over pixels; rays that hit
nothing, or a random fraction of pixels (``dropout``, as real depth cameras lose edges and dark
surfaces), give NaN. This is not the simulation (that is ``equimanip.sim``); it only produces clouds
with a realistic layout and known ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from equimanip.geometry import look_at_pose7, pose7_to_matrix, rotation_z


@dataclass
class Box:
    """An upright box resting on the table: centre (x, y) in the base frame, yaw, full sizes."""
    x: float
    y: float
    yaw: float
    size: tuple[float, float, float]  # along its own x, y and height
    rgb: tuple[int, int, int] = (200, 40, 40)


@dataclass
class SyntheticScene:
    boxes: list[Box] = field(default_factory=list)
    table_z: float = 0.0
    width: int = 640
    height: int = 480
    fov_deg: float = 60.0          # vertical field of view
    camera_pose: np.ndarray = None  # pose7 of the optical frame in the base frame
    dropout: float = 0.02
    noise_std: float = 0.0

    def __post_init__(self):
        if self.camera_pose is None:
            self.camera_pose = look_at_pose7(eye=(0.45, -0.55, 0.75), target=(0.45, 0.0, 0.0))


def render(scene: SyntheticScene, seed: int = 0):
    """Ray-cast ``scene``. Returns ``(points_camera, rgb)``: (H, W, 3) float32 in the optical frame
    with NaN for invalid pixels, and (H, W, 3) uint8 colours."""
    rng = np.random.default_rng(seed)
    H, W = scene.height, scene.width
    f = 0.5 * H / math.tan(math.radians(scene.fov_deg) / 2.0)
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_cam = np.stack([(u - W / 2.0) / f, (v - H / 2.0) / f, np.ones_like(u)], axis=-1).reshape(-1, 3)
    T = pose7_to_matrix(scene.camera_pose)
    origin = T[:3, 3]
    rays = rays_cam @ T[:3, :3].T  # base-frame directions; depth along the optical axis is t

    t_best = np.full(rays.shape[0], np.inf)
    colour = np.zeros((rays.shape[0], 3), dtype=np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = (scene.table_z - origin[2]) / rays[:, 2]
    hit = t_table > 0
    t_best[hit] = t_table[hit]
    colour[hit] = (150, 150, 150)
    for box in scene.boxes:
        R = rotation_z(box.yaw)
        centre = np.array([box.x, box.y, scene.table_z + box.size[2] / 2.0])
        o = R.T @ (origin - centre)       # ray origin and directions in the box frame
        d = rays @ R                       # == (R.T @ rays.T).T
        half = np.asarray(box.size) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / d
            t2 = (half - o) / d
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
        t_best[hit] = t_near[hit]
        colour[hit] = box.rgb

    points = rays_cam * t_best[:, None]
    if scene.noise_std > 0:
        points += rng.normal(0.0, scene.noise_std, size=points.shape) * rays_cam
    invalid = ~np.isfinite(t_best) | (rng.random(t_best.shape[0]) < scene.dropout)
    points[invalid] = np.nan
    return points.reshape(H, W, 3).astype(np.float32), colour.reshape(H, W, 3)


def default_scene(**kwargs) -> SyntheticScene:
    """The benchmark scene: a table and three boxes of manipulation size in front of the robot."""
    boxes = [
        Box(0.45, 0.05, 0.3, (0.05, 0.05, 0.05), (220, 30, 30)),
        Box(0.35, -0.12, -0.6, (0.08, 0.04, 0.04), (30, 200, 30)),
        Box(0.58, -0.05, 1.1, (0.06, 0.03, 0.10), (30, 30, 220)),
    ]
    return SyntheticScene(boxes=boxes, **kwargs)
