"""Train / evaluation overlap: does a training prompt repeat an evaluation probe?

Two tests, on normalised text (casefolded; "-", "/", "_" turned into spaces, every other Unicode punctuation
character removed; whitespace runs collapsed: "What is  Stephen King's sci-fi novel?" -> "what is stephen kings
sci fi novel"):

- exact: the two normalised texts are equal;
- near: both have at least NGRAM (8) words and at least half (NEAR_THRESHOLD, 0.5) of the shorter text's
  word 8-grams occur in the longer one. 8 words is longer than the stock phrases that unrelated questions
  share ("what is the name of the"), and one entity swapped in the middle of a question breaks every 8-gram
  that spans it, so a boundary question made by entity swap is not near its source; a probe copied into a
  longer training prompt (a passage, an adversarial wrapper around a question) is.

Texts shorter than 8 words are only tested for exact equality.

`read_prompts` reads our jsonl kinds and the released layouts (RULE Stage 1 / Stage 2 JSON arrays, RWKU
level files, MUSE knowmem / verbmem, TOFU), so the check runs on the authors' files directly.
"""

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from nltk.util import ngrams

from .schema import DataError, read_jsonl, read_records

NGRAM = 8
NEAR_THRESHOLD = 0.5
_SPACE = re.compile(r"\s+")
_JOINERS = set("-/_")


def normalise(text: str) -> str:
    """Casefold; "-", "/" and "_" (which join words: "science-fiction", "___") become spaces, every other Unicode
    punctuation character (category P*) is dropped ("King's" -> "kings"); whitespace runs become one space."""
    kept = (" " if ch in _JOINERS else "" if unicodedata.category(ch).startswith("P") else ch
            for ch in text.casefold())
    return _SPACE.sub(" ", "".join(kept)).strip()


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
    score: float   # share of the shorter text's 8-grams found in the other (1.0 for exact)

    def message(self) -> str:
        how = ("equals (after casefolding, removing punctuation and collapsing whitespace)" if self.kind == "exact"
               else f"overlaps ({self.score:.2f} of the shorter text's word {NGRAM}-grams, threshold "
                    f"{NEAR_THRESHOLD})")
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


class ProbeIndex:
    """The evaluation prompts, indexed by normalised text and by word 8-gram."""

    def __init__(self, probes: list[Prompt]):
        self.probes = probes
        self.exact: dict[str, list[int]] = {}
        self.grams: dict[tuple, set[int]] = {}
        self.sizes: list[int] = []
        for i, probe in enumerate(probes):
            words = normalise(probe.text).split()
            self.exact.setdefault(" ".join(words), []).append(i)
            grams = set(ngrams(words, NGRAM))
            self.sizes.append(len(grams))
            for gram in grams:
                self.grams.setdefault(gram, set()).add(i)

    def hits(self, prompt: Prompt) -> list[Hit]:
        """Every probe `prompt` equals or is near (exact hits are not reported again as near)."""
        words = normalise(prompt.text).split()
        exact = self.exact.get(" ".join(words), [])
        found = [Hit(prompt, self.probes[i], "exact", 1.0) for i in exact]
        grams = set(ngrams(words, NGRAM))
        shared: dict[int, int] = {}
        for gram in grams:
            for i in self.grams.get(gram, ()):
                shared[i] = shared.get(i, 0) + 1
        for i, count in sorted(shared.items()):
            score = count / min(len(grams), self.sizes[i])
            if i not in exact and score >= NEAR_THRESHOLD:
                found.append(Hit(prompt, self.probes[i], "near", score))
        return found


def find_overlaps(train: list[Prompt], probes: list[Prompt]) -> list[Hit]:
    index = ProbeIndex(probes)
    return [hit for prompt in train for hit in index.hits(prompt)]
