"""The tasks' names, importable without PyBullet.

The nodes that run on a real arm (policy, MPPI, recorder) take a ``task`` parameter but never
build a simulated world, so they must not need the simulator to know the valid names.
``equimanip.sim.tasks`` checks at import that its registry holds exactly these.
"""
TASK_NAMES: tuple[str, ...] = ("block_picking", "block_pushing", "drawer_opening", "reach", "reach_obstacles")
