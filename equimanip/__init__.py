"""equimanip: equivariant learned manipulation for ROS 2.

Layers (each imports only the ones above it):

* ``equimanip.geometry``   poses, quaternions, frames (pure numpy)
* ``equimanip.perception`` PointCloud2 decoding, heightmaps, object-centric state, the Observation
* ``equimanip.sim``        PyBullet worlds, tasks, scripted experts (a plain Python API), and the
                           simulation / expert nodes that put them behind ROS topics
* ``equimanip.nodes``      the shared rclpy scaffolding: parameters, QoS, safety, synchronisation
* ``equimanip.cli``        the ``equimanip`` command (run, bench)
"""
__version__ = "0.1.0"
