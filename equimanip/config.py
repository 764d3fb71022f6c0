"""Where the package's parameter files are, however it was installed.

The same config/*.yaml files serve ``ros2 launch`` (installed to share/equimanip/config by colcon),
the node executables (``--ros-args --params-file``) and the in-process ``equimanip run``.
"""
from __future__ import annotations

import sys
from pathlib import Path


def config_dir() -> Path:
    candidates = []
    try:  # a ROS install or a colcon workspace
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory("equimanip")) / "config")
    except Exception:  # noqa: BLE001 - not on a ROS path: try the others
        pass
    candidates.append(Path(sys.prefix) / "share" / "equimanip" / "config")  # pip install
    candidates.append(Path(__file__).resolve().parent.parent / "config")     # source checkout
    for path in candidates:
        if (path / "sim.yaml").is_file():
            return path
    raise FileNotFoundError("equimanip's config/ folder was not found; looked in "
                            + ", ".join(str(c) for c in candidates))


def config_file(name: str) -> Path:
    """``name`` may be a path, or a file name (with or without .yaml) in the config folder."""
    path = Path(name)
    if path.is_file():
        return path
    path = config_dir() / (name if name.endswith(".yaml") else name + ".yaml")
    if not path.is_file():
        available = sorted(p.stem for p in config_dir().glob("*.yaml"))
        raise FileNotFoundError(f"no parameter file '{name}'; available: {', '.join(available)}")
    return path


def fastdds_profile() -> Path:
    """The Fast DDS profile for large messages (config/fastdds_large_messages.xml): shared memory
    that holds whole point clouds. Its comments say when and how to use it."""
    return config_dir() / "fastdds_large_messages.xml"
