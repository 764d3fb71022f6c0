"""Simulated depth camera: a pinhole camera rendered with PyBullet's TinyRenderer, returned as an
organised point cloud in the camera's optical frame.

The camera pose is the pose7 of ``camera_depth_optical_frame`` in base_link, in the ROS optical
convention: z forward (the viewing direction), x right, y down in the image. The field of view is
the vertical one; pixels are square, so the horizontal field of view follows from the aspect ratio.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from equimanip.geometry import look_at_pose7, pose7_to_matrix
from equimanip.sim.bullet import p

# OpenGL cameras look along their -z axis with y up; the optical frame looks along +z with y
# down. The two differ by a half turn about x.
_OPTICAL_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


# Above the workspace centre (0.5, 0, 0), 0.95 m up and moved 0.2 m beyond it, so the view is
# tilted by about 12 degrees: the whole workspace box plus a block anywhere in it stays in view.
# The image top points away from the robot.
_DEFAULT_POSE = tuple(look_at_pose7(eye=(0.70, 0.0, 0.95), target=(0.5, 0.0, 0.0), up=(1.0, 0.0, 0.0)).tolist())


@dataclass(frozen=True)
class CameraConfig:
    """Intrinsics, pose and sensor imperfections of the simulated depth camera."""

    width: int = 128
    height: int = 128
    fov_deg: float = 45.0  # vertical field of view
    pose: tuple[float, ...] = field(default=_DEFAULT_POSE)  # camera_depth_optical_frame in base_link
    near: float = 0.1  # m
    far: float = 2.0  # m; pixels at the far plane are background and come back as NaN
    depth_noise_std: float = 0.0  # m, Gaussian noise added to each pixel's depth
    dropout: float = 0.0  # probability that a pixel is invalid (NaN), as on real depth sensors

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if not (isinstance(self.width, (int, np.integer)) and isinstance(self.height, (int, np.integer))):
            raise ValueError(f"width and height must be integers, got {self.width!r} x {self.height!r}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width} x {self.height}")
        if not (0.0 < self.fov_deg < 180.0):
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if not (0.0 < self.near < self.far) or not math.isfinite(self.far):
            raise ValueError(f"need 0 < near < far < inf, got near={self.near}, far={self.far}")
        if not (self.depth_noise_std >= 0.0 and math.isfinite(self.depth_noise_std)):
            raise ValueError(f"depth_noise_std must be >= 0, got {self.depth_noise_std}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        pose = np.asarray(self.pose, dtype=np.float64)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"pose must be 7 finite numbers [x y z qx qy qz qw], got {list(self.pose)}")
        if abs(np.linalg.norm(pose[3:]) - 1.0) > 1e-3:
            raise ValueError(f"pose quaternion must have unit norm, got norm {np.linalg.norm(pose[3:]):.4f}")

    @classmethod
    def from_parameters(cls, params: dict, base: "CameraConfig | None" = None) -> "CameraConfig":
        """The camera sim_node's parameters describe (``camera.width`` ... and ``camera_pose``,
        e.g. ``equimanip.config.cell_parameters(["side_camera"])``), over ``base`` (the default
        camera); checked with :meth:`validate`."""
        from equimanip.config import settings_from_parameters

        camera = settings_from_parameters(base or cls(), params, "camera.", skip=("pose",))
        if "camera_pose" in params:
            camera = replace(camera, pose=tuple(float(v) for v in params["camera_pose"]))
        camera.validate()
        return camera

    @property
    def focal_length_px(self) -> float:
        return 0.5 * self.height / math.tan(math.radians(self.fov_deg) / 2.0)

    @property
    def principal_point(self) -> tuple[float, float]:
        """(cx, cy) in pixels, with pixel centres at integer + 0.5 and the origin at the top-left
        corner. TinyRenderer samples each pixel at its lower-left corner in OpenGL's bottom-up
        image coordinates, which puts the effective principal point half a pixel right of and
        above the image centre. Stating it here keeps back-projection exact: a block's top face
        comes back 0.5 mm from its true centre on average at 128 x 128, against 3.4 mm with a
        centred principal point."""
        return self.width / 2.0 + 0.5, self.height / 2.0 - 0.5

    @property
    def intrinsics(self) -> np.ndarray:
        """3 x 3 pinhole matrix K of the rendered images."""
        f = self.focal_length_px
        cx, cy = self.principal_point
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    @property
    def T_base_camera(self) -> np.ndarray:
        return pose7_to_matrix(self.pose)


# Like a fixed RGB-D sensor in a real cell: at the front-right corner of the table, 0.62 m up,
# looking down at the workspace at about 40 degrees, with a RealSense-like 58-degree vertical field
# of view, a 4:3 image, millimetre depth noise and a few dropped pixels.
SIDE_CAMERA = CameraConfig(
    width=160,
    height=120,
    fov_deg=58.0,
    pose=tuple(look_at_pose7(eye=(1.05, -0.35, 0.62), target=(0.5, 0.0, 0.05)).tolist()),
    near=0.1,
    far=3.0,
    depth_noise_std=0.001,
    dropout=0.005,
)


@functools.lru_cache(maxsize=16)
def _pixel_rays(width: int, height: int, fov_deg: float) -> np.ndarray:
    """(H, W, 3) directions through the pixel centres, scaled so that their z component is 1:
    multiplying by a pixel's depth gives its point in the optical frame."""
    config = CameraConfig(width=width, height=height, fov_deg=fov_deg)
    f = config.focal_length_px
    cx, cy = config.principal_point
    rays = np.empty((height, width, 3), dtype=np.float32)
    rays[..., 0] = ((np.arange(width) + 0.5 - cx) / f)[None, :]
    rays[..., 1] = ((np.arange(height) + 0.5 - cy) / f)[:, None]
    rays[..., 2] = 1.0
    rays.flags.writeable = False
    return rays


def view_matrix(pose7) -> list[float]:
    """PyBullet (OpenGL, column-major) view matrix of an optical-frame pose."""
    T_base_opengl = pose7_to_matrix(pose7) @ _OPTICAL_TO_OPENGL
    return np.linalg.inv(T_base_opengl).flatten(order="F").tolist()


def projection_matrix(config: CameraConfig) -> list[float]:
    return list(p.computeProjectionMatrixFOV(config.fov_deg, config.width / config.height, config.near, config.far))


def _render(client: int, config: CameraConfig, flags: int):
    _, _, rgba, depth_buffer, _ = p.getCameraImage(
        config.width, config.height, view_matrix(config.pose), projection_matrix(config),
        renderer=p.ER_TINY_RENDERER, flags=flags, physicsClientId=client)
    rgba = np.asarray(rgba, dtype=np.uint8).reshape(config.height, config.width, 4)
    depth_buffer = np.asarray(depth_buffer, dtype=np.float32).reshape(config.height, config.width)
    return rgba, depth_buffer


def render_point_cloud(client: int, config: CameraConfig, rng: np.random.Generator | None = None):
    """Render the scene of PyBullet client ``client``.

    Returns ``(points_camera, colors)``: ``points_camera`` is (H, W, 3) float32 in the optical
    frame with NaN for invalid pixels (background at the far plane, dropped out), ``colors`` is
    (H, W, 3) uint8 RGB. ``rng`` drives the depth noise and dropout; it is required when either
    is enabled so that the result is reproducible.
    """
    if (config.depth_noise_std > 0.0 or config.dropout > 0.0) and rng is None:
        raise ValueError("a random generator is needed for depth noise or dropout")
    rgba, depth_buffer = _render(client, config, flags=p.ER_NO_SEGMENTATION_MASK)
    # The OpenGL depth buffer is non-linear in [0, 1]; invert the perspective projection.
    near, far = config.near, config.far
    depth = (far * near) / (far - (far - near) * depth_buffer)
    invalid = depth_buffer >= 1.0 - 1e-6
    if config.depth_noise_std > 0.0:
        depth = depth + rng.normal(0.0, config.depth_noise_std, size=depth.shape).astype(np.float32)
    if config.dropout > 0.0:
        invalid |= rng.random(depth.shape) < config.dropout
    depth[invalid] = np.nan
    points = _pixel_rays(config.width, config.height, float(config.fov_deg)) * depth[..., None]
    return points.astype(np.float32, copy=False), np.ascontiguousarray(rgba[..., :3])


def render_rgb(client: int, width: int, height: int, eye, target, fov_deg: float = 50.0) -> np.ndarray:
    """(H, W, 3) uint8 colour image from ``eye`` looking at ``target`` (for figures and GIFs)."""
    config = CameraConfig(width=width, height=height, fov_deg=fov_deg, pose=tuple(look_at_pose7(eye, target)))
    config.validate()
    rgba, _ = _render(client, config, flags=p.ER_NO_SEGMENTATION_MASK)
    return np.ascontiguousarray(rgba[..., :3])
