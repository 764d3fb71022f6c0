"""Evaluation shared by the learners (held-out seeds, success counting) and the results file with
its regenerated tables and plot."""
from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
import torch

import equimanip.envs  # noqa: F401
from equimanip.learning import results
from equimanip.learning.evaluate import EVAL_SEED_BASE, MAX_RUN_SEED, run_episodes, training_seeds
from equimanip.perception.observation import ObservationConfig

torch.set_num_threads(1)


def test_training_and_evaluation_seeds_never_meet():
    last_train, last_demo = training_seeds(MAX_RUN_SEED - 1)
    assert last_demo + 10**6 // 2 <= EVAL_SEED_BASE and last_train < last_demo
    first = [training_seeds(r) for r in range(3)]
    assert first[0][0] < first[0][1] < first[1][0] < first[1][1] < first[2][0]
    with pytest.raises(ValueError, match="run seeds"):
        training_seeds(MAX_RUN_SEED)


def test_run_episodes_counts_successes_on_the_held_out_seeds():
    env = gymnasium.make("equimanip/BlockPicking-v0", observation_config=ObservationConfig(heightmap_size=16),
                         max_episode_steps=30)
    seen = []

    def expert(observation):          # act() gets the full Observation, as a policy node would give it
        seen.append(observation.heightmap.shape)
        return env.unwrapped.expert_action()

    result = run_episodes(expert, env, episodes=2)
    assert result.success_rate == 1.0 and result.episodes == 2
    assert [e["seed"] for e in result.per_episode] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]
    assert seen[0] == (2, 16, 16) and 0 < result.mean_steps < 30

    def still(observation):
        return np.array([1.0, 0.0, 0.0, 0.0, 0.0])

    idle = run_episodes(still, env, episodes=1)
    assert idle.success_rate == 0.0 and idle.per_episode[0]["steps"] == 30
    env.close()


def summary(group="c8", seed=0, success=0.9, sector=None, all_yaw=None):
    return {"arm_control": 2, "task": "block_picking", "group": group, "relaxed": False, "seed": seed,
            "steps": 1000, "demos": 20,
            "network": {"heightmap_size": 64, "n_hidden": 16, "top": "compact"}, "yaw_sector": sector,
            "best_success": success, "best_step": 1000, "success": success, "eval_episodes": 50,
            "success_all_yaw": all_yaw, "wall_s": 600.0, "machine": "test machine", "date": "2026-11-25",
            "revision": "abc1234", "command": "equimanip train sac ...", "curve": [[500, 0.2], [1000, success]]}


def test_results_rows_tables_and_plot(tmp_path):
    csv_path, doc, plot = tmp_path / "sac.csv", tmp_path / "doc.md", tmp_path / "plot.png"
    # (Seeds in the order their runs finished; the table lists them sorted.)
    for row in (summary(seed=1, success=1.0) | {"best_checkpoint_success": 0.96},
                summary(seed=0, success=0.8) | {"best_checkpoint_success": 0.9},
                summary(group="none", success=0.1),          # from before the best checkpoint was scored
                summary(sector=[0.0, 90.0], success=0.9, all_yaw=0.85) | {"best_checkpoint_success": 0.9,
                                                                         "best_checkpoint_success_all_yaw": 0.94}):
        results.append_row(csv_path, results.sac_row(row), results.SAC_FIELDS)
    rows = results.read_rows(csv_path)
    assert len(rows) == 4 and rows[1]["curve"] == "500:0.2 1000:0.8" and rows[3]["experiment"] == "yaw_sector"
    doc.write_text("# x\n<!-- results:sac -->\nold\n<!-- /results:sac -->\ntail\n")
    text = results.regenerate(csv_path, doc, plot)
    network = "64x64 table view, n_hidden 16, compact top"
    # Seed 1's curve reaches 90% at step 1000 (its evaluation there: 100%), seed 0's never (80%).
    c8 = f"| block_picking | c8 | {network} | 2 | 20 | 1000 | 2 | 0, 1 | 90% ± 10% | 90% ± 10% | 1 of 2 (step 1000) |"
    assert c8 in text
    assert c8 + " 93% ± 3% |" in text                                # the best checkpoints' mean
    assert f"| block_picking | none | {network} | 2 | 20 | 1000 | 1 | 0 | 10% | 10% | 0 of 1 | – |" in text
    assert f"| block_picking | c8 | {network} | 2 | 0 90 | 0 | 1000 | 90% | 85% | -5 | 90% -> 94% (+4) |" in text
    content = doc.read_text()
    assert "old" not in content and content.endswith("<!-- /results:sac -->\ntail\n") and text in content
    assert plot.stat().st_size > 10_000 and text in (tmp_path / "sac.md").read_text()
    views = [results.sac_row(summary() | {"heightmap_mode": "gripper"} | extra)["network"].split(",")[0]
             for extra in ({}, {"robot_removal": "above_grasp_point"}, {"robot_removal": "hand_boxes"})]
    assert views == ["64x64 gripper view"] * 2 + ["64x64 gripper (hand boxes) view"]
    assert results.sac_row(summary() | {"goal_channel": True})["network"].endswith(", goal channel")
    centred = summary()
    centred["network"] = centred["network"] | {"center_inputs": True}
    assert results.sac_row(centred)["network"].endswith(", centred inputs")
    assert "goal" not in results.sac_row(summary() | {"goal_channel": False})["network"]
    described = results.sac_row(summary() | {"sacfd_weight": 10.0, "sacfd_target": "sample", "gamma": 0.95})
    assert described["network"].endswith(", SACfD weight 10, gamma 0.95, SACfD on the sample")
    assert results.sac_row(summary() | {"demos_from_seed": 1})["network"].endswith(", demonstrations of seed 1")
    assert results.sac_row(summary() | {"actor_average": 0.01})["network"].endswith(", actor averaged at 0.01")
    assert results.sac_row(summary() | {"cell_params": ["side_camera"]})["network"].endswith(
        ", camera of side_camera")
    assert results.sac_row(summary() | {"prioritized": True})["network"].endswith(", prioritized replay")
    relaxed = summary()
    relaxed["network"] = relaxed["network"] | {"relaxed": True, "relaxed_strength": 0.1, "relaxed_banks": 3}
    assert results.sac_row(relaxed)["network"].endswith(", relaxed strength 0.1, 3 kernel banks")
    so2 = summary()
    so2["network"] = so2["network"] | {"group": "so2", "so2_nonlinearity": "norm"}
    assert results.sac_row(so2)["network"].endswith(", norm nonlinearity")
    assert results.sac_row(summary() | {"sacfd_weight": 1.0, "sacfd_target": "mean", "demos_from_seed": None,
                                        "cell_params": [], "prioritized": False})["network"] == \
        results.sac_row(summary())["network"]                         # the defaults go unsaid
    # Runs a time limit stopped are grouped by the steps they were given, and say where they got to.
    for seed, taken in ((0, 700), (1, 900)):
        stopped = summary(seed=seed, success=1.0) | {"steps": taken, "command": "equimanip train sac --steps 1000",
                                                     "cell_params": ["side_camera"]}
        results.append_row(csv_path, results.sac_row(stopped), results.SAC_FIELDS)
    text = results.sac_tables(results.read_rows(csv_path))
    assert f"| {network}, camera of side_camera | 2 | 20 | 1000 (stopped at 700-900) | 2 | 0, 1 | 100% ± 0% |" in text
    finished = summary(seed=2, success=1.0) | {"command": "equimanip train sac --steps 1000",
                                               "cell_params": ["side_camera"]}
    results.append_row(csv_path, results.sac_row(finished), results.SAC_FIELDS)
    assert "| 1000 (2 of 3 stopped at 700-900) | 3 | 0, 1, 2 |" in results.sac_tables(results.read_rows(csv_path))
    assert results.step_budget({"steps": "600", "command": "equimanip train sac --resume --steps 800"}) == 800
    assert results.step_budget({"steps": "600", "command": "equimanip train sac --steps=700"}) == 700
    assert results.step_budget({"steps": "600", "command": ""}) == 600
    with pytest.raises(ValueError, match="columns"):
        results.append_row(csv_path, {"task": "x"}, ["task"])
    with pytest.raises(ValueError, match="does not have"):
        results.append_row(csv_path, {"unknown": 1}, results.SAC_FIELDS)


def test_each_plot_panel_compares_groups_in_one_setting_never_an_average_of_several(tmp_path):
    csv_path = tmp_path / "sac.csv"

    def add(*rows):
        for row in rows:
            results.append_row(csv_path, results.sac_row(row), results.SAC_FIELDS)
        return results.plotted_panels(results.read_rows(csv_path))

    # One group alone: the setting with the most runs, on the newest arm only.
    panels = add(summary(seed=0) | {"arm_control": 1},
                 summary(seed=0), summary(seed=1),                                    # C8, two seeds
                 summary(seed=2) | {"sacfd_weight": 10.0})                            # a variant, one seed
    assert [(task, arm, [r["seed"] for r in shown["c8"]]) for task, arm, _, shown in panels] == \
        [("block_picking", "2", ["0", "1"])]
    default_setting = panels[0][2]
    # A second group in the default setting: that comparison is the panel.
    panels = add(summary(group="none", seed=0), summary(seed=0) | {"gamma": 0.95}, summary(seed=1) | {"gamma": 0.95})
    assert [(network, set(shown)) for _, _, network, shown in panels] == [(default_setting, {"c8", "none"})]
    # A newer comparison comes first; each panel holds its setting's runs and nothing else.
    panels = add(summary(group="none", seed=1) | {"gamma": 0.95})
    assert [network.endswith(", gamma 0.95") for _, _, network, _ in panels] == [True, False]
    for _, _, network, shown in panels:
        assert all(r["network"] == network and r["arm"] == "2" for runs in shown.values() for r in runs)
    assert [r["seed"] for r in panels[0][3]["c8"]] == ["0", "1"]
    # At most PANELS_PER_TASK comparisons a task, the newest.
    for k in range(results.PANELS_PER_TASK):
        variant = {"gamma": 0.9 - k / 100}
        panels = add(summary(seed=0) | variant, summary(group="none", seed=0) | variant)
    assert len(panels) == results.PANELS_PER_TASK and not any(n == default_setting for _, _, n, _ in panels)
    results.plot_sac(results.read_rows(csv_path), tmp_path / "sac.png")
    assert (tmp_path / "sac.png").stat().st_size > 0


def test_a_results_rows_revision_is_the_checkpoints_short_and_says_when_the_tree_was_modified():
    from equimanip.checkpoint import git_revision

    full, short = git_revision(), results.git_revision()
    if full == "unknown":
        pytest.skip("not a git checkout")
    assert short == full[:7] + ("-dirty" if full.endswith("-dirty") else "")


def test_results_command_adds_a_finished_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    partial = summary()
    for key in ("machine", "date", "revision", "command"):
        del partial[key]                                   # an older summary: filled in at add time
    (run / "summary.json").write_text(json.dumps(partial))
    assert results.main(["add", str(run), "--results", str(tmp_path / "r.csv"), "--revision", "0123abc"]) == 0
    row = results.read_rows(tmp_path / "r.csv")[0]
    assert row["revision"] == "0123abc" and row["machine"] and row["date"]
    assert results.main(["add", str(tmp_path / "missing"), "--results", str(tmp_path / "r.csv")]) == 1


def test_equimanip_eval_runs_a_checkpoint(tmp_path, capsys):
    from equimanip.checkpoint import save_checkpoint
    from equimanip.cli import main as cli
    from equimanip.models import NetworkConfig, make_actor, make_critic

    torch.manual_seed(0)
    net = NetworkConfig.cpu(group="c4", n_hidden=8, heightmap_size=16)
    path = save_checkpoint(tmp_path / "policy.pt", kind="sac", actor=make_actor(net), critic=make_critic(net),
                           network_config=net, observation_config=ObservationConfig(heightmap_size=16),
                           task="reach", metadata={"max_episode_steps": 3})
    args = ["eval", "--checkpoint", str(path), "--episodes", "2", "--rotate-scene", "90", "--json"]
    assert cli(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == "reach" and out["episodes"] == 2 and out["max_steps"] == 3 and out["rotate_scene"] == 90
    assert out["success_rate"] in (0.0, 0.5, 1.0) and out["seed"] == EVAL_SEED_BASE
    assert cli(["eval", "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    assert cli(["eval", "--checkpoint", str(path), "--task", "stacking"]) == 2
    # The cell of a parameter file, as `equimanip run --params` starts it.
    assert cli(["eval", "--checkpoint", str(path), "--episodes", "1", "--params", "side_camera", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 1
    assert cli(["eval", "--checkpoint", str(path), "--params", "no_such_cell"]) == 2
    assert "--params: no parameter file 'no_such_cell'" in capsys.readouterr().err
    # A policy trained on demonstrations from another cell is evaluated there unless told otherwise.
    side = save_checkpoint(tmp_path / "side.pt", kind="sac", actor=make_actor(net), critic=make_critic(net),
                           network_config=net, observation_config=ObservationConfig(heightmap_size=16),
                           task="reach", metadata={"max_episode_steps": 3, "cell_params": ["side_camera"]})
    assert cli(["eval", "--checkpoint", str(side), "--episodes", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert "evaluating in the cell the policy learnt in (--params side_camera)" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["params"] == ["side_camera"]
    assert cli(["eval", "--checkpoint", str(side), "--episodes", "1", "--params", "sim", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params"] == ["sim"]


def test_eval_cell_setup_keeps_what_the_network_was_trained_with(tmp_path):
    from equimanip.learning.evaluate import cell_setup

    cell = tmp_path / "cell.yaml"
    cell.write_text("/**:\n  ros__parameters:\n    camera:\n      width: 96\n"
                    "    observation:\n      heightmap_size: 64\n      cluster_eps: 0.05\n")
    trained = ObservationConfig(heightmap_size=16, goal_in_state=True)
    camera, observation = cell_setup([str(cell)], trained)
    assert camera.width == 96 and camera.height == 128                  # the rest: the default camera
    assert observation.cluster_eps == 0.05                               # the cell's perception
    assert observation.heightmap_size == 16 and observation.goal_in_state   # the network's, from training


def test_equimanip_eval_runs_the_scripted_expert_in_the_same_scenes(capsys):
    """`--expert`: the task's scripted expert in the scenes a checkpoint would get (here turned by 90
    degrees), the baseline that tells a hard condition from a policy's weakness."""
    from equimanip.cli import main as cli

    assert cli(["eval", "--expert", "--task", "reach", "--episodes", "2", "--rotate-scene", "90", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["checkpoint"] == "expert" and out["rotate_scene"] == 90 and out["episodes"] == 2
    assert out["success_rate"] == 1.0 and out["mean_steps"] < 30      # the expert reaches the target
    assert cli(["eval", "--expert"]) == 2
    assert "--expert needs --task" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                  # one source of actions, not two
        cli(["eval", "--expert", "--checkpoint", "policy.pt", "--task", "reach"])


def test_eval_runs_100_episodes_from_perturbed_starts_unless_told():
    """50 episodes as they come (SAC's final evaluation), 100 from perturbed starts (the protocol's
    "at least 100"); an explicit --episodes always wins."""
    from equimanip.learning.evaluate import parse_args

    def episodes(*flags):
        return parse_args(["--expert", "--task", "reach", *flags]).episodes

    assert episodes() == 50 and episodes("--rotate-scene", "90") == 50
    assert episodes("--perturb-gripper", "0.15") == 100 and episodes("--perturb-objects", "0.02") == 100
    assert episodes("--perturb-gripper", "0") == 50                 # no perturbation asked for
    assert episodes("--perturb-gripper", "0.15", "--episodes", "20") == 20
    assert episodes("--episodes", "7") == 7
    for bad in ("-0.1", "nan", "inf", "far"):                      # a distance, in metres
        with pytest.raises(SystemExit):
            episodes("--perturb-gripper", bad)


def test_eval_device_is_refused_by_the_parser_unless_one_the_code_accepts(capsys):
    """Typos and GPUs that torch does not see are argparse errors, before any checkpoint is read."""
    from equimanip.learning.evaluate import parse_args

    def device(value):
        return parse_args(["--expert", "--task", "reach", "--device", value]).device

    assert device("cpu") == "cpu" and device("auto") == "auto"
    assert parse_args(["--expert", "--task", "reach"]).device == "cpu"
    for typo in ("cdua", "gpu", "cuda:x", "CPU"):
        with pytest.raises(SystemExit) as exit_:
            device(typo)
        assert exit_.value.code == 2 and "device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if torch.cuda.is_available():                       # a GPU machine: the ones torch sees, no more
        count = torch.cuda.device_count()
        assert device("cuda") == "cuda" and device(f"cuda:{count - 1}") == f"cuda:{count - 1}"
        with pytest.raises(SystemExit):
            device(f"cuda:{count}")
        assert f"only {count} GPU(s)" in capsys.readouterr().err
    else:
        with pytest.raises(SystemExit):
            device("cuda")
        assert "torch sees no GPU here" in capsys.readouterr().err
