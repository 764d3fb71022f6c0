"""The checkpoint format: round trip bit for bit, provenance, and clear refusals of bad files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equimanip import checkpoint as ckpt
from equimanip import symmetry as sym
from equimanip.action import ACTION_HIGH, ACTION_LOW
from equimanip.models import NetworkConfig, make_actor, make_critic
from equimanip.perception.observation import Observation, ObservationConfig
from equimanip.sim.task_names import TASK_NAMES

torch.set_num_threads(1)   # a 2-core shared machine: more threads only contend

NET = NetworkConfig(group="c4", n_hidden=8, heightmap_size=16)
OBS = ObservationConfig(heightmap_size=16, compute_object_state=False)


def trained_like_networks(cfg: NetworkConfig = NET):
    """Networks whose weights are not the initial ones (a trained actor's are arbitrary)."""
    torch.manual_seed(0)
    actor, critic = make_actor(cfg), make_critic(cfg)
    with torch.no_grad():
        for p in [*actor.parameters(), *critic.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    return actor, critic


def observation(seed: int = 0, size: int = 16) -> Observation:
    rng = np.random.default_rng(seed)
    heightmap = np.zeros((2, size, size), dtype=np.float32)
    heightmap[0] = rng.uniform(0, 0.05, (size, size))
    heightmap[1] = 0.7
    return Observation(heightmap=heightmap, object_state=np.zeros(OBS.object_state_dim, dtype=np.float32))


def save(path, actor, critic, **changes):
    options = dict(kind="sac", actor=actor, critic=critic, network_config=NET, observation_config=OBS,
                   task="block_picking", command="equimanip train sac --test", metadata={"step": np.int64(7)})
    options.update(changes)
    return ckpt.save_checkpoint(path, **options)


def test_round_trip_is_bit_for_bit(tmp_path):
    actor, critic = trained_like_networks()
    path = save(tmp_path / "run" / "best.pt", actor, critic)
    loaded = ckpt.load_checkpoint(path, kind="sac")
    for name, net in (("actor", actor), ("critic", critic)):
        original = net.state_dict()
        assert set(loaded.state_dicts[name]) == set(original)
        assert all(torch.equal(loaded.state_dicts[name][k], original[k]) for k in original)
    assert loaded.observation_config == OBS and NetworkConfig.from_dict(loaded.network) == NET
    assert loaded.metadata == {"step": 7} and loaded.command == "equimanip train sac --test"

    # The same exported network on the same input: identical actions, to the last bit.
    reference = ckpt.Policy(lambda x: torch.tanh(actor.export()(x)[0]), loaded)
    plain = ckpt.load_policy(path, optimize=False)
    fast = ckpt.load_policy(path)
    for seed in range(3):
        obs = observation(seed)
        expected = reference.act(obs)
        assert np.array_equal(plain.act(obs), expected)
        np.testing.assert_allclose(fast.act(obs), expected, atol=1e-6)
        assert np.all(expected >= ACTION_LOW) and np.all(expected <= ACTION_HIGH)


def test_policy_interface_provenance_and_equivariance(tmp_path):
    actor, critic = trained_like_networks()
    policy = ckpt.load_policy(save(tmp_path / "c.pt", actor, critic))
    assert policy.input_kind == "heightmap" and policy.task == "block_picking"
    assert policy.observation_config.heightmap_size == 16
    meta = policy.metadata
    assert meta["kind"] == "sac" and meta["network"]["group"] == "c4" and meta["step"] == 7
    assert meta["revision"] == ckpt.git_revision() and meta["created"] and meta["format_version"] == 1
    # The deployed policy (tanh, scaling, export, CPU optimisation) still turns with the scene.
    obs = observation(1)
    action = policy.act(obs)
    g = sym.GroupElement(math.pi / 2)
    turned = Observation(heightmap=sym.transform_heightmap(g, obs.heightmap), object_state=obs.object_state)
    np.testing.assert_allclose(policy.act(turned), sym.transform_action(g, action), atol=1e-5)
    # Bad observations are refused with a clear message, never answered.
    with pytest.raises(ValueError, match=r"shape \(2, 16, 16\)"):
        policy.act(np.zeros((2, 32, 32), dtype=np.float32))
    nan = observation(2)
    nan.heightmap[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        policy.act(nan)


def test_bad_files_are_refused_clearly(tmp_path):
    actor, critic = trained_like_networks()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load_policy(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not an equimanip checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an equimanip checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")

    path = save(tmp_path / "good.pt", actor, critic)
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "format_version": ckpt.FORMAT_VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="newer than this equimanip reads"):
        ckpt.load_checkpoint(tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="is a 'sac' checkpoint, expected 'bmil'"):
        ckpt.load_policy(path, kind="bmil")
    torch.save({**raw, "kind": "mystery"}, tmp_path / "mystery.pt")
    with pytest.raises(ValueError, match="no policy for checkpoint kind 'mystery'"):
        ckpt.load_policy(tmp_path / "mystery.pt")
    torch.save({**raw, "observation": {**raw["observation"], "fancy_filter": 1}}, tmp_path / "obs.pt")
    with pytest.raises(ValueError, match="unknown observation settings"):
        ckpt.load_checkpoint(tmp_path / "obs.pt")

    # Weights of one width under a configuration of another: the shapes do not fit.
    wider = NetworkConfig(group="c4", n_hidden=16, heightmap_size=16)
    with pytest.raises(ValueError, match="do not fit the network the checkpoint describes"):
        ckpt.load_policy(save(tmp_path / "wide.pt", actor, critic, network_config=wider))
    with pytest.raises(ValueError, match="observation settings make 32 x 32"):
        ckpt.load_policy(save(tmp_path / "obs32.pt", actor, critic,
                              observation_config=ObservationConfig(heightmap_size=32)))
    with pytest.raises(ValueError, match="observation settings make 3 .goal_channel True"):
        ckpt.load_policy(save(tmp_path / "goal.pt", actor, critic,
                              observation_config=ObservationConfig(heightmap_size=16, goal_channel=True)))
    with pytest.raises(ValueError, match="low < high"):
        save(tmp_path / "limits.pt", actor, critic, action_low=ACTION_HIGH, action_high=ACTION_LOW)
    with pytest.raises(TypeError, match=r"metadata.when"):
        save(tmp_path / "meta.pt", actor, critic, metadata={"when": object()})
    assert not (tmp_path / "meta.pt").exists()


def test_a_checkpoint_from_before_robot_removal_keeps_its_view(tmp_path):
    """Checkpoints written before ObservationConfig.robot_removal existed were trained on the
    view that dropped everything above the grasp point; loading one must rebuild that view."""
    actor, critic = trained_like_networks()
    raw = torch.load(save(tmp_path / "new.pt", actor, critic), weights_only=True)
    assert ckpt.load_checkpoint(tmp_path / "new.pt").observation_config.robot_removal == "hand_boxes"
    old = {key: value for key, value in raw["observation"].items()
           if key not in ("robot_removal", "hand_box_min", "hand_box_max", "finger_box_min", "finger_box_max")}
    torch.save({**raw, "observation": old}, tmp_path / "old.pt")
    assert ckpt.load_checkpoint(tmp_path / "old.pt").observation_config.robot_removal == "above_grasp_point"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_ships_a_policy_the_node_can_run(task):
    """`equimanip run --task T --controller policy` without --checkpoint loads these (make checkpoints)."""
    from equimanip.nodes.policy_node import shipped_checkpoint

    policy = ckpt.load_policy(shipped_checkpoint(task))
    # Equivariant SAC for every task but block_pushing, which ships equivariant BMIL (Makefile).
    learner = "bmil --demos runs/shipped_block_pushing_demos" if task == "block_pushing" else f"sac --task {task}"
    assert policy.task == task and policy.metadata["command"].startswith(f"equimanip train {learner} ")
    assert len(policy.metadata["revision"]) >= 40
    size = policy.observation_config.heightmap_size
    blank = Observation(heightmap=np.zeros((2, size, size), dtype=np.float32),
                        object_state=np.zeros(policy.observation_config.object_state_dim, dtype=np.float32),
                        ee_pose=np.array([0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0]))   # imitation policies need it
    action = policy.act(blank)
    assert action.shape == (5,) and np.all(np.isfinite(action))
    assert np.all(action >= ACTION_LOW - 1e-6) and np.all(action <= ACTION_HIGH + 1e-6)


def test_the_training_camera_of_a_checkpoint_or_none_when_unknown_or_malformed(tmp_path):
    """policy_node's camera check reads it at every policy load: a malformed entry or a parameter
    file missing here gives 'unknown', never an exception that would stop the policy."""
    from equimanip.checkpoint import training_camera_pose
    from equimanip.config import cell_parameters

    side = cell_parameters(["side_camera"])["camera_pose"]
    np.testing.assert_allclose(training_camera_pose({"cell_params": ["side_camera"]}), side)
    np.testing.assert_allclose(training_camera_pose({"camera_pose": side, "cell_params": ["sim"]}), side)
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**: [unclosed")
    for metadata in ({}, {"camera_pose": "here"}, {"camera_pose": [1.0, 2.0]}, {"camera_pose": [0.0] * 7},
                     {"camera_pose": [float("nan")] * 7}, {"cell_params": ["no_such_cell"]},
                     {"cell_params": [str(broken)]}, {"cell_params": ["sim"]}):
        assert training_camera_pose(metadata) is None, metadata


def test_a_revision_is_dirty_when_code_is_modified_not_when_only_documentation_is(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    assert ckpt.tree_revision(tmp_path) == "unknown"
    (tmp_path / "docs").mkdir()
    for name in ("code.py", "README.md", "docs/results.csv"):
        (tmp_path / name).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    clean = ckpt.tree_revision(tmp_path)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (tmp_path / "docs/results.csv").write_text("a\nrow added while a run trains\n")
    (tmp_path / "README.md").write_text("b\n")
    (tmp_path / "untracked.py").write_text("x\n")
    assert ckpt.tree_revision(tmp_path) == clean
    (tmp_path / "code.py").write_text("b\n")
    assert ckpt.tree_revision(tmp_path) == clean + "-dirty"
