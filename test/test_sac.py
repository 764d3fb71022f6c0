"""SAC: the squashed Gaussian, one update on a fixed batch (critic loss falls, temperature moves the
right way, SACfD pulls toward the expert), and a tiny end-to-end `equimanip train sac` run that
writes its logs, checkpoints and plot and resumes."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equimanip.learning.evaluate import EVAL_SEED_BASE, VALIDATION_SEED_BASE, training_seeds
from equimanip.learning.replay import Batch
from equimanip.learning.sac import SAC, SACConfig, squashed_gaussian

torch.set_num_threads(1)
S = 8


class TinyActor(nn.Module):
    """A plain CNN with the actor's signature: heightmap (B, 2, S, S) -> (mean, log_std) (B, 5)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * S * S, 10))

    def forward(self, heightmap):
        mean, log_std = self.body(heightmap).chunk(2, dim=1)
        return mean, log_std


class TinyCritic(nn.Module):
    """The critic's signature: (heightmap, action (B, 5)) -> (q1, q2) (B, 1)."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.q1 = nn.Sequential(nn.Linear(4 * S * S + 5, 16), nn.ReLU(), nn.Linear(16, 1))
        self.q2 = nn.Sequential(nn.Linear(4 * S * S + 5, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, heightmap, action):
        return self.heads(self.encoder(heightmap), action)

    def encoder(self, heightmap):
        return self.image(heightmap)

    def heads(self, features, action):
        x = torch.cat([features, action], dim=1)
        return self.q1(x), self.q2(x)


def fixed_batch(n=32, expert=True, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 2, S, S, generator=g)
    reward = (torch.rand(n, 1, generator=g) > 0.7).float()
    return Batch(obs=obs, action=torch.rand(n, 5, generator=g) * 2 - 1, reward=reward,
                 next_obs=torch.rand(n, 2, S, S, generator=g), terminated=torch.zeros(n, 1),
                 is_expert=torch.arange(n) < (n // 2 if expert else 0), weights=torch.ones(n, 1),
                 indices=np.arange(n))


def learner(**overrides) -> SAC:
    torch.manual_seed(0)
    return SAC(TinyActor(), TinyCritic(), SACConfig(**overrides))


def test_squashed_gaussian_log_prob_is_the_tanh_transformed_density():
    mean, log_std = torch.tensor([[0.3, -1.0, 0.0, 2.0, 0.5]]), torch.tensor([[-0.5, 0.0, -1.0, 0.2, -2.0]])
    torch.manual_seed(1)
    u, log_prob, mean_u = squashed_gaussian(mean, log_std)
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)])
    np.testing.assert_allclose(log_prob.item(), reference.log_prob(u).sum().item(), rtol=1e-3)
    assert torch.all(u.abs() < 1) and torch.allclose(mean_u, torch.tanh(mean))
    u_det, _, _ = squashed_gaussian(mean, log_std, deterministic=True)
    assert torch.allclose(u_det, torch.tanh(mean))


def test_updates_on_a_fixed_batch_reduce_the_critic_loss():
    sac, batch = learner(), fixed_batch()
    losses = [sac.update(batch)["critic_loss"] for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:3])
    assert sac.updates == 60


def test_reusing_the_critics_features_gives_the_same_critic_step_and_nearly_the_same_actor_step():
    reused, recomputed = learner(reuse_critic_features=True), learner(reuse_critic_features=False)
    torch.manual_seed(3)
    a = reused.update(fixed_batch())
    torch.manual_seed(3)
    b = recomputed.update(fixed_batch())
    assert a["critic_loss"] == b["critic_loss"]
    assert a["actor_loss"] == pytest.approx(b["actor_loss"], rel=0.05, abs=1e-3)   # encoder one step staler
    # Adam's first step moves each weight by about lr in the direction of its gradient's sign: nearly
    # every weight moves the same way with the slightly staler features.
    moved_alike = [torch.mean(((p - q).abs() < 1e-4).float()).item()
                   for p, q in zip(reused.actor.parameters(), recomputed.actor.parameters())]
    assert min(moved_alike) > 0.95


def test_target_critic_follows_the_critic_by_polyak_averaging():
    sac, batch = learner(tau=0.5), fixed_batch()
    before = [p.clone() for p in sac.critic_target.parameters()]
    sac.update(batch)
    for old, target, new in zip(before, sac.critic_target.parameters(), sac.critic.parameters()):
        torch.testing.assert_close(target, 0.5 * old + 0.5 * new)


def test_the_averaged_actor_follows_the_actor_by_polyak_averaging_and_is_the_policy():
    plain = learner()
    assert plain.actor_average is None and plain.policy_actor is plain.actor
    sac, batch = learner(actor_average=0.25), fixed_batch()
    assert sac.policy_actor is sac.actor_average
    before = [p.clone() for p in sac.actor_average.parameters()]
    sac.update(batch)
    for old, average, new in zip(before, sac.actor_average.parameters(), sac.actor.parameters()):
        torch.testing.assert_close(average, 0.75 * old + 0.25 * new)
        assert not torch.equal(average, new) and not average.requires_grad
    obs = batch.obs[:3].numpy()
    assert not np.allclose(sac.act(obs, True), sac.act(obs, True, sac.policy_actor))
    # Resuming restores both.
    resumed = learner(actor_average=0.25)
    resumed.load_state_dict(sac.state_dict())
    np.testing.assert_array_equal(resumed.act(obs, True, resumed.policy_actor), sac.act(obs, True, sac.policy_actor))
    np.testing.assert_array_equal(resumed.act(obs, True), sac.act(obs, True))
    with pytest.raises(ValueError, match="actor_average"):
        SACConfig(actor_average=1.0).validate()


@pytest.mark.parametrize("target_entropy, direction", [(-50.0, -1), (50.0, +1)])
def test_temperature_moves_toward_the_target_entropy(target_entropy, direction):
    # Entropy above the target: alpha falls (less reward for randomness); below: it rises.
    sac = learner(target_entropy=target_entropy, init_alpha=0.01)
    alphas = [sac.update(fixed_batch(seed=k))["alpha"] for k in range(5)]
    assert direction * (alphas[-1] - 0.01) > 0
    assert np.all(direction * np.diff(alphas) > 0)


def test_sacfd_term_pulls_the_policy_mean_toward_expert_actions():
    batch = fixed_batch(expert=True)
    sac = learner(sacfd_weight=1.0, lr=3e-3)
    first = sac.update(batch)["sacfd_loss"]
    for _ in range(40):
        last = sac.update(batch)["sacfd_loss"]
    assert last < 0.5 * first
    assert learner().update(fixed_batch(expert=False))["sacfd_loss"] == 0.0   # no expert samples: no term


def test_sacfd_on_the_sample_also_narrows_the_policy_on_expert_states():
    """equi_rl's default SACfD pulls the reparameterised sample, not the mean, toward the expert:
    its loss holds the policy's variance too, which the mean variant leaves to the temperature."""
    batch = fixed_batch(expert=True)
    entropies = {}
    for target in ("mean", "sample"):
        sac = learner(sacfd_weight=10.0, sacfd_target=target, lr=3e-3)
        first = sac.update(batch)["sacfd_loss"]
        for _ in range(40):
            stats = sac.update(batch)
        assert stats["sacfd_loss"] < 0.5 * first
        entropies[target] = stats["entropy"]
    assert entropies["sample"] < entropies["mean"] - 1.0
    with pytest.raises(ValueError, match="sacfd_target"):
        SACConfig(sacfd_target="pi").validate()


def test_sacfd_targets_are_the_expert_actions_clamped_to_the_bound():
    batch = fixed_batch(expert=True)
    expert = batch.is_expert
    assert (batch.action[expert].abs() > 0.5).any()
    for bound in (1.0, 0.5):
        sac = learner(sacfd_action_bound=bound)
        with torch.no_grad():
            _, _, mean_u = sac.policy(batch.obs)       # the actor is unchanged until its own step
        expected = F.mse_loss(mean_u[expert], batch.action[expert].clamp(-bound, bound)).item()
        assert sac.update(batch)["sacfd_loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="sacfd_action_bound"):
        SACConfig(sacfd_action_bound=0.0).validate()


def test_a_relaxed_networks_regulariser_enters_the_loss():
    class Penalised(TinyCritic):
        def regularization_loss(self):
            return 100.0 * sum(p.pow(2).sum() for p in self.q1.parameters())

    torch.manual_seed(0)
    plain = SAC(TinyActor(), TinyCritic(), SACConfig()).update(fixed_batch())["critic_loss"]
    torch.manual_seed(0)
    penalised = SAC(TinyActor(), Penalised(), SACConfig()).update(fixed_batch())["critic_loss"]
    assert penalised > plain + 1.0


def test_state_dict_round_trip_continues_identically():
    a, b = learner(), learner(lr=1e-3)
    a.update(fixed_batch())
    saved = io.BytesIO()
    torch.save(a.state_dict(), saved)                 # as a resumed run reads it back from disk
    saved.seek(0)
    b.load_state_dict(torch.load(saved))
    torch.manual_seed(5)
    stats_a = a.update(fixed_batch(seed=1))
    torch.manual_seed(5)
    stats_b = b.update(fixed_batch(seed=1))
    assert stats_a["critic_loss"] == stats_b["critic_loss"] and stats_a["alpha"] == stats_b["alpha"]
    assert math.isclose(a.log_alpha.item(), b.log_alpha.item())


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        SACConfig(task="stacking").validate()
    with pytest.raises(ValueError, match="run seeds"):
        SACConfig(seed=5000).validate()
    with pytest.raises(ValueError, match="batch_size"):
        SACConfig(batch_size=0).validate()
    with pytest.raises(ValueError, match="pretrain_steps"):
        SACConfig(pretrain_steps=-1).validate()
    with pytest.raises(ValueError, match="needs demonstrations"):
        SACConfig(pretrain_steps=10, demos=0).validate()
    with pytest.raises(ValueError, match="demo_fraction"):
        SACConfig(demo_fraction=1.0).validate()
    with pytest.raises(ValueError, match="demo_fraction"):
        SACConfig(demo_fraction=0.25, demos=0).validate()
    with pytest.raises(ValueError, match="gamma"):
        SACConfig(gamma=1.5).validate()
    with pytest.raises(ValueError, match="run seeds"):
        SACConfig(demos_from_seed=5000).validate()
    with pytest.raises(ValueError, match="needs demonstrations"):
        SACConfig(demos_from_seed=1, demos=0).validate()
    with pytest.raises(ValueError, match="no goal on the table"):
        SACConfig(task="block_picking", goal_channel=True).validate()
    assert json.dumps(SACConfig().__dict__)        # plain data: goes into checkpoints and logs


def test_the_goal_channel_is_on_for_tasks_with_a_goal_on_the_table_and_networks_take_it():
    pushing, picking = SACConfig(task="block_pushing"), SACConfig(task="block_picking")
    assert pushing.network_config().in_channels == 3 and pushing.observation_config().goal_channel
    assert picking.network_config().in_channels == 2 and not picking.observation_config().goal_channel
    off = SACConfig(task="block_pushing", goal_channel=False)
    assert off.network_config().in_channels == 2 and not off.observation_config().goal_channel


def test_a_cells_parameter_files_give_the_training_camera_and_keep_the_networks_input():
    from equimanip.config import cell_parameters
    from equimanip.sim.camera import CameraConfig

    default, side = SACConfig().env_options(), SACConfig(cell_params=("side_camera",)).validate().env_options()
    assert "camera" not in default                  # the environment's own default camera
    assert side["camera"] == CameraConfig.from_parameters(cell_parameters(["side_camera"]))
    assert side["camera"] != CameraConfig()
    for name in ("heightmap_size", "heightmap_mode", "robot_removal", "goal_channel"):   # the networks' input
        assert getattr(side["observation_config"], name) == getattr(default["observation_config"], name), name
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        SACConfig(cell_params=("no_such_cell",)).validate()


TINY = ["--task", "reach", "--group", "c4", "--network", "cpu", "--n-hidden", "8", "--heightmap-size", "16",
        "--demos", "1", "--eval-every", "3", "--eval-episodes", "1", "--final-eval-episodes", "1",
        "--max-episode-steps", "4", "--batch-size", "8", "--learning-starts", "8", "--log-every", "2",
        "--device", "cpu"]


def test_train_sac_end_to_end_writes_logs_checkpoints_plot_and_resumes(tmp_path, capsys):
    from equimanip.checkpoint import load_checkpoint
    from equimanip.cli import main as cli

    out = tmp_path / "run"
    assert cli(["train", "sac", *TINY, "--steps", "6", "--pretrain-steps", "2", "--demo-fraction", "0.25",
                "--sacfd-weight", "3", "--sacfd-target", "sample", "--sacfd-action-bound", "0.9", "--gamma", "0.95",
                "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    assert "pre-trained on the demonstrations: 2 updates" in printed
    assert f"1 expert demonstrations (episode seeds {training_seeds(0)[1]} .. " in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["pretrain_steps"] == 2 and summary["demo_fraction"] == 0.25
    assert (summary["sacfd_weight"], summary["sacfd_target"], summary["gamma"]) == (3.0, "sample", 0.95)
    assert summary["sacfd_action_bound"] == 0.9
    assert summary["updates"] == 2 + 6            # pre-training, then one per step
    assert summary["steps"] == 6 and [step for step, _ in summary["curve"]] == [3, 6]
    assert 0.0 <= summary["success"] <= 1.0 and summary["eval_episodes"] == 1
    # The periodic evaluations that choose the best checkpoint play the validation scenes; the best
    # checkpoint is then scored on the test scenes, as `equimanip eval` scores it.
    assert summary["best_checkpoint_success"] in (0.0, 1.0)
    with (out / "eval.csv").open() as f:
        assert {row["first_seed"] for row in csv.DictReader(f)} == {str(VALIDATION_SEED_BASE)}
    assert cli(["eval", "--checkpoint", str(out / "best.pt"), "--episodes", "1", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["seed"] == EVAL_SEED_BASE and evaluated["success_rate"] == summary["best_checkpoint_success"]
    for name in ("train.csv", "eval.csv", "best.pt", "last.pt", "train_state.pt", "replay.npz",
                 "learning_curve.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    last = load_checkpoint(out / "last.pt", kind="sac")
    assert last.task == "reach" and last.network["group"] == "c4" and last.metadata["step"] == 6
    assert last.observation_config.heightmap_size == 16 and "train sac" in last.command
    assert last.metadata["sac_config"]["network_settings"] == last.network   # what a resume rebuilds

    # Resume: the same run continues from step 6 to 9, its logs extended, not restarted.
    # (On the device it is told: a run started on a lent GPU goes on on the CPU, and the other way.)
    assert cli(["train", "sac", "--resume", "--out", str(out), "--steps", "9", "--device", "auto", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["steps"] == 9 and [step for step, _ in resumed["curve"]] == [3, 6, 9]
    eval_rows = (out / "eval.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in eval_rows[1:]] == ["3", "6", "9"]
    with (out / "eval.csv").open() as f:       # the kept rows come back as written: seeds stay integers
        assert [row["first_seed"] for row in csv.DictReader(f)] == [str(VALIDATION_SEED_BASE)] * 3
    assert load_checkpoint(out / "last.pt").metadata["step"] == 9
    assert load_checkpoint(out / "last.pt").metadata["sac_config"]["device"] == "auto"
    assert last.metadata["sac_config"]["device"] == "cpu"

    # A time limit stops taking steps, and the run still ends as a finished one: final evaluation,
    # checkpoints, plot and summary, with the steps it reached.
    limited = tmp_path / "limited"
    # (With another seed's demonstrations: the run's own seed stays, the demonstrations are seed 3's.)
    # (And with another cell's camera: its parameter file goes with the checkpoint.)
    assert cli(["train", "sac", *TINY, "--steps", "1000", "--time-limit", "1e-6", "--demos-from-seed", "3",
                "--params", "side_camera", "--out", str(limited), "--json"]) == 0
    printed = capsys.readouterr().out
    assert "time limit of 1e-06 min reached at step 0 of 1000" in printed
    first_demo_seed = training_seeds(3)[1]
    assert f"1 expert demonstrations (episode seeds {first_demo_seed} .. " in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["seed"] == 0 and summary["demos_from_seed"] == 3
    assert summary["stopped_by_time_limit"] and summary["steps"] == 0 and summary["eval_episodes"] == 1
    for name in ("last.pt", "learning_curve.png", "summary.json"):
        assert (limited / name).stat().st_size > 0, name
    assert summary["cell_params"] == ["side_camera"]
    from equimanip.checkpoint import training_camera_pose
    from equimanip.config import cell_parameters

    side_pose = cell_parameters(["side_camera"])["camera_pose"]
    np.testing.assert_allclose(training_camera_pose(load_checkpoint(limited / "last.pt").metadata), side_pose)
    assert cli(["train", "sac", *TINY, "--params", "no_such_cell", "--out", str(tmp_path / "z")]) == 2
    assert "no parameter file 'no_such_cell'" in capsys.readouterr().err
    assert cli(["train", "sac", *TINY, "--time-limit", "0", "--out", str(tmp_path / "y")]) == 2
    assert "time_limit_min must be positive" in capsys.readouterr().err

    # With an averaged actor, the saved policy is the average, not the live actor (which resumes).
    averaged = tmp_path / "averaged"
    assert cli(["train", "sac", *TINY, "--steps", "6", "--actor-average", "0.5", "--out", str(averaged),
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["actor_average"] == 0.5
    saved = load_checkpoint(averaged / "last.pt").state_dicts["actor"]
    learner_state = torch.load(averaged / "train_state.pt", weights_only=False)["learner"]
    for name, weights in saved.items():
        torch.testing.assert_close(weights, learner_state["actor_average"][name])
    assert any(not torch.equal(weights, learner_state["actor"][name]) for name, weights in saved.items())

    # A fraction of an update per step: equi_rl's one update per 5 transitions, here one per 4.
    # (With centred inputs: the checkpoint's network says so, and the policy a user loads centres.)
    assert cli(["train", "sac", *TINY, "--steps", "8", "--num-envs", "2", "--updates-per-step", "0.25",
                "--center-inputs", "--out", str(tmp_path / "sparse"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 8 and summary["updates"] == 2 and summary["updates_per_step"] == 0.25
    assert summary["network"]["center_inputs"] and load_checkpoint(tmp_path / "sparse" / "last.pt").network[
        "center_inputs"]
    from equimanip.checkpoint import load_policy
    from equimanip.models import NetworkConfig, make_actor

    saved = load_checkpoint(tmp_path / "sparse" / "last.pt")
    actor = make_actor(NetworkConfig.from_dict(saved.network))
    actor.load_state_dict(saved.state_dicts["actor"])
    heightmap = torch.rand(1, 2, 16, 16) * torch.tensor([0.32, 1.0]).view(1, 2, 1, 1)
    with torch.no_grad():
        expected = torch.tanh(actor.eval()(heightmap)[0])
    policy = load_policy(tmp_path / "sparse" / "last.pt")
    torch.testing.assert_close(policy.network(heightmap), expected, atol=1e-5, rtol=1e-5)

    # Trained in a yaw sector: the last policy and best.pt are scored in it and over the whole circle.
    assert cli(["train", "sac", *TINY, "--steps", "6", "--yaw-sector", "0", "90", "--out", str(tmp_path / "sector"),
                "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("success", "best_checkpoint_success", "success_all_yaw", "best_checkpoint_success_all_yaw"):
        assert 0.0 <= summary[key] <= 1.0, key

    # Nothing to resume, and bad settings: clear refusals.
    assert cli(["train", "sac", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert cli(["train", "sac", *TINY, "--group", "c5", "--out", str(tmp_path / "x")]) == 2
    assert "unknown group" in capsys.readouterr().err


def test_the_defaults_are_equi_rls():
    from equimanip.learning.sac import build_parser, config_from_args

    d = SACConfig()
    assert (d.lr, d.gamma, d.batch_size, d.tau) == (1e-3, 0.99, 64, 0.01)
    assert (d.init_alpha, d.target_entropy, d.updates_per_step) == (0.01, -5.0, 1.0)
    # The command's defaults are the configuration's.
    parsed = config_from_args(build_parser().parse_args(["--out", "run"]))
    assert parsed == d
    sac = learner()
    assert sac.alpha.item() == pytest.approx(0.01)
    assert {group["lr"] for opt in (sac.actor_optimizer, sac.critic_optimizer, sac.alpha_optimizer)
            for group in opt.param_groups} == {1e-3}


def parsed_config(*flags) -> SACConfig:
    from equimanip.learning.sac import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["--out", "run", *flags]))


def test_the_command_sets_the_relaxed_so2_and_top_network_settings_and_refuses_bad_ones(capsys):
    from equimanip.learning.sac import build_networks, main
    from equimanip.models import NetworkConfig

    # Not given: NetworkConfig's, and the preset's top.
    for preset, top in (("cpu", "compact"), ("paper", "paper")):
        net = parsed_config("--network", preset).network_config()
        assert (net.relaxed_strength, net.relaxed_banks, net.so2_nonlinearity) == (1e-3, 2, "gated")
        assert net.top == top
    # Given: they win over the preset, as --n-hidden and --heightmap-size do.
    net = parsed_config("--network", "paper", "--top", "compact", "--n-hidden", "16").network_config()
    assert (net.top, net.n_hidden, net.heightmap_size) == ("compact", 16, 128)
    assert parsed_config("--network", "cpu", "--top", "paper").network_config().top == "paper"
    config = parsed_config("--group", "c4", "--relaxed", "--relaxed-strength", "0.5", "--relaxed-banks", "3",
                           "--network", "cpu", "--heightmap-size", "16").validate()
    assert config.network_config() == NetworkConfig.cpu(group="c4", relaxed=True, relaxed_strength=0.5,
                                                        relaxed_banks=3, heightmap_size=16)
    actor, critic = build_networks(config)                  # the networks take them
    assert actor.config.relaxed_strength == critic.config.relaxed_strength == 0.5
    assert {len(m.banks) for m in actor.modules() if hasattr(m, "mixing")} == {3}
    assert parsed_config("--relaxed", "--relaxed-strength", "0").network_config().relaxed_strength == 0.0
    net = parsed_config("--group", "so2", "--so2-nonlinearity", "norm").validate().network_config()
    assert net.so2_nonlinearity == "norm"

    # Bad values: argparse's error, naming the flag.
    for flags, message in ((["--relaxed-strength", "-0.1"], "must be a finite number >= 0"),
                           (["--relaxed-strength", "nan"], "must be a finite number >= 0"),
                           (["--relaxed-strength", "inf"], "must be a finite number >= 0"),
                           (["--relaxed-strength", "strong"], "not a number"),
                           (["--relaxed-banks", "0"], "must be >= 1"),
                           (["--so2-nonlinearity", "relu"], "invalid choice"),
                           (["--top", "wide"], "invalid choice")):
        with pytest.raises(SystemExit) as exit_:
            parsed_config("--relaxed", *flags)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flags[0]}" in err and message in err, flags
    # Settings for networks the run does not build: refused, not ignored.
    for flags, message in ((["--relaxed-strength", "0.1"], "need --relaxed"),
                           (["--relaxed-banks", "3"], "need --relaxed"),
                           (["--group", "c8", "--so2-nonlinearity", "norm"], "needs --group so2")):
        assert main(["--out", "run", *flags]) == 2
        assert message in capsys.readouterr().err, flags


def _recording_vector_envs(monkeypatch) -> list:
    """Patches ``equimanip.envs.make_vector_env`` to keep every vector environment it makes."""
    import equimanip.envs

    made, make = [], equimanip.envs.make_vector_env

    def recording(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(equimanip.envs, "make_vector_env", recording)
    return made


def test_train_sac_steps_async_envs_like_sync_ones_and_closes_their_workers(tmp_path, capsys, monkeypatch):
    from gymnasium.vector import AsyncVectorEnv

    from equimanip.cli import main as cli

    made = _recording_vector_envs(monkeypatch)
    flags = [*TINY, "--steps", "4", "--num-envs", "2", "--final-eval-episodes", "0", "--json"]
    assert cli(["train", "sac", *flags, "--async-envs", "--out", str(tmp_path / "async")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["async_envs"] and summary["steps"] == 4 and summary["updates"] == 4
    (envs,) = made
    assert isinstance(envs, AsyncVectorEnv) and envs.closed
    assert len(envs.processes) == 2 and not any(process.is_alive() for process in envs.processes)
    # The same episodes and updates as the environments stepped one after the other.
    assert cli(["train", "sac", *flags, "--out", str(tmp_path / "sync")]) == 0
    capsys.readouterr()

    def logged(run):
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader((run / "train.csv").open())]

    assert logged(tmp_path / "async") == logged(tmp_path / "sync")
    assert cli(["train", "sac", *TINY, "--async-envs", "--out", str(tmp_path / "one")]) == 2
    assert "needs num_envs > 1" in capsys.readouterr().err


def test_a_failing_run_terminates_its_async_workers(tmp_path, monkeypatch):
    import equimanip.learning.sac as sac_module
    from equimanip.cli import main as cli

    made = _recording_vector_envs(monkeypatch)

    def failing_step(*args, **kwargs):
        raise RuntimeError("update failed")

    monkeypatch.setattr(sac_module, "learn_step", failing_step)
    with pytest.raises(RuntimeError, match="update failed"):
        cli(["train", "sac", *TINY, "--steps", "4", "--num-envs", "2", "--async-envs", "--out", str(tmp_path / "r")])
    (envs,) = made
    assert envs.closed and not any(process.is_alive() for process in envs.processes)
