"""BC and BMIL on heightmaps: the policy network's equivariance (features and action, also after
export), BMIL's imagined traces in the encoder's feature space turning with the scene, training on a
synthetic task, the checkpoint round trip, and `equimanip train bmil --input heightmap` on recorded
expert episodes, evaluated in the simulation."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from equimanip import symmetry as sym
from equimanip.data.dataset import Dataset, DatasetConfig, EpisodeReport
from equimanip.learning.backward import BackwardConfig, BackwardModels, trace_length
from equimanip.learning.bc import BCConfig
from equimanip.learning.bmil import BMILConfig
from equimanip.learning.heightmap_imitation import HeightmapConfig, train_on_heightmaps
from equimanip.models.config import NetworkConfig
from equimanip.models.heightmap_policy import HeightmapPolicyNet, feature_layout
from equimanip.perception.observation import Observation, ObservationConfig

torch.set_num_threads(1)  # the machine is shared: one thread is also the fastest for these nets

SIZE = 16                 # the smallest heightmap the compact encoder takes: fast tests


def turn(g: sym.GroupElement, heightmaps: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(sym.transform_heightmap(g, heightmaps.numpy()).copy())


@pytest.mark.parametrize("group, element", [("c8", sym.GroupElement(math.pi / 2)),
                                            ("d4", sym.GroupElement(math.pi / 2, True)),
                                            ("so2", sym.GroupElement(-math.pi / 2))])
def test_features_and_action_turn_with_the_heightmap_also_after_export(group, element):
    torch.manual_seed(0)
    net = HeightmapPolicyNet(NetworkConfig(group=group, n_hidden=8, heightmap_size=SIZE), features=2,
                             hidden=32, depth=3).eval()
    x = torch.rand(4, 2, SIZE, SIZE)
    layout = feature_layout(2)
    with torch.no_grad():
        for network in (net, net.export()):
            z, z_turned = network.features(x), network.features(turn(element, x))
            a, a_turned = network(x), network(turn(element, x))
            assert (z_turned - sym.transform(layout, element, z)).abs().max() < 1e-4 * z.abs().max()
            assert (a_turned - sym.transform(sym.ACTION_LAYOUT, element, a)).abs().max() < 1e-4 * a.abs().max()
        np.testing.assert_allclose(net.export()(x).numpy(), net(x).numpy(), atol=1e-5)
    plain = HeightmapPolicyNet(NetworkConfig(group="none", n_hidden=8, heightmap_size=SIZE), features=2, hidden=32)
    with torch.no_grad():         # the plain CNN is not equivariant (the comparison would be vacuous otherwise)
        a, a_turned = plain(x), plain(turn(element, x))
        assert (a_turned - sym.transform(sym.ACTION_LAYOUT, element, a)).abs().max() > 1e-3


def test_imagined_traces_in_feature_space_turn_with_the_scene():
    """BMIL on heightmaps imagines in the encoder's features: for a rotated scene (and the noise
    rotated alike) the traces are the rotated traces."""
    torch.manual_seed(1)
    g = sym.GroupElement(math.pi / 2)
    net = HeightmapPolicyNet(NetworkConfig(group="c4", n_hidden=8, heightmap_size=SIZE), features=2, hidden=32).eval()
    layout = feature_layout(2)
    models = BackwardModels(layout, sym.ACTION_LAYOUT, "c4", BackwardConfig(hidden=32, depth=3))
    x = torch.rand(5, 2, SIZE, SIZE)
    with torch.no_grad():
        z, z_turned = net.features(x), net.features(turn(g, x))
    noise = [(torch.randn(5, 5), torch.randn(5, layout.size)) for _ in range(2)]
    turned_noise = [(sym.transform(sym.ACTION_LAYOUT, g, a), sym.transform(layout, g, s)) for a, s in noise]
    traces = models.imagine(z, 2, noise=noise)
    turned = models.imagine(z_turned, 2, noise=turned_noise)
    assert (turned.states - sym.transform(layout, g, traces.states)).abs().max() < 1e-4 * traces.states.abs().max()
    assert (turned.actions - sym.transform(sym.ACTION_LAYOUT, g, traces.actions)).abs().max() < 1e-4
    assert torch.equal(traces.next_states[0], z)               # traces start at the demonstration's features


def block_dataset(n: int = 96, seed: int = 0) -> Dataset:
    """A block (a 3 x 3 patch of height) somewhere on the heightmap and an expert that steps
    towards it: the action's (dx, dy) points at the block, the rest is fixed."""
    rng = np.random.default_rng(seed)
    heightmaps = np.zeros((n, 2, SIZE, SIZE), np.float32)
    actions = np.zeros((n, 5))
    for k in range(n):
        row, col = rng.integers(1, SIZE - 2, 2)
        heightmaps[k, 0, row:row + 3, col:col + 3] = 0.05
        heightmaps[k, 1] = 1.0
        # Pixel column j is base +x, row i base -y; the gripper sits at the image centre.
        dx, dy = (col + 1.5 - SIZE / 2), -(row + 1.5 - SIZE / 2)
        actions[k] = [1.0, 0.05 * dx / (SIZE / 2), 0.05 * dy / (SIZE / 2), 0.0, 0.0]
    ee = np.tile([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0], (n, 1))
    observation = ObservationConfig(heightmap_size=SIZE, heightmap_mode="gripper", compute_object_state=False)
    report = EpisodeReport(name="synthetic", success=True, finished=True, transitions=n, used=True)
    states = np.zeros((n, observation.object_state_dim), np.float32)
    return Dataset(config=DatasetConfig(observation=observation, heightmaps=True), reports=[report], partial=[],
                   states=states, actions=actions, next_states=states, ee_poses=ee, next_ee_poses=ee,
                   episode=np.zeros(n, np.int64), step=np.arange(n), heightmaps=heightmaps,
                   next_heightmaps=np.roll(heightmaps, 1, axis=0), control_period=0.1)


def test_bc_and_bmil_on_heightmaps_learn_and_the_checkpoint_reproduces_the_policy(tmp_path):
    from equimanip.checkpoint import load_policy
    from equimanip.learning.bc import save_policy

    data = block_dataset()
    small = HeightmapConfig(n_hidden=8, heightmap_size=SIZE, features=4)
    quick = BCConfig(group="c4", epochs=8, steps_per_epoch=25, hidden=64, lr=1e-3)
    policy, models, log = train_on_heightmaps(data, quick, small)
    assert models is None and log[-1]["loss"] < 0.5 * log[0]["loss"]

    bmil = BMILConfig(policy=quick, backward=BackwardConfig(hidden=32, depth=3), trace_lengths=(1, 2), demo_repeat=1)
    bmil_policy, models, bmil_log = train_on_heightmaps(data, quick, small, bmil=bmil)
    assert isinstance(models, BackwardModels) and models.state_layout == feature_layout(4)
    assert [row["trace_length"] for row in bmil_log] == [trace_length(e, (1, 8), (1, 2)) for e in range(8)]
    assert all(row["fit_epochs"] >= 4 and math.isfinite(row["heldout"]) for row in bmil_log)

    path = save_policy(tmp_path / "bmil.pt", bmil_policy, "bmil", "block_picking")
    loaded = load_policy(path)
    assert loaded.input_kind == "heightmap" and loaded.checkpoint.network["features"] == 4
    for k in range(4):
        observation = Observation(heightmap=data.heightmaps[k], object_state=data.states[k], ee_pose=data.ee_poses[k])
        np.testing.assert_allclose(loaded.act(observation), bmil_policy.act(observation), atol=1e-5)
    with pytest.raises(ValueError, match=r"takes a heightmap of shape \(2, 16, 16\)"):
        loaded.act(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        loaded.act(np.full((2, SIZE, SIZE), np.nan, np.float32))


def test_a_dataset_of_another_heightmap_view_is_refused():
    data = block_dataset(8)
    data.config = dataclasses.replace(data.config, observation=dataclasses.replace(
        data.config.observation, heightmap_mode="table"))
    with pytest.raises(ValueError, match="gripper-centred view"):
        train_on_heightmaps(data, BCConfig(epochs=1), HeightmapConfig(heightmap_size=SIZE))


def test_a_dataset_without_heightmaps_is_refused():
    data = block_dataset(8)
    data.heightmaps = None
    with pytest.raises(ValueError, match="without heightmaps"):
        train_on_heightmaps(data, BCConfig(epochs=1), HeightmapConfig(heightmap_size=SIZE))


def test_train_bmil_on_recorded_heightmaps_and_evaluate_in_the_simulation(tmp_path):
    """The whole path on real data: expert episodes recorded as bags, `equimanip train bmil
    --input heightmap` (features from the heightmaps the dataset builds), the checkpoint run by
    `equimanip eval` in the simulation (the heightmap view the checkpoint names)."""

    from equimanip.data.sim_writer import record_expert_episodes
    from equimanip.learning.bmil import main as train_bmil_main
    from equimanip.learning.evaluate import main as eval_main

    demos = tmp_path / "demos"
    record_expert_episodes(demos, "block_picking", 2, seed=0)
    out = tmp_path / "run"
    assert train_bmil_main(["--demos", str(demos), "--input", "heightmap", "--group", "c4", "--heightmap-size", "16",
                            "--features", "2", "--hidden", "32", "--epochs", "2", "--steps-per-epoch", "3",
                            "--demo-repeat", "1", "--out", str(out), "--json"]) == 0
    from equimanip.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(out / "policy.pt")
    assert checkpoint.input_kind == "heightmap" and checkpoint.observation_config.heightmap_mode == "gripper"
    assert checkpoint.observation_config.heightmap_size == 16 and checkpoint.network["group"] == "c4"
    assert eval_main(["--checkpoint", str(out / "policy.pt"), "--episodes", "1", "--max-steps", "3", "--json"]) == 0


def test_the_goal_asked_for_in_the_state_reaches_a_heightmap_policy_as_a_channel():
    from equimanip.learning.heightmap_imitation import heightmap_observation

    view = heightmap_observation(ObservationConfig(goal_in_state=True), HeightmapConfig(heightmap_size=SIZE))
    assert view.goal_channel and not view.goal_in_state and view.heightmap_channels == 3
    assert view.heightmap_mode == "gripper" and not view.compute_object_state and view.heightmap_size == SIZE


def test_heightmap_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="heightmap_size"):
        HeightmapConfig(heightmap_size=20).validate()
    with pytest.raises(ValueError, match="features"):
        HeightmapConfig(features=0).validate()
