"""perception_node over DDS: the simulated block seen where it is, bad clouds refused."""
import numpy as np
import pytest
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, PointCloud2
from std_msgs.msg import Float32MultiArray

from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.perception_node import PerceptionNode
from equimanip.perception.object_state import object_state_layout
from equimanip.sim.sim_node import SimNode

pytestmark = pytest.mark.ros


class Listener(Node):
    def __init__(self, **kw):
        super().__init__("listener", **kw)
        self.heightmaps, self.states, self.objects = [], [], []
        self.create_subscription(Image, "/perception_node/heightmap", self.heightmaps.append, qos.SENSOR)
        self.create_subscription(Float32MultiArray, "/perception_node/object_state", self.states.append, qos.RELIABLE)
        self.create_subscription(PoseArray, "/perception_node/objects", self.objects.append, qos.RELIABLE)
        self.cloud = self.create_publisher(PointCloud2, topics.CLOUD, qos.SENSOR)
        self.ee = self.create_publisher(PoseStamped, topics.EE_POSE, qos.RELIABLE)
        self.joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.RELIABLE)


@pytest.fixture
def cell(ros):
    sim = ros.node(SimNode, sync=True, seed=4, **{"camera.width": 320, "camera.height": 240})
    perception = ros.node(PerceptionNode)
    listener = ros.node(Listener)
    # Both publishers of each input (the simulation's and the listener's) must be matched.
    ros.spin_until(lambda: perception.count_publishers(topics.CLOUD) == 2
                   and perception.count_publishers(topics.EE_POSE) == 2
                   and perception.count_publishers(topics.JOINT_STATES) == 2
                   and listener.count_publishers("/perception_node/objects") > 0, what="discovery")
    ros.spin_until(lambda: perception.observations.can_resolve(sim.camera_frame), what="the latched /camera/pose")
    return ros, sim, perception, listener


def test_the_block_is_seen_where_it_is(cell):
    ros, sim, perception, listener = cell
    sim.republish()
    ros.spin_until(lambda: listener.objects and listener.heightmaps and listener.states, what="an observation")
    truth = sim.env.observe(render=False)
    block = truth.object_poses[0]
    found = msgs.poses7(listener.objects[-1])
    assert len(found) == 1
    assert np.linalg.norm(found[0, :2] - block[:2]) < 0.01
    image = listener.heightmaps[-1]
    heights = np.frombuffer(bytes(image.data), dtype="<f4").reshape(image.height, image.width)
    # The block's top (4 cm) at its pixel: column along +x, row along -y from the gripper at the
    # centre (this scene's block lies clear of the gripper, which would hide it from the camera).
    config = perception.observations.config
    offset = block[:2] - truth.ee_pose[:2]
    assert np.linalg.norm(offset) > 0.1
    pixel = config.heightmap_side / config.heightmap_size
    row, col = (int(config.heightmap_size / 2 - offset[1] / pixel), int(config.heightmap_size / 2 + offset[0] / pixel))
    assert heights[row - 2:row + 3, col - 2:col + 3].max() == pytest.approx(0.04, abs=0.004)
    obs = perception.last_observation
    # The object state's first slot holds the block relative to the gripper.
    state = dict(zip(object_state_layout(config.max_objects), obs.object_state))
    assert state["obj0.present"] == 1.0
    assert np.allclose([state["obj0.dx"], state["obj0.dy"]], offset, atol=0.01)


def _send_and_expect(ros, listener, capfd, cloud, stamp, expected: str, ee_pose=(0.5, 0.0, 0.2, 1, 0, 0, 0)):
    """Publish a cloud with a matching robot state and spin until ``expected`` is logged."""
    cloud.header.stamp = msgs.time_msg(stamp)
    listener.cloud.publish(cloud)
    listener.ee.publish(msgs.pose_stamped(list(ee_pose), "base_link", stamp))
    listener.joints.publish(msgs.joint_state(["panda_finger_joint1", "panda_finger_joint2"],
                                             [0.04, 0.04], [0, 0], stamp))
    err = []
    ros.spin_until(lambda: err.append(capfd.readouterr().err) or expected in "".join(err),
                   what=f"the log line '{expected}'")
    return "".join(err)


def _still_working(ros, sim, listener):
    sim.republish()
    n = len(listener.objects)
    ros.spin_until(lambda: len(listener.objects) > n, what="an observation after the bad cloud")


def _cloud(frame):
    from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
    return xyz_rgb_to_pointcloud2(np.zeros((4, 4, 3), np.float32), None, msgs.header(frame, 0.0))


def test_a_cloud_in_an_unknown_frame_is_skipped_with_a_reason(cell, capfd):
    ros, sim, perception, listener = cell
    _send_and_expect(ros, listener, capfd, _cloud("nowhere_frame"), 1000.0,
                     "skipped a cloud: no pose known for frame 'nowhere_frame'")
    _still_working(ros, sim, listener)


def test_a_malformed_cloud_is_skipped_with_a_reason(cell, capfd):
    ros, sim, perception, listener = cell
    cloud = _cloud("camera_depth_optical_frame")
    cloud.data = cloud.data[:-16]
    err = _send_and_expect(ros, listener, capfd, cloud, 1000.0, "skipped a cloud")
    assert "data" in err.split("skipped a cloud")[1]
    _still_working(ros, sim, listener)


def test_an_absurd_end_effector_pose_is_skipped_with_a_reason(cell, capfd):
    ros, sim, perception, listener = cell
    _send_and_expect(ros, listener, capfd, _cloud("camera_depth_optical_frame"), 1000.0,
                     "skipped a cloud: end-effector position [1e+39, 0.0, 0.2] is not a position in the workspace",
                     ee_pose=(1e39, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0))
    _still_working(ros, sim, listener)


def test_a_cloud_with_nothing_in_the_workspace_is_said(cell, capfd):
    """All its points 3e38 m away: invalid on decoding, no numpy overflow, and a warning rather
    than a silently empty observation."""
    from equimanip.perception.pointcloud2 import xyz_rgb_to_pointcloud2
    ros, sim, perception, listener = cell
    cloud = xyz_rgb_to_pointcloud2(np.full((4, 4, 3), 3e38, np.float32), None,
                                   msgs.header("camera_depth_optical_frame", 0.0))
    err = _send_and_expect(ros, listener, capfd, cloud, 1000.0, "no valid point of the cloud lies in the workspace box")
    assert "overflow" not in err
    _still_working(ros, sim, listener)


@pytest.mark.parametrize("params", [["sim"], ["sim", "side_camera"]], ids=["default_camera", "side_camera"])
def test_observe_finds_the_block_with_the_shipped_camera_setups(params):
    """`equimanip observe`'s graph, with each camera set-up in config/: the block is found."""
    from equimanip.bringup import observe
    from equimanip.viz import observation_figure
    snap = observe("block_picking", seed=1, params_files=params)
    block = snap.object_poses[0]
    errors = [np.linalg.norm(o.centroid[:2] - block[:2]) for o in snap.observation.objects]
    assert errors and min(errors) < 0.01
    picture = observation_figure(snap.scene_rgb, snap.observation, snap.config)
    assert picture.shape == (240, 320 + 4 + 240, 3) and picture.dtype == np.uint8
