"""Top-down orthographic heightmap centred on the gripper, as the equivariant SAC policies see it.

Pixel grid (S even, pixel size r = L / S, gripper at (gx, gy) in the base frame)::

    column j  <->  base +x:  x in [gx + (j - S/2) r,  gx + (j - S/2 + 1) r]
    row    i  <->  base -y:  y in [gy - (i - S/2 + 1) r, gy - (i - S/2) r]

so the image shown with row 0 at the top (``imshow``) is the scene seen from above with +x to the
right and +y up, the image axes stay aligned with the base frame (they do not turn with the gripper),
and the gripper sits on the corner shared by pixels (S/2 - 1, S/2 - 1) ... (S/2, S/2).

Why this grid: a rotation of the scene by +90 degrees about the vertical axis through the gripper
maps pixel centres onto pixel centres, and equals ``np.rot90(heightmap, k=1)`` (equivalently
``torch.rot90(h, 1, dims=(-2, -1))``), which is what the C4/C8 networks assume. An odd S would put
the gripper on a pixel centre; it is refused to keep a single convention.

Points exactly on a pixel edge: plain floor binning sends an edge point to the pixel on its + side,
and a rotation turns "+ side" into "- side", so the image would not rotate exactly. Here a point on an
edge counts for *both* pixels sharing that edge (all four at a corner). That rule has no preferred
side, so it commutes with every 90-degree rotation and every reflection; and because the offsets
``x - gx`` enter only through sign-symmetric float operations (subtraction, multiplication), it
holds bit for bit in floating point, not only in exact arithmetic.

Each pixel holds the maximum height above the table (``z - table_z``) of its points, 0 where there
is none (heights below the table clip to 0). The max-reduction is ``np.maximum.at`` (numpy >= 1.25
has a fast path for it: about 0.1 ms for 60 k points here, faster than sorting) or, for a torch
``device``, ``scatter_reduce(..., 'amax')``; both give identical results.
"""
from __future__ import annotations

import numpy as np


def check_grid(size: int, side: float) -> None:
    if int(size) != size or size < 2 or size % 2:
        raise ValueError(f"heightmap size must be an even integer >= 2 (gripper on a pixel corner), got {size}")
    if not side > 0:
        raise ValueError(f"heightmap side length must be positive, got {side}")


def pixel_centers(center_xy, size: int, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Base-frame (x, y) of every pixel centre, each shaped (S, S): the inverse of the binning."""
    r = side / size
    offsets = (np.arange(size) - size / 2 + 0.5) * r
    x = np.broadcast_to(center_xy[0] + offsets[None, :], (size, size))
    y = np.broadcast_to(center_xy[1] - offsets[:, None], (size, size))
    return x, y


def pixel_indices(x: np.ndarray, y: np.ndarray, center_xy, size: int, side: float):
    """``(flat_pixel_index, point_index)`` pairs for the points (x, y) inside the S x S window.

    A point appears once, or 2 / 4 times when it lies on a pixel edge / corner (see the module
    docstring). ``flat_pixel_index = row * S + col``. x and y are 1-D float arrays; NaNs drop out."""
    scale = x.dtype.type(size / side)
    half = size // 2
    u = (x - x.dtype.type(center_xy[0])) * scale   # offsets in pixels, + towards base +x
    w = (y.dtype.type(center_xy[1]) - y) * scale   # offsets in pixels, + towards base -y
    # The window including its border (a border point is on an edge and belongs to the pixel
    # inside); NaN compares false and drops out here.
    point = np.flatnonzero((np.abs(u) <= half) & (np.abs(w) <= half))
    u, w = u[point], w[point]
    floor_u, floor_w = np.floor(u), np.floor(w)
    col = floor_u.astype(np.int32) + half
    row = floor_w.astype(np.int32) + half
    edge_col = np.flatnonzero(floor_u == u)
    edge_row = np.flatnonzero(floor_w == w)
    if edge_col.size or edge_row.size:
        # Duplicate edge points into the neighbouring pixel: first along columns, then rows (so a
        # corner point ends up in all four pixels around the corner).
        entry = np.arange(point.size)
        row = np.concatenate([row, row[edge_col]])
        col = np.concatenate([col, col[edge_col] - 1])
        entry = np.concatenate([entry, entry[edge_col]])
        edge_row = np.flatnonzero(np.isin(entry, edge_row))
        row = np.concatenate([row, row[edge_row] - 1])
        col = np.concatenate([col, col[edge_row]])
        entry = np.concatenate([entry, entry[edge_row]])
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)  # the border's outer halves
        row, col, point = row[inside], col[inside], point[entry[inside]]
    return row * size + col, point


def project_heightmap(points, center_xy, size: int = 128, side: float = 0.6, table_z: float = 0.0,
                      device=None, return_occupied: bool = False):
    """Max-height image (S, S) float32 of base-frame points (..., 3) around ``center_xy``.

    NaN points fall outside every pixel and are ignored. With ``device`` (a torch device or its
    name, e.g. 'cuda' or 'cpu') the max-reduction runs in torch there; the result is returned as a
    numpy array either way. With ``return_occupied`` also returns an (S, S) bool image of the pixels
    that received at least one point (what :func:`fill_empty_pixels` needs)."""
    check_grid(size, side)
    points = np.asarray(points)
    if points.dtype not in (np.float32, np.float64):
        points = points.astype(np.float64)
    x = points[..., 0].reshape(-1)
    y = points[..., 1].reshape(-1)
    z = points[..., 2].reshape(-1)
    flat, point = pixel_indices(x, y, center_xy, size, side)
    heights = (z[point] - z.dtype.type(table_z)).astype(np.float32, copy=False)
    if np.isnan(heights).any():  # finite x, y but NaN z: not a point
        keep = ~np.isnan(heights)
        flat, heights = flat[keep], heights[keep]
    if device is None:
        image = np.zeros(size * size, dtype=np.float32)
        np.maximum.at(image, flat, heights)
    else:
        image = _max_reduce_torch(flat, heights, size * size, device)
    image = image.reshape(size, size)
    if not return_occupied:
        return image
    occupied = np.zeros(size * size, dtype=bool)
    occupied[flat] = True
    return image, occupied.reshape(size, size)


def _max_reduce_torch(flat: np.ndarray, heights: np.ndarray, n_pixels: int, device) -> np.ndarray:
    import torch  # torch is a hard dependency of equimanip, but keep numpy users free of its import time

    device = torch.device(device)
    index = torch.from_numpy(flat).to(device, dtype=torch.int64, non_blocking=True)
    values = torch.from_numpy(heights).to(device, non_blocking=True)
    image = torch.zeros(n_pixels, dtype=torch.float32, device=device)
    image.scatter_reduce_(0, index, values, reduce="amax", include_self=True)
    return image.cpu().numpy()


def fill_empty_pixels(image: np.ndarray, occupied: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Fill pixels that received no point with the maximum of their occupied 8-neighbours, repeated
    ``iterations`` times (so holes up to 2 x iterations pixels wide close). A 3 x 3 neighbourhood is
    symmetric under 90-degree rotations, so filling keeps the heightmap's exact equivariance."""
    image = image.copy()
    occupied = occupied.copy()
    size = image.shape[0]
    for _ in range(iterations):
        if occupied.all():
            break
        padded = np.pad(np.where(occupied, image, -np.inf), 1, constant_values=-np.inf)
        neighbours = np.stack([padded[1 + di:1 + di + size, 1 + dj:1 + dj + size]
                               for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj])
        best = neighbours.max(axis=0)
        newly = ~occupied & np.isfinite(best)
        image[newly] = best[newly]
        occupied |= newly
    return image
