"""Where the camera is: the transform from a cloud's frame to the robot base frame.

Clouds arrive in the camera's optical frame. A *resolver* answers ``lookup(frame_id, stamp)`` with
the 4 x 4 ``T_base_frame`` that maps points in ``frame_id`` into the base frame, or raises
:class:`FrameError` saying why not, so a node rejects that cloud instead of using it in the wrong
frame.

* :class:`CameraPoseResolver` (no ROS needed): poses set explicitly, from the ``camera_pose``
  parameter ``[x y z qx qy qz qw]`` or from the ``/camera/pose`` topic the simulation publishes.
  A camera is rigidly mounted, so a pose holds for every stamp until it is set again.
* :class:`Tf2Resolver`: wraps a ``tf2_ros.Buffer`` on a full ROS 2 install (tf2_ros has no pip
  wheel, so it is optional and imported only by :func:`make_resolver`).
"""
from __future__ import annotations

import numpy as np

from equimanip.geometry import normalize_frame_id, pose7_to_matrix, quat_xyzw_to_matrix


class FrameError(LookupError):
    """A frame that cannot be resolved into the base frame; the message says which and why."""


class CameraPoseResolver:
    """Frames whose poses in ``base_frame`` were given with :meth:`set_pose`."""

    def __init__(self, base_frame: str = "base_link"):
        if not normalize_frame_id(base_frame):
            raise ValueError("base_frame must be a non-empty frame id")
        self.base_frame = normalize_frame_id(base_frame)
        self._transforms: dict[str, np.ndarray] = {}
        self._stamps: dict[str, float | None] = {}

    def set_pose(self, frame_id: str, pose7, stamp: float | None = None) -> None:
        """Record ``frame_id``'s pose in the base frame (pose7; ValueError if it is not 7 finite
        numbers with a non-zero quaternion). ``stamp`` is kept for diagnostics only."""
        name = normalize_frame_id(frame_id)
        if not name:
            raise FrameError("cannot set the pose of an empty frame_id")
        if name == self.base_frame:
            raise FrameError(f"'{name}' is the base frame; its pose is the identity by definition")
        self._transforms[name] = pose7_to_matrix(pose7)
        self._stamps[name] = stamp

    def known_frames(self) -> list[str]:
        return [self.base_frame, *self._transforms]

    def lookup(self, frame_id: str, stamp=None) -> np.ndarray:
        name = normalize_frame_id(frame_id)
        if not name:
            raise FrameError("the cloud has an empty header.frame_id; cannot tell which frame its points are in")
        if name == self.base_frame:
            return np.eye(4)
        if name not in self._transforms:
            raise FrameError(
                f"no pose known for frame '{name}' (known: {self.known_frames()}); set the camera_pose "
                f"parameter or publish /camera/pose")
        return self._transforms[name].copy()


class Tf2Resolver:
    """``lookup`` through a tf2_ros.Buffer; any tf2 failure becomes a FrameError."""

    def __init__(self, buffer, base_frame: str = "base_link", timeout_s: float = 0.0):
        # No waiting by default: lookups run inside callbacks, and a wait there would stall the
        # node's executor, which is also the one that fills the buffer (see make_resolver).
        self.buffer = buffer
        self.base_frame = normalize_frame_id(base_frame)
        self.timeout_s = timeout_s

    def lookup(self, frame_id: str, stamp=None) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        name = normalize_frame_id(frame_id)
        if not name:
            raise FrameError("the cloud has an empty header.frame_id; cannot tell which frame its points are in")
        if stamp is None:
            when = Time()  # tf2's "latest available"
        elif hasattr(stamp, "sec"):
            when = Time.from_msg(stamp)  # a builtin_interfaces/Time, e.g. the cloud's header.stamp
        else:
            when = Time(nanoseconds=int(round(float(stamp) * 1e9)))
        try:
            tf = self.buffer.lookup_transform(self.base_frame, name, when, timeout=Duration(seconds=self.timeout_s))
        except Exception as exc:  # tf2's LookupException, ExtrapolationException, ... share no base we can import
            raise FrameError(f"tf2 cannot transform '{name}' into '{self.base_frame}': {exc}") from exc
        t, q = tf.transform.translation, tf.transform.rotation
        T = np.eye(4)
        T[:3, :3] = quat_xyzw_to_matrix([q.x, q.y, q.z, q.w])
        T[:3, 3] = [t.x, t.y, t.z]
        return T


def make_resolver(node=None, base_frame: str = "base_link"):
    """A Tf2Resolver listening on ``node`` when tf2_ros imports (a ROS 2 install), else a
    CameraPoseResolver to be fed with ``set_pose``."""
    if node is not None:
        try:
            import tf2_ros
        except ImportError:
            pass
        else:
            buffer = tf2_ros.Buffer()
            resolver = Tf2Resolver(buffer, base_frame)
            # The listener's subscriptions live on ``node`` and are served by its executor; lookups
            # never wait (timeout 0), so no thread of its own is needed.
            resolver.listener = tf2_ros.TransformListener(buffer, node)
            return resolver
    return CameraPoseResolver(base_frame)


class ChainResolver:
    """Asks each resolver in turn; the first that knows the frame answers. Used to prefer tf2 and
    fall back to the camera pose (parameter or topic) where no one publishes that frame on /tf."""

    def __init__(self, *resolvers):
        self.resolvers = [r for r in resolvers if r is not None]

    def lookup(self, frame_id: str, stamp=None) -> np.ndarray:
        reasons = []
        for resolver in self.resolvers:
            try:
                return resolver.lookup(frame_id, stamp)
            except FrameError as e:
                reasons.append(str(e))
        raise FrameError("; ".join(reasons) or f"no resolver for frame '{frame_id}'")
