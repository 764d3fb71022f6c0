"""The imitation experiments' table and goal lines, from results rows (no training here: the runs
themselves are benchmarks)."""
from __future__ import annotations

from equimanip.learning.bmil_experiments import bmil_label, goals, method_label, tables

BMIL = "traces 1-1, scale 3, repeat 1"


def row(method, seed, perturbed, bmil="", inside=0.5, rotated=0.5, wall=60.0):
    return {"task": "block_pushing", "method": method, "arm": "3", "goal": "given", "inputs": "standardised",
            "bmil": bmil, "demos": "10", "seed": str(seed), "success_in": str(inside),
            "success_perturbed": str(perturbed), "success_rotated": str(rotated), "train_wall_s": str(wall)}


def test_goals_compare_bmil_with_bc_seed_by_seed_and_judge_only_three_seeds():
    rows = [row("bc", s, p) for s, p in enumerate([0.2, 0.3, 0.4])]
    rows += [row("bmil", s, p, BMIL) for s, p in enumerate([0.45, 0.5, 0.6])]        # +21.7 on 3 seeds
    rows += [row("bmil", 0, 0.9, "traces 1-3, scale 3, repeat 10", wall=900.0)]       # one slow seed
    rows += [row("equi_bmil", s, 0.7, BMIL, inside=0.8, rotated=0.65) for s in range(3)]
    lines = goals(rows).splitlines()
    assert any(f"BMIL {BMIL}: BMIL beats BC" in x and "met (+22 points, seeds 0, 1, 2)" in x for x in lines)
    # One seed is compared with BC's same seed, and not called met or missed.
    assert any("repeat 10: BMIL beats BC" in x and "not judged, 1 seed (+70 points, seed 0)" in x for x in lines)
    assert any("at least as good as BMIL" in x and ": met (70 % vs 52 %)" in x for x in lines)
    assert any("rotated scenes: NOT met (65 % rotated vs 80 %" in x for x in lines)
    assert lines[-1].startswith("* training with 10 demonstrations under 10 minutes: NOT met for "
                                "bmil (traces 1-3, scale 3, repeat 10)")


def test_table_keeps_bmil_settings_apart():
    rows = [row("bmil", 0, 0.4, BMIL), row("bmil", 0, 0.5, "traces 1-3, scale 3, repeat 1"), row("bc", 0, 0.2)]
    assert method_label(rows[2]) == "bc" and method_label(rows[0]) == f"bmil ({BMIL})"
    body = tables(rows).splitlines()[2:]
    assert len(body) == 3 and any(f"| bmil ({BMIL}) | 1 | 50 % | 40 % |" in x for x in body)


def test_bmil_label_names_demo_ratio_and_samples_only_off_the_reference():
    assert bmil_label((1, 1), 3.0, 1) == BMIL                       # the rows from before the options
    assert bmil_label((1, 1), 3.0, 1, 0.5, 1) == BMIL
    assert bmil_label((1, 3), 30.0, 10, 0.25, 4) == ("traces 1-3, scale 30, repeat 10, demo ratio 0.25, "
                                                     "4 samples per start")
