"""Tokens of unlearning data per target, the size PURGE compares ("up to 46x fewer tokens per target",
arXiv 2601.20568): `rerule eval rwku --unlearning_data FILE...` records a model's training files, and
`rerule report --tokenizer PATH` counts them.

As the authors count (github strzar/purge, src/misc/token_budget_calculations/compute_token_budget.py): the
`tokenizers` library's `Tokenizer.from_file(tokenizer.json)`, `len(encode(text).ids)` with its default special
tokens, the prompt and the response of a pair encoded separately and summed. What counts, by file shape:
  Stage 2 rows ({prompt, label, ...}): the prompt; the responses are rollouts the policy samples, not data.
  {prompt, response} rows (a Stage 1 file, or PURGE's answers file): prompt + response; {text} rows: the text.
  With a PURGE Stage 2 file (`<purge>` labels), a {prompt, response} file is the answers its entity list was
  built from: each Stage 2 prompt counts with its first answer there, one question-answer pair per prompt, as
  the authors count the first 100 pairs of qa_pairs.json; the other answers do not count.
Each distinct row of a file counts once: the corpus, not the feed (PURGE trains its 100 prompts for 40 epochs and
they count once; a Stage 2 file that repeats prompts to fill whole batches counts each prompt once)."""

from __future__ import annotations

import json
from pathlib import Path

from openrlhf_rerule.data.schema import DataError, read_jsonl, read_records

from .io import EvalDataError


def load_tokenizer(path):
    """A `tokenizers` tokenizer from a tokenizer.json file or a directory holding one; nothing is downloaded."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise EvalDataError(f"--tokenizer {path}: no tokenizer.json there (a model directory or the file itself)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # the tokenizers library raises its own exception types for a malformed file
        raise EvalDataError(f"--tokenizer {file}: not a tokenizers tokenizer.json ({e})") from None


def _is_purge_row(row: dict) -> bool:
    from openrlhf_rerule.rewards import PURGE_TAG  # lazily: eval imports rewards only so (docs/development.md)

    try:
        label = json.loads(row["label"]) if isinstance(row["label"], str) else row["label"]
    except json.JSONDecodeError:
        return False
    return isinstance(label, list) and bool(label) and label[0] == PURGE_TAG


def _read(path) -> list[dict]:
    """A Stage 2 file (its first row has a label), validated as one; or rows of {prompt, response} / {text}
    (a Stage 1 file, or an answers file, JSON lines or a JSON array such as the authors' qa_pairs.json), where an
    empty response is allowed: a model's answer may be empty, and `rerule data purge answers` keeps it."""
    records = read_records(path)
    if "label" in records[0]:
        return read_jsonl(path, "stage2")
    for r in records:
        fields = ("text",) if "text" in r and "prompt" not in r else ("prompt", "response")
        for name in fields:
            if not isinstance(r.get(name), str):
                raise DataError(path, r["__line__"], name, "missing or not a string (rows of {prompt, response} "
                                "or {text}, or Stage 2 rows)")
    return records


def counted_texts(paths) -> list[tuple[str, ...]]:
    """The texts that count, one tuple per distinct counted row, from a model's unlearning-data files. With a PURGE
    Stage 2 file and its answers file, a row is a question-answer pair (prompt, its first answer)."""
    files = [(p, _read(p)) for p in paths]
    purge_prompts = list(dict.fromkeys(r["prompt"] for _, rows in files for r in rows
                                       if "label" in r and _is_purge_row(r)))
    pairs = purge_prompts and any("response" in rows[0] for _, rows in files)  # PURGE with its answers file
    out: list[tuple[str, ...]] = []
    for path, rows in files:
        if "label" in rows[0]:
            texts = [(r["prompt"],) for r in rows if not (pairs and _is_purge_row(r))]
        elif pairs and "response" in rows[0]:
            answers: dict[str, str] = {}
            for r in rows:
                answers.setdefault(r["prompt"], r["response"])
            missing = [q for q in purge_prompts if q not in answers]
            if missing:
                raise EvalDataError(f"{path}: no answer to {len(missing)} PURGE Stage 2 prompt(s), e.g. "
                                    f"{missing[0][:60]!r}: not the answers file this Stage 2 file was built from")
            texts = [(q, answers[q]) for q in purge_prompts]
        else:
            texts = [(r["prompt"], r["response"]) if "response" in r else (r["text"],) for r in rows]
        out += list(dict.fromkeys(texts))
    return out


def count_tokens(tokenizer, paths) -> dict:
    """{"rows": distinct counted rows, "tokens": their tokens, "files": the paths}."""
    texts = counted_texts(paths)
    tokens = sum(len(tokenizer.encode(t).ids) for row in texts for t in row)
    return {"rows": len(texts), "tokens": tokens, "files": [str(p) for p in paths]}
