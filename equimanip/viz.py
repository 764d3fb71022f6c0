"""Pictures of what a policy sees, for people: the scene next to its gripper-centred heightmap.

Plain numpy + Pillow (no plotting library): a height colour ramp, the gripper's centre, and the
objects the perception found, drawn where they are in the heightmap's pixel grid.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from equimanip.perception.observation import Observation, ObservationConfig

# A dark-blue -> yellow ramp (perceptually ordered, readable in grey): five anchor colours.
_RAMP = np.array([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]], float)


# Heights within this of the table are the table (depth noise is a few millimetres), shown dark.
TABLE_BAND = 0.004


def colorize(heights: np.ndarray, top: float) -> np.ndarray:
    """(S, S) heights in metres -> (S, S, 3) uint8: the table (or no point) dark grey, then the
    ramp from the table band up to ``top`` (higher is clipped to the top colour)."""
    t = np.clip((heights - TABLE_BAND) / max(top - TABLE_BAND, 1e-6), 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(t).astype(int).clip(0, len(_RAMP) - 2)
    frac = (t - low)[..., None]
    rgb = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    rgb[heights <= TABLE_BAND] = 40.0
    return rgb.astype(np.uint8)


def _to_pixel(xy, observation: Observation, config: ObservationConfig, scale: float) -> tuple[float, float]:
    """Base-frame (x, y) -> (column, row) in the upscaled heightmap (equimanip.perception.heightmap's
    convention: column along +x, row along -y, gripper at the centre)."""
    size, side = config.heightmap_size, config.heightmap_side
    col = (xy[0] - observation.ee_pose[0]) * size / side + size / 2
    row = (observation.ee_pose[1] - xy[1]) * size / side + size / 2
    return col * scale, row * scale


def observation_figure(scene_rgb: np.ndarray, observation: Observation, config: ObservationConfig,
                       top: float = 0.15) -> np.ndarray:
    """One picture: the scene on the left, the heightmap (channel 0) on the right, upscaled to
    the scene's height, with the gripper centre (white cross) and detected objects (green boxes)."""
    h = scene_rgb.shape[0]
    scale = h / config.heightmap_size
    channel = observation.heightmap[0]
    what = f"0-{top * 100:.0f} cm"
    if config.heightmap_mode == "gripper":
        # Depths below the grasp point: shown as heights above the table (the same picture), the
        # fingers (depth 0) at the top of the ramp.
        above_table = float(observation.ee_pose[2] - config.table_z)
        channel = np.where(channel < config.gripper_depth_max, above_table - channel, 0.0)
        what = f"below the gripper, 0-{top * 100:.0f} cm above the table"
    heat = Image.fromarray(colorize(channel, top)).resize((h, h), Image.NEAREST)
    draw = ImageDraw.Draw(heat)
    c = h / 2
    draw.line([(c - 6, c), (c + 6, c)], fill=(255, 255, 255))
    draw.line([(c, c - 6), (c, c + 6)], fill=(255, 255, 255))
    for obj in observation.objects:
        u, v = _to_pixel(obj.centroid[:2], observation, config, scale)
        half = 0.5 * obj.extents[0] * config.heightmap_size / config.heightmap_side * scale
        draw.rectangle([u - half, v - half, u + half, v + half], outline=(60, 220, 90))
    label = ImageDraw.Draw(heat)
    label.text((4, 4), f"heightmap {config.heightmap_size}x{config.heightmap_size}, "
                       f"{config.heightmap_side:.2f} m, {what}", fill=(255, 255, 255))
    canvas = Image.new("RGB", (scene_rgb.shape[1] + h + 4, h), (255, 255, 255))
    canvas.paste(Image.fromarray(scene_rgb), (0, 0))
    canvas.paste(heat, (scene_rgb.shape[1] + 4, 0))
    return np.asarray(canvas)
