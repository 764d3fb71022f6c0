"""ROS 2 message definitions as rosbag2 stores them in MCAP schemas, from the installed .msg files.

An MCAP file written by rosbag2 carries, for each topic type, a schema named ``pkg/msg/Type``
(encoding ``ros2msg``) whose text is the type's own ``.msg`` file followed by every type it uses,
each after a line of 80 ``=`` and a ``MSG: pkg/Type`` line. Readers (``ros2 bag``, Foxglove,
mcap-ros2-support, rosbags) decode messages with that text alone.

The text comes from the real definitions that ship with the message packages
(``share/<pkg>/msg/<Type>.msg``, in a ROS install under each ``AMENT_PREFIX_PATH`` entry and with the
pip wheels under the environment's prefix), never from hand-written copies.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

SEPARATOR = "=" * 80

# Built-in field types of the ROS 2 interface language (no .msg file behind them).
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring",
}


class MessageDefinitionError(LookupError):
    """A message type whose definition cannot be found or is malformed; the text says which."""


def share_dirs() -> list[Path]:
    """Where ``share/<pkg>`` folders may be: every AMENT_PREFIX_PATH entry, then this environment."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [sys.prefix, sys.base_prefix]
    seen, out = set(), []
    for prefix in prefixes:
        share = Path(prefix) / "share"
        if share.is_dir() and share not in seen:
            seen.add(share)
            out.append(share)
    return out


def split_type(type_name: str) -> tuple[str, str]:
    """``'sensor_msgs/msg/PointCloud2'`` or ``'sensor_msgs/PointCloud2'`` -> ``('sensor_msgs', 'PointCloud2')``."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise MessageDefinitionError(f"'{type_name}' is not a message type name (expected pkg/msg/Type)")


def full_type_name(type_name: str) -> str:
    """The ``pkg/msg/Type`` form rosbag2 uses as a topic's type and schema name."""
    pkg, name = split_type(type_name)
    return f"{pkg}/msg/{name}"


@functools.lru_cache(maxsize=None)
def msg_file_text(type_name: str) -> str:
    """The text of ``pkg/msg/Type.msg`` as installed."""
    pkg, name = split_type(type_name)
    for share in share_dirs():
        path = share / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    searched = ", ".join(str(s) for s in share_dirs()) or "(none)"
    raise MessageDefinitionError(
        f"no definition of {pkg}/msg/{name}: {pkg}/msg/{name}.msg is in none of {searched}; "
        f"install the message package (pip: ros-{pkg.replace('_', '-')}, or source a ROS 2 setup)")


_FIELD = re.compile(r"^\s*([A-Za-z][\w/]*)(?:<=\d+)?(\[[^\]]*\])?\s+([A-Za-z]\w*)(\s*=)?")


def dependencies(type_name: str) -> list[str]:
    """The message types (``pkg/Type``) that ``type_name``'s fields use directly, in order."""
    pkg, _ = split_type(type_name)
    out = []
    for line in msg_file_text(type_name).splitlines():
        line = line.split("#", 1)[0]
        match = _FIELD.match(line)
        if not match or match.group(4):      # not a field, or a constant (NAME=value)
            continue
        base = match.group(1)
        if base in PRIMITIVES:
            continue
        dep = base if "/" in base else f"{pkg}/{base}"
        dep_pkg, dep_name = split_type(dep)
        dep = f"{dep_pkg}/{dep_name}"
        if dep not in out:
            out.append(dep)
    return out


@functools.lru_cache(maxsize=None)
def schema_text(type_name: str) -> str:
    """The full definition of ``type_name`` with every type it depends on (depth first, each once),
    in the ``ros2msg`` form rosbag2 writes into MCAP schemas."""
    pkg, name = split_type(type_name)
    order: list[str] = []

    def visit(t: str) -> None:
        for dep in dependencies(t):
            if dep not in order:
                order.append(dep)
                visit(dep)

    visit(f"{pkg}/{name}")
    parts = [msg_file_text(f"{pkg}/{name}").rstrip("\n")]
    for dep in order:
        parts.append(f"{SEPARATOR}\nMSG: {dep}\n{msg_file_text(dep).rstrip(chr(10))}")
    return "\n".join(parts) + "\n"


def first_field(type_name: str) -> tuple[str, str]:
    """(type, name) of the first field of ``type_name`` (constants and comments skipped)."""
    for line in msg_file_text(type_name).splitlines():
        match = _FIELD.match(line.split("#", 1)[0])
        if match and not match.group(4):
            return match.group(1) + (match.group(2) or ""), match.group(3)
    raise MessageDefinitionError(f"{type_name} has no fields")


def starts_with_header(type_name: str) -> bool:
    """Whether a message of ``type_name`` begins with a std_msgs/Header (its stamp then sits at a
    fixed place in the CDR bytes)."""
    return first_field(type_name) == ("std_msgs/Header", "header")
