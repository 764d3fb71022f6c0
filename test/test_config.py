"""The parameter files: every key is a real parameter, valid, and sim.yaml says the code's defaults."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from equimanip.config import cell_parameters, config_dir, config_file
from equimanip.nodes.params import markdown_table
from equimanip.nodes.tables import NODE_PARAMETER_TABLES, README_TABLES
from equimanip.sim.camera import SIDE_CAMERA, CameraConfig

NODE_PARAMS = {node: {s.name: s for s in specs} for node, specs in NODE_PARAMETER_TABLES.items()}
ROS_BUILTIN = {"use_sim_time"}


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _sections(path):
    data = yaml.safe_load(path.read_text())
    for node, body in data.items():
        assert set(body) == {"ros__parameters"}, f"{path.name}: {node} must hold ros__parameters"
        yield node, dict(_flatten(body["ros__parameters"]))


@pytest.mark.parametrize("path", sorted(config_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_every_key_is_a_declared_valid_parameter(path):
    for node, params in _sections(path):
        targets = NODE_PARAMS.values() if node == "/**" else [NODE_PARAMS[node]]
        for name, value in params.items():
            if name in ROS_BUILTIN:
                continue
            owners = [t[name] for t in targets if name in t]
            assert owners, f"{path.name}: '{name}' is not a parameter of {node}"
            for spec in owners:
                assert spec.check(value) is None, f"{path.name}: {spec.check(value)}"


def test_sim_yaml_holds_the_code_defaults():
    for node, params in _sections(config_file("sim")):
        targets = NODE_PARAMS.values() if node == "/**" else [NODE_PARAMS[node]]
        for name, value in params.items():
            for t in targets:
                if name in t:
                    assert np.allclose(value, t[name].default, atol=1e-6) if isinstance(value, (list, float)) \
                        else value == t[name].default, f"sim.yaml {name}={value} but code says {t[name].default}"


def test_side_camera_yaml_is_the_side_camera_preset():
    params = dict(next(_sections(config_file("side_camera")))[1])
    assert np.allclose(params["camera_pose"], SIDE_CAMERA.pose, atol=1e-5)
    assert (params["camera.width"], params["camera.height"]) == (SIDE_CAMERA.width, SIDE_CAMERA.height)
    assert params["camera.fov_deg"] == SIDE_CAMERA.fov_deg


def test_cell_parameters_read_the_shared_sections_and_later_files_win(tmp_path):
    """What `equimanip eval --params` and the experiments read: the /** sections, flattened, in order."""
    mine = tmp_path / "my_cell.yaml"
    mine.write_text("/**:\n  ros__parameters:\n    camera:\n      width: 200\n"
                    "sim_node:\n  ros__parameters:\n    camera:\n      height: 10\n")
    params = cell_parameters(["sim", "side_camera", str(mine)])
    assert params["task"] == "block_picking" and params["observation.cluster_eps"] == 0.02
    assert (params["camera.width"], params["camera.height"]) == (200, 120)     # a node's own section: not shared
    camera = CameraConfig.from_parameters(cell_parameters(["side_camera"]))
    np.testing.assert_allclose(camera.pose, SIDE_CAMERA.pose, atol=1e-5)
    assert camera == CameraConfig(**{**SIDE_CAMERA.__dict__, "pose": camera.pose})
    assert CameraConfig.from_parameters({}) == CameraConfig()
    with pytest.raises(ValueError, match="image size"):
        CameraConfig.from_parameters({"camera.width": -1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters: 3\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        cell_parameters([str(bad)])
    with pytest.raises(FileNotFoundError, match="available"):
        cell_parameters(["no_such_setup"])


def test_missing_parameter_file_names_the_alternatives():
    with pytest.raises(FileNotFoundError, match="available: .*sim"):
        config_file("no_such_setup")


def test_every_parameter_is_in_a_readme_table():
    documented = {s.name for specs in README_TABLES.values() for s in specs}
    for node, specs in NODE_PARAMETER_TABLES.items():
        missing = [s.name for s in specs if s.name not in documented]
        assert not missing, f"{node}: {missing} are in no README table"


def test_readme_parameter_tables_match_the_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for node, specs in README_TABLES.items():
        block = f"<!-- params:{node} -->\n{markdown_table(specs)}\n<!-- /params -->"
        assert block in readme, f"the {node} table is out of date: run scripts/update_readme_tables.py"
