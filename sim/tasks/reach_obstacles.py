"""Reach with obstacles: bring the gripper to a point in the air past posts standing on the table.

The reach task's target marker (visual only) with two fixed posts (boxes on the table, felt by the
robot and seen by the camera). The target is low (3 to 10 cm above the table), and one post stands
10 to 14 cm from it on the straight line towards the gripper's home position, so that reaching
straight for it runs the hand into that post in about a third of the scenes (9 of seeds
1000-1029); the other post stands anywhere else. A planner that sees the posts in the point cloud
goes around or over them.

Success is the reach task's: the grasp point within 2 cm of the target. Touching a post does not
end the episode; :meth:`ReachObstaclesTask.obstacle_contacts` and
:meth:`ReachObstaclesTask.obstacle_clearance` tell an experiment whether the robot (any link)
touched a post, and how close it came.
"""
from __future__ import annotations

import math

import numpy as np

from equimanip.sim.bullet import p
from equimanip.sim.experts import Expert, ExpertInput, closest_symmetric_yaw, move_towards
from equimanip.sim.tasks.base import Task, sample_xy, sample_yaw, upright_pose7
from equimanip.sim.tasks.reach import SUCCESS_DISTANCE, TARGET_RADIUS
from equimanip.sim.world import HOME_EE_POSITION, WORKSPACE, PandaWorld

POST_COUNT = 2
# The posts a scene picks from (PyBullet cannot resize a body, and an environment restores one
# snapshot of its bodies at every reset, so they are all built once): every combination of half
# width (m, half the side of the square cross-section) and height (m). Posts not in the scene wait
# under the table. The tallest is 15 cm: the Panda's forearm stays at least 13 cm above the grasp
# point (measured over random reaches: the lowest corner of the panda_link5 box), so with the hand
# beside a post only the hand can touch it, which is what a gripper-level planner checks.
POST_HALF_WIDTHS = (0.02, 0.03)
POST_HEIGHTS = (0.1, 0.125, 0.15)
PARKED_Z = -2.0
POST_RGBA = (0.45, 0.45, 0.5, 1.0)
TARGET_Z_RANGE = (0.03, 0.1)    # m: below the post tops, so the hand comes down beside them
# Placement, in the table plane: the target at least this far from the gripper's home position (so
# that a post fits between them); every post at least this far from the target (measured from the
# post's centre: the open hand is 20 cm wide and needs room beside a post); the posts this far
# apart. Home (0.25 m up) is above every post, so posts may stand under it.
MIN_TARGET_DISTANCE = 0.2
POST_CLEARANCE = 0.1
POST_SPACING = 0.12
MAX_PLACEMENT_TRIES = 1000


class ReachObstaclesTask(Task):
    """Move ``panda_grasptarget`` within 2 cm of a floating marker past two posts.

    object_poses rows: 0 = target (position of the marker; its yaw is random and irrelevant),
    1 and 2 = posts (centre of the box, its yaw; a post stands on the table, so its top is at
    twice the centre's height). Post 1 stands on the line from the target towards home.
    """

    name = "reach_obstacles"
    max_steps = 50
    object_names = ("target", "post_on_the_way", "post")

    def build(self, world: PandaWorld) -> None:
        self.target = world.create_sphere_marker(TARGET_RADIUS, WORKSPACE.center, rgba=(0.1, 0.8, 0.2, 1.0))
        self.pool = []           # (body, height) of every post
        for k, (half_width, height) in enumerate((w, h) for w in POST_HALF_WIDTHS for h in POST_HEIGHTS):
            body = world.create_box((half_width, half_width, height / 2.0), (k, 0.0, PARKED_Z), mass=0.0,
                                    rgba=POST_RGBA)
            self.pool.append((body, height))
        self.posts: list[int] = []   # the bodies of this scene's posts, in object_poses order

    def reset(self, world: PandaWorld, rng: np.random.Generator) -> None:
        target, centres = self._sample_scene(rng)
        world.set_body_pose(self.target, upright_pose7(target, sample_yaw(rng)))
        chosen = rng.choice(len(self.pool), size=POST_COUNT, replace=False)
        self.posts = []
        for k, (body, height) in enumerate(self.pool):
            if k not in chosen:
                world.set_body_pose(body, upright_pose7((k, 0.0, PARKED_Z), 0.0))
        for xy, k in zip(centres, chosen):
            body, height = self.pool[k]
            world.set_body_pose(body, upright_pose7((*xy, height / 2.0), sample_yaw(rng)))
            self.posts.append(body)

    @staticmethod
    def _sample_scene(rng: np.random.Generator):
        """Target (3,) and the posts' centres (2, 2) in the table plane: the first near the line
        from home to the target."""
        home = HOME_EE_POSITION[:2]
        for _ in range(MAX_PLACEMENT_TRIES):
            target_xy = sample_xy(rng, margin=0.03)
            distance = float(np.linalg.norm(target_xy - home))
            if distance < MIN_TARGET_DISTANCE:
                continue
            towards_home = (home - target_xy) / distance
            normal = np.array([-towards_home[1], towards_home[0]])
            on_the_way = (target_xy + rng.uniform(POST_CLEARANCE, POST_CLEARANCE + 0.04) * towards_home
                          + rng.uniform(-0.02, 0.02) * normal)
            centres = np.stack([on_the_way, sample_xy(rng, margin=0.0)])
            if np.min(np.linalg.norm(centres - target_xy, axis=1)) < POST_CLEARANCE:
                continue
            if np.linalg.norm(centres[0] - centres[1]) < POST_SPACING:
                continue
            return np.array([*target_xy, rng.uniform(*TARGET_Z_RANGE)]), centres
        raise RuntimeError("could not place the reach_obstacles scene")   # never seen: placement is loose

    def object_poses(self, world: PandaWorld) -> np.ndarray:
        return np.stack([world.body_pose(self.target)] + [world.body_pose(b) for b in self.posts])

    def success(self, world: PandaWorld) -> bool:
        distance = np.linalg.norm(world.ee_pose()[:3] - world.body_pose(self.target)[:3])
        return bool(distance < SUCCESS_DISTANCE)

    def obstacle_contacts(self, world: PandaWorld) -> int:
        """Contact points between the robot (any link) and the posts now."""
        return sum(len(p.getContactPoints(world.robot, post, physicsClientId=world.client)) for post in self.posts)

    def obstacle_clearance(self, world: PandaWorld, horizon: float = 0.2) -> float:
        """Smallest distance (m) between the robot (any link) and a post now; ``horizon`` when none is
        nearer than that; negative when they overlap."""
        nearest = horizon
        for post in self.posts:
            for point in p.getClosestPoints(world.robot, post, horizon, physicsClientId=world.client):
                nearest = min(nearest, point[8])
        return float(nearest)

    def make_expert(self) -> "OverObstaclesExpert":
        return OverObstaclesExpert()


class OverObstaclesExpert(Expert):
    """Rises above the tallest post, moves over to the target, descends onto it (open gripper),
    turning on the way so that the narrow side of the 20 cm long open hand faces the post nearest
    the target (with the yaw kept, the hand's end came down on a post in 6 of 500 scenes)."""

    # The fingertips reach 1.1 cm below the grasp point; pass the post tops with 4 cm to spare.
    CLEARANCE = 0.05

    def act(self, observation: ExpertInput) -> np.ndarray:
        target = observation.object_poses[0, :3]
        tops = 2.0 * observation.object_poses[1:, 2]
        travel_z = min(max(float(tops.max()) + self.CLEARANCE, target[2]), WORKSPACE.high[2])
        ee = observation.ee_position
        posts = observation.object_poses[1:, :2]
        nearest = posts[np.argmin(np.linalg.norm(posts - target[:2], axis=1))] - target[:2]
        yaw = closest_symmetric_yaw(math.atan2(nearest[1], nearest[0]), math.pi, observation.ee_yaw)
        if np.linalg.norm(target[:2] - ee[:2]) < 0.01:
            return move_towards(observation, target, yaw, aperture=1.0)
        if ee[2] < travel_z - 0.01:
            return move_towards(observation, [ee[0], ee[1], travel_z], yaw, aperture=1.0)
        return move_towards(observation, [target[0], target[1], travel_z], yaw, aperture=1.0)


__all__ = ["ReachObstaclesTask", "OverObstaclesExpert", "POST_COUNT"]
