"""Train / evaluation overlap: does a training prompt repeat an evaluation probe?

Texts are compared by their question: a RULE MUSE few-shot prompt (`--prompt_format rule_muse`: a block of
"Question: q\\nAnswer: a\\n\\n" examples, then "Question: {q}\\nAnswer: " or "Completion: {text}\\nAnswer: ") stands
for its last question or completion, so its template neither hides a probe nor matches one. Then, on normalised text
(casefolded; "-", "/", "_" turned into spaces, every other Unicode punctuation character removed; whitespace runs
collapsed: "What is  Stephen King's sci-fi novel?" -> "what is stephen kings sci fi novel"):

- exact: the two normalised texts are equal;
- near: with n = NGRAM (8) words, or the shorter text's length when it has fewer (at least MIN_WORDS, 3), at least
  half (NEAR_THRESHOLD, 0.5) of the shorter text's word n-grams occur in the longer one: a probe copied into a
  longer training prompt (a passage, an adversarial wrapper) scores 1.0, and so does a 4-word probe inside a
  question. One entity swapped in the middle of a question breaks every 8-gram that spans it, so a boundary
  question made by entity swap is not near its source.
- A shorter text that names nothing (no capitalised word other than a question word, no digit: TOFU's "What is the
  full name of the author?") is a stock question that opens many unrelated ones; it is near only when at least
  half of the longer text's n-grams are shared too (a near-equal), never by being contained.

Texts under MIN_WORDS words are only tested for equality. benchmarks/overlap_detector.py measures the test on
hand-labelled pairs of the authors' files (docs/data.md#how-well-the-check-finds-copies).

`read_prompts` reads our jsonl kinds and the released layouts (RULE Stage 1 / Stage 2 JSON arrays, RWKU
level files, MUSE knowmem / verbmem, TOFU), so the check runs on the authors' files directly.
"""

import re
import sys
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError

from .schema import DataError, read_jsonl, read_records

NGRAM = 8
MIN_WORDS = 3
NEAR_THRESHOLD = 0.5
_SPACE = re.compile(r"\s+")
_JOINERS = set("-/_")
# The last "Question: ...\nAnswer: " (after a few-shot block or a BOS token) or "Completion: ...\nAnswer: " that ends
# a RULE MUSE prompt (templates.format_prompt); a few-shot example's body holds "\nAnswer: ", the asked one's does not.
_FORMATTED = re.compile(r"(?:\A[^\n]{0,32}?|\n\n)(?:Question|Completion): ((?:(?!\nAnswer: ).)+?)\nAnswer: ?\Z", re.S)
# Capitalised words that name nothing: question words and sentence openers.
OPENERS = frozenset("""what who whom whose which when where why how is are was were do does did can could would will
should has have had in on at for to from of by with the a an this that these those there it its he she they his her
their i you we my your our please tell name describe explain imagine according during after before as if and or
but so also given considering""".split())


def normalise(text: str) -> str:
    """Casefold; "-", "/" and "_" (which join words: "science-fiction", "___") become spaces, every other Unicode
    punctuation character (category P*) is dropped ("King's" -> "kings"); whitespace runs become one space."""
    kept = (" " if ch in _JOINERS else "" if unicodedata.category(ch).startswith("P") else ch
            for ch in text.casefold())
    return _SPACE.sub(" ", "".join(kept)).strip()


def question_of(text: str) -> str:
    """The question (or completion text) a RULE MUSE formatted prompt asks; any other text as it is."""
    match = _FORMATTED.search(text)
    return match.group(1) if match else text


def names_something(text: str) -> bool:
    """A digit, or a capitalised word that is not a question word / sentence opener ("Stephen", "'Carrie'")."""
    words = re.findall(r"\w+", text)
    return any(ch.isdigit() for ch in text) or any(w[0].isupper() and w.casefold() not in OPENERS for w in words)


@dataclass(frozen=True)
class Prompt:
    file: str
    line: int       # 1-based line of the row (a minified JSON array has all its items on line 1)
    text: str
    item: int = 0   # 1-based index in a JSON array (0: a jsonl file, where the line says it all)

    @property
    def where(self) -> str:
        if not self.item:
            return f"line {self.line}"
        return f"item {self.item} (line {self.line})" if self.line else f"item {self.item}"


@dataclass(frozen=True)
class Hit:
    train: Prompt
    probe: Prompt
    kind: str      # "exact" or "near"
    score: float   # share of the shorter text's word n-grams found in the other (1.0 for exact)

    def message(self) -> str:
        how = ("equals (after casefolding, removing punctuation and collapsing whitespace)" if self.kind == "exact"
               else f"overlaps ({self.score:.2f} of the shorter text's word n-grams, threshold {NEAR_THRESHOLD})")
        return (f"{self.train.file}, {self.train.where}: training prompt {how} evaluation prompt "
                f"{self.probe.file}, {self.probe.where}")


# field that holds the prompt, by layout; the first one a record has is used
_PROMPT_FIELDS = ("prompt", "query", "question", "instruction", "text")


def read_prompts(path) -> list[Prompt]:
    """Every prompt of a file, with its 1-based line: our jsonl kinds (field `prompt`), the RULE authors' Stage 2
    `{prompt, solution}` and Stage 1 `{instruction, input, output}` arrays (instruction + newline + input, as
    `convert rule` builds it), RWKU level files `{query}`, MUSE knowmem `{question}` / verbmem `{prompt}`, TOFU
    `{question}`, and arrays of plain strings (MUSE privleak)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [Prompt(str(path), i, row["prompt"] if "prompt" in row else row["text"])  # text: pretrain rows
                for i, row in enumerate(read_jsonl(path), 1)]
    prompts = []
    for item, record in enumerate(read_records(path, allow_strings=True), 1):
        if isinstance(record, str):
            prompts.append(Prompt(str(path), 0, record, item))
            continue
        field = next((f for f in _PROMPT_FIELDS if isinstance(record.get(f), str)), None)
        if field is None:
            raise DataError(path, record["__line__"], "(row)", f"no prompt field (expected one of {_PROMPT_FIELDS})")
        text = record[field]
        if field == "instruction" and str(record.get("input") or "").strip():
            text += "\n" + record["input"]
        prompts.append(Prompt(str(path), record["__line__"], text, item))
    return prompts


class _Text:
    """A prompt as the test sees it: the words of its normalised question, and whether that question names
    something."""

    def __init__(self, text: str):
        question = question_of(text)
        self.words = normalise(question).split()
        self.joined = " ".join(self.words)
        self.named = names_something(question)


def _grams(words: list[str], n: int) -> set:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _score(shorter: _Text, longer: _Text, shared: int, shorter_grams: int, longer_grams: int) -> float:
    """Shared n-grams over the shorter text's; over the longer text's too when the shorter one names nothing."""
    return shared / (shorter_grams if shorter.named else max(shorter_grams, longer_grams))


class ProbeIndex:
    """The evaluation prompts, indexed by normalised question and by word 8-gram; probes under 8 words are
    compared one by one (few: RWKU's and MUSE's short questions)."""

    def __init__(self, probes: list[Prompt]):
        self.probes = probes
        self.texts = [_Text(p.text) for p in probes]
        self.exact: dict[str, list[int]] = {}
        self.grams: dict[tuple, set[int]] = {}
        self.sizes: list[int] = []
        self.short = [i for i, t in enumerate(self.texts) if MIN_WORDS <= len(t.words) < NGRAM]
        for i, text in enumerate(self.texts):
            self.exact.setdefault(text.joined, []).append(i)
            grams = _grams(text.words, NGRAM)
            self.sizes.append(len(grams))
            for gram in grams:
                self.grams.setdefault(gram, set()).add(i)

    def hits(self, prompt: Prompt) -> list[Hit]:
        """Every probe `prompt` equals or is near (exact hits are not reported again as near)."""
        text = _Text(prompt.text)
        exact = set(self.exact.get(text.joined, []))
        found = [Hit(prompt, self.probes[i], "exact", 1.0) for i in sorted(exact)]
        scores: dict[int, float] = {}
        if len(text.words) >= NGRAM:  # both texts have 8 words: shared 8-grams through the index
            grams = _grams(text.words, NGRAM)
            shared: dict[int, int] = {}
            for gram in grams:
                for i in self.grams.get(gram, ()):
                    shared[i] = shared.get(i, 0) + 1
            for i, count in shared.items():
                pair = (text, self.texts[i]) if len(grams) <= self.sizes[i] else (self.texts[i], text)
                scores[i] = _score(*pair, count, min(len(grams), self.sizes[i]), max(len(grams), self.sizes[i]))
            candidates = self.short  # a short probe against this longer prompt
        elif len(text.words) >= MIN_WORDS:
            candidates = range(len(self.probes))  # this short prompt against every probe
        else:
            candidates = []
        for i in candidates:
            shorter, longer = sorted((text, self.texts[i]), key=lambda t: len(t.words))
            n = len(shorter.words)
            if n >= MIN_WORDS and f" {shorter.joined} " in f" {longer.joined} ":
                scores[i] = _score(shorter, longer, 1, 1, len(longer.words) - n + 1)
        found += [Hit(prompt, self.probes[i], "near", score) for i, score in sorted(scores.items())
                  if i not in exact and score >= NEAR_THRESHOLD]
        return found


def find_overlaps(train: list[Prompt], probes: list[Prompt]) -> list[Hit]:
    index = ProbeIndex(probes)
    return [hit for prompt in train for hit in index.hits(prompt)]


def add_eval_arguments(p) -> None:
    """--eval / --allow_eval_overlap of every command that writes a training file."""
    p.add_argument("--eval", nargs="+", default=[], metavar="FILE",
                   help="evaluation files (ours or the released layouts): drop, count and record every training "
                        "prompt equal to one of their prompts after normalisation, or near one (docs/data.md)")
    p.add_argument("--allow_eval_overlap", action="store_true",
                   help="keep those prompts (the files as released, as the papers trained): each is marked in "
                        "its row (field eval_overlap) and counted in OUT.meta.json")


def drop_eval_overlaps(rows: list[dict], out, args, sources: list) -> tuple[list[dict], dict]:
    """The rows minus those whose prompt repeats an evaluation prompt of --eval (a clean experiment), or, with
    --allow_eval_overlap, all of them with those marked (field eval_overlap: the probe it repeats; "" for the
    others); and what the sidecar records. Messages name the input file a prompt came from (or OUT and its
    line-to-be for a derived prompt) and the probe's file and item. Few-shot prompts are compared by question."""
    if not args.eval:
        return rows, {"eval_files": []}
    probes = [p for path in args.eval for p in read_prompts(path)]
    origin = {}
    for path in reversed(sources):  # the first file that holds a prompt names it
        origin.update({p.text: p for p in reversed(read_prompts(path))})
    train = [Prompt(f"{out} (to be written)", line, row["prompt"]) for line, row in enumerate(rows, 1)]
    hits = [replace(h, train=origin.get(h.train.text, h.train)) for h in find_overlaps(train, probes)]
    overlapping: dict[str, Hit] = {}  # prompt text -> its first hit
    for hit in hits:
        overlapping.setdefault(hit.train.text, hit)
    if overlapping and args.allow_eval_overlap:
        rows = [{**row, "eval_overlap": f"{overlapping[row['prompt']].probe.file}, {overlapping[row['prompt']].probe.where}"
                 if row["prompt"] in overlapping else ""} for row in rows]
        print(f"warning: kept {sum(r['eval_overlap'] != '' for r in rows)} of {len(rows)} training rows that "
              f"repeat evaluation prompts (--allow_eval_overlap: the files as released), marked eval_overlap; "
              f"first: {hits[0].message()}", file=sys.stderr)
    elif overlapping:
        kept = [row for row in rows if row["prompt"] not in overlapping]
        if not kept:
            raise UserError(f"every one of the {len(rows)} training rows repeats an evaluation prompt; first: "
                            f"{hits[0].message()}")
        print(f"dropped {len(rows) - len(kept)} of {len(rows)} training rows as copies or near copies of "
              f"evaluation prompts (--allow_eval_overlap keeps them); first: {hits[0].message()}", file=sys.stderr)
        rows = kept
    dropped = 0 if args.allow_eval_overlap else len(overlapping)
    return rows, {"eval_files": [str(p) for p in args.eval], "eval_prompts": len(probes), "ngram": NGRAM,
                  "near_threshold": NEAR_THRESHOLD, "overlaps_exact": sum(h.kind == "exact" for h in hits),
                  "overlaps_near": sum(h.kind == "near" for h in hits), "rows_overlapping": len(overlapping),
                  "rows_dropped": dropped, "allow_eval_overlap": args.allow_eval_overlap,
                  "overlap_examples": [h.message() for h in hits[:5]]}

