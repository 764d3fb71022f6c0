"""Small helpers shared by the ``equimanip bench ...`` scripts.

Benchmarks report medians over repeated runs (robust to the odd slow run on a shared machine) and,
with ``--json``, end with exactly one JSON object on the last line so scripts can parse it.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return each run's milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    return statistics.median(time_ms(fn, repeats, warmup))


def machine_info() -> dict:
    """Where a number was measured: put this next to every figure that leaves the machine."""
    info = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def print_report(title: str, rows: list[tuple[str, str]], results: dict, as_json: bool) -> None:
    """Print a two-column table, then (with ``as_json``) the results as one JSON line."""
    print(title)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if as_json:
        print(json.dumps({**results, "machine": machine_info()}, sort_keys=True))


def private_domain() -> int:
    """A ROS domain for a benchmark's graph, away from the tests' (1-101) and other runs."""
    import random
    return random.randint(102, 200)


@contextlib.contextmanager
def node_process(executable: str, ros_args: list[str], domain: int):
    """Run one of equimanip's node executables (from this Python's bin folder) in a process of
    its own on ``domain`` with localhost discovery, as ``ros2 launch`` would; stopped with Ctrl-C
    (then killed if it does not stop within 15 s) when the block ends."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    process = subprocess.Popen([str(Path(sys.executable).with_name(executable)), "--ros-args", *ros_args], env=env)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
