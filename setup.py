"""equimanip: ament_python package, also installable with plain pip.

The simulation lives in the top-level ``sim/`` folder of the repository (worlds, tasks, assets,
experts, the simulation node) and installs as ``equimanip.sim``, so that no generic top-level
module named ``sim`` lands in site-packages. Built installs (pip install, colcon build) copy
``sim/`` to ``equimanip/sim`` through ``package_dir``. Source installs (pip install -e, colcon
build --symlink-install, which only link top-level packages) find the small
``equimanip/sim/__init__.py`` of the source tree, which points the package at ``sim/``. Either way
each module loads once, as ``equimanip.sim.<name>``; ``sim/__init__.py`` refuses to be imported
as a top-level ``sim``.
"""
import os
from glob import glob

from setuptools import find_packages, setup

package_name = "equimanip"


# Pip wheels of ROS 2 Kilted, for machines without a ROS installation. Inside a ROS workspace
# colcon uses the system's rclpy and these are not needed (package.xml lists them as exec_depend).
ros_wheels = [
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",
    "ros-builtin-interfaces",
    "ros-rosgraph-msgs",
    "ros-std-msgs",
    "ros-std-srvs",
    "ros-geometry-msgs",
    "ros-sensor-msgs",
    "ros-trajectory-msgs",
    "ros-diagnostic-msgs",
    "ros-nav-msgs",         # mppi_node's planned path (nav_msgs/Path)
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["equimanip", "equimanip.*"], exclude=["equimanip.sim"])
    + ["equimanip.sim", "equimanip.sim.tasks"],
    package_dir={"equimanip.sim": "sim"},
    # The policies shipped for `equimanip run --controller policy` without --checkpoint (make checkpoints).
    package_data={"equimanip.sim": ["assets/*.urdf"], "equimanip": ["checkpoints/*.pt", "checkpoints/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        (os.path.join("share", package_name, "launch"), glob("launch/*.launch.py")),
        (os.path.join("share", package_name, "config"), glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "scipy",
        "torch>=2.1",
        "escnn",
        "open3d",
        "pybullet",
        "transforms3d",
        "pyyaml",
        "imageio",
        "pillow",
        "tqdm",
        "mcap",
        "mcap-ros2-support",
        "gymnasium>=1.0",     # equimanip.envs: the tasks as Gymnasium environments
        "matplotlib",         # learning curves and results plots
    ],
    extras_require={
        "ros": ros_wheels,
        "test": ["pytest", "pytest-timeout", "hypothesis", "ruff", "rosbags"],
        "bench": ["panda-gym", "pytorch-mppi"],
    },
    zip_safe=True,
    maintainer="equimanip developers",
    maintainer_email="equimanip@example.org",
    description="Equivariant learned manipulation (Equivariant SAC, BMIL, equivariant MPPI) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "equimanip = equimanip.cli:main",
            "sim_node = equimanip.sim.sim_node:main",
            "expert_node = equimanip.sim.expert_node:main",
            "perception_node = equimanip.nodes.perception_node:main",
            "policy_node = equimanip.nodes.policy_node:main",
            "mppi_node = equimanip.nodes.mppi_node:main",
            "recorder_node = equimanip.nodes.recorder_node:main",
            "teleop_keyboard = equimanip.nodes.teleop_keyboard:main",
        ],
    },
)
