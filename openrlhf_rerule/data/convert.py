"""Converters from the released formats into our files.

- RULE (the authors' EasyR1 data): Stage 2 JSON arrays of ``{prompt, solution: [label, answer, (target)]}``
  -> stage2 rows; Stage 1 JSON arrays of ``{instruction, input, output, subject}`` -> stage1 rows.
- TOFU (``forget01.json``, ``forget01_perturbed.json``, ``retain_perturbed.json``, ...; JSON lines of
  ``{question, answer}`` plus ``paraphrased_answer``, ``perturbed_answer`` [list], ``paraphrased_question``)
  -> eval rows; the extra fields are kept for the TOFU truth ratio.
- MUSE knowmem (``forget_qa.json``, ``retain_qa.json``, ``retain_qa_icl.json``: JSON arrays of ``{question, answer}``)
  -> eval rows (evaluation sets); MUSE's forget corpus ``raw/forget.txt`` -> completion rows (training side).
- RWKU target folder (``1_Stephen_King/``: ``intro.json`` / ``forget_target.json`` ``[{target, intro}]``;
  ``forget_level{1,2,3}.json`` and ``neighbor_level{1,2}.json``: ``{query, answer, level, type, subject}``,
  neighbours with ``neighbor``) -> eval rows (kind forget / neighbor, the level kept): the probes, evaluation only;
  its corpus side (``reject.json`` questions, ``passage.json``) -> training forget rows.

Every converter returns rows (the CLI writes and validates them); a bad record raises DataError naming the
source file, its line and the field.
"""

import json
import re
from pathlib import Path

from openrlhf_rerule.rewards.rule import LabelError, parse_label

from .builders import prompt_id, row_mode
from .schema import DataError, read_records, read_text, require

_QUESTION_WORDS = {"What", "Which", "Who", "Whom", "Whose", "Where", "When", "Why", "How", "In", "On", "At", "The",
                   "Is", "Was", "Did", "Does", "Do", "Can", "Could", "Has", "Have", "Are", "Were", "For", "From", "As",
                   "To", "Of", "A", "An", "And", "Would", "Tell", "Name", "Describe"}
_NAME_WORD = r"[A-Z][a-z']+(?:-[A-Z]?[a-z']+)*"  # "Abilov", "Al-Kuwaiti", "Yun-Hwa"
_CAPITALISED_RUN = re.compile(rf"\b{_NAME_WORD}(?:\s+(?:[A-Z]\.|{_NAME_WORD})){{1,3}}\b")


def guess_subject(*texts: str) -> str:
    """Rule-based person-name extraction (RULE does this for TOFU): the first run of 2-4 capitalised words,
    skipping question words and sentence starts; "" when there is none."""
    for text in texts:
        for match in _CAPITALISED_RUN.finditer(text):
            words = match.group(0).split()
            while words and words[0] in _QUESTION_WORDS:
                words = words[1:]
            if len(words) >= 2:
                return " ".join(words)
    return ""


def from_rule_stage2(path) -> list[dict]:
    rows, seen = [], set()
    for record in read_records(path):
        prompt = require(record, "prompt", path)
        solution = require(record, "solution", path, list)
        try:
            tag = parse_label(solution)[0]
        except LabelError as e:
            raise DataError(path, record["__line__"], "solution", str(e)) from None
        kind = "forget" if tag == "<reject>" else "boundary"
        pid = prompt_id(kind, prompt)
        if pid in seen:  # the released files repeat some prompts
            continue
        seen.add(pid)
        rows.append({"prompt": prompt, "label": json.dumps(solution), "prompt_id": pid, "kind": kind,
                     **row_mode(record)})
    return rows


def from_rule_stage1(path) -> list[dict]:
    rows = []
    for record in read_records(path):
        instruction = require(record, "instruction", path)
        extra = record.get("input") or ""
        rows.append({"prompt": instruction + ("\n" + extra if extra.strip() else ""),
                     "response": require(record, "output", path), "subject": str(record.get("subject") or ""),
                     **row_mode(record)})
    return rows


def from_tofu(path, kind: str, subject: str | None = None) -> list[dict]:
    rows = []
    for record in read_records(path):
        question, answer = require(record, "question", path), require(record, "answer", path)
        row = {"prompt": question, "answer": answer, "kind": kind,
               "subject": subject if subject is not None else guess_subject(question, answer)}
        for extra in ("paraphrased_question", "paraphrased_answer", "perturbed_answer"):
            if extra in record:
                row[extra] = record[extra]
        rows.append(row)
    return rows


def from_muse(path, kind: str, subject: str = "") -> list[dict]:
    return [{"prompt": require(r, "question", path), "answer": require(r, "answer", path), "kind": kind,
             "subject": subject} for r in read_records(path)]


def from_muse_raw(path, subject: str = "", chunk_words: int = 300, answer_words: int = 50) -> list[dict]:
    """Completion rows (mode "completion", kind forget) from MUSE's forget corpus `raw/forget.txt` (or a JSON array
    of strings / {text}): consecutive chunks of `chunk_words` words (RULE's MUSE completion prompts are 257-395
    words), each answered by the next `answer_words` words of the text."""
    path = Path(path)
    if path.suffix == ".txt":
        texts = [read_text(path)]
    else:
        texts = [r if isinstance(r, str) else require(r, "text", path) for r in read_records(path, allow_strings=True)]
    words = " ".join(texts).split()
    rows = []
    for start in range(0, len(words) - chunk_words, chunk_words):
        rows.append({"prompt": " ".join(words[start:start + chunk_words]),
                     "answer": " ".join(words[start + chunk_words:start + chunk_words + answer_words]),
                     "kind": "forget", "subject": subject, "mode": "completion"})
    if not rows:
        raise DataError(path, 0, "(file)", f"fewer than {chunk_words + 1} words: no completion chunk")
    return rows


def rwku_target(folder) -> str:
    """The target's name: from intro.json / forget_target.json when present, else the folder name
    ("12_Genghis_Khan")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, 0, "(file)", "not a directory (expected an RWKU target folder)")
    for name in ("intro.json", "forget_target.json"):
        if (folder / name).is_file():
            return require(read_records(folder / name)[0], "target", folder / name)
    return re.sub(r"^\d+_", "", folder.name).replace("_", " ")


def from_rwku(folder, levels=(1, 2, 3), neighbor_levels=(1, 2)) -> list[dict]:
    """All forget and neighbour probes of one RWKU target folder (missing level files are skipped): the
    benchmark's evaluation sets, never training data."""
    folder, target = Path(folder), rwku_target(folder)
    files = [(f"forget_level{i}.json", "forget") for i in levels] + [(f"neighbor_level{i}.json", "neighbor") for i in neighbor_levels]
    rows = []
    for name, kind in files:
        path = folder / name
        if not path.is_file():
            continue
        for record in read_records(path):
            row = {"prompt": require(record, "query", path), "answer": require(record, "answer", path), "kind": kind,
                   "subject": target if kind == "forget" else str(record.get("neighbor") or ""),
                   "level": str(record.get("level", name[-6])), "target": target}
            if "type" in record:
                row["type"] = record["type"]
            rows.append(row)
    if not rows:
        raise DataError(folder, 0, "(file)", "no forget_level*.json / neighbor_level*.json files")
    return rows


def from_rwku_corpus(folder) -> tuple[list[dict], dict]:
    """Training forget rows from the corpus side of an RWKU target folder (what RWKU releases for training, its
    `train_*` sets): the questions of `reject.json` (RWKU's rejection-tuning questions, generated by the model
    about the target; RULE's RWKU Stage 1 uses these) and one Type-I blank per `passage.json` passage (its first
    sentence of >= 8 words cut after 60% of its words, answer = the sentence). The questions have no gold answer:
    their `answer` is the target's name, which Stage 1 / Stage 2 do not need for forget rows (too short to cut a
    blank from). Returns (rows, counts per source); the probes are never read here."""
    from nltk.tokenize import PunktSentenceTokenizer

    from .builders import cloze_from_answer

    folder, target = Path(folder), rwku_target(folder)
    rows, counts = [], {"reject.json": 0, "passage.json": 0}
    if (folder / "reject.json").is_file():
        for record in read_records(folder / "reject.json"):
            question = require(record, "instruction", folder / "reject.json")
            rows.append({"prompt": question, "answer": target, "kind": "forget", "subject": target,
                         "source": "reject.json"})
            counts["reject.json"] += 1
    if (folder / "passage.json").is_file():
        splitter = PunktSentenceTokenizer()
        for record in read_records(folder / "passage.json"):
            text = require(record, "text", folder / "passage.json")
            sentence = next((s for s in splitter.tokenize(text) if len(s.split()) >= 8), None)
            if sentence:
                rows.append({"prompt": cloze_from_answer(sentence), "answer": sentence, "kind": "forget",
                             "subject": target, "source": "passage.json"})
                counts["passage.json"] += 1
    return rows, counts
