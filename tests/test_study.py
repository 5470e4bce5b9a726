"""`rerule study`: the statistics, the power and the hard-case bookkeeping on hand-made values (worked out by hand,
by an explicit design matrix, by simulation), the world's disparity knobs, and the plumbing of the --quick variant
(not its numbers) with --jobs 1 and --jobs 2 giving the same numbers."""

import dataclasses
import json
import math

import numpy as np
import pytest

from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.experiments.report import hard_case_rewards, mean_std
from openrlhf_rerule.experiments.study import analyse, cost_to_target, main, parse_levels, smoothed_hard_reward
from openrlhf_rerule.experiments.study_report import write_study_report
from openrlhf_rerule.experiments.study_stats import detectable_slope, power_of, within_slope
from openrlhf_rerule.rewards import is_refusal


def test_interval_is_the_student_t_interval_of_the_mean():
    # [1, 2, 3]: mean 2, s = 1, standard error 1/sqrt(3); t(0.975, df=2) = 4.302653 from the t table.
    cell = mean_std([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert cell["mean"] == 2.0 and cell["std"] == 1.0 and cell["n"] == 3
    assert cell["lo"] == pytest.approx(2 - half, abs=1e-5) and cell["hi"] == pytest.approx(2 + half, abs=1e-5)
    assert mean_std([0.5, 0.5])["lo"] == mean_std([0.5, 0.5])["hi"] == 0.5  # no spread: a point
    assert mean_std([0.5])["lo"] is None  # one unit: no interval


def test_units_without_a_value_are_left_out_and_said():
    """`rerule demo --steps 3` (replay warm-up 8): no step after the warm-up, so each seed's late reward on its hard
    prompts is NaN, and the hard-case table's interval over two seeds crashed (statistics.stdev of NaN). A NaN
    unit is left out and counted; the interval is over the units that have a value."""
    from openrlhf_rerule.experiments.demo import hard_case_gap
    from openrlhf_rerule.experiments.report import fmt

    early = history([(1, "a", 0.0), (2, "a", 0.5), (3, "b", 1.0)])  # steps 1-3 only, all <= the warm-up
    h = hard_case_rewards(early, {"rule": early, "rerule": early}, warmup=8, tau=0.6)
    assert h["hard_ids"] == ["a"] and h["early"] == 0.25 and math.isnan(h["rule"]) and math.isnan(h["rerule"])
    gap = hard_case_gap({0: [h, h]}, [0], "seed")  # one world, two seeds: the seeds are the units
    assert gap["n_hard"]["mean"] == 1.0 and gap["early_rule"]["lo"] == gap["early_rule"]["hi"] == 0.25
    assert math.isnan(gap["late_rule"]["mean"]) and gap["late_rule"]["n"] == 0 and gap["late_rule"]["lo"] is None
    # [NaN, 1, 3]: the units with a value are [1, 3]: mean 2, s = sqrt(2), standard error 1; t(0.975, df=1) = 12.706205
    cell = mean_std([float("nan"), 1.0, 3.0])
    assert (cell["mean"], cell["n"], cell["std"]) == (2.0, 2, pytest.approx(math.sqrt(2)))
    assert cell["lo"] == pytest.approx(2 - 12.706205, abs=1e-5) and cell["hi"] == pytest.approx(2 + 12.706205, abs=1e-5)
    assert len(cell["values"]) == 3 and fmt(cell) == "2.000 [-10.706, 14.706] (n 2 of 3)"


def history(rows):
    return [{"step": s, "prompt_id": p, "kind": "boundary", "mean_reward": r} for s, p, r in rows]


def test_hard_cases_are_found_in_rules_early_window_and_scored_after_it():
    rule = history([(1, "a", 0.0), (2, "a", 0.5), (1, "b", 1.0), (2, "c", 0.5), (1, "c", 0.75),
                    (3, "a", 0.25), (4, "a", 0.25), (3, "b", 0.0)])
    other = history([(1, "a", 0.0), (2, "a", 0.5), (3, "a", 0.5), (4, "a", 1.0), (4, "b", 0.0)])
    out = hard_case_rewards(rule, {"rule": rule, "rerule": other}, warmup=2, tau=0.6)
    # a: early mean 0.25 < 0.6 (hard); b: 1.0; c: 0.625 (not hard). Late (steps > 2) on a only.
    assert out["hard_ids"] == ["a"] and out["early"] == 0.25
    assert out["rule"] == 0.25 and out["rerule"] == 0.75


def test_cost_to_target_counts_time_and_generated_tokens_up_to_the_step_that_reaches_and_keeps_it():
    hist = history([(1, "a", 0.0), (2, "a", 0.5), (3, "a", 1.0), (4, "a", 1.0), (2, "z", 0.0)])
    metrics = [{"step": s, "timing/step": float(s), "rollout/response_len": 2.0} for s in (1, 2, 3, 4)]
    assert smoothed_hard_reward(hist, {"a"}, window=2) == {1: 0.0, 2: 0.25, 3: 0.75, 4: 1.0}
    # window 1: the reward reaches 0.9 at step 3; time 1 + 2 + 3 s; tokens 3 steps x 2 tokens x 8 samples.
    assert cost_to_target(hist, metrics, {"a"}, 0.9, window=1, samples_per_step=8) == \
        {"step": 3, "seconds": 6.0, "tokens": 48.0}
    assert cost_to_target(hist, metrics, {"a"}, 1.5, window=1, samples_per_step=8) is None
    # Reached *and kept*: touching the target at step 1 and dropping below it at step 2 does not count.
    bumpy = history([(1, "a", 1.0), (2, "a", 0.0), (3, "a", 1.0), (4, "a", 1.0)])
    assert cost_to_target(bumpy, metrics, {"a"}, 0.9, window=1, samples_per_step=8)["step"] == 3


def test_world_knobs_change_stage1_only():
    plain = build_world(seed=3, num_forget=3, num_boundary=4, num_retain=2)
    knobbed = build_world(seed=3, num_forget=3, num_boundary=4, num_retain=2, num_stage1_retain=2,
                          stage1_over_refuse=0.5)
    assert [dataclasses.asdict(p) for p in knobbed.people[:9]] == [dataclasses.asdict(p) for p in plain.people]
    for rel in plain.files:
        if rel not in ("stage1.jsonl", "pretrain.jsonl"):
            assert knobbed.files[rel] == plain.files[rel], rel
    rows = knobbed.files["stage1.jsonl"][0]
    extra = {p.name for p in knobbed.group("stage1_retain")}
    over = [p.name for p in knobbed.group("boundary")][:2]  # half of the 4 boundary people
    refused = [r for r in rows if is_refusal(r["response"], "rule")]
    answered = [r for r in rows if not is_refusal(r["response"], "rule")]
    assert len(refused) == (3 + 2) * 4 * 2 and {r["subject"] for r in refused} >= set(over)
    assert len(answered) == 2 * 4 * 2 and {r["subject"] for r in answered} == extra
    evaluated = {r["subject"] for rel, (rs, _) in knobbed.files.items() if rel.startswith("eval/") for r in rs}
    assert not extra & evaluated  # the Stage 1 retain people are never evaluated
    with pytest.raises(ValueError):
        build_world(stage1_over_refuse=1.5)
    # The other side of the knob: Stage 1 answers the questions of the first half of the boundary people.
    answering = build_world(seed=3, num_forget=3, num_boundary=4, num_retain=2, stage1_answer_boundary=0.5)
    rows = answering.files["stage1.jsonl"][0]
    answered = {r["subject"] for r in rows if not is_refusal(r["response"], "rule")}
    assert answered == set(over) and sum(not is_refusal(r["response"], "rule") for r in rows) == 2 * 4 * 2
    assert answering.files["stage2.jsonl"] == plain.files["stage2.jsonl"]
    with pytest.raises(ValueError):
        build_world(stage1_answer_boundary=0.5, stage1_over_refuse=0.5)


def test_within_slope_by_hand():
    # Two replicates, x = (0, 1) each, y = (0, 2) and (1, 2). Within each replicate: x - mean = (-1/2, 1/2), y - mean
    # = (-1, 1) and (-1/2, 1/2); Sxx = 1, Sxy = 3/2 -> slope 3/2; residuals (-1/4, 1/4, 1/4, -1/4), SSE = 1/4,
    # df = 4 - 2 - 1 = 1, SE = sqrt(1/4) / sqrt(1) = 1/2, t = 3; t with 1 df is Cauchy: p = 1 - 2 atan(3) / pi.
    fit = within_slope([("a", 0, 0), ("a", 1, 2), ("b", 0, 1), ("b", 1, 2)])
    assert fit["slope"] == pytest.approx(1.5) and fit["se"] == pytest.approx(0.5) and fit["df"] == 1
    assert fit["p_value"] == pytest.approx(1 - 2 * math.atan(3) / math.pi, rel=1e-9)
    assert fit["lo"] == pytest.approx(1.5 - 12.706205 * 0.5, abs=1e-5)  # t(0.975, 1) = 12.706205 (t table)
    # x constant within each replicate: the fixed effects absorb it, nothing to estimate.
    assert within_slope([("a", 0, 0), ("a", 0, 1), ("b", 1, 2), ("b", 1, 3)])["slope"] is None


def test_within_slope_is_least_squares_with_a_dummy_per_replicate():
    # The same fit by an explicit design matrix (numpy least squares): a column per replicate, one for x.
    rng = np.random.default_rng(0)
    groups = [g for g in range(6) for _ in range(4)]
    xs = rng.uniform(0, 0.8, len(groups))
    ys = 0.3 * xs + np.array([0.1 * g for g in groups]) + rng.normal(0, 0.05, len(groups))
    design = np.column_stack([xs] + [[float(g == k) for g in groups] for k in range(6)])
    coef, sse, *_ = np.linalg.lstsq(design, ys, rcond=None)
    df = len(ys) - design.shape[1]
    se = math.sqrt(sse[0] / df * np.linalg.inv(design.T @ design)[0, 0])
    fit = within_slope(list(zip(groups, xs, ys)))
    assert fit["slope"] == pytest.approx(coef[0], rel=1e-9) and fit["se"] == pytest.approx(se, rel=1e-9)
    assert fit["df"] == df == 17


def test_detectable_slope_normal_limit_and_simulated_power():
    # Many degrees of freedom: the t-test is a z-test, and 80% power two-sided at 0.05 needs
    # delta = z(0.975) + z(0.80) = 1.959964 + 0.841621 (the far tail adds ~1e-6).
    assert detectable_slope(1.0, 10**6) == pytest.approx(2.801585, abs=1e-4)
    assert power_of(0.0, 7) == pytest.approx(0.05, abs=1e-9)
    # A small design, by simulation: 4 replicates x 3 levels, sigma 0.1. At the detectable slope, the fixed-effects
    # t-test rejects in 80% of simulated studies (4000 studies: Monte Carlo SD 0.0063).
    xs = [0.1, 0.4, 0.7]
    points = [(g, x) for g in range(4) for x in xs]
    sxx = 4 * sum((x - 0.4) ** 2 for x in xs)
    beta = detectable_slope(0.1 / math.sqrt(sxx), len(points) - 4 - 1)
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(4000):
        noise = rng.normal(0, 0.1, len(points))
        fit = within_slope([(g, x, beta * x + g + e) for (g, x), e in zip(points, noise)], with_power=False)
        rejected += fit["p_value"] < 0.05
    assert rejected / 4000 == pytest.approx(0.80, abs=0.025)


def test_levels_flag_is_checked(capsys):
    assert parse_levels("1, 0,0.5") == [0.0, 0.5, 1.0]
    assert main(["--levels", "0,2"]) == 2
    assert "--levels" in capsys.readouterr().err


def without_timings(value):
    """report.json minus what wall-clock time, --jobs or a resume decides: step times, the wall time and the
    verdict line made of them, the machine line, the command, its jobs setting and the units a resume kept."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if "seconds" not in k and k not in ("machine", "command", "jobs", "units_kept")}
    if isinstance(value, list):
        return [without_timings(v) for v in value if not (isinstance(v, str) and "wall time" in v)]
    return value


@pytest.mark.slow
def test_quick_study_plumbing_and_jobs_do_not_change_results(tmp_path):
    """--quick with 10 steps (replay starts after the 8-step warm-up), in one process and in two worker processes:
    every arm ran at every level and replicate, the report, its tables and plots were written, and every number
    except wall-clock times is the same, each arm's greedy evaluation included (to the last bit: each unit seeds
    itself). The numbers themselves are not checked (10 steps measure nothing)."""
    assert main(["--out", str(tmp_path / "one"), "--quick", "--steps", "10"]) == 0
    assert main(["--out", str(tmp_path / "two"), "--quick", "--steps", "10", "--jobs", "2"]) == 0
    one, two = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert without_timings(one) == without_timings(two)
    assert one["settings"]["jobs"] == 1 and two["settings"]["jobs"] == 2
    assert any(c["replay"]["rerule"]["first_step"] for cells in one["cells"].values() for c in cells)  # replay ran
    report, out = two, tmp_path / "two"
    low, high = (str(lv) for lv in report["levels"])
    assert report["levels"][0] < 0 < report["levels"][1] and report["settings"]["world_sets"] == {"0": [0, 1]}
    for level in (low, high):
        cells = report["cells"][level]
        assert [c["world"] for c in cells] == [0, 1]
        for cell in cells:
            assert set(cell["effects"]) == {"rerule", "random"} and 0.0 <= cell["table6"]["hard_ratio_tau0.6"] <= 1.0
    for ws in (0, 1):
        for i in (0, 1):
            for arm in ("rule", "rerule", "random"):
                assert (out / f"world{ws}/level{i}/stage2/{arm}/final").is_dir()
    # Stage 1 refusing the boundary people instead of answering them -> more early hard groups there (the knob works).
    t6 = {lv: report["summary"][lv]["table6"]["hard_ratio_boundary"]["mean"] for lv in (low, high)}
    assert t6[high] > t6[low]
    text = (out / "report.md").read_text()
    for heading in ("Table 6", "By world set", "Power: the pooled design detects", "ReRULE (hard storage) − RULE",
                    "ReRULE (random storage) − RULE", "Time to target", "Underpowered", "World sets: from 0"):
        assert heading in text
    for plot in report["plots"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerule_study_is_registered_and_follows_the_flag_convention(capsys):
    from openrlhf_rerule.cli import main as rerule
    assert rerule(["study", "--replicates", "1"]) == 2  # an interval needs two replicates
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--replicates" in err and "Traceback" not in err
    for bad, flag in ((["--world_sets", "0,3", "--replicates", "4"], "--world_sets"), (["--world_sets", "0,0"],
                      "--world_sets"), (["--jobs", "0"], "--jobs"), (["--levels", "-1.5,0"], "--levels")):
        assert rerule(["study", *bad]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err
    assert rerule(["study", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--world_sets" in text and "(default: 0,30)" in text and "(default: 5)" in text and "(default: 40)" in text
    assert "--jobs" in text and "--quick" in text


def test_two_world_sets_are_pooled_with_a_fixed_effect_per_replicate_and_reported_side_by_side(tmp_path):
    """Hand-made cells, no training: 2 world sets x 3 replicates x 3 levels. The pooled trend is the fixed-effects
    fit of all 18 cells (not a plain regression), each set has its own, and the report prints both sets, the pooled
    row and the power."""
    levels, sets = [-0.5, 0.0, 1.0], {0: [0, 1, 2], 30: [30, 31, 32]}
    offsets = {0: 0.0, 1: 0.2, 2: -0.1, 30: 0.5, 31: 0.3, 32: 0.4}  # large per-world offsets the fit must absorb
    cells = {lv: [] for lv in levels}
    points = []
    for first, worlds in sets.items():
        for k, ws in enumerate(worlds):
            for j, lv in enumerate(levels):
                ratio = 0.1 + 0.3 * j + 0.02 * k
                gain = offsets[ws] + (0.4 if first == 0 else 0.2) * ratio + 0.01 * ((k + j) % 2)
                points.append((ws, ratio, gain))
                effects = {"hard-case reward": gain, "boundary accuracy": 0.0, "forget refusal": 0.0,
                           "retain accuracy": 0.0}
                cells[lv].append({"world_set": first, "world": ws, "cost": {},
                                  "table6": {"hard_ratio_tau0.4": ratio, "hard_ratio_tau0.6": ratio,
                                             "hard_ratio_forget": 0.0, "hard_ratio_boundary": ratio, "hard_prompts": 5},
                                  "effects": {"rerule": effects, "random": {**effects, "hard-case reward": gain / 2}},
                                  "replay": {arm: {"first_step": 9, "admitted": 10.0} for arm in ("rerule", "random")}})
    analysis = analyse(levels, sets, cells, quick=False)
    pooled = analysis["trends"]["rerule"]
    assert pooled == within_slope(points) and pooled["groups"] == 6 and pooled["df"] == 18 - 6 - 1
    assert 0.2 < pooled["slope"] < 0.4 and pooled["detectable_slope"] > 0
    assert analysis["by_world_set"][0]["trend"]["slope"] == pytest.approx(0.4, abs=0.05)
    assert analysis["by_world_set"][30]["trend"]["slope"] == pytest.approx(0.2, abs=0.05)
    assert [c["n"] for c in (analysis["by_world_set"][30]["summary"][1.0]["effects"]["rerule"]["hard-case reward"],
                             analysis["summary"][1.0]["effects"]["rerule"]["hard-case reward"])] == [3, 6]
    write_study_report(tmp_path, {"command": "rerule study", "wall_seconds": 1.0, "machine": "test", "levels": levels,
                                  "settings": {"replicates": 3, "world_sets": sets, "steps": 40, "tau": 0.6,
                                               "warmup": 8}, "cells": {}, **analysis, "plots": []})
    text = (tmp_path / "report.md").read_text()
    for row in ("| 0 (worlds 0–2) |", "| 30 (worlds 30–32) |", "| pooled |", "World set 30 (worlds 30–32) alone",
                "World sets: from 0: world seeds 0, 1, 2; from 30: world seeds 30, 31, 32",
                f"detects a slope of the hard-case gain on the measured hard ratio of {pooled['detectable_slope']:.3f}"):
        assert row in text
    assert "Underpowered" not in text
