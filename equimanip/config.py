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


def cell_parameters(names) -> dict:
    """What every node of a cell gets from these parameter files (each a name in config/ or a
    path): their ``/**`` sections, later files winning, flattened to ROS parameter names
    (``{'camera.width': 160, 'camera_pose': [...], 'observation.cluster_eps': 0.02}``). How a
    process without ROS (``equimanip eval``, the experiments) sets up the cell ``equimanip run
    --params`` would start."""
    import yaml

    def flatten(section: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in section.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    params: dict = {}
    for name in names:
        path = config_file(name)
        content = yaml.safe_load(path.read_text()) or {}
        section = content.get("/**", {}) if isinstance(content, dict) else {}
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
            raise ValueError(f"parameter file '{path}': its /** section has no 'ros__parameters' mapping")
        params.update(flatten(section.get("ros__parameters", {})))
    return params


def settings_from_parameters(base, params: dict, prefix: str, skip=()):
    """``base`` (a settings dataclass) with each field ``f`` that ``params`` sets as ``prefix + f``
    (lists become tuples where the field is one); fields in ``skip`` are left as they are."""
    import dataclasses

    changes = {}
    for f in dataclasses.fields(base):
        name = prefix + f.name
        if name in params and f.name not in skip:
            value = params[name]
            changes[f.name] = tuple(value) if isinstance(getattr(base, f.name), tuple) else value
    return dataclasses.replace(base, **changes)
