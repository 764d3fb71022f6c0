"""``equimanip.sim``: the simulation, whose modules live in the repository's top-level ``sim/``.

From the source tree (``pip install -e``, ``colcon build --symlink-install``, a checkout on the
path) this file is the package and points its module search path at ``sim/``, so each module
loads once, as ``equimanip.sim.<name>``. A wheel or a ``colcon build`` copies ``sim/`` here
instead (``package_dir`` in setup.py), and ``sim/__init__.py`` takes this file's place.
"""
import os

__path__ = [os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sim")]
