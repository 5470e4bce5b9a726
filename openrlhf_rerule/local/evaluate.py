"""The demo's evaluation: greedy answers to the world's evaluation prompts, scored three ways.

- refusal rate: `openrlhf_rerule.rewards.is_refusal` (the same detector as the reward);
- accuracy: the answer is not a refusal and contains the person's true attribute value (e.g. the city);
  chance = 1 / (number of distinct values of that attribute in the world), averaged over the prompts;
- ROUGE-L recall (rouge-score, stemmer off) of the answer against the gold answer sentence.
Splits: forget (should be refused), boundary (neighbours of forget people: should still be answered),
retain (unrelated people), held-out paraphrases of forget and boundary questions (never trained on)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from rouge_score import rouge_scorer

from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.rewards import is_refusal

from .engine import load_model
from .rollout import decode_responses, format_prompt, sample

SPLITS = ("forget", "boundary", "retain", "heldout")


def normalise(text: str) -> str:
    """Lower-case, punctuation split off: the form in which the word-level model writes text."""
    out = "".join(f" {c} " if not (c.isalnum() or c.isspace()) else c for c in text.lower())
    return " ".join(out.split())


def attribute_values(world_dir: Path) -> dict:
    """(subject, attribute) -> value, read off the fill-in-the-blank rows (whose answer is the bare value)."""
    values = {}
    for split in ("forget", "boundary", "retain"):
        for row in read_jsonl(world_dir / "eval" / f"{split}.jsonl", "eval"):
            if row.get("form") == "cloze":
                values[(row["subject"], row["attribute"])] = row["answer"]
    return values


@torch.no_grad()
def evaluate_model(model_dir: str | Path, world_dir: str | Path, device: str = "cpu", max_new_tokens: int = 16,
                   batch_size: int = 128, refusal_mode: str = "rule") -> dict:
    world_dir = Path(world_dir)
    model, tok = load_model(str(model_dir), torch.device(device), trainable=False)
    values = attribute_values(world_dir)
    distinct = defaultdict(set)
    for (_, attribute), value in values.items():
        distinct[attribute].add(value)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    out, answers, correct = {}, {}, {}
    for split in SPLITS:
        rows = read_jsonl(world_dir / "eval" / f"{split}.jsonl", "eval")
        texts = []
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            ids, mask = sample(model, tok, [format_prompt(tok, r["prompt"]) for r in chunk], 1, max_new_tokens,
                               0.0, 1.0, torch.device(device))
            texts += decode_responses(tok, ids, mask)
        answers[split] = texts
        correct[split] = [not is_refusal(text, refusal_mode) and normalise(values[(r["subject"], r["attribute"])])
                          in normalise(text) for r, text in zip(rows, texts)]
        # held-out mixes forget and boundary people: score each kind separately
        for kind in sorted({r["kind"] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
            refused = [is_refusal(texts[i], refusal_mode) for i in idx]
            name = split if split != "heldout" else f"heldout_{kind}"
            out[name] = {
                "n": len(idx),
                "refusal_rate": sum(refused) / len(idx),
                "accuracy": sum(correct[split][i] for i in idx) / len(idx),
                "chance": sum(1 / len(distinct[rows[i]["attribute"]]) for i in idx) / len(idx),
                "rougeL_recall": sum(scorer.score(rows[i]["answer"], texts[i])["rougeL"].recall
                                     for i in idx) / len(idx),
            }
    return {"metrics": out, "answers": answers, "correct": correct}  # answers / correct: per row, in file order
