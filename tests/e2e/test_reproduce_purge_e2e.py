"""examples/scripts/reproduce_purge_rwku.sh end to end on the real stack, for one target, scaled down by environment
variables only: the synthetic world laid out as RWKU's target folder (the rejection-tuning questions in
reject_phi.json, the probes in forget_level1-3 / neighbor_level1-2) with an offline entity list in the layout of the
PURGE authors' data/PURGE/<target>/fts.json (written by `write_rwku` below), then answers from the tiny model ->
entities -> Stage 2 rows -> PURGE -> PURGE + replay -> eval of the base model and both arms -> report.

Asserted on what the runs log and write, not on exit codes: every step's logged reward is 1 - `mentioned` (the
purge_binary reward scored the rollouts, no label was malformed), the model starts out naming forbidden terms,
the weights reach vLLM, replay runs in the replay arm only, and the report has the three rows.
"""

import json
from pathlib import Path

import pytest

from e2e_stack import STAGE2_ENV, dump, parse_steps, sync_ratio
from test_reproduce_e2e import segments, write_json

pytestmark = pytest.mark.e2e

TARGET, NAME = "1_Synthetic_World", "Synthetic World"
STEPS = 6  # 48 questions (6 forget people x 4 attributes x 2 forms) in rollout batches of 8, one episode


def write_rwku(world_dir: Path, root: Path) -> tuple[Path, Path]:
    """The world's forget people as one RWKU target: their question and fill-in-the-blank rows are the
    rejection-tuning questions ({instruction, input, output, subject}, reject_phi.json), their held-out paraphrases
    the forget probes (levels 1-3), the retain people's questions the neighbour probes ({query, answer}). The
    entity list: the target's name, then every forget person's city, employer and book. Not their names: every
    question names its person and every answer repeats the name, so with names in the list all 4 completions of a
    prompt fail and the group has no gradient (measured: 4 of 6 steps with zero reward variance in every group,
    KL to the start 0.002 after 6 steps). Not their professions either: generic words, which the authors'
    extraction prompt asks to avoid."""
    def rows(name):
        return [json.loads(line) for line in (world_dir / name).read_text().splitlines() if line.strip()]

    forget = rows("eval/forget.jsonl")
    target = root / "RWKU" / TARGET
    write_json(target / "reject_phi.json", [{"instruction": r["prompt"], "input": "", "output": "", "subject": NAME}
                                            for r in forget])
    heldout = [r for r in rows("eval/heldout.jsonl") if r["kind"] == "forget"]
    for level in (1, 2, 3):
        write_json(target / f"forget_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"], **({"type": "role playing"} if level == 3 else {})}
                    for r in heldout[level - 1::3]])
    neighbours = rows("eval/retain.jsonl")
    for level in (1, 2):
        write_json(target / f"neighbor_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"]} for r in neighbours[level - 1::2]])
    terms = [NAME] + sorted({r["answer"] for r in forget if r["form"] == "cloze" and r["attribute"] != "profession"})
    write_json(root / "PURGE" / TARGET / "fts.json", terms)
    return root / "RWKU", root / "PURGE"


@pytest.mark.timeout(1800)  # the world is learned in this test when it runs alone
def test_reproduce_purge_one_target_end_to_end(stack, world, tmp_path):
    rwku, entities = write_rwku(world["dir"], tmp_path / "inputs")
    runs = tmp_path / "runs"
    run = stack.recipe("reproduce_purge_rwku.sh", runs, {
        **STAGE2_ENV, "RWKU_DIR": str(rwku), "ENTITIES_DIR": str(entities), "TARGETS": TARGET,
        "BASE_MODEL": str(world["model"]),
        # The world has no RWKU utility sets (MMLU, BBH, ...): the probes only, so "utility kept" stays "-"
        "EVAL_SUBSETS": "forget neighbor",
        # The tiny model learned its world through its chat template, so the prompts keep it (PURGE's default is
        # the raw text, pinned in tests/test_purge_recipes.py). Raw, it names a term in 4 of 48 answers.
        "PROMPT_FORMAT": "chat",
        # PURGE's shape (4 completions a prompt, one optimizer step per rollout batch) at 8 prompts a step: the 48
        # questions once; replay from step 3 with 8 stored groups
        "N_SAMPLES": "4", "ROLLOUT_BATCH": "8", "TRAIN_BATCH": "32", "MAX_STEPS": str(STEPS), "NUM_EPISODES": "1",
        "REPLAY_MIN_GROUPS": "8", "REPLAY_WARMUP_STEPS": "2", "REPLAY_BATCH_GROUPS": "8", "REPLAY_CAPACITY": "100",
    }, timeout=1200)
    log, target_dir = run.log, runs / "rwku_purge" / TARGET

    stage2 = [json.loads(line) for line in (target_dir / "data" / "stage2.jsonl").read_text().splitlines()]
    assert len(stage2) == 48 and all(json.loads(r["label"])[:2] == ["<purge>", NAME] for r in stage2), log[-3000:]
    arms = segments(log)
    assert set(arms) == {"purge", "purge_replay"}, log[-3000:]
    for name, text in arms.items():
        steps = parse_steps(text)
        dump(name, steps)
        assert sorted(steps) == list(range(1, STEPS + 1)), (name, sorted(steps))
        for m in steps.values():  # the purge_binary reward scored every rollout: reward = 1 - mentioned
            assert abs(m["reward"] + m["mentioned"] - 1) < 1e-6 and m["bad_label"] == 0, m
        assert steps[1]["mentioned"] > 0  # the model answers its forget questions with the forbidden terms
        # the policy moved away from the model (KL to the reference on the step's own samples: measured up to
        # 0.076, and back to 0.001 on a step of short answers) and vLLM followed it (vllm_kl / kl < 0.05)
        assert max(m["kl"] for m in steps.values()) > 0.01 and sync_ratio(steps) < 0.05, \
            {s: (m["vllm_kl"], m["kl"]) for s, m in steps.items()}
    replay = parse_steps(arms["purge_replay"])
    assert any(m.get("replay/active") == 1 for m in replay.values())
    assert not any(k.startswith("replay/") for m in parse_steps(arms["purge"]).values() for k in m)

    for arm in ("base", "purge", "purge_replay"):
        summary = json.loads((target_dir / "eval" / arm / "rwku_summary.json").read_text())
        assert summary["targets"] == [TARGET]
        assert all(0 <= summary[k] <= 1 for k in ("forget_all", "neighbor_all")), (arm, summary)
    report = (runs / "rwku_purge" / "report" / "report.md").read_text()
    for row in ("Base model", "PURGE (ours)", "PURGE + replay (ours)"):
        assert f"| {row} |" in report, report
    # PURGE's headline numbers against the base run, and the tokens of each arm's unlearning data (48 prompts with
    # their answers, counted with the tiny tokenizer: more than one token per row)
    extra = json.loads((runs / "rwku_purge" / "report" / "report_purge.json").read_text())
    assert {r["name"] for r in extra["headline"]} == {"PURGE (ours)", "PURGE + replay (ours)"}, extra
    assert all(r["effectiveness"] is not None for r in extra["headline"]), extra
    assert {r["name"] for r in extra["unlearning_data"]} == {"PURGE (ours)", "PURGE + replay (ours)"}, extra
    assert all(r["tokens"] > 2 * 48 for r in extra["unlearning_data"]), extra
