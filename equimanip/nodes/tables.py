"""Every node's full parameter list, for the README's tables and the config-file checks."""
from equimanip.nodes import observation_input, perception_node
from equimanip.nodes.controller import CONTROLLER_PARAMS
from equimanip.sim import expert_node, sim_node

NODE_PARAMETER_TABLES = {
    "sim_node": sim_node.PARAMS,
    "expert_node": [*CONTROLLER_PARAMS, *expert_node.PARAMS],
    "perception_node": [*perception_node.PARAMS, *observation_input.OBSERVATION_PARAMS],
}
