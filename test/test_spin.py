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

def node_script(name: str, body: str) -> str:
    """A Python program that runs through spin_node, as a node executable's main() does, the node
    class ``Node_`` whose __init__ goes on with ``body`` (indented as in the class: 8 spaces for
    __init__'s lines, 4 for further methods)."""
    return textwrap.dedent("""
        import os, signal, sys, time
        from rclpy.node import Node
        from equimanip.nodes.spin import spin_node

        class Node_(Node):
            def __init__(self):
                super().__init__("{name}")
        {body}
        spin_node(Node_, sys.argv[:1])
    """).replace("{name}", name).replace("{body}\n", body.lstrip("\n"))


# A node whose timer callback sends its own process Ctrl-C and then goes on working, standing for a
# callback (or rclpy taking a message) that a Ctrl-C from outside catches half-way.
SIGNALS_ITSELF = node_script("signals_itself", """
        self.create_timer(0.05, self.tick)

    def tick(self):
        os.kill(os.getpid(), signal.{signal})
        sum(range(300_000))                     # Python work after the signal
        with open(sys.argv[1], "a") as f:
            f.write("finished ")
""")

# A node that takes long to start (as one loading a network does) and is stopped meanwhile.
SLOW_START = node_script("slow_start", """
        print("starting", flush=True)
        time.sleep(30)
        print("started", flush=True)
""")

# A node whose one callback never returns.
HANGS = node_script("hangs", """
        self.create_timer(0.05, self.hang)

    def hang(self):
        print("hanging", flush=True)
        while True:
            time.sleep(0.05)
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


def interrupt(script: str, ready: str, waits: list[float]) -> tuple:
    """Run ``script``; once it prints ``ready``, send it Ctrl-C after each of ``waits`` seconds
    (it must still be running each time). Its (exit code, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == ready
        for wait in waits:
            time.sleep(wait)
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def test_ctrl_c_while_starting_stops_the_node_without_a_traceback():
    code, out, err = interrupt(SLOW_START, "starting", [0.2])
    assert code == 0 and "Traceback" not in err, err
    assert "started" not in out


def test_a_second_ctrl_c_stops_a_node_whose_callback_hangs():
    """The first Ctrl-C only shuts the context down, which a hung callback never sees; one more
    after StopSignals.INSIST_S interrupts the callback, and the node still exits cleanly."""
    from equimanip.nodes.spin import StopSignals
    code, _, err = interrupt(HANGS, "hanging", [0.0, StopSignals.INSIST_S + 0.5])
    assert code == 0 and "Traceback" not in err, err
