"""PyBullet, imported once without its start-up banner.

Importing pybullet prints "pybullet build time: ..." on stderr, from C, before anything else runs:
in every node's log, and as a second line under a node's one-line refusal of a bad parameter
file. The simulation imports pybullet from here, with stderr closed for the length of the import.
"""
import os
import sys


def _import_quietly():
    try:
        stderr = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        import pybullet
        return pybullet
    sys.stderr.flush()
    saved, devnull = os.dup(stderr), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stderr)
    try:
        import pybullet
    finally:
        os.dup2(saved, stderr)
        os.close(saved)
        os.close(devnull)
    return pybullet


p = _import_quietly()
