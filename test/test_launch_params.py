"""The nodes started the way the README and launch/sim.launch.py start them: separate processes of
the installed executables, parameter files first and overrides after. Overrides take effect,
bad configurations stop a node in one line with exit code 2, and Ctrl-C twice stops it cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters
from rclpy.node import Node

from equimanip.config import config_dir, config_file
from equimanip.nodes import qos, topics
from equimanip.nodes.tables import NODE_PARAMETER_TABLES

pytestmark = pytest.mark.ros

BIN = Path(sys.executable).parent   # the console scripts installed next to this Python
ROS_BUILTIN = {"use_sim_time"}


def _start(executable: str, *ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / executable), "--ros-args", *ros_args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(procs, signals: int = 1, timeout_s: float = 15.0) -> list[tuple]:
    """Send Ctrl-C ``signals`` times (as ros2 launch and the terminal together do), then collect
    (exit code, stderr) of each; a process that does not stop is killed (code None)."""
    for _ in range(signals):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout_s)
            results.append((p.returncode, err))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            results.append((None, err))
    return results


class ParameterReader(Node):
    """Reads other nodes' parameters through their get_parameters services, and episode events."""

    def __init__(self, **kw):
        super().__init__("parameter_reader", **kw)
        self.events = []
        self.create_subscription(DiagnosticArray, topics.SIM_EPISODE_EVENTS, self.events.append, qos.RELIABLE)
        self._parameter_clients = {}

    def client(self, node: str):
        if node not in self._parameter_clients:
            self._parameter_clients[node] = self.create_client(GetParameters, f"/{node}/get_parameters")
        return self._parameter_clients[node]

    def read(self, ros, node: str, names: list[str]) -> dict:
        client = self.client(node)
        ros.spin_until(client.service_is_ready, timeout_s=60, what=f"{node} to come up")
        future = client.call_async(GetParameters.Request(names=names))
        ros.spin_until(future.done, what=f"{node}'s parameters")
        values = {}
        for name, value in zip(names, future.result().values):
            # ParameterValue: the field of its type (bool 1, int 2, double 3, string 4).
            values[name] = {1: value.bool_value, 2: value.integer_value, 3: value.double_value,
                            4: value.string_value}.get(value.type)
        return values

    def episodes_ended(self) -> int:
        return sum(status.name == "episode_end" for array in self.events for status in array.status)


def test_the_readme_two_process_example_takes_its_overrides_and_stops_cleanly(ros):
    """sim_node ... -p sync:=true -p auto_reset:=true used to run in real-time mode without resets:
    the file's node section won over the command line. Now the overrides hold, episodes follow one
    another, and two Ctrl-C in a row stop both nodes with exit code 0 and no traceback."""
    params = str(config_file("sim"))
    procs = [_start("sim_node", "--params-file", params, "-p", "task:=reach", "-p", "sync:=true",
                    "-p", "auto_reset:=true", "-p", "seed:=5"),
             _start("expert_node", "--params-file", params, "-p", "task:=reach")]
    try:
        reader = ros.add(ParameterReader(context=ros.context))
        values = reader.read(ros, "sim_node", ["task", "sync", "auto_reset", "seed", "control_period"])
        assert values == {"task": "reach", "sync": True, "auto_reset": True, "seed": 5, "control_period": 0.1}
        assert reader.read(ros, "expert_node", ["task", "use_sim_time"]) == {"task": "reach", "use_sim_time": True}
        ros.spin_until(lambda: reader.episodes_ended() >= 2, timeout_s=90, what="two episodes (auto_reset)")
    finally:
        results = _stop(procs, signals=2)
    for code, err in results:
        assert code == 0 and "Traceback" not in err, err


def test_the_launch_file_arguments_take_effect(ros, tmp_path):
    """What launch/sim.launch.py passes: sim.yaml, the extra file (here side_camera.yaml), then
    its arguments as a /** parameter file (launch_ros writes a dict of parameters that way)."""
    launch_arguments = tmp_path / "launch_params.yaml"
    launch_arguments.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"task": "drawer_opening",
                                                                             "auto_reset": True}}}))
    proc = _start("sim_node", "--params-file", str(config_file("sim")), "--params-file",
                  str(config_file("side_camera")), "--params-file", str(launch_arguments),
                  "-p", "publish_cloud:=false", "-p", "camera.height:=100")
    try:
        reader = ros.add(ParameterReader(context=ros.context))
        values = reader.read(ros, "sim_node", ["task", "auto_reset", "camera.width", "camera.height", "sync"])
    finally:
        (code, err), = _stop([proc])
    assert values == {"task": "drawer_opening", "auto_reset": True, "camera.width": 160, "camera.height": 100,
                      "sync": False}
    assert code == 0, err


@pytest.mark.parametrize("args,reason", [
    (["-p", "task:=juggling"], "must be one of"),
    (["-p", "control_period:=-0.1"], "invalid parameter control_period"),
    (["-p", "seed:=abc"], "invalid parameter seed"),
    (["-p", "physics_hz:=100.0"], "invalid parameter physics_hz"),
    (["-p", "seed:=-3"], "invalid parameter seed"),
    (["--params-file", "no_such_file.yaml"], "parameter file 'no_such_file.yaml' does not exist"),
    (["--params-file", "{tmp}/string.yaml"], "must map node names (or /**) to 'ros__parameters' sections"),
    (["--params-file", "{tmp}/broken.yaml"], "is not readable YAML"),
    (["--params-file", "{tmp}/no_parameters.yaml"], "section 'sim_node' has no 'ros__parameters' mapping"),
])
def test_a_bad_configuration_stops_the_node_in_one_line(tmp_path, args, reason):
    (tmp_path / "string.yaml").write_text('"just a string"\n')
    (tmp_path / "broken.yaml").write_text("sim_node: [1, 2\n")
    (tmp_path / "no_parameters.yaml").write_text("sim_node:\n  seed: 3\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([str(BIN / "sim_node"), "--ros-args", "--params-file", str(config_file("sim")), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("path", sorted(config_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_leave_overridable_parameters_to_the_command_line(path):
    """A node's own section wins over every /** entry, a later -p and a launch argument included,
    so node sections hold only ROS built-ins that nobody overrides; the rest is in /**."""
    for section, body in yaml.safe_load(path.read_text()).items():
        if section.strip("/") in NODE_PARAMETER_TABLES:
            names = set(body["ros__parameters"])
            assert names <= ROS_BUILTIN, f"{path.name}: {section} section names {sorted(names - ROS_BUILTIN)}"
