"""Converters from the released formats into our files.

- RULE (the authors' EasyR1 data): Stage 2 JSON arrays of ``{prompt, solution: [label, answer, (target)]}``
  -> stage2 rows; Stage 1 JSON arrays of ``{instruction, input, output, subject}`` -> stage1 rows, plus boundary
  eval rows from ``neighbor_question {question, answer}`` where present (``reject_with_neighbor_target.json``).
- TOFU (``forget01.json``, ``forget01_perturbed.json``, ``retain_perturbed.json``, ...; JSON lines of
  ``{question, answer}`` (or ``{prompt, response}``, strzar/purge's copy of ``forgetXX.json``) plus
  ``paraphrased_answer``, ``perturbed_answer`` [list], ``paraphrased_question``)
  -> eval rows; the extra fields are kept for the TOFU truth ratio; each row's subject is the author its question
  or answer names (never read from the row's position: a shuffled file keeps its subjects).
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
from collections import Counter
from pathlib import Path

from openrlhf_rerule.rewards.rule import LabelError, parse_label

from .builders import prompt_id, row_mode
from .schema import DataError, read_records, read_text, require

# A name token: a letter of any script, then letters, digits, apostrophes, hyphens ("Beltrán", "Al-Kuwaiti", "Yun-Hwa")
_NAME_TOKEN = re.compile(r"[^\W\d_][\w'’-]*")


# The RULE authors' validation files (data/MUSE/books/rl_rejection_eval_target.json: its <reject> prompts are
# MUSE's knowmem/forget_qa.json with gold answers, its <normal> prompts knowmem/retain_qa.json; RWKU targets'
# rl_rejection_eval.json): evaluation probes, not training data.
KNOWN_EVAL_FILE = re.compile(r"rl_rejection_eval")


def release_benchmark(path) -> str | None:
    """"rwku" or "muse" for a file of the RULE authors' release (or of the benchmark's own), told by its folder:
    forget_level*.json beside it (an RWKU target folder) or a knowmem/ folder beside it (MUSE-Books), else a folder
    of that name on its path; None when neither."""
    path = Path(path).resolve()
    if any(path.parent.glob("forget_level*.json")):
        return "rwku"
    if (path.parent / "knowmem").is_dir():
        return "muse"
    folders = {part.lower() for part in path.parts[:-1]}
    return "rwku" if "rwku" in folders else "muse" if "muse" in folders else None


# What the authors' validation files hold, per benchmark (measured on the release: MUSE-Books' 200 prompts are
# KnowMem's forget and retain QA; an RWKU target's 107 are its 47 forget probes and 60 neighbour probes).
_VALIDATION_FILE = {
    "muse": ("for MUSE-Books its <reject> prompts are knowmem/forget_qa.json and its <normal> prompts "
             "knowmem/retain_qa.json, with gold answers", "reject_with_neighbor_target.json (convert rule writes its "
                                                           "boundary rows)"),
    "rwku": ("for an RWKU target its <reject> prompts are the target's forget probes (forget_level{1,2,3}.json) and "
             "its <normal> prompts its neighbour probes (neighbor_level{1,2}.json), with gold answers",
             "rl_rejection_with_fb_neighbor_target.json (the authors' RWKU Stage 2 file)"),
    None: ("its prompts are the benchmark's evaluation probes, with gold answers", "the authors' training file"),
}


def evaluation_file_warning(path, rows: list[dict]) -> str | None:
    """A loud warning when a Stage 2 file looks like an evaluation set: the authors' validation file name, or
    <reject> labels whose second element is a gold answer rather than a refusal."""
    from openrlhf_rerule.rewards.refusal import is_refusal

    forget = [json.loads(r["label"]) for r in rows if r["kind"] == "forget"]
    answers = sum(not is_refusal(label[1], "rule") for label in forget)
    if KNOWN_EVAL_FILE.search(Path(path).name):
        holds, instead = _VALIDATION_FILE[release_benchmark(path)]
        return (f"{Path(path).name} is the RULE authors' validation file (rl_rejection_eval*: {holds}): training on "
                f"it trains on the evaluation probes. Use {instead} or your own training split")
    if forget and answers > len(forget) / 2:
        return (f"{answers} of {len(forget)} <reject> labels carry an answer, not a refusal: this looks like an "
                "evaluation set (gold answers); make sure no evaluation probe is in the training file")
    return None


def from_rule_stage2(path, counts: dict | None = None) -> list[dict]:
    rows, seen, duplicates = [], set(), 0
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
            duplicates += 1
            continue
        seen.add(pid)
        rows.append({"prompt": prompt, "label": json.dumps(solution), "prompt_id": pid, "kind": kind,
                     **row_mode(record)})
    if counts is not None:
        counts["duplicate_dropped"] = duplicates
    return rows


def from_rule_stage1(path, counts: dict | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(stage1 rows, forget eval rows, boundary eval rows). The authors' reject_with_neighbor_target.json gives
    each forget prompt its original answer (`org_answer`: forget eval rows, the input of `rerule data stage2`)
    and a `neighbor_question {question, answer}` about a neighbouring entity (their MUSE boundary data).
    Their own Stage 1 reads only instruction / input / output / subject / mode (RS/data/dataset_info.json:10371-10379,
    RS/src/llmtuner/data/aligner.py:58-62, 70, 85) and no code of theirs reads org_answer or neighbor_question:
    so every row trains as released, and a row whose `org_answer` is "" (their completion rows) or whose
    neighbour question has no answer only gives no eval row; both are counted. Repeated prompts (and repeated
    neighbour questions) are dropped and counted."""
    rows, forget, boundary, seen, seen_neighbours = [], [], [], set(), set()
    tally = dict.fromkeys(("duplicate_dropped", "org_answer_empty", "neighbor_unanswered"), 0)
    for record in read_records(path):
        instruction = require(record, "instruction", path)
        extra = record.get("input") or ""
        prompt = instruction + ("\n" + extra if extra.strip() else "")
        response = require(record, "output", path)
        if prompt in seen:
            tally["duplicate_dropped"] += 1
            continue
        seen.add(prompt)
        rows.append({"prompt": prompt, "response": response, "subject": str(record.get("subject") or ""),
                     **row_mode(record)})
        org_answer = record.get("org_answer")
        if isinstance(org_answer, str) and not org_answer.strip():
            tally["org_answer_empty"] += 1
        elif org_answer is not None:
            forget.append({"prompt": prompt, "answer": require(record, "org_answer", path), "kind": "forget",
                           "subject": rows[-1]["subject"], **row_mode(record)})
        neighbour = record.get("neighbor_question")
        if neighbour is not None:
            if not isinstance(neighbour, dict):
                raise DataError(path, record["__line__"], "neighbor_question", "must be an object {question, answer}")
            named = {f"neighbor_question.{k}": v for k, v in neighbour.items()} | {"__line__": record["__line__"]}
            question = require(named, "neighbor_question.question", path)
            answer = neighbour.get("answer")
            if answer is None or (isinstance(answer, str) and not answer.strip()):
                tally["neighbor_unanswered"] += 1
                continue
            answer = require(named, "neighbor_question.answer", path)  # a non-string answer is still an error
            if question not in seen_neighbours:
                seen_neighbours.add(question)
                boundary.append({"prompt": question, "answer": answer, "kind": "boundary", "subject": ""})
    if counts is not None:
        counts.update(tally)
    return rows, forget, boundary


def names_in(text: str) -> set[str]:
    """Every run of capitalised words (any script; "J. D." initials kept; a possessive 's and leading question
    words / sentence openers dropped) as its contiguous parts of 2-4 words, and a run of one word as it is
    ("Majumdar's background"): the names a text could be about."""
    from .overlap import OPENERS

    names, runs, run, end = set(), [], [], 0
    for match in _NAME_TOKEN.finditer(text):
        gap = text[end:match.start()]
        initial = run and len(run[-1]) == 1 and gap.startswith(".") and gap[1:].isspace()
        if run and not (gap.isspace() or initial):
            runs.append(run)
            run = []
        elif initial:
            run[-1] += "."
        if match.group()[0].isupper():
            run.append(re.sub(r"['’]s?$", "", match.group()))
        elif run:
            runs.append(run)
            run = []
        end = match.end()
    for words in runs + [run]:
        while words and words[0].casefold() in OPENERS:
            words = words[1:]
        names |= {" ".join(words[i:j]) for i in range(len(words))
                  for j in range(i + min(2, len(words)), min(i + 4, len(words)) + 1)}
    return names


def from_tofu(path, kind: str, subject: str | None = None, exclude=(), counts: dict | None = None) -> list[dict]:
    """Eval rows, each with the author its record's question and answer name, or `subject` for every row.

    A name of 2-4 capitalised words is an author when it is the name most often named (the longer on a tie) in more
    than half of the records that hold it: TOFU gives each fictitious author 20 QA pairs, and "Kuwait City" or
    "Contemporary Romance" are never the first name of the records they appear in. A record's author is the author it
    names most often named in the file, or the one author whose surname it holds on its own ("How has Majumdar's
    background influenced his writing?", forget10). A record that names no author, or two equally, is refused: its
    author cannot be told from the text, and its position says nothing; of kind "boundary" it is dropped instead and
    counted in `counts["dropped_unattributed"]` (with the first one under "first"). `exclude`: files whose questions
    are dropped, e.g. retain_perturbed.json when retain99.json gives boundary QA; counted in `counts`."""
    records = read_records(path)
    # strzar/purge's copy of TOFU (data/TOFU) writes forget01/05/10.json as {prompt, response}: the same pairs
    keys = ("prompt", "response") if records and "prompt" in records[0] and "question" not in records[0] else \
        ("question", "answer")
    pairs = [(require(r, keys[0], path), require(r, keys[1], path)) for r in records]
    named = [names_in(question) | names_in(answer) for question, answer in pairs]
    full = [{n for n in names if " " in n} for names in named]
    naming = Counter(name for names in full for name in names)

    def rank(name):
        return -naming[name], -len(name.split())

    first = Counter(min(names, key=lambda n: (rank(n), n)) for names in full if names)
    authors = {n for n, k in first.items() if naming[n] >= 2 and 2 * k > naming[n]}
    by_surname: dict[str, list[str]] = {}
    for name in sorted(authors):
        by_surname.setdefault(name.split()[-1], []).append(name)
    rows, unread = [], {"no_author": 0, "shared_surname": 0, "two_authors": 0}
    for number, (record, (question, answer), names, words) in enumerate(zip(records, pairs, full, named), 1):
        ranked = sorted((names & authors) | {by_surname[w][0] for w in words if len(by_surname.get(w, ())) == 1},
                        key=lambda n: (rank(n), n))
        error = None
        if subject is None and not ranked:
            shared = [by_surname[w] for w in words if len(by_surname.get(w, ())) > 1]
            why = (f"names only a surname authors share ({', '.join(map(repr, shared[0]))})" if shared else
                   "neither the question nor its answer names an author of the file (a name TOFU gives QA pairs to: "
                   "the first name of most records that hold it)")
            error = ("shared_surname" if shared else "no_author", f"{why}: not a TOFU QA file, or pass --subject "
                     "NAME if the whole file is about one subject")
        elif subject is None and len(ranked) > 1 and rank(ranked[1]) == rank(ranked[0]):
            error = ("two_authors", f"names two authors equally ({ranked[0]!r}, {ranked[1]!r}): whose QA pair is it? "
                     "pass --subject NAME, or fix the record")
        if error and kind != "boundary":  # a forget (or eval) row must be attributed: refused
            raise DataError(path, record["__line__"], "question", error[1])
        if error:
            # a boundary row needs its author only to keep forget authors out of the boundary: one that names none
            # (TOFU's retain99: 57 of 3960) cannot be checked, so it is not used; counted for the caller to report
            unread[error[0]] += 1
            unread.setdefault("first", f"{path}, line {record['__line__']}, record {number}: {question!r} "
                                       f"({error[0]})")
            continue
        row = {"prompt": question, "answer": answer, "kind": kind, "subject": ranked[0] if subject is None else subject}
        for extra in ("paraphrased_question", "paraphrased_answer", "perturbed_answer"):
            if extra in record:
                row[extra] = record[extra]
        rows.append(row)
    evaluated = {r["question"].strip() for p in exclude for r in read_records(p) if "question" in r}
    kept = [r for r in rows if r["prompt"].strip() not in evaluated]
    if counts is not None:
        counts["excluded"] = len(rows) - len(kept)
        if kind == "boundary" and subject is None:
            counts["dropped_unattributed"] = unread
    return kept


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
