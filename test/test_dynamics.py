"""Learned dynamics (equimanip.learning.dynamics): exact equivariance under the group, a fit that
recovers known dynamics, checkpoints of kind 'dynamics', pushing exploration in one quadrant, and
`equimanip train dynamics`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from equimanip import symmetry as sym
from equimanip.learning.dynamics import (
    PUSH_STATE_LAYOUT,
    DynamicsConfig,
    DynamicsModel,
    DynamicsSpec,
    Transitions,
    explore_pushing,
    load_dynamics,
    save_dynamics,
    train_dynamics,
)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def random_inputs(layout: sym.Layout, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    states = torch.as_tensor(rng.normal(size=(n, layout.size)), dtype=torch.float32)
    actions = torch.as_tensor(rng.normal(size=(n, 5)) * [0.5, 0.03, 0.03, 0.01, 0.1] + [0.5, 0, 0, 0, 0],
                              dtype=torch.float32)
    return states, actions


@pytest.mark.parametrize("spec", [DynamicsSpec("push", group="c8", hidden=32),
                                  DynamicsSpec("push", group="d4", hidden=32),
                                  DynamicsSpec("object_state", max_objects=2, group="c4", hidden=32)])
def test_dynamics_model_is_equivariant_under_its_group(spec):
    torch.manual_seed(0)
    model = DynamicsModel(spec)
    layout = spec.layout()
    states, actions = random_inputs(layout, 64)
    # statistics as training sets them, so that the normalisation is part of what is checked
    model.set_statistics(states.numpy() * 2 + 1, states.numpy() * 0.1)
    for m in (model.eval(), model.export()):
        with torch.no_grad():
            out = m(states, actions)
            for g in sym.group(spec.group).elements():
                turned = m(sym.transform(layout, g, states), sym.transform_action(g, actions))
                error = float((turned - sym.transform(layout, g, out)).abs().max())
                assert error < 1e-4, (spec.group, g, error)


def test_plain_model_is_not_equivariant():
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsSpec("push", group="none", hidden=32)).eval()
    states, actions = random_inputs(PUSH_STATE_LAYOUT, 64)
    g = sym.GroupElement(math.pi / 2)
    with torch.no_grad():
        error = (model(sym.transform(PUSH_STATE_LAYOUT, g, states), sym.transform_action(g, actions))
                 - sym.transform(PUSH_STATE_LAYOUT, g, model(states, actions))).abs().max()
    assert float(error) > 1e-2


def synthetic_pushes(n: int, seed: int) -> Transitions:
    """Known equivariant dynamics in the push layout: the gripper's step moves the block's offset
    back by the step, and a block within ~6 cm is carried along with 80 % of the step."""
    rng = np.random.default_rng(seed)
    g, b = rng.uniform(-math.pi, math.pi, n), rng.uniform(-math.pi, math.pi, n)
    offset = rng.uniform(-0.1, 0.1, (n, 2))
    states = np.column_stack([np.cos(2 * g), np.sin(2 * g), offset, np.full(n, 0.0), np.cos(4 * b), np.sin(4 * b)])
    step = rng.uniform(-0.03, 0.03, (n, 2))
    actions = np.column_stack([np.zeros(n), step, np.zeros((n, 2))])
    carried = 0.8 * np.exp(-np.sum(offset ** 2, axis=1) / 0.06 ** 2)[:, None]
    nxt = states.copy()
    nxt[:, 2:4] = offset - step + carried * step
    return Transitions(states.astype(np.float32), actions.astype(np.float32), nxt.astype(np.float32),
                       np.arange(n) // 20)


def test_fit_recovers_synthetic_dynamics():
    data = synthetic_pushes(2000, 0)
    model, log = train_dynamics(data, DynamicsConfig(DynamicsSpec("push", group="c4", hidden=48), epochs=20,
                                                     batch_size=128, lr=3e-3, validation_share=0.0))
    test = synthetic_pushes(500, 1)
    with torch.no_grad():
        predicted = model(torch.as_tensor(test.states), torch.as_tensor(test.actions)).numpy()
    true_delta = test.next_states[:, 2:4] - test.states[:, 2:4]
    error = predicted[:, 2:4] - test.next_states[:, 2:4]
    # on held-out samples: most of the motion explained, to a few millimetres on steps of up to 3 cm
    r2 = 1.0 - np.mean(error ** 2) / np.mean((true_delta - true_delta.mean(0)) ** 2)
    assert r2 > 0.95 and np.sqrt(np.mean(error ** 2)) < 0.003, r2
    assert log[-1]["loss"] < log[0]["loss"]


def test_checkpoint_round_trip_and_other_kinds_refused(tmp_path):
    from equimanip.checkpoint import save_checkpoint
    from equimanip.perception.observation import ObservationConfig

    torch.manual_seed(1)
    model = DynamicsModel(DynamicsSpec("push", group="c8", hidden=32)).eval()
    model.set_statistics(*(np.random.default_rng(0).normal(size=(2, 50, 7))))
    path = save_dynamics(tmp_path / "d.pt", model, "block_pushing", metadata={"note": "test"})
    loaded = load_dynamics(path)
    states, actions = random_inputs(PUSH_STATE_LAYOUT, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(states, actions), model(states, actions), atol=1e-5)
    assert loaded.spec == model.spec
    other = save_checkpoint(tmp_path / "o.pt", "bc", network_config={}, observation_config=ObservationConfig(),
                            task="reach", state_dicts={"m": {"w": torch.zeros(1)}})
    with pytest.raises(ValueError, match="'bc' checkpoint, expected 'dynamics'"):
        load_dynamics(other)


def test_exploration_keeps_the_block_in_its_quadrant_at_the_start():
    data = explore_pushing(episodes=3, steps=2, quadrant=1, seed=3)
    assert len(data) == 6 and data.states.shape == (6, 7)
    first = data.states[::2]                                   # each episode's first state
    angles = np.arctan2(first[:, 3], first[:, 2])
    assert np.all((angles >= math.pi / 2 - 1e-3) & (angles <= math.pi + 1e-3)), angles
    assert np.all(np.hypot(first[:, 2], first[:, 3]) < 0.1)
    np.testing.assert_allclose(first[:, 0], 1.0, atol=0.02)    # yaw 0: cos 2 yaw = 1


def test_train_command_writes_a_checkpoint(tmp_path, capsys):
    from equimanip.cli import main

    synthetic_pushes(200, 2).save(tmp_path / "t.npz")
    code = main(["train", "dynamics", "--data", str(tmp_path / "t.npz"), "--group", "none", "--hidden", "16",
                 "--epochs", "2", "--out", str(tmp_path / "run"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] == 200 and summary["kind"] == "dynamics"
    assert load_dynamics(summary["checkpoint"]).spec.group == "none"
    assert (tmp_path / "run" / "log.csv").exists()
    assert main(["train", "dynamics", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r2")]) == 1
