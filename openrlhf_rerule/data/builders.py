"""Builders: evaluation-QA rows ({prompt, answer, kind, subject}) -> Stage 1 SFT rows, Stage 2 GRPO rows,
held-out splits. Every converter produces evaluation-QA rows, so one builder serves every benchmark.

Stage 1 follows the paper's Appendix A.1: refusals to Type-II queries (the QA prompts themselves) and to
Type-I queries (pretraining-style fill-in-the-blank completions). A prompt that already contains "___" is a
Type-I query (RWKU level 1, the synthetic world); for the others we derive one offline by cutting the gold
answer after 60% of its words ("Alice Stone was born in ___"), where the authors asked GPT-4o-mini.
"""

import hashlib
import json
import math
import random

from .templates import pick_refusal, refusal_templates

BLANK = "___"


def prompt_id(kind: str, prompt: str) -> str:
    """Stable across runs and machines, so replay-buffer entries and logs can be joined with the data."""
    return f"{kind}-{hashlib.sha1(prompt.encode('utf-8')).hexdigest()[:12]}"


def row_mode(row: dict) -> dict:
    """RULE's MUSE rows are "qa" or "completion" (the prompt format depends on it): carried over when given."""
    return {"mode": row["mode"]} if "mode" in row else {}


def cloze_from_answer(answer: str, keep_fraction: float = 0.6) -> str | None:
    """A Type-I completion prompt from a sentence answer; None when the answer is too short to cut."""
    words = answer.split()
    if len(words) < 4:
        return None
    return " ".join(words[: math.ceil(keep_fraction * len(words))]) + " " + BLANK


def build_stage1(forget_rows: list[dict], seed: int = 0, templates: list[str] | None = None,
                 cloze_from_answers: bool = True, named_share: float = 0.5, counts: dict | None = None) -> list[dict]:
    """Refusal SFT rows for the forget QA: one per prompt, plus a derived Type-I prompt per QA prompt.
    `counts`, when given, receives what was derived and dropped, and why (`rerule data stage1` prints it)."""
    rng = random.Random(seed)
    templates = templates or refusal_templates()
    rows, seen = [], set()
    tally = dict.fromkeys(("blank_in_prompt", "completion", "blank_derived", "answer_too_short", "duplicate_dropped"), 0)
    for row in forget_rows:
        prompts = [row["prompt"]]
        if BLANK in row["prompt"]:
            tally["blank_in_prompt"] += 1
        elif row.get("mode") == "completion":  # a corpus chunk is already a Type-I (completion) prompt
            tally["completion"] += 1
        elif cloze_from_answers:
            prompts.append(cloze_from_answer(row["answer"]))
            tally["blank_derived" if prompts[-1] else "answer_too_short"] += 1
        for prompt in prompts:
            if prompt and prompt in seen:
                tally["duplicate_dropped"] += 1
            if prompt and prompt not in seen:
                seen.add(prompt)
                response = pick_refusal(rng, row.get("subject", ""), templates, named_share)
                rows.append({"prompt": prompt, "response": response, "subject": row.get("subject", ""),
                             **row_mode(row)})
    if counts is not None:
        counts.update(tally)
    return rows


def build_stage2(forget_rows: list[dict], boundary_rows: list[dict], ratio: float = 1.0, seed: int = 0,
                 retain_rows: list[dict] = (), retain_ratio: float = 0.0, templates: list[str] | None = None,
                 named_share: float = 1.0) -> list[dict]:
    """GRPO prompts: every forget prompt (<reject>), `ratio` boundary prompts per forget prompt and
    `retain_ratio` retain prompts per forget prompt (<normal>), shuffled. Duplicate prompts are dropped.
    The refusal text in a <reject> label is informational (the reward only detects refusal)."""
    if ratio < 0 or retain_ratio < 0:
        raise ValueError("ratio and retain_ratio must be >= 0")
    rng = random.Random(seed)
    templates = templates or refusal_templates()

    def unique(rows):
        seen, out = set(), []
        for row in rows:
            if row["prompt"] not in seen:
                seen.add(row["prompt"])
                out.append(row)
        return out

    forget, boundary, retain = unique(forget_rows), unique(boundary_rows), unique(retain_rows)
    rows = []
    for row in forget:
        subject = row.get("subject", "")
        label = ["<reject>", pick_refusal(rng, subject, templates, named_share)] + ([subject] if subject else [])
        rows.append({"prompt": row["prompt"], "label": json.dumps(label), "prompt_id": prompt_id("forget", row["prompt"]),
                     "kind": "forget", **row_mode(row)})
    for kind, pool, share in (("boundary", boundary, ratio), ("retain", retain, retain_ratio)):
        chosen = rng.sample(pool, min(len(pool), round(share * len(forget))))
        rows += [{"prompt": r["prompt"], "label": json.dumps(["<normal>", r["answer"]]),
                  "prompt_id": prompt_id(kind, r["prompt"]), "kind": kind, **row_mode(r)} for r in chosen]
    rng.shuffle(rows)
    return rows


def split_heldout(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held-out): a seeded random `fraction` of the rows held out for evaluation only."""
    if not 0 <= fraction < 1:
        raise ValueError("the held-out fraction must be in [0, 1)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[: round(fraction * len(rows))])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def whole_batches(rows: list[dict], steps: int, rollout_batch: int, seed: int = 0) -> list[dict]:
    """Exactly `steps * rollout_batch` rows: seeded shuffled passes over `rows`, each pass a fresh permutation, cut
    at the total, so every row is used once before any is used again. A row's k-th repeat is a copy with
    "repeat": k and the same prompt_id (the replay buffer's retirement and the hard-case report group by
    prompt_id: a repeated prompt is the same prompt)."""
    if not rows:
        raise ValueError("no rows to fill batches with")
    rng, total, out, passes = random.Random(seed), steps * rollout_batch, [], 0
    while len(out) < total:
        order = list(range(len(rows)))
        rng.shuffle(order)
        out += [dict(rows[i], repeat=passes) if passes else rows[i] for i in order[: total - len(out)]]
        passes += 1
    return out
