"""MPPI planner core: equivariance of the plan under each planar group, cost reduction on a convex
problem, bounds, costs, configuration errors. No ROS; small K and T keep the file fast."""
import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

from equimanip import symmetry
from equimanip.planning import (
    MPPI,
    ActionBounds,
    EndEffectorCost,
    EndEffectorCostConfig,
    EndEffectorLimits,
    KinematicEndEffector,
    MPPIConfig,
    PointCloudDistance,
    PointMass,
    QuadraticCost,
)
from equimanip.planning.end_effector import EndEffectorPlannerSettings
from equimanip.planning.sampling import ar1_matrix
from equimanip.symmetry import ACTION_LAYOUT

torch.set_num_threads(1)

GROUPS = ["c4", "c8", "d4", "d8"]


def point_mass_planner(group="none", **changes):
    config = MPPIConfig(action_low=(-1.0, -1.0), action_high=(1.0, 1.0), noise_sigma=(0.6, 0.6),
                        vector_norm_max=1.0, num_samples=256, horizon=8, temperature=0.5, seed=3, group=group,
                        noise_correlation=0.3, rest_share=0.25).replace(**changes)
    cost = QuadraticCost((1.0, 1.0, 0.1, 0.1), (0.01, 0.01))
    return MPPI(PointMass(), config, running_cost=cost, action_layout=PointMass.action_layout)


def rho(g, layout):
    return torch.as_tensor(symmetry.representation(layout, g), dtype=torch.float32)


# ----------------------------------------------------------------------------------- equivariance


@pytest.mark.parametrize("group", GROUPS)
def test_point_mass_plan_is_equivariant_over_warm_started_cycles(group):
    """plan(g.s) = g.plan(s) for every element, over several cycles with the warm start, the share
    around the rest action, the noise-free candidates and correlated noise all in play."""
    state = torch.tensor([0.8, -0.3, 0.2, 0.5])
    for g in symmetry.group(group).elements():
        ours, theirs = point_mass_planner(group), point_mass_planner(group)
        s, s_g = state.clone(), symmetry.transform(PointMass.state_layout, g, state)
        for _ in range(4):
            plan, plan_g = ours.plan(s).actions, theirs.plan(s_g).actions
            assert torch.allclose(plan_g, plan @ rho(g, PointMass.action_layout).T, atol=1e-5), (group, g)
            s = PointMass()(s[None], plan[:1])[0]
            s_g = PointMass()(s_g[None], plan_g[:1])[0]


def end_effector_scene(g=symmetry.IDENTITY, group="none", seed=5):
    """A planner and start state for the end effector among points, everything turned by ``g`` about
    the vertical axis through the gripper (limits removed: the workspace box is not symmetric)."""
    rng = np.random.default_rng(0)
    start = torch.tensor([0.5, 0.0, 0.2, 0.3, 1.0])
    pivot = start[:2]
    points = torch.as_tensor(rng.uniform([0.45, -0.1, 0.0], [0.6, 0.1, 0.12], size=(60, 3)), dtype=torch.float32)
    goal = torch.tensor([0.62, 0.08, 0.1])
    M = torch.as_tensor(g.matrix(), dtype=torch.float32)
    turn = KinematicEndEffector.transform_state
    points_g = points.clone()
    points_g[:, :2] = (points[:, :2] - pivot) @ M.T + pivot
    goal_g = goal.clone()
    goal_g[:2] = (goal[:2] - pivot) @ M.T + pivot
    goal_yaw = float(turn(g, torch.tensor([0.0, 0.0, 0.0, 0.7, 0.0]), (0.0, 0.0))[3])
    cost = EndEffectorCost(EndEffectorCostConfig(workspace=0.0), goal_position=goal_g, goal_yaw=goal_yaw,
                           obstacles=PointCloudDistance.from_points(points_g, method="exact"))
    cost.previous_action = symmetry.transform_action(g, torch.tensor([1.0, 0.01, -0.02, 0.0, 0.1]))
    config = MPPIConfig.for_end_effector(num_samples=128, horizon=6, seed=seed, group=group,
                                         noise_correlation=0.4, control_cost_scale=1.0)
    model = KinematicEndEffector(EndEffectorLimits(None, None, None))
    planner = MPPI(model, config, trajectory_cost=cost, action_layout=ACTION_LAYOUT)
    return planner, turn(g, start, pivot)


@pytest.mark.parametrize("group", GROUPS)
def test_end_effector_plan_is_equivariant(group):
    """The built-in kinematic model and costs (goal pose, exact point-cloud collision, speed,
    smoothness) with symmetric sampling: the plan turns with the scene, to 1e-5."""
    for g in symmetry.group(group).elements():
        ours, start = end_effector_scene(group=group)
        theirs, start_g = end_effector_scene(g, group=group)
        for _ in range(3):
            plan, plan_g = ours.plan(start).actions, theirs.plan(start_g).actions
            assert torch.allclose(plan_g, plan @ rho(g, ACTION_LAYOUT).T, atol=1e-5), (group, g)


def test_plain_sampling_is_not_equivariant():
    """The control: without the orbit, a turned scene gets a plan that is not the turned plan."""
    g = symmetry.group("c4").elements()[1]
    ours, theirs = point_mass_planner("none"), point_mass_planner("none")
    state = torch.tensor([0.8, -0.3, 0.2, 0.5])
    plan = ours.plan(state).actions
    plan_g = theirs.plan(symmetry.transform(PointMass.state_layout, g, state)).actions
    assert (plan_g - plan @ rho(g, PointMass.action_layout).T).abs().max() > 1e-3


def test_symmetric_sample_set_is_closed_under_the_group():
    planner = point_mass_planner("d4", rest_share=0.0, include_nominal=False)
    planner._plan.zero_()
    samples = planner._sample(planner._draw_noise(), planner.nominal)   # (T, K, 2), around zero
    K = samples.shape[1]
    as_set = samples.permute(1, 0, 2).reshape(K, -1)
    for g in symmetry.group("d4").elements():
        moved = (samples @ rho(g, PointMass.action_layout).T).permute(1, 0, 2).reshape(K, -1)
        # every moved sample is one of the samples
        distance = torch.cdist(moved, as_set, compute_mode="donot_use_mm_for_euclid_dist")
        assert distance.min(dim=1).values.max() < 1e-5


# ----------------------------------------------------------------------------------- optimisation


@pytest.mark.parametrize("group", ["none", "c8"])
def test_mppi_reduces_cost_on_a_convex_problem_and_respects_bounds(group):
    planner = point_mass_planner(group, num_samples=512, horizon=15, temperature=0.02)
    cost = QuadraticCost((1.0, 1.0, 0.1, 0.1), (0.01, 0.01))
    state = torch.tensor([1.0, -0.8, 0.0, 0.0])
    start_cost = float(cost(state[None], torch.zeros(1, 2)))
    for _ in range(60):
        action = planner.command(state)
        assert planner.bounds.contains(planner.nominal)
        assert float(torch.linalg.vector_norm(action)) <= 1.0 + 1e-6
        state = PointMass()(state[None], action[None])[0]
    assert float(cost(state[None], torch.zeros(1, 2))) < 0.05 * start_cost


def test_every_sample_is_inside_the_bounds():
    config = MPPIConfig.for_end_effector(num_samples=400, horizon=5, seed=0, group="d8",
                                         noise_sigma=(2.0, 0.5, 0.5, 0.5, 3.0))
    planner = MPPI(KinematicEndEffector(), config, trajectory_cost=EndEffectorCost(), action_layout=ACTION_LAYOUT)
    samples = planner._sample(planner._draw_noise(), planner.nominal)
    assert planner.bounds.contains(samples)
    assert float(torch.hypot(samples[..., 1], samples[..., 2]).max()) == pytest.approx(0.05, abs=1e-6)
    assert float(samples[..., 3].abs().max()) == pytest.approx(0.05, abs=1e-6)


def test_warm_start_shifts_the_previous_plan_and_appends_the_rest_action():
    planner = point_mass_planner("none")
    state = torch.tensor([0.5, 0.5, 0.0, 0.0])
    first = planner.plan(state).actions.clone()
    # With (almost) no noise and no samples around the rest action, every candidate is the warm
    # start, so the next plan shows it: the previous plan moved one step ahead, the rest action last.
    planner.update_config(noise_sigma=(1e-7, 1e-7), rest_share=0.0)
    assert torch.equal(planner.nominal, first)                    # an update keeps the warm start
    second = planner.plan(state).actions
    assert torch.allclose(second[:-1], first[1:], atol=1e-6)
    assert torch.allclose(second[-1], torch.zeros(2), atol=1e-6)
    unshifted = planner.plan(state, shift=False).actions
    assert torch.allclose(unshifted, second, atol=1e-6)
    planner.reset()
    assert torch.equal(planner.nominal, torch.zeros(8, 2))


def test_ar1_noise_has_unit_variance_and_the_requested_correlation():
    L = torch.as_tensor(ar1_matrix(6, 0.7), dtype=torch.float32)
    w = torch.randn(6, 200_000, generator=torch.Generator().manual_seed(0))
    eps = L @ w
    assert torch.allclose(eps.var(dim=1), torch.ones(6), atol=0.02)
    correlation = (eps[1:] * eps[:-1]).mean(dim=1)
    assert torch.allclose(correlation, torch.full((5,), 0.7), atol=0.02)
    assert np.allclose(ar1_matrix(4, 0.0), np.eye(4))


def test_nan_costs_get_no_weight_and_all_nan_keeps_the_plan():
    def dynamics(state, action):
        out = state + torch.nn.functional.pad(action, (0, 2))
        return torch.where(action[:, :1] > 0.5, torch.nan, out)   # some samples blow up

    config = MPPIConfig(action_low=(-1.0, -1.0), action_high=(1.0, 1.0), noise_sigma=(0.5, 0.5),
                        num_samples=200, horizon=4, seed=1)
    planner = MPPI(dynamics, config, running_cost=lambda s, a: (s * s).sum(-1))
    plan = planner.plan(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.isfinite(plan.actions).all() and math.isfinite(plan.cost)

    nan_everywhere = MPPI(lambda s, a: s * torch.nan, config, running_cost=lambda s, a: s.sum(-1))
    before = nan_everywhere.nominal.clone()
    with pytest.raises(FloatingPointError, match="every sampled sequence"):
        nan_everywhere.plan(torch.ones(4))
    assert torch.equal(nan_everywhere.nominal, before)
    with pytest.raises(ValueError, match="non-finite"):
        planner.plan(torch.tensor([1.0, math.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="one vector"):
        planner.plan(torch.ones(2, 4))


# ----------------------------------------------------------------------------------- dynamics and costs


def test_kinematic_model_follows_the_simulation_limits():
    model = KinematicEndEffector()
    state = torch.tensor([[0.69, 0.0, 0.02, 2.3, 1.0]])
    nxt = model(state, torch.tensor([[0.2, 0.05, 0.01, -0.05, 0.3]]))[0]
    assert torch.allclose(nxt, torch.tensor([0.7, 0.01, 0.015, 0.75 * math.pi, 0.2]))


def test_collision_cost_is_zero_far_from_points_and_grows_near_them():
    rng = np.random.default_rng(1)
    cloud = rng.uniform([0.48, -0.02, 0.0], [0.52, 0.02, 0.1], size=(400, 3))    # a post
    for method in ("grid", "exact"):
        cost = EndEffectorCost(EndEffectorCostConfig(goal_position=0, smoothness=0, speed=0, workspace=0),
                               obstacles=PointCloudDistance.from_points(cloud, method=method))
        # approach the post from the side along x at the height of its middle, yaw 0 (fingers along y)
        xs = torch.linspace(0.25, 0.5, 26)
        states = torch.stack([xs, torch.zeros(26), torch.full((26,), 0.05), torch.zeros(26), torch.ones(26)], 1)
        pairs = torch.stack([states, states], dim=1)                                 # stand still
        values = cost.collision_cost(pairs)
        far = cost.clearance(states) >= cost.config.safety_margin
        assert far[:5].all() and (values[far] == 0).all(), method
        clearance = cost.clearance(states)
        near = values[~far & (clearance >= 0)]
        # the grid is read voxel by voxel (1 cm steps here), so equal neighbours are fine
        assert len(near) >= 4 and (torch.diff(near) >= 0).all() and near[-1] > 2 * near[0] > 0, method
        inside = values[clearance < 0]
        assert len(inside) >= 1 and (inside >= cost.config.contact).all(), method


def test_grid_distance_never_exceeds_the_exact_distance_and_is_close_to_it():
    rng = np.random.default_rng(2)
    cloud = rng.uniform([0.3, -0.2, 0.0], [0.7, 0.2, 0.2], size=(300, 3))
    grid = PointCloudDistance.from_points(cloud, resolution=0.01)
    exact = PointCloudDistance.from_points(cloud, method="exact")
    queries = torch.as_tensor(rng.uniform([0.3, -0.2, 0.0], [0.7, 0.2, 0.3], size=(2000, 3)), dtype=torch.float32)
    error = grid(queries) - exact(queries)
    assert float(error.max()) <= 1e-4                        # never more clearance than there is
    assert float(error.min()) >= -2 * math.sqrt(3) * 0.01 - 1e-4      # at most two voxel diagonals less


def test_empty_or_missing_cloud_costs_nothing():
    cloud = np.full((10, 3), np.nan)
    for method in ("grid", "exact"):
        distance = PointCloudDistance.from_points(cloud, method=method)
        assert torch.isinf(distance(torch.zeros(4, 3))).all()
        cost = EndEffectorCost(obstacles=distance)
        states = torch.tensor([[0.5, 0.0, 0.1, 0.0, 1.0]]).expand(3, 2, 5)
        assert (cost.collision_cost(states) == 0).all()


def test_end_effector_cost_terms():
    base = dict(goal_position=0, smoothness=0, speed=0, workspace=0)
    start = torch.tensor([0.69, 0.0, 0.1, 0.0, 1.0])
    states = torch.stack([start, start]).unsqueeze(0)
    push_out = torch.tensor([[[1.0, 0.05, 0.0, 0.0, 0.0]]])                # 4 cm past the wall
    assert float(EndEffectorCost(EndEffectorCostConfig(**{**base, "workspace": 1.0}))(states, push_out)) == \
        pytest.approx((0.04 / 0.05) ** 2, rel=1e-4)
    diagonal = torch.tensor([[[1.0, 0.05, 0.05, 0.05, 0.0]]])              # sqrt(3) x 5 cm
    assert float(EndEffectorCost(EndEffectorCostConfig(**{**base, "speed": 1.0}))(states, diagonal)) == \
        pytest.approx((math.sqrt(3) - 1) ** 2, rel=1e-4)
    goal = EndEffectorCost(EndEffectorCostConfig(**{**base, "goal_position": 1.0, "terminal": 0.0}),
                           goal_position=(0.69, 0.0, 0.2))
    assert float(goal(states, push_out)) == pytest.approx(0.1, rel=1e-4)


# ----------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("changes, message", [
    ({"num_samples": 1}, "num_samples"),
    ({"horizon": 0}, "horizon"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"noise_sigma": (0.5, -0.1)}, "noise_sigma must be positive"),
    ({"noise_sigma": (0.5,)}, "noise_sigma has 1 entries"),
    ({"action_low": (2.0, -1.0)}, "exceeds action_high"),
    ({"action_high": (1.0, math.nan)}, "finite"),
    ({"noise_correlation": 1.0}, "noise_correlation"),
    ({"rest_share": -0.1}, "rest_share"),
    ({"rest_action": (3.0, 0.0)}, "outside the action bounds"),
    ({"iterations": 0}, "iterations"),
    ({"group": "c5"}, "unknown group"),
    ({"group": "so2"}, "finite group"),
    ({"group": "d8", "num_samples": 20}, "too small"),
    ({"device": "nonsense"}, "device"),
    ({"num_samples": 100.5}, "integer"),
    ({"horizon": True}, "integer"),
    ({"include_nominal": "yes"}, "true or false"),
    ({"temperature": math.nan}, "temperature"),
    ({"not_a_setting": 1}, "unknown MPPI setting"),
])
def test_config_errors_are_clear(changes, message):
    with pytest.raises(ValueError, match=message):
        point_mass_planner(**changes)


@pytest.mark.parametrize("config, message", [
    (dict(vector_norm_max=None, group="c8"), "turns by less than 90 degrees"),
    (dict(vector_norm_max=None, group="c4", action_low=(-1.0, -0.5)), "square box"),
    (dict(vector_norm_max=2.0), "must contain the disc"),
    (dict(group="c4", noise_sigma=(0.6, 0.3)), "equal on the two entries"),
    (dict(group="c4", rest_action=(0.5, 0.0)), "not invariant"),
])
def test_bounds_and_noise_must_be_invariant_under_the_group(config, message):
    with pytest.raises(ValueError, match=message):
        point_mass_planner(**config)


def test_pseudoscalar_bounds_must_be_symmetric_under_reflections():
    bounds = ActionBounds((0, -0.05, -0.05, -0.05, -0.1), (1, 0.05, 0.05, 0.05, 0.3), 0.05, ACTION_LAYOUT)
    bounds.check_invariant(symmetry.group("c8"))          # no mirror: fine
    with pytest.raises(ValueError, match="dyaw"):
        bounds.check_invariant(symmetry.group("d8"))
    with pytest.raises(ValueError, match="layout"):
        MPPI(PointMass(), MPPIConfig((-1, -1), (1, 1), (1, 1), group="c4"), running_cost=lambda s, a: s.sum(-1))


def test_invalid_update_keeps_the_old_settings():
    planner = point_mass_planner("c4")
    planner.plan(torch.tensor([0.5, 0.5, 0.0, 0.0]))
    config, plan = planner.config, planner.nominal.clone()
    with pytest.raises(ValueError, match="turns by less than 90"):
        planner.update_config(group="c8", vector_norm_max=None)
    assert planner.config is config and torch.equal(planner.nominal, plan) and planner.group.name == "c4"
    planner.update_config(horizon=5)                     # a new shape drops the warm start
    assert planner.nominal.shape == (5, 2) and planner.plan(torch.zeros(4)).actions.shape == (5, 2)
    with pytest.raises(ValueError, match="needs a cost"):
        MPPI(PointMass(), planner.config)


def test_benchmark_ends_with_one_json_line(capsys):
    """The benchmark runs end to end (one timed call per planner) and its last line is the JSON
    object with the agreed keys; the figures themselves come from `equimanip bench mppi`."""
    import json

    from equimanip.bench import mppi as bench

    assert bench.main(["--blocks", "1", "--repeats", "1", "--no-compile", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_ms", "pytorch_mppi_ms", "speedup_vs_pytorch_mppi", "symmetric_vs_plain", "threads"):
        assert key in result
    assert [(c["samples"], c["horizon"]) for c in result["configurations"]][:3] == [(1000, 20), (4096, 30), (256, 15)]
    assert result["ours_ms"] > 0 and result["threads"] == 1
    assert result["ours_mode"] == "eager" and result["ours_ms"] == result["ours_eager_ms"]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on a CPU needs a C++ compiler")
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_cycle_plans_what_the_eager_one_plans(device):
    """MPPIConfig.compile compiles the whole cycle after the random draw: from the same seed it
    plans what eager PyTorch plans, cycle after cycle (warm start included), plain and symmetric, and
    the compiled point-mass model and cost (their element-wise form) agree with the eager ones.
    Samples whose cost is NaN get no weight there either, and a planner compiles once, not again
    for a new goal yaw of the end-effector cost."""
    def planner(compile_, group, dynamics=PointMass(device=device)):
        config = MPPIConfig(action_low=(-1.0, -1.0), action_high=(1.0, 1.0), noise_sigma=(0.5, 0.5),
                            num_samples=64, horizon=6, group=group, seed=3, compile=compile_, device=device)
        return MPPI(dynamics, config, running_cost=QuadraticCost((1, 1, 0.1, 0.1), (0.01, 0.01), device=device),
                    action_layout=PointMass.action_layout)

    for group in ("none", "d4"):
        eager, compiled = planner(False, group), planner(True, group)
        state = torch.tensor([1.0, -0.8, 0.2, 0.0], device=device)
        for _ in range(3):
            a, b = eager.plan(state), compiled.plan(state)
            assert torch.allclose(a.actions, b.actions, atol=1e-5)
            assert torch.allclose(a.costs, b.costs, rtol=1e-5)
            state = PointMass(device=device)(state[None], a.action[None])[0]

    def blows_up(state, action):
        return torch.where(action[:, :1] > 0.5, torch.nan, PointMass(device=device)(state, action))

    eager, compiled = planner(False, "none", blows_up), planner(True, "none", blows_up)
    a, b = eager.plan(torch.ones(4, device=device)), compiled.plan(torch.ones(4, device=device))
    assert torch.isfinite(b.actions).all() and torch.allclose(a.actions, b.actions, atol=1e-5)

    from torch._dynamo.utils import counters
    cost = EndEffectorCost(goal_position=(0.62, 0.1, 0.25), goal_yaw=0.0, device=device)
    settings = MPPIConfig.for_end_effector(seed=0, num_samples=64, horizon=4, compile=True, device=device)
    ee = MPPI(KinematicEndEffector(device=device), settings, trajectory_cost=cost, action_layout=ACTION_LAYOUT)
    start = torch.tensor([0.38, 0.0, 0.3, 0.0, 1.0], device=device)
    ee.plan(start)
    graphs = counters["stats"]["unique_graphs"]
    for yaw in (0.3, -0.5):
        cost.goal_yaw = yaw
        ee.plan(start)
    assert counters["stats"]["unique_graphs"] == graphs


def test_reaches_a_goal_behind_a_post_without_touching_it():
    """The built-in end-effector planner (the cell's default weights, d4) in a closed loop with its own
    model: around a post standing between the start and the goal, to within 2 cm, never overlapping
    the cloud."""
    rng = np.random.default_rng(0)
    post = rng.uniform([0.47, -0.03, 0.0], [0.53, 0.03, 0.18], size=(2000, 3))
    cost = EndEffectorCost(EndEffectorPlannerSettings().cost, goal_position=(0.62, -0.02, 0.1), goal_yaw=0.0,
                           obstacles=PointCloudDistance.from_points(post))
    model = KinematicEndEffector()
    planner = MPPI(model, MPPIConfig.for_end_effector(seed=1, group="d4"), trajectory_cost=cost,
                   action_layout=ACTION_LAYOUT)
    state, closest = torch.tensor([0.36, 0.0, 0.1, 0.0, 1.0]), math.inf
    for _ in range(40):
        action = planner.command(state)
        cost.previous_action = action
        nxt = model(state[None], action[None])[0]
        closest = min(closest, float(cost.clearance(torch.stack([state, nxt])[None]).min()))
        state = nxt
    assert float(torch.linalg.vector_norm(state[:3] - cost.goal_position)) < 0.02
    assert closest > 0.0


def test_docs_example_runs():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "mppi.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/mppi.md", "exec"), {})


# ----------------------------------------------------------------------------------- the cell's planner


def test_obstacle_points_leave_out_table_gripper_arm_and_goal_but_not_a_post_beside_the_hand():
    from equimanip.geometry import down_quat_xyzw
    from equimanip.planning.end_effector import EndEffectorPlanner

    planner = EndEffectorPlanner()
    ee = np.array([0.5, 0.0, 0.05, *down_quat_xyzw(0.0)])
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.uniform(0.3, 0.7, (200, 2)), np.full(200, 0.002)])
    finger = np.array([[0.5, 0.05, 0.06]])                     # on the open finger (y along the fingers)
    wrist = np.array([[0.5, 0.03, 0.19], [0.45, -0.05, 0.30]])  # the arm rising from the hand
    goal = np.array([0.6, 0.1, 0.08])
    marker = goal + [0.0, 0.0, 0.012]                           # the target seen by the camera
    post = np.array([[0.5, 0.145, z] for z in np.linspace(0.02, 0.15, 6)])   # 4 cm from the hand's end
    points = np.concatenate([table, finger, wrist, [marker], post])
    kept = planner.obstacle_points(points, ee, goal)
    assert kept.shape == post.shape and np.allclose(np.sort(kept[:, 2]), post[:, 2])


def test_obstacles_are_remembered_until_reset_and_solid_below_what_is_seen():
    from equimanip.geometry import down_quat_xyzw
    from equimanip.planning.end_effector import EndEffectorPlanner

    planner = EndEffectorPlanner(EndEffectorPlannerSettings(mppi=MPPIConfig.for_end_effector(num_samples=64,
                                                                                             horizon=4, seed=0)))
    ee = np.array([0.4, 0.0, 0.2, *down_quat_xyzw(0.0)])
    top = np.array([[0.6, 0.1, 0.12]])                           # only the top of a post is seen
    planner.plan(ee, 1.0, top, (0.45, 0.0, 0.2), 0.0)
    field = planner.cost.obstacles
    probe = torch.tensor([[0.6, 0.1, 0.03], [0.6, 0.1, 0.2]])
    below, above = field(probe).tolist()
    assert below == 0.0 and above > 0.05                          # the column under the top is solid
    planner.plan(ee, 1.0, np.zeros((0, 3)), (0.45, 0.0, 0.2), 0.0)   # hidden now: still there
    assert planner.times.obstacle_points == 1 and planner.cost.obstacles is not None
    planner.reset()
    planner.plan(ee, 1.0, np.zeros((0, 3)), (0.45, 0.0, 0.2), 0.0)
    assert planner.times.obstacle_points == 0 and planner.cost.obstacles is None
    exact = PointCloudDistance.from_points(top, method="exact", solid_below=0.0)
    assert float(exact(probe[:1])) < 0.006


def test_planner_settings_are_checked_before_anything_changes():
    from equimanip.planning.end_effector import EndEffectorPlanner, ObstacleSettings, with_changes

    planner = EndEffectorPlanner(EndEffectorPlannerSettings(mppi=MPPIConfig.for_end_effector(num_samples=64,
                                                                                             horizon=4, seed=0)))
    before = planner.settings
    bad = [dict(mppi=dataclasses.replace(before.mppi, group="c8", noise_sigma=(0.3, 0.01, 0.02, 0.01, 0.1))),
           dict(obstacles=ObstacleSettings(min_height=0.4, max_height=0.3)),
           dict(workspace_low=(0.7, 0.0, 0.0))]
    for changes in bad:
        with pytest.raises(ValueError):
            planner.update(dataclasses.replace(before, **changes))
        assert planner.settings == before and planner.mppi.config == before.mppi
    good = with_changes(before, mppi=before.mppi.replace(horizon=6), cost=EndEffectorCostConfig(collision=1.0))
    planner.update(good)
    assert planner.mppi.config.horizon == 6 and planner.cost.config.collision == 1.0
    assert planner.mppi.trajectory_cost is planner.cost
