"""PointCloud2 <-> numpy: round trips for every layout drivers publish, and one test per way a
message can be malformed (the error type and what its message names)."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from equimanip.perception.pointcloud2 import (
    PointCloud2Error,
    array_to_pointcloud2,
    pointcloud2_to_array,
    pointcloud2_to_xyz,
    pointcloud2_to_xyz_rgb,
    xyz_rgb_to_pointcloud2,
)

F32, F64, U32, U8 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT32, PointField.UINT8
PT = {"i1": PointField.INT8, "u1": U8, "i2": PointField.INT16, "u2": PointField.UINT16,
      "i4": PointField.INT32, "u4": U32, "f4": F32, "f8": F64}


def raw_msg(structured: np.ndarray, row_padding: int = 0, frame_id: str = "camera") -> PointCloud2:
    """A PointCloud2 written independently of the code under test: the bytes of ``structured``
    (height, width) with ``row_padding`` junk bytes after every row, byte order taken from its dtype."""
    height, width = structured.shape
    point_step = structured.dtype.itemsize
    row_step = width * point_step + row_padding
    rows = np.full((height, row_step), 0xAB, dtype=np.uint8)  # junk in the padding
    rows[:, :width * point_step] = np.ascontiguousarray(structured).view(np.uint8).reshape(height, width * point_step)
    msg = PointCloud2(header=Header(frame_id=frame_id), height=height, width=width,
                      point_step=point_step, row_step=row_step, is_dense=False)
    msg.is_bigendian = any(structured.dtype.fields[n][0].byteorder == ">" for n in structured.dtype.names)
    msg.fields = [PointField(name=n, offset=structured.dtype.fields[n][1],
                             datatype=PT[structured.dtype.fields[n][0].str[1:]], count=1)
                  for n in structured.dtype.names]
    msg.data = rows.tobytes()
    return msg


def random_cloud(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cloud = np.zeros(shape, dtype=dtype)
    for name in dtype.names:
        kind = dtype.fields[name][0]
        if kind.kind == "f":
            cloud[name] = rng.uniform(-3, 3, size=shape)
        else:
            info = np.iinfo(kind)
            cloud[name] = rng.integers(info.min, info.max, size=shape, endpoint=True)
    return cloud


def padded_dtype(fields, itemsize, order="<"):
    names, formats, offsets = zip(*fields)
    return np.dtype({"names": list(names), "formats": [order + f for f in formats],
                     "offsets": list(offsets), "itemsize": itemsize})


LAYOUTS = {
    # name: (dtype, row padding)
    "xyz_f32_tight": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8)], 12), 0),
    "xyz_f32_pcl_padding": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8)], 16), 0),
    "xyz_f64": (padded_dtype([("x", "f8", 0), ("y", "f8", 8), ("z", "f8", 16)], 24), 0),
    "xyzrgb_pcl_32_bytes": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("rgb", "f4", 16)], 32), 0),
    "xyz_rgb_u32_intensity": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8),
                                            ("rgb", "u4", 12), ("intensity", "f4", 16)], 20), 0),
    "xyz_normals_curvature": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8),
                                            ("normal_x", "f4", 16), ("normal_y", "f4", 20),
                                            ("normal_z", "f4", 24), ("curvature", "f4", 32)], 48), 0),
    "fields_out_of_order_ring_u16": (padded_dtype([("intensity", "f4", 0), ("ring", "u2", 4),
                                                   ("x", "f4", 8), ("y", "f4", 12), ("z", "f4", 16)], 24), 0),
    "row_step_padding": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8)], 16), 40),
    "big_endian": (padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("rgb", "u4", 12)], 16, ">"), 0),
    "big_endian_f64_row_padding": (padded_dtype([("x", "f8", 0), ("y", "f8", 8), ("z", "f8", 16),
                                                 ("t", "i4", 24)], 32, ">"), 8),
}


@pytest.mark.parametrize("shape", [(3, 5), (1, 7)], ids=["organized", "unorganized"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_decode_every_layout(layout, shape):
    dtype, row_padding = LAYOUTS[layout]
    cloud = random_cloud(dtype, shape)
    msg = raw_msg(cloud, row_padding)
    decoded = pointcloud2_to_array(msg)
    assert decoded.shape == shape
    for name in dtype.names:
        np.testing.assert_array_equal(decoded[name], cloud[name], err_msg=name)
    xyz = pointcloud2_to_xyz(msg)
    assert xyz.shape == shape + (3,) and xyz.dtype == np.float32
    expected = np.stack([cloud[c] for c in "xyz"], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(xyz, expected)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg, dtype=np.float64),
                                  np.stack([cloud[c] for c in "xyz"], axis=-1).astype(np.float64))


@pytest.mark.parametrize("shape", [(4, 6), (9,)], ids=["organized", "unorganized"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_array_round_trip_every_layout(layout, shape):
    dtype, _ = LAYOUTS[layout]
    cloud = random_cloud(dtype, shape, seed=1)
    flat = cloud.reshape(-1)
    flat["x"][0] = np.nan   # invalid points travel as they are
    flat["z"][1] = np.inf
    msg = array_to_pointcloud2(cloud, Header(frame_id="cam"))
    assert msg.header.frame_id == "cam"
    assert (msg.height, msg.width) == (shape if len(shape) == 2 else (1, shape[0]))
    assert msg.point_step == dtype.itemsize and msg.is_bigendian == (layout.startswith("big_endian"))
    back = pointcloud2_to_array(msg).reshape(cloud.shape)
    assert back.dtype == cloud.dtype
    for name in dtype.names:
        np.testing.assert_array_equal(back[name], cloud[name])


def test_unorganized_1d_array_becomes_height_1():
    cloud = random_cloud(LAYOUTS["xyz_f32_tight"][0], (9,))
    msg = array_to_pointcloud2(cloud)
    assert (msg.height, msg.width) == (1, 9)
    np.testing.assert_array_equal(pointcloud2_to_array(msg)[0], cloud)


def test_decode_is_a_zero_copy_view():
    dtype, row_padding = LAYOUTS["row_step_padding"]
    msg = raw_msg(random_cloud(dtype, (3, 4)), row_padding)
    view = pointcloud2_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))


def test_invalid_points_become_all_nan():
    dtype = LAYOUTS["xyz_f32_pcl_padding"][0]
    cloud = random_cloud(dtype, (2, 4))
    cloud["x"][0, 0] = np.nan                      # partly NaN
    cloud["z"][0, 1] = np.inf                      # inf
    cloud["y"][1, 2] = -np.inf
    for c in "xyz":
        cloud[c][1, 3] = np.nan                    # fully NaN, as depth cameras send
    xyz = pointcloud2_to_xyz(raw_msg(cloud))
    invalid = np.zeros((2, 4), dtype=bool)
    invalid[0, 0] = invalid[0, 1] = invalid[1, 2] = invalid[1, 3] = True
    assert np.all(np.isnan(xyz[invalid]))
    assert np.all(np.isfinite(xyz[~invalid]))
    assert not np.isinf(xyz).any()


@pytest.mark.parametrize("layout", ["xyzrgb_pcl_32_bytes", "xyz_rgb_u32_intensity", "big_endian"])
def test_packed_rgb_decodes_to_channels(layout):
    dtype, row_padding = LAYOUTS[layout]
    cloud = random_cloud(dtype, (2, 3))
    rgb = np.random.default_rng(5).integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    cloud["rgb"] = packed.view(np.float32) if cloud["rgb"].dtype.kind == "f" else packed
    xyz, colours = pointcloud2_to_xyz_rgb(raw_msg(cloud, row_padding))
    np.testing.assert_array_equal(colours, rgb)
    assert xyz.shape == (2, 3, 3)


def test_separate_rgb_fields_and_no_colour():
    dtype = padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("r", "u1", 12),
                          ("g", "u1", 13), ("b", "u1", 14)], 16)
    cloud = random_cloud(dtype, (2, 2))
    _, colours = pointcloud2_to_xyz_rgb(raw_msg(cloud))
    np.testing.assert_array_equal(colours, np.stack([cloud[c] for c in "rgb"], axis=-1))
    assert pointcloud2_to_xyz_rgb(raw_msg(random_cloud(LAYOUTS["xyz_f64"][0], (2, 2))))[1] is None


@pytest.mark.parametrize("with_rgb", [True, False])
def test_xyz_rgb_to_pointcloud2_round_trip(with_rgb):
    rng = np.random.default_rng(2)
    xyz = rng.uniform(-1, 1, size=(6, 8, 3)).astype(np.float32)
    xyz[2, 3] = np.nan
    rgb = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8) if with_rgb else None
    msg = xyz_rgb_to_pointcloud2(xyz, rgb, Header(frame_id="camera_color_optical_frame"))
    assert (msg.height, msg.width, msg.is_dense) == (6, 8, False)
    assert [f.name for f in msg.fields] == ["x", "y", "z"] + (["rgb"] if with_rgb else [])
    assert all(f.datatype == F32 and f.count == 1 for f in msg.fields)
    assert len(msg.data) == msg.row_step * msg.height
    xyz_back, rgb_back = pointcloud2_to_xyz_rgb(msg)
    np.testing.assert_array_equal(xyz_back, xyz)
    if with_rgb:
        np.testing.assert_array_equal(rgb_back, rgb)
        # PCL / RViz convention: the float's bits are 0x00RRGGBB.
        packed = pointcloud2_to_array(msg)["rgb"].view(np.uint32)
        assert packed[0, 0] == (int(rgb[0, 0, 0]) << 16 | int(rgb[0, 0, 1]) << 8 | int(rgb[0, 0, 2]))
    else:
        assert rgb_back is None


def test_empty_cloud():
    msg = raw_msg(np.zeros((1, 0), dtype=LAYOUTS["xyz_f32_tight"][0]))
    assert pointcloud2_to_xyz(msg).shape == (1, 0, 3)
    _, rgb = pointcloud2_to_xyz_rgb(array_to_pointcloud2(np.zeros(0, dtype=LAYOUTS["xyzrgb_pcl_32_bytes"][0])))
    assert rgb.shape == (1, 0, 3)


# ---------------------------------------------------------------------------- malformed messages


def good_msg() -> PointCloud2:
    return raw_msg(random_cloud(LAYOUTS["xyzrgb_pcl_32_bytes"][0], (2, 3)))


def expect_error(msg, *fragments):
    with pytest.raises(PointCloud2Error) as err:
        pointcloud2_to_xyz(msg)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert isinstance(err.value, ValueError)


def test_data_shorter_than_row_step_times_height():
    msg = good_msg()
    msg.data = msg.data[:-1]
    expect_error(msg, "data has 191 bytes", "192")


def test_data_longer_than_row_step_times_height():
    msg = good_msg()
    msg.data = bytes(msg.data) + b"\0" * 32
    expect_error(msg, "data has 224 bytes", "192")


def test_width_height_not_matching_data():
    msg = good_msg()
    msg.height = 3
    expect_error(msg, "row_step x height")


def test_row_step_smaller_than_width_times_point_step():
    msg = good_msg()
    msg.row_step = 64
    msg.data = bytes(128)
    expect_error(msg, "row_step 64", "width x point_step")


def test_missing_xyz_fields():
    msg = good_msg()
    msg.fields = [f for f in msg.fields if f.name != "z"]
    expect_error(msg, "no z field", "'x', 'y', 'rgb'")


def test_overlapping_fields():
    msg = good_msg()
    msg.fields[1].offset = 2  # y now overlaps x
    expect_error(msg, "overlap", "'x'", "'y'")


def test_field_offset_beyond_point_step():
    msg = good_msg()
    msg.fields[3].offset = 30  # rgb (4 bytes) at 30 in a 32-byte point
    expect_error(msg, "'rgb'", "offset 30", "point_step 32")


@pytest.mark.parametrize("datatype", [0, 9, 42])
def test_unsupported_datatype(datatype):
    msg = good_msg()
    msg.fields[2].datatype = datatype
    expect_error(msg, "'z'", f"unsupported datatype {datatype}")


@pytest.mark.parametrize("count", [0, 3])
def test_count_not_one(count):
    msg = good_msg()
    msg.fields[0].count = count
    expect_error(msg, "'x'", f"count {count}")


def test_duplicate_field_name():
    msg = good_msg()
    msg.fields[3].name = "x"
    expect_error(msg, "'x' appears twice")


@pytest.mark.parametrize("point_step", [0, 65536, 4294967295])
def test_point_step_out_of_range(point_step):
    msg = good_msg()
    msg.point_step = point_step
    expect_error(msg, "point_step must be in [1, 65535] bytes", str(point_step))


@pytest.mark.parametrize("value", [3e38, -3e38, 2e6])
def test_coordinates_no_sensor_measures_are_invalid(value):
    """Beyond MAX_COORDINATE_M a point is NaN like any invalid one: nothing downstream overflows
    (3e38 used to, in the transform to the base frame), and numpy warns about nothing."""
    import warnings

    from equimanip.geometry import pose7_to_matrix, transform_points
    from equimanip.perception.pointcloud2 import MAX_COORDINATE_M

    xyz = np.full((2, 3, 3), 0.5, dtype=np.float32)
    xyz[0, 1] = (value, 0.5, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = pointcloud2_to_xyz(xyz_rgb_to_pointcloud2(xyz, None))
        moved = transform_points(pose7_to_matrix([0.7, 0.0, 0.95, 0.703305, -0.703305, -0.073229, 0.073229]),
                                 decoded)
    assert np.isnan(decoded[0, 1]).all() and np.isnan(moved[0, 1]).all()
    assert np.isfinite(decoded[1]).all() and np.all(np.abs(decoded) <= MAX_COORDINATE_M, where=~np.isnan(decoded))


def test_packed_colour_of_wrong_type():
    dtype = padded_dtype([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("rgb", "f8", 16)], 24)
    with pytest.raises(PointCloud2Error, match="'rgb' must be a packed 4-byte colour"):
        pointcloud2_to_xyz_rgb(raw_msg(random_cloud(dtype, (1, 2))))


def test_encoding_rejects_non_scalar_fields():
    with pytest.raises(PointCloud2Error, match="'normal'"):
        array_to_pointcloud2(np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("normal", "f4", (3,))]))
    with pytest.raises(PointCloud2Error, match="structured"):
        array_to_pointcloud2(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(PointCloud2Error, match="rgb shape"):
        xyz_rgb_to_pointcloud2(np.zeros((2, 2, 3), np.float32), np.zeros((2, 3, 3), np.uint8))
