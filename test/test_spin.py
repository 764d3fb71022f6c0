"""The ``main()`` all node executables share (equimanip/nodes/spin.py): how a node process stops.

Each test runs a small node in a process of its own, as its executable would, and signals it."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros

# A node whose timer callback sends its own process Ctrl-C and then goes on working, standing for a
# callback (or rclpy taking a message) that a Ctrl-C from outside catches half-way.
SIGNALS_ITSELF = textwrap.dedent("""
    import os, signal, sys
    from rclpy.node import Node
    from equimanip.nodes.spin import spin_node

    class SignalsItself(Node):
        def __init__(self):
            super().__init__("signals_itself")
            self.create_timer(0.05, self.tick)

        def tick(self):
            os.kill(os.getpid(), signal.{signal})
            sum(range(300_000))                     # Python work after the signal
            with open(sys.argv[1], "a") as f:
                f.write("finished ")

    spin_node(SignalsItself, sys.argv[:1])
""")

# A node that takes long to start (as one loading a network does) and is stopped meanwhile.
SLOW_START = textwrap.dedent("""
    import sys, time
    from rclpy.node import Node
    from equimanip.nodes.spin import spin_node

    class SlowStart(Node):
        def __init__(self):
            super().__init__("slow_start")
            print("starting", flush=True)
            time.sleep(30)
            print("started", flush=True)

    spin_node(SlowStart, sys.argv[:1])
""")

# A node whose one callback never returns.
HANGS = textwrap.dedent("""
    import sys, time
    from rclpy.node import Node
    from equimanip.nodes.spin import spin_node

    class Hangs(Node):
        def __init__(self):
            super().__init__("hangs")
            self.create_timer(0.05, self.hang)

        def hang(self):
            print("hanging", flush=True)
            while True:
                time.sleep(0.05)

    spin_node(Hangs, sys.argv[:1])
""")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_lets_the_running_callback_finish(tmp_path, sig):
    """Before, Ctrl-C raised KeyboardInterrupt at whatever line ran: inside rclpy's message
    taking pybind11 turned it into "RuntimeError: Unable to convert call argument '0'", a
    traceback and exit code 1 (seen in CI). Now the signal only shuts the context down: the
    callback finishes, the spin ends, the process exits 0 without a traceback."""
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", SIGNALS_ITSELF.replace("{signal}", sig), str(marker)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert marker.read_text().startswith("finished")


def test_ctrl_c_while_starting_stops_the_node_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_START], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "starting"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "started" not in out


def test_a_second_ctrl_c_stops_a_node_whose_callback_hangs():
    """The first Ctrl-C only shuts the context down, which a hung callback never sees; one more
    after StopSignals.INSIST_S interrupts the callback, and the node still exits cleanly."""
    from equimanip.nodes.spin import StopSignals
    proc = subprocess.Popen([sys.executable, "-c", HANGS], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "hanging"
        proc.send_signal(signal.SIGINT)
        time.sleep(StopSignals.INSIST_S + 0.5)
        assert proc.poll() is None                  # still in the callback
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
