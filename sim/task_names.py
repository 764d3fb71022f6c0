"""The tasks' names, importable without PyBullet.

The nodes that run on a real arm (policy, MPPI, recorder) take a ``task`` parameter but never
build a simulated world, so they must not need the simulator to know the valid names.
``equimanip.sim.tasks`` checks at import that its registry holds exactly these.
"""
TASK_NAMES: tuple[str, ...] = ("block_picking", "block_pushing", "drawer_opening", "reach", "reach_obstacles")

# Tasks whose goal is a place on the table, shown to policies as the heightmap's goal channel
# (ObservationConfig.goal_channel): the row of the task's object_poses that is that goal.
TABLE_GOAL_ROWS: dict[str, int] = {"block_pushing": 1}
