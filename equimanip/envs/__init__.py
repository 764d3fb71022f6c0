"""Gymnasium environments of the equimanip tasks, registered on import:

    import gymnasium, equimanip.envs
    env = gymnasium.make("equimanip/BlockPicking-v0", observation_config=ObservationConfig(heightmap_size=64))

See :mod:`equimanip.envs.manipulation` for spaces, seeds and scene options, and
:mod:`equimanip.envs.demos` for expert demonstrations.
"""
from __future__ import annotations

import gymnasium

from .manipulation import OBSERVATION_MODES, EnvConfig, ManipulationGymEnv, make_vector_env

# Gymnasium id of each task (the task names of equimanip.sim.tasks).
ENV_IDS = {
    "reach": "equimanip/Reach-v0",
    "block_picking": "equimanip/BlockPicking-v0",
    "block_pushing": "equimanip/BlockPushing-v0",
    "drawer_opening": "equimanip/DrawerOpening-v0",
    "reach_obstacles": "equimanip/ReachObstacles-v0",
}

for _task, _env_id in ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        # No TimeLimit wrapper: the simulation owns the step limit and reports truncation itself.
        gymnasium.register(_env_id, entry_point="equimanip.envs.manipulation:ManipulationGymEnv",
                           kwargs={"task": _task}, disable_env_checker=False)

__all__ = ["ENV_IDS", "EnvConfig", "ManipulationGymEnv", "make_vector_env", "OBSERVATION_MODES"]
