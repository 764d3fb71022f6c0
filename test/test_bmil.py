"""Backwards models, imagined traces, BC and BMIL: shapes, a fit of known linear dynamics, traces
that end at the demonstrations, and exact equivariance of the equivariant variant."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equimanip import symmetry as sym
from equimanip.data.dataset import Dataset, DatasetConfig, EpisodeReport
from equimanip.learning.backward import (
    BackwardConfig,
    BackwardModels,
    GaussianModel,
    bound_normalised_action,
    trace_length,
)
from equimanip.learning.bc import BCConfig, ImitationPolicy, PolicySpec, state_layout, train_bc
from equimanip.learning.bmil import BMILConfig, train_bmil
from equimanip.perception.observation import ObservationConfig

torch.set_num_threads(1)  # the machine is shared: one thread is also the fastest for these nets

SMALL = BackwardConfig(hidden=32, depth=3)


def plain_layout(n: int, prefix: str) -> sym.Layout:
    return sym.Layout(tuple(sym.scalar(f"{prefix}{i}") for i in range(n)))


def test_shapes():
    S, A = state_layout(2), sym.ACTION_LAYOUT
    models = BackwardModels(S, A, "none", SMALL)
    s = torch.randn(7, S.size)
    a_mean, a_logvar = models.predict_action(s)
    s_mean, s_logvar = models.predict_change(s, a_mean)
    assert a_mean.shape == a_logvar.shape == (7, 5) and s_mean.shape == s_logvar.shape == (7, S.size)
    assert torch.all(a_logvar <= 0.5 + 1e-6) and torch.all(a_logvar >= -10 - 1e-6)
    traces = models.imagine(s, 3, torch.Generator().manual_seed(0))
    assert traces.states.shape == (3, 7, S.size) and traces.actions.shape == (3, 7, 5)
    flat = traces.flat()
    assert [t.shape for t in flat] == [(21, S.size), (21, 5), (21, S.size)]
    # One log-variance per field: the two entries of a vector field share theirs.
    g = GaussianModel(S, A, "c4", 16, 2)
    _, logvar = g(torch.randn(3, S.size))
    assert torch.equal(logvar[:, 1], logvar[:, 2])
    with pytest.raises(ValueError, match="trace length"):
        models.imagine(s, 0)


def test_fit_recovers_linear_dynamics():
    # s' uniform; the demonstrator's action is C s'; the state before is s' - B a plus noise 0.05.
    rng = np.random.default_rng(0)
    D, A, N, sigma = 3, 2, 2000, 0.05
    C = rng.normal(size=(A, D)) * 0.5
    B = rng.normal(size=(D, A)) * 0.5
    s_next = rng.uniform(-1, 1, size=(N, D))
    a = s_next @ C.T
    s = s_next - a @ B.T + rng.normal(scale=sigma, size=(N, D))
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    torch.manual_seed(0)     # the networks' initial weights
    models = BackwardModels(plain_layout(D, "s"), plain_layout(A, "a"), "none",
                            BackwardConfig(hidden=64, depth=3, bound_action=False))
    gen = torch.Generator().manual_seed(0)
    # Refit as BMIL does each epoch; each call continues from the last. Each fit stops early
    # (patience 3), so after 3 refits the worst error of B over 40 initial weights was 0.042 and a
    # CI run drew 0.053; after 6 refits the worst of 40 was 0.033 (1 and 2 threads alike).
    for _ in range(6):
        result = models.fit(t(s), t(a), t(s_next), gen)
    assert result["epochs"] >= 4 and result["heldout"] < 0.01

    probe = rng.uniform(-0.9, 0.9, size=(500, D))
    a_mean, a_logvar = models.predict_action(t(probe))
    C_fit = np.linalg.lstsq(probe, a_mean.detach().numpy(), rcond=None)[0].T
    assert np.abs(C_fit - C).max() < 0.05
    change, change_logvar = models.predict_change(t(probe), t(probe @ C.T))
    B_fit = -np.linalg.lstsq(probe @ C.T, change.detach().numpy(), rcond=None)[0].T
    assert np.abs(B_fit - B).max() < 0.05
    # The learnt spread of the state change is the noise's (variance 0.0025), within a factor 2.
    variance = float(torch.exp(change_logvar).mean().detach())
    assert sigma ** 2 / 2 < variance < sigma ** 2 * 2
    # The action is a deterministic function of s': its variance is learnt far below the noise's.
    assert float(torch.exp(a_logvar).mean().detach()) < sigma ** 2 / 4


def test_imagined_traces_end_at_demonstration_states():
    S, A = state_layout(1), sym.ACTION_LAYOUT
    models = BackwardModels(S, A, "none", SMALL)
    starts = torch.randn(11, S.size)
    traces = models.imagine(starts, 4, torch.Generator().manual_seed(1))
    assert torch.equal(traces.next_states[0], starts)                  # step 0 ends at the demos
    for k in range(3):                                                  # each step ends where the next began
        assert torch.equal(traces.next_states[k + 1], traces.states[k])
    assert not torch.equal(traces.states[0], starts)
    assert torch.all(traces.actions.abs() <= 1.0 + 1e-6)               # imagined actions in the limits


def test_trace_length_schedule_is_the_references():
    lengths = [trace_length(e, (1, 200), (1, 3)) for e in range(200)]
    assert lengths[0] == 1 and lengths[100] == 1 and lengths[101] == 2 and lengths[-1] == 2
    assert {trace_length(e, (1, 200), (1, 1)) for e in range(200)} == {1}
    # A schedule that starts and ends at one epoch (--trace-epochs 50 50) is a step there.
    assert [trace_length(e, (50, 50), (1, 3)) for e in (0, 49, 50, 199)] == [1, 1, 3, 3]


@pytest.mark.parametrize("group, element", [("c8", sym.GroupElement(3 * math.pi / 4)),
                                            ("d4", sym.GroupElement(math.pi / 2, True))])
def test_equivariant_models_and_traces(group, element):
    torch.manual_seed(0)
    S, A = state_layout(2), sym.ACTION_LAYOUT
    g = sym.GroupElement(sym._wrap(element.angle), element.flip)
    models = BackwardModels(S, A, group, BackwardConfig(hidden=32, depth=3))
    policy = ImitationPolicy(PolicySpec(group=group, hidden=32, depth=3, max_objects=2,
                                        observation=ObservationConfig(max_objects=2)))
    s = torch.randn(16, S.size)
    gs = sym.transform(S, g, s)

    np.testing.assert_allclose(policy(gs).detach(), sym.transform(A, g, policy(s)).detach(), atol=1e-4)
    a_mean, a_logvar = models.predict_action(s)
    ga_mean, ga_logvar = models.predict_action(gs)
    assert (ga_mean - sym.transform(A, g, a_mean)).abs().max() < 1e-4
    assert (ga_logvar - a_logvar).abs().max() < 1e-4                    # spreads are invariant
    big = torch.randn(16, 5) * 3                                         # the clamp commutes too
    assert (bound_normalised_action(sym.transform(A, g, big), group)
            - sym.transform(A, g, bound_normalised_action(big, group))).abs().max() < 1e-5

    # A rotated demonstration, imagined with the noise rotated alike, gives the rotated traces.
    gen = torch.Generator().manual_seed(3)
    noise = [(torch.randn(16, 5, generator=gen), torch.randn(16, S.size, generator=gen)) for _ in range(3)]
    g_noise = [(sym.transform(A, g, ea), sym.transform(S, g, es)) for ea, es in noise]
    traces = models.imagine(s, 3, noise=noise)
    rotated = models.imagine(gs, 3, noise=g_noise)
    for mine, theirs, layout in ((traces.states, rotated.states, S), (traces.actions, rotated.actions, A),
                                 (traces.next_states, rotated.next_states, S)):
        assert (theirs - sym.transform(layout, g, mine)).abs().max() < 1e-4
    # Without transforming the noise the traces differ: the test above is not vacuous.
    plain = models.imagine(gs, 3, noise=noise)
    assert (plain.states - sym.transform(S, g, traces.states)).abs().max() > 1e-2


def synthetic_dataset(n: int = 240, max_objects: int = 1, seed: int = 0) -> Dataset:
    """A real Dataset of a linear 'expert' (no simulation): the action steers towards the object."""
    rng = np.random.default_rng(seed)
    D = 3 + 9 * max_objects
    states = np.zeros((n, D), np.float32)
    states[:, 0] = 1.0
    states[:, 2] = 1.0
    states[:, 3] = 1.0
    states[:, 4:7] = rng.uniform(-0.1, 0.1, size=(n, 3))
    actions = np.zeros((n, 5), np.float32)
    actions[:, 0] = 1.0
    actions[:, 1:4] = np.clip(states[:, 4:7] * 0.5, -0.05, 0.05)
    next_states = states.copy()
    next_states[:, 4:7] -= actions[:, 1:4]
    ee = np.tile([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], (n, 1))
    report = EpisodeReport(name="synthetic", success=True, finished=True, transitions=n, used=True)
    return Dataset(config=DatasetConfig(observation=ObservationConfig(max_objects=max_objects)), reports=[report],
                   partial=[], states=states, actions=actions, next_states=next_states, ee_poses=ee,
                   next_ee_poses=ee, episode=np.zeros(n, np.int64), step=np.arange(n), control_period=0.1)


def test_bc_and_bmil_learn_a_linear_expert():
    data = synthetic_dataset()
    quick = BCConfig(epochs=10, steps_per_epoch=100, hidden=64, lr=1e-3)
    policy, log = train_bc(data, quick)
    assert log[-1]["loss"] < 0.1 * log[0]["loss"]
    x = torch.as_tensor(np.concatenate([data.states, data.ee_poses[:, 2:3]], axis=1), dtype=torch.float32)
    predicted = policy(x).detach().numpy() * np.array([0.5, 0.05, 0.05, 0.05, math.pi / 8]) + [0.5, 0, 0, 0, 0]
    assert np.abs(predicted[:, 1:4] - data.actions[:, 1:4]).mean() < 0.01

    policy, models, log = train_bmil(data, BMILConfig(policy=quick, backward=BackwardConfig(hidden=64, depth=3),
                                                      trace_lengths=(1, 2)))
    assert [row["trace_length"] for row in log] == [trace_length(e, (1, 10), (1, 2)) for e in range(10)]
    assert all(row["fit_epochs"] >= 4 for row in log)
    predicted = policy(x).detach().numpy() * np.array([0.5, 0.05, 0.05, 0.05, math.pi / 8]) + [0.5, 0, 0, 0, 0]
    assert np.abs(predicted[:, 1:4] - data.actions[:, 1:4]).mean() < 0.02     # half the imagined data


def test_reference_clamp_keeps_the_log_variance_below_its_lower_bound():
    models = BackwardModels(state_layout(1), sym.ACTION_LAYOUT, "none",
                            BackwardConfig(hidden=16, depth=2, logvar_clamp="reference"))
    _, logvar = models.predict_action(torch.randn(5, state_layout(1).size) * 10)
    assert torch.all(logvar <= models.action_model.min_logvar[0])


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="group must be one of"):
        BCConfig(group="c5").validate()
    with pytest.raises(ValueError, match="demo_ratio"):
        BMILConfig(demo_ratio=1.5).validate()
    with pytest.raises(ValueError, match="noise_mode"):
        BackwardConfig(noise_mode="loud").validate()


def test_standardised_inputs_keep_the_symmetry_and_the_checkpoint_reproduces_them(tmp_path):
    """Inputs are standardised per field: scalars centred and scaled, vectors only scaled (a shift
    would break the symmetry). The equivariant policy stays exact with them, and the exported policy
    a checkpoint loads applies them as training did."""
    from equimanip.checkpoint import load_policy
    from equimanip.learning.bc import input_standardisation, save_policy, state_features
    from equimanip.perception.observation import Observation

    data = synthetic_dataset()
    layout = state_layout(1)
    features = state_features(data.states, data.ee_poses, 0.0)
    shift, scale = input_standardisation(layout, features)
    dx = layout.index("obj0.dx")
    height = layout.index("obj0.dz")
    assert shift[dx] == 0.0 and scale[dx] > 1.0                       # a vector: scaled, never shifted
    assert shift[height] == pytest.approx(features[:, height].mean(), abs=1e-6)
    aperture = layout.index("gripper_aperture")                      # constant in the data: left alone
    assert (shift[aperture], scale[aperture]) == (0.0, 1.0)

    policy, _ = train_bc(data, BCConfig(group="c4", epochs=2, steps_per_epoch=20, hidden=32))
    assert policy.spec.input_shift == shift and policy.spec.input_scale == scale
    x = torch.as_tensor(features[:8])
    g = sym.GroupElement(math.pi / 2)
    turned = policy(torch.as_tensor(sym.transform(layout, g, features[:8]).astype(np.float32))).detach()
    assert (turned - sym.transform(sym.ACTION_LAYOUT, g, policy(x).detach())).abs().max() < 1e-5

    loaded = load_policy(save_policy(tmp_path / "bc.pt", policy, "bc", "block_picking"))
    for k in range(4):
        observation = Observation(heightmap=np.zeros((2, 4, 4), np.float32), object_state=data.states[k],
                                  ee_pose=data.ee_poses[k])
        np.testing.assert_allclose(loaded.act(observation), policy.act(observation), atol=1e-5)
    for pose in (None, np.full(7, np.nan)):          # no end-effector pose: a clear error, no action
        with pytest.raises(ValueError, match="end-effector pose is missing or has non-finite"):
            loaded.act(Observation(heightmap=np.zeros((2, 4, 4), np.float32), object_state=data.states[0],
                                   ee_pose=pose))
    raw, _ = train_bc(data, BCConfig(epochs=1, steps_per_epoch=5, hidden=32, standardise_inputs=False))
    assert raw.spec.input_shift is None and not raw.input_shift.any() and raw.input_scale.eq(1).all()


def test_the_gripper_aperture_stays_raw_unless_asked():
    """The aperture (the trace of the policy's own gripper command) is left as it is by default
    (bc.RAW_ENTRIES: standardised, it broke BC on block_picking); the rest is standardised."""
    from equimanip.learning.bc import RAW_ENTRIES, DemoArrays, input_standardisation, policy_spec, state_features

    data = synthetic_dataset()
    layout = state_layout(1)
    aperture, dz = layout.index("gripper_aperture"), layout.index("obj0.dz")
    data.states[:, aperture] = np.linspace(0.5, 1.0, len(data.states))      # open and closed, as picking's
    features = state_features(data.states, data.ee_poses, 0.0)
    kept = input_standardisation(layout, features, keep_raw=RAW_ENTRIES)
    every = input_standardisation(layout, features)
    assert (kept[0][aperture], kept[1][aperture]) == (0.0, 1.0) and every[1][aperture] > 1.0
    assert kept[0][dz] == every[0][dz] != 0.0 and kept[1][dz] == every[1][dz] != 1.0
    demos = DemoArrays.from_dataset(data)
    assert policy_spec(BCConfig(), data, demos).input_scale[aperture] == 1.0
    assert policy_spec(BCConfig(standardise_aperture=True), data, demos).input_scale[aperture] > 1.0


def test_train_observation_settings_come_from_the_cells_parameter_file_then_the_flags():
    """`equimanip train bc|bmil --params side_camera --observation cluster_eps=0.05`."""
    from equimanip.learning.bc import observation_config_from

    side = observation_config_from(["cluster_eps=0.05", "goal_in_state=true"], ["side_camera"])
    assert (side.cluster_eps, side.cluster_min_points, side.min_object_points) == (0.05, 5, 8)
    assert side.goal_in_state and observation_config_from([]) == ObservationConfig()
    with pytest.raises(ValueError, match="NAME=VALUE"):
        observation_config_from(["no_such_setting=1"])
    with pytest.raises(FileNotFoundError, match="available"):
        observation_config_from([], ["no_such_cell"])


def test_every_bmil_setting_is_an_option_of_train_bmil_with_the_references_default():
    """`equimanip train bmil` maps each option onto its config field; left out, each is the config's
    default (the reference's), and out-of-range values are refused by the parser."""
    from equimanip.learning.bmil import bmil_config_from, build_parser

    parser = build_parser()
    default = bmil_config_from(parser.parse_args(["--demos", "d"]))
    assert default.backward == BackwardConfig() and default.trace_epochs is None
    assert default.schedule() == (1, default.policy.epochs)
    args = parser.parse_args(["--demos", "d", "--bounds-weight", "0.1", "--max-fit-epochs", "7", "--no-bound-action",
                              "--no-clip-imagined-actions", "--trace-epochs", "0", "50"])
    config = bmil_config_from(args)
    b = config.backward
    assert (b.bounds_weight, b.max_fit_epochs, b.bound_action, b.clip_imagined_actions) == (0.1, 7, False, False)
    assert config.trace_epochs == (0, 50) and config.schedule() == (0, 50)
    for bad, message in ((["--bounds-weight", "-1"], "bounds_weight must be"),
                         (["--bounds-weight", "nan"], "bounds_weight must be"),
                         (["--max-fit-epochs", "0"], "max_fit_epochs must be >= 1"),
                         (["--trace-epochs", "5", "2"], "trace_epochs must be")):
        with pytest.raises(ValueError, match=message):
            bmil_config_from(parser.parse_args(["--demos", "d", *bad]))


def test_train_bmil_refuses_an_out_of_range_setting_before_reading_the_demonstrations(capsys):
    from equimanip.learning.bmil import main

    with pytest.raises(SystemExit) as exit_:
        main(["--demos", "/nonexistent", "--bounds-weight", "-0.5"])
    assert exit_.value.code == 2 and "bounds_weight must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("learner", ["bc", "bmil"])
def test_train_dataset_options_choose_the_episodes(learner, capsys):
    """`equimanip train bc|bmil` passes the dataset's selection settings on (a directory recorded at
    several control periods needs --control-period)."""
    from equimanip.learning import bc, bmil
    from equimanip.learning.bc import dataset_config_from

    parser = (bc if learner == "bc" else bmil).build_parser()
    observation = ObservationConfig(max_objects=2)
    default = dataset_config_from(parser.parse_args(["--demos", "d"]), observation)
    assert default == DatasetConfig(observation=observation)
    chosen = dataset_config_from(parser.parse_args(
        ["--demos", "d", "--control-period", "0.2", "--sync-slop", "0.005", "--keep-intact-steps",
         "--include-unfinished", "--include-failed", "--input", "heightmap"]))
    assert chosen == DatasetConfig(control_period=0.2, sync_slop=0.005, strict=False, include_unfinished=True,
                                   only_success=False, heightmaps=True)
    for bad, message in ((["--control-period", "-0.1"], "--control-period must be a positive"),
                         (["--sync-slop", "-1"], "--sync-slop must be a finite number")):
        with pytest.raises(ValueError, match=message):
            dataset_config_from(parser.parse_args(["--demos", "d", *bad]))
    with pytest.raises(SystemExit) as exit_:
        (bc if learner == "bc" else bmil).main(["--demos", "/nonexistent", "--control-period", "0"])
    assert exit_.value.code == 2 and "--control-period must be a positive" in capsys.readouterr().err
