"""expert_node: the task's scripted expert behind ROS topics.

It reads what a learned policy reads (``/ee_pose``, ``/joint_states``) plus the simulation's
ground-truth ``/sim_node/object_poses``, and publishes commands like any controller. It is the
first controller of the closed loop and the source of demonstrations for imitation.
"""
from __future__ import annotations

from geometry_msgs.msg import PoseArray

from equimanip.nodes import msgs, qos, topics
from equimanip.nodes.controller import ControllerNode
from equimanip.nodes.params import TASK
from equimanip.nodes.spin import spin_node
from equimanip.sim.experts import ExpertInput
from equimanip.sim.tasks import make_task
from equimanip.sim.world import FINGER_JOINT_NAMES

PARAMS = [TASK]


class ExpertNode(ControllerNode):
    def __init__(self, **node_kwargs):
        super().__init__("expert_node", PARAMS, {topics.SIM_OBJECT_POSES: (PoseArray, qos.RELIABLE)}, **node_kwargs)
        self.expert = make_task(self.get_parameter("task").value).make_expert()
        self.add_post_set_parameters_callback(self._on_parameters_set)

    def _on_parameters_set(self, params) -> None:
        if any(p.name == "task" for p in params):
            self.expert = make_task(self.get_parameter("task").value).make_expert()

    def on_episode_start(self) -> None:
        self.expert.reset()  # experts keep a little phase memory; a new episode starts it afresh

    def act(self, messages: dict):
        return self.expert.act(ExpertInput.from_state(
            msgs.pose7(messages[topics.EE_POSE].pose),
            msgs.joint_positions(messages[topics.JOINT_STATES], FINGER_JOINT_NAMES),
            msgs.poses7(messages[topics.SIM_OBJECT_POSES])))


def main(args=None):
    spin_node(ExpertNode, args)


if __name__ == "__main__":
    main()
