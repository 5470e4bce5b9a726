"""`rerule study`: the statistics and hard-case bookkeeping on hand-made logs (values worked out by hand), the
world's disparity knobs, and the plumbing of the --quick variant (not its numbers)."""

import dataclasses
import json
import math

import pytest

from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.experiments.report import hard_case_rewards, mean_std
from openrlhf_rerule.experiments.study import cost_to_target, main, parse_levels, smoothed_hard_reward
from openrlhf_rerule.rewards import is_refusal


def test_interval_is_the_student_t_interval_of_the_mean():
    # [1, 2, 3]: mean 2, s = 1, standard error 1/sqrt(3); t(0.975, df=2) = 4.302653 from the t table.
    cell = mean_std([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert cell["mean"] == 2.0 and cell["std"] == 1.0 and cell["n"] == 3
    assert cell["lo"] == pytest.approx(2 - half, abs=1e-5) and cell["hi"] == pytest.approx(2 + half, abs=1e-5)
    assert mean_std([0.5, 0.5])["lo"] == mean_std([0.5, 0.5])["hi"] == 0.5  # no spread: a point
    assert mean_std([0.5])["lo"] is None  # one unit: no interval


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


def test_levels_flag_is_checked(capsys):
    assert parse_levels("1, 0,0.5") == [0.0, 0.5, 1.0]
    assert main(["--levels", "0,2"]) == 2
    assert "--levels" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_study_plumbing(tmp_path):
    """--quick with 10 steps: every arm ran at every level and replicate, and the report, its tables and plots
    were written. The numbers are not checked (10 steps measure nothing)."""
    assert main(["--out", str(tmp_path), "--quick", "--steps", "10"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["levels"] == [0.0, 1.0] and report["settings"]["worlds"] == [0, 1]
    for level in ("0.0", "1.0"):
        cells = report["cells"][level]
        assert len(cells) == 2
        for cell in cells:
            assert set(cell["effects"]) == {"rerule", "random"} and 0.0 <= cell["table6"]["hard_ratio_tau0.6"] <= 1.0
    for ws in (0, 1):
        for i in (0, 1):
            for arm in ("rule", "rerule", "random"):
                assert (tmp_path / f"world{ws}/level{i}/stage2/{arm}/final").is_dir()
    # More of the boundary people refused by Stage 1 -> more early hard groups on the boundary side (the knob works).
    t6 = {lv: report["summary"][lv]["table6"]["hard_ratio_boundary"]["mean"] for lv in ("0.0", "1.0")}
    assert t6["1.0"] > t6["0.0"]
    text = (tmp_path / "report.md").read_text()
    for heading in ("Table 6", "ReRULE (hard storage) − RULE", "ReRULE (random storage) − RULE", "Time to target",
                    "The paper's conditional claim"):
        assert heading in text
    for plot in report["plots"]:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerule_study_is_registered_and_follows_the_flag_convention(capsys):
    from openrlhf_rerule.cli import main as rerule
    assert rerule(["study", "--replicates", "1"]) == 2  # an interval needs two replicates
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--replicates" in err and "Traceback" not in err
    assert rerule(["study", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--first_world" in text and "(default: 5)" in text and "(default: 40)" in text and "--quick" in text
