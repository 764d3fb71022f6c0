"""Every node's parameters: the full lists (what the config-file checks accept) and the README's
tables (each parameter documented once: a controller's table shows its own parameters, the
runtime's and the perception parameters have tables of their own)."""
from equimanip.nodes import mppi_node, observation_input, perception_node, policy_node
from equimanip.nodes.controller import CONTROLLER_PARAMS, OBSERVATION_CONTROLLER_PARAMS
from equimanip.sim import expert_node, sim_node

OBSERVATION_CONTROLLER = [*CONTROLLER_PARAMS, *OBSERVATION_CONTROLLER_PARAMS, *observation_input.OBSERVATION_PARAMS]

NODE_PARAMETER_TABLES = {
    "sim_node": sim_node.PARAMS,
    "expert_node": [*CONTROLLER_PARAMS, *expert_node.PARAMS],
    "perception_node": [*perception_node.PARAMS, *observation_input.OBSERVATION_PARAMS],
    "policy_node": [*OBSERVATION_CONTROLLER, *policy_node.PARAMS],
    "mppi_node": [*OBSERVATION_CONTROLLER, *mppi_node.PARAMS],
}

README_TABLES = {
    "sim_node": sim_node.PARAMS,
    "controllers": CONTROLLER_PARAMS,
    "expert_node": expert_node.PARAMS,
    "perception_node": [*perception_node.PARAMS, *observation_input.OBSERVATION_PARAMS],
    "policy_node": [*OBSERVATION_CONTROLLER_PARAMS, *policy_node.PARAMS],
    "mppi_node": mppi_node.PARAMS,
}
