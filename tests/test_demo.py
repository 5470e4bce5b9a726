"""End-to-end: a reduced `rerule demo` (2 worlds, 1 seed, 12 Stage 2 steps) from an empty directory."""

import json

import pytest

from openrlhf_rerule.experiments.demo import hard_case_gap, main


def test_hard_case_gap_units_are_worlds_or_with_one_world_seeds():
    def h(n, early, rule, rerule):
        return {"hard_ids": list("abc")[:n], "early": early, "rule": rule, "rerule": rerule}
    hard = {0: [h(1, 0.2, 0.4, 0.6), h(2, 0.4, 0.5, 0.5)], 1: [h(1, 0.1, 0.3, 0.6), h(1, 0.3, 0.3, 0.4)]}
    # Worlds: each world's seeds are averaged first (gaps 0.1 and 0.2; hard prompts 1.5 and 1).
    by_world = hard_case_gap(hard, [0, 1], "world")
    assert by_world["gap"]["values"] == pytest.approx([0.1, 0.2]) and by_world["n_hard"]["values"] == [1.5, 1.0]
    # One world: its seeds are the units.
    by_seed = hard_case_gap(hard, [0], "seed")
    assert by_seed["gap"]["values"] == pytest.approx([0.2, 0.0]) and by_seed["early_rule"]["values"] == [0.2, 0.4]


@pytest.mark.slow
def test_reduced_demo_learns_each_world_then_unlearns_it(tmp_path):
    # --replay.max_replays 50 cannot bind in 12 steps: it only checks that replay flags reach the ReRULE arm.
    assert main(["--out", str(tmp_path), "--worlds", "2", "--seeds", "1", "--steps", "12", "--progress", "false",
                 "--replay.max_replays", "50"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["replay"]["max_replays"] == 50 and report["settings"]["replay"]["warmup_steps"] == 8
    assert report["settings"]["worlds"] == [0, 1]

    for world, ev in report["per_world"].items():
        # The tiny model really learned the world before any unlearning: far above chance, and no refusals.
        pre = ev["pretrained"]
        assert pre["retain"]["accuracy"] >= 0.8 and pre["retain"]["accuracy"] > 5 * pre["retain"]["chance"], world
        assert pre["forget"]["accuracy"] >= 0.8 and pre["forget"]["refusal_rate"] == 0.0, world
        # Stage 1 (refusals mixed with answered retain rows) refuses the forget people and still knows the others:
        # what it answers about retain people is mostly right (knowledge kept, not destroyed as in issue 12).
        s1 = ev["stage1"]
        assert s1["forget"]["refusal_rate"] >= 0.8 and s1["forget"]["accuracy"] <= 0.1, world
        assert s1["retain"]["accuracy"] >= 0.7 * (1 - s1["retain"]["refusal_rate"]), world
        for method in ("rule", "rerule"):
            (after,) = ev[method]
            assert after["forget"]["refusal_rate"] >= 0.7 and after["forget"]["accuracy"] <= 0.2, (world, method)
            assert after["boundary"]["refusal_rate"] <= s1["boundary"]["refusal_rate"], (world, method)

    # Intervals are over the two worlds: each cell carries both world values and a t-interval around their mean.
    cell = report["evaluation"]["stage1"]["retain"]["accuracy"]
    assert cell["n"] == 2 and len(cell["values"]) == 2 and cell["lo"] <= cell["mean"] <= cell["hi"]
    for c in report["claims"]:
        assert 0 <= c["held"] <= c["of"] and c["of"] in (2, 4) and c["unit"] in ("worlds", "runs")
    assert report["hard_case_gap"]["n_hard"]["n"] == 2

    # The replay buffer really activated (where enough hard groups were stored: a world whose Stage 1 over-refuses
    # little may not fill min_groups in 12 steps), never before the warm-up, and the RULE runs have no replay.
    rerule, rule = report["training"]["rerule"], report["training"]["rule"]
    assert rerule["replay_started_runs"]["mean"] > 0 and min(rerule["replay_first_step"]["values"]) >= 9
    assert max(rerule["buffer_replayed_total"]["values"]) >= 16 and "replay_first_step" not in rule
    assert len(report["hard_cases"]) == 6 and report["verdict"]

    for plot in report["plots"]:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.md").read_text()
    assert "| ReRULE |" in text and "Worlds (world seeds): 0, 1" in text and "held in" in text
    runs = tmp_path / "world1" / "stage2"
    assert (runs / "rerule/seed0/reward_history.jsonl").exists() and (runs / "rule/seed0/tensorboard").is_dir()
