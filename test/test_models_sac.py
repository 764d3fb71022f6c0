"""Equivariant SAC's actor and critic: shapes, equivariance for every group, export, relaxed layers.

Which transformations the equivariance tests use, and why. On a square pixel grid only rotations
by multiples of 90 degrees (and the mirrors) map pixels onto pixels; a 45-degree turn of an image
has to interpolate, so no network, equivariant or not, can commute with it exactly. So:

* the whole network (heightmap in, action / Q out) is checked under the quarter turns, plus the
  mirrors for D4 / D8, which every group here contains (C8, C16 and SO(2) contain C4);
* every other element (45 and 22.5 degrees, sampled angles of SO(2), the mirrors composed with
  them) is checked where it acts exactly: on the 1 x 1 encoder output. There ``g`` acts by the
  field type's representation matrix alone (escnn's own, exact) and the heads must map it to the
  transformed action (actor) or the same Q (critic, with the action transformed too).

Small networks (n_hidden 8, 16 x 16 heightmaps) keep this file fast; sizes 64 and 128 are checked
for their shapes.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from equimanip import symmetry as sym
from equimanip.models import NetworkConfig, fields, make_actor, make_critic
from equimanip.models.inference import optimize_for_cpu
from equimanip.models.relaxed import RelaxedR2Conv

torch.set_num_threads(1)   # a 2-core shared machine: more threads only contend

GROUPS = list(sym.GROUPS)
SMALL = dict(n_hidden=8, heightmap_size=16)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def quarter_turns(name: str) -> list[sym.GroupElement]:
    G = sym.group(name)
    if G.is_trivial:
        return [sym.IDENTITY]
    flips = (False, True) if G.reflections else (False,)
    return [sym.GroupElement(k * math.pi / 2, f) for f in flips for k in range(4)]


def all_elements(name: str) -> list[sym.GroupElement]:
    G = sym.group(name)
    return G.elements() if G.is_finite else G.sample(np.random.default_rng(3), 8)


def inputs(cfg: NetworkConfig, batch: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    S = cfg.heightmap_size
    heightmap = torch.rand(batch, cfg.in_channels, S, S, generator=gen)
    action = torch.rand(batch, 5, generator=gen) * 2 - 1
    return heightmap, action


def check_quarter_turns(actor, critic, cfg: NetworkConfig, tolerance: float = 1e-4) -> None:
    heightmap, action = inputs(cfg)
    with torch.no_grad():
        mean, log_std = actor(heightmap)
        q1, q2 = critic(heightmap, action)
        for g in quarter_turns(cfg.group):
            turned = sym.transform_heightmap(g, heightmap)
            mean_g, log_std_g = actor(turned)
            assert relative_error(mean_g, sym.transform_action(g, mean)) < tolerance, g
            assert relative_error(log_std_g, log_std) < tolerance, g
            q1_g, q2_g = critic(turned, sym.transform_action(g, action))
            assert relative_error(q1_g, q1) < tolerance and relative_error(q2_g, q2) < tolerance, g


@pytest.mark.parametrize("group", GROUPS)
def test_actor_and_critic_shapes_equivariance_and_export(group):
    torch.manual_seed(0)
    cfg = NetworkConfig(group=group, **SMALL)
    actor, critic = make_actor(cfg).eval(), make_critic(cfg).eval()
    heightmap, action = inputs(cfg)
    with torch.no_grad():
        mean, log_std = actor(heightmap)
        q1, q2 = critic(heightmap, action)
    assert mean.shape == log_std.shape == (6, 5) and q1.shape == q2.shape == (6, 1)
    check_quarter_turns(actor, critic, cfg)
    plain_actor, plain_critic = actor.export(), critic.export()
    assert not any("escnn" in type(m).__module__ for m in [*plain_actor.modules(), *plain_critic.modules()])
    check_quarter_turns(plain_actor, plain_critic, cfg)
    with torch.no_grad():
        torch.testing.assert_close(plain_actor(heightmap), (mean, log_std), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(plain_critic(heightmap, action), (q1, q2), atol=1e-5, rtol=1e-5)
        # A SAC target network is a copy updated in place (escnn's SO(2) layers once held a
        # stride-0 buffer that refused this).
        target = copy.deepcopy(critic)
        for mine, theirs in zip(target.buffers(), critic.buffers()):
            mine.copy_(theirs)
        for mine, theirs in zip(target.parameters(), critic.parameters()):
            mine.lerp_(theirs, 0.01)


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "none"])
def test_heads_are_equivariant_under_every_element(group):
    """All elements (45-degree turns and so on), where they act exactly: on the 1 x 1 features;
    the escnn networks and their plain-torch exports (what inference runs) alike."""
    torch.manual_seed(0)
    cfg = NetworkConfig(group=group, **SMALL)
    actor, critic = make_actor(cfg).eval(), make_critic(cfg).eval()
    heightmap, action = inputs(cfg)
    gs = fields.gspace(group, planar=True)
    feature_type, out_type = actor.encoder.out_type, actor.head.out_type
    with torch.no_grad():
        for escnn_net, net in [(actor, actor), (critic, critic), (actor, actor.export()), (critic, critic.export())]:
            features = net.encoder(heightmap)
            assert features.shape[-2:] == (1, 1)
            for g in all_elements(group):
                e = fields.to_escnn_element(gs, g)
                # The exported encoder ends in the same field type as escnn's (its channels in order).
                rho_type = feature_type if escnn_net is actor else critic.encoder.out_type
                rho = torch.as_tensor(rho_type.representation(e), dtype=torch.float32)
                turned = torch.einsum("ij,bjxy->bixy", rho, features)
                if escnn_net is actor:
                    rho_out = torch.as_tensor(out_type.representation(e), dtype=torch.float32)
                    expected = torch.einsum("ij,bjxy->bixy", rho_out, net.head(features))
                    assert relative_error(net.head(turned), expected) < 1e-4, g
                    # ... and the output representation is symmetry.py's action layout, then 5 invariants
                    n = sym.ACTION_LAYOUT.size
                    np.testing.assert_allclose(out_type.representation(e)[:n, :n],
                                               sym.representation(sym.ACTION_LAYOUT, g), atol=1e-6)
                else:
                    q_turned = net.heads(turned, sym.transform_action(g, action))
                    q = net.heads(features, action)
                    assert all(relative_error(a, b) < 1e-4 for a, b in zip(q_turned, q)), g


def test_so2_norm_nonlinearity_and_paper_top_are_equivariant():
    for cfg in (NetworkConfig(group="so2", so2_nonlinearity="norm", **SMALL),
                NetworkConfig(group="d4", top="paper", **SMALL)):
        torch.manual_seed(0)
        check_quarter_turns(make_actor(cfg).eval(), make_critic(cfg).eval(), cfg)


@pytest.mark.parametrize("size,top", [(64, "compact"), (64, "paper"), (128, "compact"), (128, "paper")])
def test_encoder_reaches_1x1_for_configured_sizes(size, top):
    for group in ("none", "c4"):
        cfg = NetworkConfig(group=group, n_hidden=8, heightmap_size=size, top=top)
        actor = make_actor(cfg).eval()
        with torch.no_grad():
            assert actor.encoder(torch.zeros(1, 2, size, size)).shape[-2:] == (1, 1)
            mean, _ = actor(torch.zeros(1, 2, size, size))
        assert mean.shape == (1, 5)


def test_presets_and_parameter_counts():
    paper, cpu = NetworkConfig.paper(), NetworkConfig.cpu()
    assert (paper.group, paper.n_hidden, paper.heightmap_size, paper.top) == ("c8", 64, 128, "paper")
    assert NetworkConfig.for_device("cpu") == cpu and NetworkConfig.for_device("cuda") == paper
    assert NetworkConfig.from_dict(cpu.to_dict()) == cpu
    # The plain CNN has about the parameters of C8 at the same width (equi_rl's baseline).
    c8 = make_actor(NetworkConfig(group="c8", n_hidden=16)).parameter_count()
    plain = make_actor(NetworkConfig(group="none", n_hidden=16)).parameter_count()
    assert 0.75 < plain / c8 < 1.33, (plain, c8)


def test_module_walk_finds_what_torch_finds():
    """The id-keyed traversal (fields.CheapModuleWalk) yields the same parameters and buffers as
    torch's, and every module (torch's set-based one drops escnn basis modules that compare equal)."""
    critic = make_critic(NetworkConfig(group="c8", relaxed=True, **SMALL))
    assert [id(p) for p in critic.parameters()] == [id(p) for p in torch.nn.Module.parameters(critic)]
    assert [id(b) for b in critic.buffers()] == [id(b) for b in torch.nn.Module.buffers(critic)]
    ours = {id(m) for m in critic.modules()}
    assert {id(m) for m in torch.nn.Module.modules(critic)} <= ours
    assert len(ours) == len(list(critic.modules()))


def test_bad_configuration_and_inputs_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        NetworkConfig(n_hidden=12).validate()
    with pytest.raises(ValueError, match="power of two"):
        NetworkConfig(heightmap_size=48).validate()
    with pytest.raises(ValueError, match="finite group"):
        NetworkConfig(group="so2", relaxed=True).validate()
    with pytest.raises(ValueError, match="unknown group"):
        NetworkConfig(group="c5").validate()
    with pytest.raises(ValueError, match="unknown network settings"):
        NetworkConfig.from_dict({**NetworkConfig().to_dict(), "depth": 3})
    cfg = NetworkConfig(group="c4", **SMALL)
    actor, critic = make_actor(cfg), make_critic(cfg)
    with pytest.raises(ValueError, match=r"heightmap batch \[B, 2, 16, 16\]"):
        actor(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match=r"actions \[2, 5\]"):
        critic(torch.zeros(2, 2, 16, 16), torch.zeros(2, 4))


@pytest.mark.parametrize("group", ["c8", "d4"])
def test_relaxed_starts_exact_and_drifts_on_asymmetric_data(group):
    """Equal mixing weights: exactly equivariant. Trained to output the same (dx, dy) for a scene
    and its quarter turn (which no equivariant network can), the weights spread over the group and
    the network stops being equivariant; the regulariser sees it. The exact network under the same
    training stays exact (the contrast that shows the test can tell)."""
    torch.manual_seed(0)
    relaxed_cfg = NetworkConfig(group=group, relaxed=True, relaxed_strength=0.0, **SMALL)
    exact_cfg = NetworkConfig(group=group, **SMALL)
    actor, critic = make_actor(relaxed_cfg), make_critic(relaxed_cfg)
    check_quarter_turns(actor.eval(), critic.eval(), relaxed_cfg)
    assert float(actor.regularization_loss().detach()) == 0.0
    with torch.no_grad():
        torch.testing.assert_close(actor.export()(inputs(relaxed_cfg)[0]), actor(inputs(relaxed_cfg)[0]),
                                   atol=1e-5, rtol=1e-5)

    heightmap, _ = inputs(relaxed_cfg, batch=8)
    scenes = torch.cat([heightmap, sym.transform_heightmap(sym.GroupElement(math.pi / 2), heightmap)])
    target = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]).expand(len(scenes), 5)
    errors = {}
    for name, cfg in (("relaxed", relaxed_cfg), ("exact", exact_cfg)):
        torch.manual_seed(1)
        net = actor if name == "relaxed" else make_actor(cfg)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        net.train()
        for _ in range(10):
            loss = (net(scenes)[0] - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            mean = net(heightmap)[0]
            g = sym.GroupElement(math.pi / 2)
            errors[name] = relative_error(net(sym.transform_heightmap(g, heightmap))[0], sym.transform_action(g, mean))
    assert errors["exact"] < 1e-4
    assert errors["relaxed"] > 1e-2, errors
    spread = sum(float(m.asymmetry().detach()) for m in actor.modules() if isinstance(m, RelaxedR2Conv))
    assert spread > 0
    strong = NetworkConfig(group=group, relaxed=True, relaxed_strength=10.0, **SMALL)
    penalised = make_actor(strong)
    penalised.load_state_dict(actor.state_dict())
    assert float(penalised.regularization_loss().detach()) == pytest.approx(10.0 * spread, rel=1e-5)


def test_cpu_inference_module_matches_and_stays_equivariant():
    torch.manual_seed(0)
    cfg = NetworkConfig(group="d4", **SMALL)
    actor = make_actor(cfg).eval()
    fast, plan = optimize_for_cpu(actor.export(), repeats=2)
    assert len(plan) >= 10
    heightmap = inputs(cfg, batch=1)[0]
    with torch.no_grad():
        torch.testing.assert_close(fast(heightmap), actor(heightmap), atol=1e-5, rtol=1e-5)
        mean = fast(heightmap)[0]
        for g in quarter_turns("d4"):
            assert relative_error(fast(sym.transform_heightmap(g, heightmap))[0], sym.transform_action(g, mean)) < 1e-4


@pytest.mark.parametrize("group", ["c8", "d4", "none"])
def test_centred_inputs_stay_equivariant_through_export_and_keep_the_state_dict(group):
    torch.manual_seed(0)
    cfg = NetworkConfig(group=group, center_inputs=True, **SMALL)
    actor, critic = make_actor(cfg).eval(), make_critic(cfg).eval()
    check_quarter_turns(actor, critic, cfg)
    plain = actor.export()
    heightmap = inputs(cfg, batch=1)[0]
    fast, plan = optimize_for_cpu(plain, repeats=2)
    assert plan[0].startswith("InputCentering")
    with torch.no_grad():
        torch.testing.assert_close(plain(heightmap), actor(heightmap), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast(heightmap), actor(heightmap), atol=1e-5, rtol=1e-5)
    # The same weights as without it: the constants come from the configuration, so a state dict
    # loads either way and a checkpoint's settings decide. (The plain CNN's centring is the first
    # layer of its Sequential, which renumbers its layers' keys.)
    if group == "none":
        return
    torch.manual_seed(0)
    uncentred = make_actor(NetworkConfig(group=group, **SMALL))
    assert actor.state_dict().keys() == uncentred.state_dict().keys()
    uncentred.load_state_dict(actor.state_dict())
    with torch.no_grad():
        centred = (heightmap - torch.tensor([0.16, 0.5]).view(1, 2, 1, 1)) / torch.tensor([0.16, 0.5]).view(1, 2, 1, 1)
        torch.testing.assert_close(uncentred.eval()(centred), actor(heightmap), atol=1e-5, rtol=1e-5)


def test_moving_one_network_leaves_the_others_where_they_are():
    """escnn shares its sampled kernel bases between every convolution of a process that uses the
    same basis. Moving one network (to a GPU while training; here to float64, which takes the
    same path) must not move another network's bases: a policy exported on the CPU while a learner
    trains on the GPU would fail with tensors on two devices."""
    cfg = NetworkConfig(group="c8", **SMALL)
    moved = make_actor(cfg).to(torch.float64)
    other = make_actor(cfg).eval()           # expands its filters from the bases: they must be its own
    x = torch.rand(2, cfg.in_channels, 16, 16)
    assert other(x)[0].dtype == torch.float32
    assert moved(x.double())[0].dtype == torch.float64
    critic = make_critic(cfg)
    critic.to(torch.float64)
    make_critic(cfg).eval()

    from equimanip.models.mlp import EquivariantMLP
    layout = sym.ACTION_LAYOUT
    EquivariantMLP(layout, layout, "c8", hidden=16).to(torch.float64)
    assert EquivariantMLP(layout, layout, "c8", hidden=16).eval()(torch.rand(2, layout.size)).dtype == torch.float32


def _nbytes(state: dict) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


@pytest.mark.parametrize("relaxed", [False, True])
def test_state_dicts_hold_the_weights_not_what_escnn_derives_from_them(relaxed):
    """escnn's expanded filters (and the other buffers it derives exactly) stay out of the state
    dict; the sampled bases, whose last bits differ between CPUs, stay in. Loading rebuilds the
    filters, also into a network in eval mode (whose filters escnn caches), inside a plain parent
    module, and from a state dict written before that still holds them."""
    from equimanip.models.mlp import EquivariantMLP

    cfg = NetworkConfig.cpu(relaxed=relaxed)
    torch.manual_seed(0)
    actor = make_actor(cfg).eval()
    state = actor.state_dict()
    derived = fields.derived_state_keys(actor)
    assert derived and not derived & set(state)
    assert any(k.endswith(".filter") for k in derived) and any(k.endswith(".sampled_basis") for k in state)
    old_format = state | {k: b for k, b in actor.named_buffers(remove_duplicate=False) if k in derived}
    assert _nbytes(state) * 2 < _nbytes(old_format)

    x = torch.rand(3, cfg.in_channels, cfg.heightmap_size, cfg.heightmap_size)
    with torch.no_grad():
        expected = actor(x)[0]
    for saved in (state, old_format):
        fresh = make_actor(cfg).eval()            # eval mode: filters expanded from its own random weights
        fresh.load_state_dict(saved)
        with torch.no_grad():
            assert torch.equal(fresh(x)[0], expected)
    # Written at 6cbe0a7, which dropped the sampled bases too: the network's own are taken (on
    # this machine, the same values).
    without_bases = {k: v for k, v in state.items() if not k.endswith(".sampled_basis")}
    fresh = make_actor(cfg).eval()
    fresh.load_state_dict(without_bases)
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], expected)
    parent = torch.nn.ModuleDict({"actor": make_actor(cfg)})
    parent.load_state_dict({f"actor.{k}": v for k, v in state.items()})
    assert set(parent.state_dict()) == {f"actor.{k}" for k in state}
    with torch.no_grad():
        assert torch.equal(parent["actor"].eval()(x)[0], expected)

    # An MLP whose layers share one basis module: the state dict holds it under each of them.
    mlp = EquivariantMLP(sym.object_state_layout(2), sym.ACTION_LAYOUT, group="c4", hidden=32, depth=4).eval()
    fresh = EquivariantMLP(sym.object_state_layout(2), sym.ACTION_LAYOUT, group="c4", hidden=32, depth=4).eval()
    fresh.load_state_dict(mlp.state_dict())
    s = torch.rand(4, sym.object_state_layout(2).size)
    with torch.no_grad():
        assert torch.equal(fresh(s), mlp(s))


def test_policy_benchmark_ends_with_one_json_line(capsys):
    """`equimanip bench policy` runs end to end (a few timed calls, no paper network: building it
    takes most of a minute here) and its last line is the JSON object with the issue's keys; the
    figures themselves come from the benchmark run, not from this test."""
    import json

    from equimanip.bench import policy as bench

    assert bench.main(["--json", "--no-paper", "--repeats", "5", "--update-repeats", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("actor_ms", "escnn_actor_ms", "sac_update_ms", "speedup_vs_escnn", "goals_met"):
        assert key in result
    assert "actor_paper_ms" not in result                 # --no-paper
    assert result["actor_ms"] > 0 and result["escnn_actor_ms"] > 0 and result["sac_update_ms"] > 0
    assert result["threads"] == 1 and result["is_default_cpu_config"]
    assert set(result["goals_met"]) == {"actor_ms", "speedup", "sac_update_ms"}
    assert result["speedup_vs_escnn"] == pytest.approx(result["escnn_actor_ms"] / result["actor_ms"])
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "2"])                    # too few to take a median of
