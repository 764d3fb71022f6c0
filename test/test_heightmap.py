"""The gripper-centred heightmap: pixel convention, max-reduction, and rotation equivariance.

Exact 90-degree equivariance is a floating-point statement: it holds when the rotated cloud's
offsets from the gripper are exactly the rotated offsets of the original (swap and negate, which
is exact). The property tests therefore place the gripper and the points on dyadic grids (sums and
differences exact in float32) and let hypothesis pick grids whose pixel size is a power of two, so
that many points land exactly on pixel edges and corners, where naive floor binning fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates

from equimanip.geometry import down_quat_xyzw, look_at_pose7, pose7_to_matrix, rotation_z, transform_points
from equimanip.perception.heightmap import fill_empty_pixels, pixel_centers, project_heightmap
from equimanip.perception.observation import ObservationConfig, build_observation, heightmap_points
from equimanip.perception.synthetic import Box, SyntheticScene, render

GRIDS = [(128, 0.6), (16, 0.5), (32, 0.64), (64, 0.5)]  # (S, L); the last three have dyadic pixels


def rot90_offsets(offsets: np.ndarray, k: int) -> np.ndarray:
    """Offsets (N, 2) turned by k x 90 degrees counter-clockwise, exactly (swaps and negations)."""
    for _ in range(k % 4):
        offsets = np.stack([-offsets[:, 1], offsets[:, 0]], axis=1)
    return offsets


@st.composite
def dyadic_scenes(draw):
    size, side = draw(st.sampled_from(GRIDS))
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    centre = rng.integers(-64, 64, size=2) / 64.0                       # multiples of 1/64 m
    half_window = int(side / 2 * 4096)
    offsets = rng.integers(-half_window - 64, half_window + 64, size=(n, 2)) / 4096.0
    # Force some points onto the grid lines through the gripper and onto pixel edges / corners.
    offsets[rng.random(n) < 0.1, 0] = 0.0
    offsets[rng.random(n) < 0.1, 1] = 0.0
    pixel = side / size
    if (pixel * 4096).is_integer():  # a dyadic pixel: its edges are on the 1/4096 grid, exactly
        on_edges = rng.random((n, 2)) < 0.2
        offsets[on_edges] = rng.integers(-size // 2, size // 2 + 1, size=on_edges.sum()) * pixel
    heights = rng.uniform(-0.05, 0.3, size=n)
    return size, side, centre, offsets.astype(np.float32), heights.astype(np.float32)


def cloud(centre, offsets, heights) -> np.ndarray:
    return np.column_stack([centre[0] + offsets[:, 0], centre[1] + offsets[:, 1], heights]).astype(np.float32)


@settings(max_examples=80, deadline=None)
@given(dyadic_scenes(), st.integers(1, 3))
def test_rotating_the_cloud_by_90_degrees_rotates_the_heightmap_exactly(scene, k):
    size, side, centre, offsets, heights = scene
    points = cloud(centre, offsets, heights)
    turned = cloud(centre, rot90_offsets(offsets, k), heights)
    # the dyadic construction keeps (point - gripper) exact, which is what exactness needs
    np.testing.assert_array_equal(turned[:, :2] - centre.astype(np.float32), rot90_offsets(offsets, k))
    image = project_heightmap(points, centre, size, side)
    image_turned = project_heightmap(turned, centre, size, side)
    np.testing.assert_array_equal(image_turned, np.rot90(image, k))


@settings(max_examples=40, deadline=None)
@given(dyadic_scenes())
def test_mirroring_the_cloud_mirrors_the_heightmap_exactly(scene):
    size, side, centre, offsets, heights = scene
    mirrored = offsets * np.array([-1, 1], dtype=np.float32)  # x -> -x: columns reverse
    image = project_heightmap(cloud(centre, offsets, heights), centre, size, side)
    np.testing.assert_array_equal(project_heightmap(cloud(centre, mirrored, heights), centre, size, side),
                                  image[:, ::-1])


def smooth_field(rng):
    """A few Gaussian bumps: heights(x, y) and the largest slope, for an interpolation tolerance."""
    bumps = [(rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.02, 0.12),
              rng.uniform(0.04, 0.1)) for _ in range(3)]

    def heights(x, y):
        return sum(a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s * s)) for bx, by, a, s in bumps)

    max_slope = sum(a / s * math.exp(-0.5) for _, _, a, s in bumps)  # bound on |grad| of the sum
    return heights, max_slope


@settings(max_examples=25, deadline=None)
@given(st.floats(-math.pi, math.pi), st.integers(0, 2**32 - 1))
def test_rotating_by_any_angle_agrees_within_interpolation_tolerance(angle, seed):
    size, side = 32, 0.4
    r = side / size
    rng = np.random.default_rng(seed)
    heights, max_slope = smooth_field(rng)
    centre = rng.uniform(-0.5, 0.5, size=2)
    # A dense sample (spacing r / 5) of the surface, in gripper-relative coordinates.
    u = np.arange(-0.3, 0.3, r / 5)
    gx, gy = np.meshgrid(u, u)
    rel = np.column_stack([gx.ravel(), gy.ravel()])
    z = heights(rel[:, 0], rel[:, 1])
    rel_turned = rel @ rotation_z(angle)[:2, :2].T
    image = project_heightmap(np.column_stack([centre + rel, z]), centre, size, side)
    image_turned = project_heightmap(np.column_stack([centre + rel_turned, z]), centre, size, side)
    # Where should pixel (i, j) of the turned image come from in the original one? Its centre,
    # turned back by -angle, in (fractional) pixel coordinates of the original image.
    px, py = pixel_centers((0.0, 0.0), size, side)
    back = np.stack([px.ravel(), py.ravel()], axis=1) @ rotation_z(-angle)[:2, :2].T
    cols = back[:, 0] / r + size / 2 - 0.5
    rows = -back[:, 1] / r + size / 2 - 0.5
    expected = map_coordinates(image, [rows, cols], order=1, mode="nearest").reshape(size, size)
    # Away from the border: pixels whose centre is within (S/2 - 2) pixels of the gripper.
    inside = np.hypot(px, py) < (size / 2 - 2) * r
    error = np.abs(image_turned - expected)[inside]
    # A max over a square pixel vs. over the turned square, plus bilinear interpolation: each is
    # at most (slope x pixel diagonal); 2.5 of those is the tolerance.
    tolerance = 2.5 * max_slope * r * math.sqrt(2)
    assert error.max() <= tolerance, (error.max(), tolerance)


def test_pixel_convention():
    """Column j grows with base +x, row i with base -y; the gripper is on the central corner."""
    size, side = 8, 0.8  # 0.1 m pixels
    centre = (1.0, 2.0)
    points = np.array([[1.05, 2.05, 0.3],    # just right of and above the gripper
                       [0.95, 1.95, 0.2],    # left of and below
                       [1.35, 2.15, 0.1]])   # 3.5 pixels right, 1.5 pixels up
    image = project_heightmap(points, centre, size, side)
    assert image[3, 4] == pytest.approx(0.3)
    assert image[4, 3] == pytest.approx(0.2)
    assert image[2, 7] == pytest.approx(0.1)
    assert np.count_nonzero(image) == 3
    # pixel_centers is the inverse: a point at every pixel centre lands in that pixel.
    x, y = pixel_centers(centre, size, side)
    heights = np.arange(1, size * size + 1, dtype=np.float64).reshape(size, size)
    grid = np.stack([x, y, heights], axis=-1)
    np.testing.assert_array_equal(project_heightmap(grid, centre, size, side), heights.astype(np.float32))


def test_max_height_above_table_and_what_is_ignored():
    points = np.array([
        [0.01, 0.01, 0.30], [0.01, 0.01, 0.50], [0.01, 0.01, 0.40],  # one pixel: the max wins
        [0.21, 0.01, 0.05],                                           # below table_z: clipped to 0
        [np.nan, 0.0, 1.0], [0.0, np.nan, 1.0], [0.05, 0.05, np.nan],  # invalid
        [5.0, 0.0, 1.0],                                               # outside the window
    ], dtype=np.float32)
    image = project_heightmap(points, (0.0, 0.0), size=20, side=1.0, table_z=0.1)
    assert image[9, 10] == pytest.approx(0.4)
    assert image.max() == pytest.approx(0.4) and image.min() == 0.0
    assert np.count_nonzero(image) == 1


def test_points_on_edges_count_for_every_pixel_they_touch():
    # 0.25 m pixels, exactly representable: these points sit exactly on edges / corners.
    image = project_heightmap(np.array([[0.0, 0.125, 1.0],     # on the vertical centre line
                                        [0.25, 0.25, 2.0]]),   # on a corner
                              (0.0, 0.0), size=4, side=1.0)
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[1, 1] = expected[1, 2] = 1.0
    expected[0:2, 2:4] = 2.0
    np.testing.assert_array_equal(image, expected)


def test_window_border_points_are_kept_only_inside():
    image = project_heightmap(np.array([[0.5, 0.1, 1.0], [-0.5, 0.1, 2.0]]), (0.0, 0.0), size=4, side=1.0)
    assert image[1, 3] == 1.0 and image[1, 0] == 2.0 and np.count_nonzero(image) == 2


@settings(max_examples=30, deadline=None)
@given(dyadic_scenes())
def test_torch_cpu_path_matches_numpy(scene):
    size, side, centre, offsets, heights = scene
    points = cloud(centre, offsets, heights)
    np.testing.assert_array_equal(project_heightmap(points, centre, size, side, device="cpu"),
                                  project_heightmap(points, centre, size, side))


def test_cuda_path_matches_numpy():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.4, 0.4, size=(200_000, 3)).astype(np.float32)
    np.testing.assert_array_equal(project_heightmap(points, (0.01, -0.02), device="cuda"),
                                  project_heightmap(points, (0.01, -0.02)))


def test_fill_empty_pixels_closes_holes_and_stays_equivariant():
    image = np.zeros((6, 6), np.float32)
    occupied = np.ones((6, 6), bool)
    image[1:4, 1:4] = 0.2
    image[2, 2], occupied[2, 2] = 0.0, False   # a dropout inside the block
    occupied[5, 5] = False                     # a dropout on the table
    image[0, 5] = 0.3
    filled = fill_empty_pixels(image, occupied, iterations=1)
    assert filled[2, 2] == pytest.approx(0.2)
    assert filled[5, 5] == 0.0
    np.testing.assert_array_equal(filled[occupied], image[occupied])
    for k in range(1, 4):
        np.testing.assert_array_equal(fill_empty_pixels(np.rot90(image, k), np.rot90(occupied, k), 1),
                                      np.rot90(filled, k))


@settings(max_examples=40, deadline=None)
@given(dyadic_scenes(), st.integers(1, 3), st.floats(-math.pi, math.pi))
def test_build_observation_heightmap_is_equivariant_with_the_gripper_yaw(scene, k, yaw):
    """Through build_observation (crop, heightmap, gripper channel): turning the cloud by k x 90
    degrees about the vertical axis through the gripper, and the gripper's yaw with it, turns the
    heightmap by exactly k x 90 degrees."""
    size, side, centre, offsets, heights = scene
    # A crop box that holds the whole window around the gripper, whichever way it is turned.
    config = ObservationConfig(heightmap_size=size, heightmap_side=side, compute_object_state=False,
                               workspace_min=(-5.0, -5.0, -1.0), workspace_max=(5.0, 5.0, 1.0)).validate()
    ee = np.r_[centre, 0.3, down_quat_xyzw(yaw)]
    base = build_observation(cloud(centre, offsets, heights), ee, 0.7, stamp=1.0, config=config)
    ee_turned = np.r_[centre, 0.3, down_quat_xyzw(yaw + k * math.pi / 2)]
    turned = build_observation(cloud(centre, rot90_offsets(offsets, k), heights), ee_turned, 0.7,
                               stamp=1.0, config=config)
    np.testing.assert_array_equal(turned.heightmap[0], np.rot90(base.heightmap[0], k))
    assert base.heightmap.shape == (2, size, size) and base.heightmap.dtype == np.float32
    assert np.all(base.heightmap[1] == np.float32(0.7)) and np.all(turned.heightmap[1] == np.float32(0.7))


def test_synthetic_scene_block_at_the_right_pixel_and_height():
    box = Box(x=0.52, y=0.07, yaw=0.4, size=(0.05, 0.05, 0.06))
    scene = SyntheticScene(boxes=[box], width=320, height=240, dropout=0.0,
                           camera_pose=look_at_pose7(eye=(0.5, -0.35, 0.7), target=(0.5, 0.0, 0.0)))
    points_camera, _ = render(scene)
    points = transform_points(pose7_to_matrix(scene.camera_pose), points_camera)
    config = ObservationConfig(compute_object_state=False).validate()  # 128 px over 0.6 m
    ee = np.r_[0.45, 0.0, 0.25, down_quat_xyzw(0.0)]
    image = build_observation(points, ee, 1.0, 0.0, config).heightmap[0]
    r = config.heightmap_side / config.heightmap_size
    row = int(np.floor((ee[1] - box.y) / r)) + 64
    col = int(np.floor((box.x - ee[0]) / r)) + 64
    assert image[row, col] == pytest.approx(0.06, abs=1e-3)       # the block's top
    top = np.argwhere(image > 0.03)
    assert np.abs(top.mean(axis=0) - (row, col)).max() <= 1.5      # centred on the block
    assert image[row, col - 15] == pytest.approx(0.0, abs=1e-3)    # table 7 cm away


# ------------------------------------------------------------------ the policies' view ('gripper')

def _table_and_block_top(g, block_dx):
    """Points of a 2 mm table grid 60 cm square around the grasp point g, and of the top face of a
    4 cm block (at 4 cm) block_dx metres from g along +x."""
    u = np.arange(-0.3, 0.3, 0.002)
    tx, ty = np.meshgrid(u, u)
    table = np.column_stack([g[0] + tx.ravel(), g[1] + ty.ravel(), np.zeros(tx.size)])
    b = np.arange(-0.02, 0.02, 0.002)
    bx, by = np.meshgrid(b, b)
    block = np.column_stack([g[0] + block_dx + bx.ravel(), g[1] + by.ravel(), np.full(bx.size, 0.04)])
    return table, block


def _gripper_scene(yaw, aperture=0.7):
    """A block 8 cm from the gripper, the gripper 20 cm up with some of 'its own' points around
    it, an arm point above it, on a 2 mm table grid."""
    g = np.array([0.5, 0.0, 0.2])
    table, block = _table_and_block_top(g, 0.08)
    own = np.array([[g[0], g[1] + 0.03, g[2] - 0.005], [g[0] + 0.01, g[1], g[2] + 0.05]])   # in the hand box
    arm = np.array([[g[0] + 0.1, g[1] + 0.1, g[2] + 0.1]])                                 # above the hand
    points = np.vstack([table, block, own, arm]).astype(np.float32)
    return points, np.concatenate([g, down_quat_xyzw(yaw)]), aperture


def test_gripper_view_shows_depths_below_the_hand_without_the_robot():
    points, ee, aperture = _gripper_scene(0.0)
    config = ObservationConfig(heightmap_size=64, heightmap_mode="gripper")
    image = build_observation(points, ee, aperture, 0.0, config).heightmap[0]
    plain = build_observation(points, ee, aperture, 0.0, ObservationConfig(heightmap_size=64)).heightmap[0]
    assert plain.max() == pytest.approx(0.3, abs=1e-6)            # 'table' shows the arm point
    r = 0.6 / 64
    block = image[32, 32 + int(0.08 / r)]
    assert block == pytest.approx(0.2 - 0.04, abs=1e-6)           # depth of the block top below the hand
    assert np.median(image) == pytest.approx(0.2, abs=1e-6)       # the table, 20 cm down
    fingers = image == 0.0
    assert 2 <= fingers.sum() <= 16                               # two small fingers, nothing else at 0
    rows, cols = np.nonzero(fingers)
    assert np.allclose(cols.mean(), 31.5, atol=1) and np.ptp(rows) * r > 2 * 0.7 * 0.04   # across y


def test_gripper_view_keeps_a_pushed_block_beside_the_fingers():
    """Pushing: the fingertips 2 cm over the table, a 4 cm block touching the fingers' outer side.
    The block (its top above the grasp point) must stay in view; only the robot goes."""
    g = np.array([0.5, 0.0, 0.02])
    table, block = _table_and_block_top(g, 0.045)
    hand = np.array([[g[0], g[1] + 0.1, g[2] + 0.06], [g[0] - 0.05, g[1], g[2] + 0.2]])   # hand body, wrist
    fingers = np.array([[g[0], g[1] + 0.04, g[2]], [g[0], g[1] - 0.04, g[2] + 0.03]])
    arm = np.array([[g[0] - 0.2, g[1] + 0.15, g[2] + 0.3]])                             # an elbow, off to the side
    points = np.vstack([table, block, hand, fingers, arm]).astype(np.float32)
    ee = np.concatenate([g, down_quat_xyzw(0.0)])
    r = 0.6 / 64
    block_px = (32, 32 + int(0.045 / r))
    kept = heightmap_points(points, ee, ObservationConfig(heightmap_size=64, heightmap_mode="gripper"))
    assert len(kept) == len(table) + len(block)                    # every robot point gone, the block kept
    image = build_observation(points, ee, 1.0, 0.0, ObservationConfig(heightmap_size=64, heightmap_mode="gripper"))
    assert image.heightmap[0][block_px] == 0.0                     # its top is above the fingertips: depth 0
    assert np.median(image.heightmap[0]) == pytest.approx(0.02, abs=1e-6)
    legacy = ObservationConfig(heightmap_size=64, heightmap_mode="gripper", robot_removal="above_grasp_point")
    assert len(heightmap_points(points, ee, legacy)) == len(table)  # the old view lost the block


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gripper_view_turns_with_the_scene_exactly(k):
    points, ee, aperture = _gripper_scene(0.3)
    config = ObservationConfig(heightmap_size=64, heightmap_mode="gripper")
    image = build_observation(points, ee, aperture, 0.0, config).heightmap
    turned_points = points.copy()
    rel = rot90_offsets((points[:, :2] - ee[:2]).astype(np.float64), k)
    turned_points[:, :2] = (rel + ee[:2]).astype(np.float32)
    ee_turned = np.concatenate([ee[:3], down_quat_xyzw(0.3 + k * math.pi / 2)])
    turned = build_observation(turned_points, ee_turned, aperture, 0.0, config).heightmap
    mismatch = turned[0] != np.rot90(image[0], k)
    # the 2 mm grid is not dyadic: a few edge points may round to the neighbouring pixel
    assert mismatch.mean() < 0.01
