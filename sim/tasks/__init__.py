"""Task registry. Adding a task = a new module with a :class:`Task` subclass + one entry below
(and its name in ``equimanip.sim.task_names``, which the nodes read without PyBullet)."""
from __future__ import annotations

from equimanip.sim.task_names import TABLE_GOAL_ROWS, TASK_NAMES
from equimanip.sim.tasks.base import Task
from equimanip.sim.tasks.block_picking import BlockPickingTask
from equimanip.sim.tasks.block_pushing import BlockPushingTask
from equimanip.sim.tasks.drawer_opening import DrawerOpeningTask
from equimanip.sim.tasks.reach import ReachTask
from equimanip.sim.tasks.reach_obstacles import ReachObstaclesTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ReachTask, BlockPickingTask, BlockPushingTask, DrawerOpeningTask, ReachObstaclesTask)
}

if sorted(TASKS) != sorted(TASK_NAMES):
    raise ImportError(f"equimanip.sim.task_names lists {sorted(TASK_NAMES)} but the registry holds {sorted(TASKS)}")
for _name, _row in TABLE_GOAL_ROWS.items():
    if TASKS[_name].object_names[_row] != "goal":
        raise ImportError(f"TABLE_GOAL_ROWS says row {_row} of {_name}'s object poses is its goal, but that row "
                          f"is {TASKS[_name].object_names[_row]!r}")


def make_task(name: str) -> Task:
    """A new instance of the task called ``name``; ValueError lists the valid names otherwise."""
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "Task", "make_task"]
