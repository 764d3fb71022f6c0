"""sensor_msgs/PointCloud2 <-> numpy, for every layout real depth-camera drivers publish.

A PointCloud2 is a byte buffer of ``height`` rows of ``row_step`` bytes; each row holds ``width``
points of ``point_step`` bytes, and ``fields`` say where each named value (x, y, z, rgb, intensity,
normal_x ...) sits inside a point and what type it is. Rows and points may carry padding bytes.

Decoding builds a numpy *structured dtype* from the fields (names, types, byte offsets, itemsize =
point_step, byte order from ``is_bigendian``) and lays it over ``msg.data`` with explicit strides
``(row_step, point_step)``: a zero-copy (height, width) view for every valid layout. Everything else
(x/y/z as one float array, colours) is sliced from that view with vectorised numpy only.

Every way a message can be malformed raises :class:`PointCloud2Error` (a ValueError) naming what is
wrong, before any point is read, so a node can log and drop the cloud rather than crash or use
garbage.

Only the two *encoding* functions need ROS message classes; they import sensor_msgs / std_msgs when
called, so decoding works on any object with the PointCloud2 attributes (no ROS install needed).
"""
from __future__ import annotations

import array
import sys

import numpy as np

# sensor_msgs/PointField datatype constants (fixed by the message definition) -> numpy type codes.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
_NUMPY_OF_DATATYPE = {
    INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2",
    INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8",
}
_DATATYPE_OF_NUMPY = {np.dtype(code).str[1:]: datatype for datatype, code in _NUMPY_OF_DATATYPE.items()}
_DATATYPE_NAMES = {
    INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16",
    INT32: "INT32", UINT32: "UINT32", FLOAT32: "FLOAT32", FLOAT64: "FLOAT64",
}

_NATIVE_IS_BIG = sys.byteorder == "big"

# Largest point (bytes) a cloud may declare: far beyond any driver's layout, and small enough for
# numpy's strides (a point_step of 2^32 - 1 made numpy fail with "integer won't fit into a C int").
MAX_POINT_STEP = 65535
# Coordinates (m) beyond this are not measurements (no depth sensor sees a thousand kilometres) and
# would overflow float32 in the transforms that follow (3e38 did): such points are invalid, like NaN.
MAX_COORDINATE_M = 1e6


class PointCloud2Error(ValueError):
    """A PointCloud2 that cannot be decoded (or an array that cannot be encoded); the message says why."""


# --------------------------------------------------------------------------------------- decoding


def fields_to_dtype(fields, point_step: int, is_bigendian: bool = False) -> np.dtype:
    """The structured dtype of one point: one named entry per field at its byte offset, itemsize
    ``point_step`` (so padding bytes are skipped). Raises PointCloud2Error for unsupported datatypes,
    ``count != 1``, empty or repeated names, fields outside the point, or overlapping fields."""
    if not 0 < point_step <= MAX_POINT_STEP:
        raise PointCloud2Error(f"point_step must be in [1, {MAX_POINT_STEP}] bytes, got {point_step}")
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in fields:
        name = field.name
        if not name:
            raise PointCloud2Error("a field has an empty name")
        if name in names:
            raise PointCloud2Error(f"field '{name}' appears twice")
        if field.datatype not in _NUMPY_OF_DATATYPE:
            raise PointCloud2Error(
                f"field '{name}' has unsupported datatype {field.datatype} "
                f"(supported: 1-8, INT8 .. FLOAT64)")
        if field.count != 1:
            raise PointCloud2Error(
                f"field '{name}' has count {field.count}; only count 1 is supported")
        fmt = np.dtype(order + _NUMPY_OF_DATATYPE[field.datatype])
        if field.offset < 0 or field.offset + fmt.itemsize > point_step:
            raise PointCloud2Error(
                f"field '{name}' ({_DATATYPE_NAMES[field.datatype]}) at offset {field.offset} "
                f"does not fit in point_step {point_step}")
        names.append(name)
        formats.append(fmt)
        offsets.append(field.offset)
    # Overlap check: sorted by offset, each field must end before the next one starts.
    spans = sorted((off, off + fmt.itemsize, name) for name, fmt, off in zip(names, formats, offsets))
    for (_, end, name), (start, _, next_name) in zip(spans, spans[1:]):
        if start < end:
            raise PointCloud2Error(f"fields '{name}' and '{next_name}' overlap")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def _check_layout(msg) -> None:
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height < 0 or width < 0:
        raise PointCloud2Error(f"negative size: height {height}, width {width}")
    if row_step < width * point_step:
        raise PointCloud2Error(
            f"row_step {row_step} is smaller than width x point_step = {width} x {point_step}")
    if len(msg.data) != row_step * height:
        raise PointCloud2Error(
            f"data has {len(msg.data)} bytes; row_step x height = {row_step} x {height} "
            f"= {row_step * height} expected")


def _data_buffer(msg) -> np.ndarray:
    """msg.data as a flat uint8 array, without copying when it supports the buffer protocol
    (rclpy stores uint8[] as array.array('B'); bytes also works)."""
    data = msg.data
    if isinstance(data, (bytes, bytearray, memoryview, array.array, np.ndarray)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)  # a plain list: one copy, still no Python loop of ours


def pointcloud2_to_array(msg) -> np.ndarray:
    """The cloud as a structured array shaped (height, width), one named entry per field.

    A zero-copy view over ``msg.data`` (strides ``(row_step, point_step)``), so it shares memory
    with the message: copy it before modifying either. Values read with the message's byte order.
    """
    dtype = fields_to_dtype(msg.fields, int(msg.point_step), bool(msg.is_bigendian))
    _check_layout(msg)
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=_data_buffer(msg),
                      strides=(int(msg.row_step), int(msg.point_step)))


def _field(msg, name):
    for field in msg.fields:
        if field.name == name:
            return field
    return None


def _require_xyz(msg):
    missing = [name for name in ("x", "y", "z") if _field(msg, name) is None]
    if missing:
        present = [field.name for field in msg.fields]
        raise PointCloud2Error(f"no {'/'.join(missing)} field(s); the cloud has {present}")


def pointcloud2_to_xyz(msg, dtype=np.float32) -> np.ndarray:
    """x, y, z as a new (height, width, 3) array of ``dtype`` (height 1 for unorganized clouds).

    A point with any NaN or infinite coordinate, or one beyond ``MAX_COORDINATE_M``, becomes
    all-NaN: invalid points are NaN, and only NaN, downstream. The memory is planar (the array is a
    transposed view of a C-contiguous (3, height, width) block), so ``xyz[..., k]`` is contiguous:
    filling three planes from the field views and the vectorised crop / transform after it are
    several times faster that way than with interleaved x y z. Use ``np.ascontiguousarray`` where
    interleaved memory is needed.
    """
    structured = pointcloud2_to_array(msg)  # validates the whole layout first
    _require_xyz(msg)
    planes = np.empty((3,) + structured.shape, dtype=dtype)
    valid = None
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: invalid below
        for plane, name in zip(planes, ("x", "y", "z")):
            plane[...] = structured[name]  # strided read; converts byte order and float64 -> dtype
            plausible = np.abs(plane) <= MAX_COORDINATE_M  # False for NaN and inf too
            valid = plausible if valid is None else valid & plausible
    invalid = np.flatnonzero(~valid)
    if invalid.size:
        planes.reshape(3, -1)[:, invalid] = np.nan
    return planes.transpose(1, 2, 0)


def _rgb_from_packed(msg, field) -> np.ndarray:
    """Unpack a PCL-style packed colour (0x00RRGGBB in a FLOAT32 or UINT32/INT32) to (H, W, 3) uint8
    with a strided byte view: in little-endian memory the bytes are B, G, R, A, so R, G, B are the
    bytes at offsets +2, +1, +0 (stride -1); big-endian stores A, R, G, B (+1, +2, +3)."""
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        return np.zeros((height, width, 3), dtype=np.uint8)
    if msg.is_bigendian:
        start, step = field.offset + 1, 1
    else:
        start, step = field.offset + 2, -1
    view = np.ndarray(shape=(height, width, 3), dtype=np.uint8, buffer=_data_buffer(msg),
                      offset=start, strides=(int(msg.row_step), int(msg.point_step), step))
    return view.copy()


def pointcloud2_to_xyz_rgb(msg):
    """``(xyz, rgb)``: xyz as in :func:`pointcloud2_to_xyz` (float32) and rgb (height, width, 3)
    uint8, or None when the cloud has no colour. Colour comes from a packed ``rgb`` / ``rgba`` field
    (FLOAT32, UINT32 or INT32, the PCL / RViz convention) or from separate ``r``, ``g``, ``b`` fields."""
    xyz = pointcloud2_to_xyz(msg)
    packed = _field(msg, "rgb") or _field(msg, "rgba")
    if packed is not None:
        if packed.datatype not in (FLOAT32, UINT32, INT32):
            raise PointCloud2Error(
                f"field '{packed.name}' must be a packed 4-byte colour (FLOAT32 or UINT32), "
                f"got {_DATATYPE_NAMES[packed.datatype]}")
        return xyz, _rgb_from_packed(msg, packed)
    if all(_field(msg, c) is not None for c in "rgb"):
        structured = pointcloud2_to_array(msg)
        return xyz, np.stack([structured[c] for c in "rgb"], axis=-1).astype(np.uint8)
    return xyz, None


# --------------------------------------------------------------------------------------- encoding


def _make_msg(header, height, width, fields, point_step, is_bigendian, is_dense, data_bytes):
    from sensor_msgs.msg import PointCloud2, PointField
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = [PointField(name=name, offset=int(offset), datatype=int(datatype), count=1)
                  for name, offset, datatype in fields]
    msg.is_bigendian = bool(is_bigendian)
    msg.point_step = int(point_step)
    msg.row_step = int(point_step * width)
    msg.is_dense = bool(is_dense)
    # rclpy keeps uint8[] as array.array('B'); handing it one skips the per-byte type check that
    # its setter runs on any other sequence (seconds for a 5 MB cloud).
    data = array.array("B")
    data.frombytes(data_bytes)
    msg.data = data
    return msg


def array_to_pointcloud2(points: np.ndarray, header=None, is_dense: bool = False):
    """A PointCloud2 holding a structured array: shape (height, width) for an organized cloud, or
    (N,) for an unorganized one (height 1). Field offsets, padding (itemsize = point_step) and byte
    order are kept, so any layout :func:`pointcloud2_to_array` reads round-trips. Fields must be
    scalars of the eight PointField types (raises PointCloud2Error otherwise)."""
    points = np.asarray(points)
    if points.dtype.names is None:
        raise PointCloud2Error("array_to_pointcloud2 needs a structured array (one named field per value)")
    if points.ndim == 1:
        points = points.reshape(1, -1)
    if points.ndim != 2:
        raise PointCloud2Error(f"expected shape (N,) or (height, width), got {points.shape}")
    orders = set()
    fields = []
    for name in points.dtype.names:
        fmt, offset = points.dtype.fields[name][:2]
        if fmt.subdtype is not None or fmt.str[1:] not in _DATATYPE_OF_NUMPY:
            raise PointCloud2Error(f"field '{name}' has type {fmt}; only scalar int8..float64 fields can be encoded")
        if fmt.itemsize > 1:
            orders.add(fmt.byteorder if fmt.byteorder in "<>" else ("<" if not _NATIVE_IS_BIG else ">"))
        fields.append((name, offset, _DATATYPE_OF_NUMPY[fmt.str[1:]]))
    if len(orders) > 1:  # mixed byte orders cannot be described by one is_bigendian flag
        points = points.astype(points.dtype.newbyteorder("="))
        orders = {">" if _NATIVE_IS_BIG else "<"}
    is_bigendian = orders == {">"}
    contiguous = np.ascontiguousarray(points)
    return _make_msg(header, points.shape[0], points.shape[1], fields, points.dtype.itemsize,
                     is_bigendian, is_dense, contiguous.view(np.uint8).reshape(-1))


def xyz_rgb_to_pointcloud2(xyz: np.ndarray, rgb: np.ndarray | None, header=None):
    """An organized PointCloud2 from (H, W, 3) float32 points and optional (H, W, 3) uint8 colours.

    Fields x, y, z FLOAT32 at 0, 4, 8, plus ``rgb`` at 12 packed as a FLOAT32 holding 0x00RRGGBB
    (the PCL / RViz convention); point_step 12 or 16, native byte order, is_dense False (NaN points
    are kept so the cloud stays organized). One buffer fill and one copy into the message."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise PointCloud2Error(f"xyz must be (height, width, 3), got {xyz.shape}")
    height, width = xyz.shape[:2]
    fields = [("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32)]
    if rgb is None:
        buffer = np.ascontiguousarray(xyz, dtype=np.float32)
    else:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape:
            raise PointCloud2Error(f"rgb shape {rgb.shape} does not match xyz shape {xyz.shape}")
        buffer = np.empty((height, width, 4), dtype=np.float32)
        buffer[..., :3] = xyz
        colour_bytes = buffer.view(np.uint8)[..., 12:16]  # the 4 bytes of the rgb float
        if _NATIVE_IS_BIG:   # A R G B
            colour_bytes[..., 0] = 0
            colour_bytes[..., 1:] = rgb
        else:                # B G R A
            colour_bytes[..., 2::-1] = rgb
            colour_bytes[..., 3] = 0
        fields.append(("rgb", 12, FLOAT32))
    point_step = 4 * len(fields)
    return _make_msg(header, height, width, fields, point_step, _NATIVE_IS_BIG, False,
                     buffer.view(np.uint8).reshape(-1))
