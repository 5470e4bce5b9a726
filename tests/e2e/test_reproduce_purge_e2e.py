"""examples/scripts/reproduce_purge_rwku.sh end to end on the real stack, for one target, scaled down by environment
variables only: the synthetic world laid out as RWKU's target folder (the rejection-tuning questions in
reject_phi.json, the probes in forget_level1-3 / neighbor_level1-2) with an offline entity list in the layout of the
PURGE authors' data/PURGE/<target>/fts.json (written by `write_rwku` below), then answers from the tiny model ->
entities -> Stage 2 rows -> PURGE -> PURGE + replay -> eval of the base model and both arms -> report.

The learning signal is there by construction, not by chance (`undecided_base`): the model that learned the world
names a forget person's city, employer or book in 0-3% or 88-100% of its samples of a question (measured), so
nearly every group of 4 was all-fail or all-pass and a run had a gradient only when a rare sample broke ranks (a
clean-clone run failed its KL check that way). The base model PURGE starts from is therefore fine-tuned on each
training question answered half the time with the forbidden value and half the time with another: every question
is then mentioned in about half its samples, which the test checks before anything runs.

Asserted on what the runs log and write, not on exit codes: every step's logged reward is 1 - `mentioned` (the
purge_binary reward scored the rollouts, no label was malformed), the model starts out naming forbidden terms with
reward variance in its groups, the policy moves and the weights reach vLLM, replay runs in the replay arm only, and
the report has the three rows.
"""

import json
from pathlib import Path

import pytest

from e2e_stack import STAGE2_ENV, dump, parse_steps, sync_ratio
from test_reproduce_e2e import segments, write_json

pytestmark = pytest.mark.e2e

TARGET, NAME = "1_Synthetic_World", "Synthetic World"
TERM_ATTRIBUTES = ("city", "employer", "book")  # what the entity list names; professions are generic words
STEPS = 6  # 36 questions (6 forget people x 3 attributes x 2 forms) in rollout batches of 6, one episode


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_rwku(world_dir: Path, root: Path) -> tuple[Path, Path, list[dict], list[str]]:
    """The world's forget people as one RWKU target: their question and fill-in-the-blank rows about a city,
    employer or book are the rejection-tuning questions ({instruction, input, output, subject}, reject_phi.json),
    their held-out paraphrases the forget probes (levels 1-3), the retain people's questions the neighbour probes
    ({query, answer}). The entity list: the target's name, then every forget person's city, employer and book. Not
    their names: every question names its person and every answer repeats the name, so with names in the list all
    4 completions of a prompt fail and the group has no gradient (measured: 4 of 6 steps with zero reward variance
    in every group). Not their professions either: generic words, which the authors' extraction prompt asks to
    avoid (and a question whose answer names no term would only ever pass)."""
    questions = [r for r in rows(world_dir / "eval/forget.jsonl") if r["attribute"] in TERM_ATTRIBUTES]
    target = root / "RWKU" / TARGET
    write_json(target / "reject_phi.json", [{"instruction": r["prompt"], "input": "", "output": "", "subject": NAME}
                                            for r in questions])
    heldout = [r for r in rows(world_dir / "eval/heldout.jsonl") if r["kind"] == "forget"]
    for level in (1, 2, 3):
        write_json(target / f"forget_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"], **({"type": "role playing"} if level == 3 else {})}
                    for r in heldout[level - 1::3]])
    neighbours = rows(world_dir / "eval/retain.jsonl")
    for level in (1, 2):
        write_json(target / f"neighbor_level{level}.json",
                   [{"query": r["prompt"], "answer": r["answer"]} for r in neighbours[level - 1::2]])
    terms = sorted({r["answer"] for r in questions if r["form"] == "cloze"})
    write_json(root / "PURGE" / TARGET / "fts.json", [NAME] + terms)
    return root / "RWKU", root / "PURGE", questions, terms


def mention_rates(model_dir, questions: list[dict], terms: list[str], samples: int = 32) -> list[float]:
    """Per question, the share of `samples` completions (as the rollouts draw them: chat template, temperature 1,
    16 new tokens; seeded, so the same model gives the same rates) that name a term."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openrlhf_rerule.local.rollout import decode_responses, format_prompt, sample
    from openrlhf_rerule.rewards.purge import term_pattern

    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    pattern, rates = term_pattern(tuple([NAME] + terms)), []
    torch.manual_seed(0)
    for row in questions:
        ids, mask = sample(model.eval(), tokenizer, [format_prompt(tokenizer, row["prompt"], "auto")], samples,
                           int(STAGE2_ENV["MAX_NEW_TOKENS"]), 1.0, 1.0, torch.device("cpu"))
        rates.append(sum(bool(pattern.search(t)) for t in decode_responses(tokenizer, ids, mask)) / samples)
    return rates


def undecided_base(world: dict, questions: list[dict], terms: list[str], out: Path) -> Path:
    """The model that learned the world, fine-tuned (the embedded SFT: seconds) on every training question answered
    twice, once with its forbidden value and once with another person's value of the same attribute that no list
    names. Cross-entropy's optimum for such a pair is one half each, so every question starts out named in about
    half its samples: a group of 4 is mixed with probability 1 - p^4 - (1 - p)^4, 0.875 at p = 1/2 and 0.59 at the
    edges of the band checked below, and a step of 6 such groups has no reward variance with probability under
    0.41^6 = 0.5%; at the rates measured here (0.19-0.78), under 1e-4."""
    from openrlhf_rerule.local.config import Stage1Config
    from openrlhf_rerule.local.sft import train_stage1

    others = rows(world["dir"] / "eval/retain.jsonl") + rows(world["dir"] / "eval/boundary.jsonl")
    spare = {a: sorted({r["answer"] for r in others if r["form"] == "cloze" and r["attribute"] == a} - set(terms))
             for a in TERM_ATTRIBUTES}
    sft = []
    for i, row in enumerate(questions):
        value = next(t for t in terms if t in row["answer"])
        other = spare[row["attribute"]][i % len(spare[row["attribute"]])]
        sft += [{"prompt": row["prompt"], "response": answer, "subject": row["subject"]}
                for answer in (row["answer"], row["answer"].replace(value, other))]
    out.mkdir(parents=True, exist_ok=True)
    (out / "undecided.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    model = train_stage1(Stage1Config(model=str(world["model"]), data=str(out / "undecided.jsonl"),
                                      out=str(out / "undecided"), progress=False, cpu_threads=1, epochs=5, lr=1e-3,
                                      batch_size=8))
    before, after = mention_rates(world["model"], questions, terms), mention_rates(model, questions, terms)
    print(f"\nmention rates per question, learned world: {before}\nundecided base: {after}")
    assert all(0.1 <= p <= 0.9 for p in after), after
    return model


@pytest.mark.timeout(3600)  # the world is learned in this test when it runs alone; limits for hangs only
def test_reproduce_purge_one_target_end_to_end(stack, world, tmp_path):
    rwku, entities, questions, terms = write_rwku(world["dir"], tmp_path / "inputs")
    base = undecided_base(world, questions, terms, tmp_path / "base")
    runs = tmp_path / "runs"
    run = stack.recipe("reproduce_purge_rwku.sh", runs, {
        **STAGE2_ENV, "RWKU_DIR": str(rwku), "ENTITIES_DIR": str(entities), "TARGETS": TARGET,
        "BASE_MODEL": str(base),
        # The world has no RWKU utility sets (MMLU, BBH, ...): the probes only, so "utility kept" stays "-"
        "EVAL_SUBSETS": "forget neighbor",
        "EVAL_ENGINE": "hf",  # as measured; the vLLM engine has its own test (test_eval_engines_e2e.py)
        # The tiny model learned its world through its chat template, so the prompts keep it (PURGE's default is
        # the raw text, pinned in tests/test_purge_recipes.py). Raw, it named a term in 4 of 48 answers.
        "PROMPT_FORMAT": "chat",
        # PURGE's shape (4 completions a prompt, one optimizer step per rollout batch) at 6 prompts a step: the 36
        # questions once; replay from step 3 with 6 stored groups (about 2/3 of the groups are stored: at p = 1/2 a
        # group's mean reward is below tau 0.6 with probability 11/16)
        "N_SAMPLES": "4", "ROLLOUT_BATCH": "6", "TRAIN_BATCH": "24", "ROLLOUT_MICRO_BATCH": "24",
        "TRAIN_MICRO_BATCH": "24", "MAX_STEPS": str(STEPS), "NUM_EPISODES": "1",
        "REPLAY_MIN_GROUPS": "6", "REPLAY_WARMUP_STEPS": "2", "REPLAY_BATCH_GROUPS": "6", "REPLAY_CAPACITY": "100",
    }, timeout=2400)
    log, target_dir = run.log, runs / "rwku_purge" / TARGET

    stage2 = [json.loads(line) for line in (target_dir / "data" / "stage2.jsonl").read_text().splitlines()]
    assert len(stage2) == len(questions) == 36, log[-3000:]
    assert all(json.loads(r["label"])[:2] == ["<purge>", NAME] for r in stage2), log[-3000:]
    arms = segments(log)
    assert set(arms) == {"purge", "purge_replay"}, log[-3000:]
    for name, text in arms.items():
        steps = parse_steps(text)
        dump(name, steps)
        assert sorted(steps) == list(range(1, STEPS + 1)), (name, sorted(steps))
        for m in steps.values():  # the purge_binary reward scored every rollout: reward = 1 - mentioned
            assert abs(m["reward"] + m["mentioned"] - 1) < 1e-6 and m["bad_label"] == 0, m
        # the model answers its forget questions with the forbidden terms about half the time: step 1 has groups
        # with reward variance, hence a gradient (by construction: see undecided_base)
        assert 0.1 < steps[1]["mentioned"] < 0.9 and steps[1]["group_reward_std"] > 0, steps[1]
        # the policy moved away from the model (KL to the reference on the step's own samples; the largest step's:
        # seen 0.041-0.156) and vLLM followed it. vllm_kl is bf16 noise of 24 samples a step here (up to 1.7e-3
        # against 128-sample steps' 1e-4 in the RULE runs) over a smaller KL, so the sync ratio sits higher than
        # there (seen up to 0.016): 0.1 keeps 6x from that and 4x from a broken sync (0.44-0.61 measured)
        assert max(m["kl"] for m in steps.values()) > 0.01 and sync_ratio(steps) < 0.1, \
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
    # PURGE's headline numbers against the base run, and the tokens of each arm's unlearning data (36 prompts with
    # their answers, counted with the tiny tokenizer: more than one token per row)
    extra = json.loads((runs / "rwku_purge" / "report" / "report_purge.json").read_text())
    assert {r["name"] for r in extra["headline"]} == {"PURGE (ours)", "PURGE + replay (ours)"}, extra
    assert all(r["effectiveness"] is not None for r in extra["headline"]), extra
    assert {r["name"] for r in extra["unlearning_data"]} == {"PURGE (ours)", "PURGE + replay (ours)"}, extra
    assert all(r["tokens"] > 2 * 36 for r in extra["unlearning_data"]), extra
