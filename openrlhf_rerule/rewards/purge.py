"""PURGE's verifiable reward (Zaradoukas et al., arXiv 2601.20568): 1.0 when the completion mentions none of the
target's forbidden terms, else 0.0. Labels are ``["<purge>", target, term, term, ...]``.

Default = the authors' ``src/rewards/binary.py`` (github strzar/purge, ``BinaryReward``): one regex
``\\b(?:t1|t2|...)\\b`` over ``re.escape``d terms, ``re.IGNORECASE``, searched in the completion text only.
Their ``load_forget_words`` reads the term list into a set, so order and duplicates do not matter (and
whether *some* alternative matches does not depend on the order). Options the paper leaves open:

- ``boundary``: ``word`` (theirs, ``\\b`` on both sides), ``edge`` (no word character may touch the term:
  ``(?<!\\w)`` / ``(?!\\w)``; unlike ``\\b`` it also finds terms that start or end with punctuation, such as
  "C++", "Girls Inc." or "Run the World (Girls)", which ``\\b`` only finds when a letter follows them),
  ``none`` (plain substring: "King" is found in "Kingdom").
- ``case_sensitive``: theirs ignores case (so the term "It" matches the pronoun "it").

Variant ``purge_exp_decay``: the graded reward the authors' default configuration trains with since their follow-up
(``src/configs/config.yaml`` ``reward: exponential_decay`` -> ``src/rewards/exponential_decay.py``, github
strzar/purge 24d1a3f): r = e^(-m/tau), tau = 1, where m counts every match of the same pattern (``findall``: a term
said twice counts twice). Their alternation order is a Python set's, which varies with PYTHONHASHSEED, so with
overlapping terms ("Stephen King" and "King") their count of "Stephen King" is 1 or 2 by chance; ours tries the
longest term first (1: one mention, counted once), the same in every process.

Variant ``purge_pagerank``: the authors' PageRank-weighted reward (``src/rewards/pagerank.py:184-204``,
``reward: pagerank``): r = clamp(1 - sum of the weights of the terms found, 0, 1), each term of the forget set
tried on its own (``\\b`` + term + ``\\b``, ignoring case) and counted once however often it occurs; a term listed
twice counts twice, as in their loop. The weights come from ``rerule data purge weights`` (purge_pagerank.py) and
travel in the label after a ``"<pagerank>"`` marker, one number per term:
``["<purge>", target, term, ..., "<pagerank>", weight, ...]``; the other variants ignore them.

An empty term list is refused (LabelError): the authors' code would compile ``\\b(?:)\\b``, which matches at
any word boundary and scores 0 for every completion that contains a letter. Empty or blank terms are refused
for the same reason (a blank term matches between any two words).
"""

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from .refusal import is_refusal
from .rule import LabelError, decode_label

PURGE_TAG = "<purge>"
PURGE_VARIANTS = ("purge_binary", "purge_exp_decay", "purge_pagerank")
WEIGHTS_TAG = "<pagerank>"  # in a label, the PageRank weights follow it
DECAY_TAU = 1.0  # exponential_decay.py: _tau = 1.00 (and _base = math.e)
BOUNDARIES = ("word", "edge", "none")
_EDGES = {"word": (r"\b", r"\b"), "edge": (r"(?<!\w)", r"(?!\w)"), "none": ("", "")}


@dataclass
class PurgeReward:
    reward: float
    mentioned: str | None  # the first forbidden term found in the completion (as written there), None if none
    refused: bool  # a diagnostic only (the reward ignores it): does the completion refuse, per the refusal detector


def purge_label(target: str, terms: list[str], weights: list[float] | None = None) -> str:
    """The Stage 2 label of one PURGE prompt (JSON text, as stored in the ``label`` field); with `weights` (one per
    term, of `rerule data purge weights`) the label purge_pagerank scores."""
    label = [PURGE_TAG, target, *terms] + ([WEIGHTS_TAG, *weights] if weights is not None else [])
    parse_purge_label(label)
    return json.dumps(label, ensure_ascii=False)


def purge_weights(label) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(terms, their PageRank weights) of a weighted PURGE label; LabelError when it carries none."""
    _, terms = parse_purge_label(label)
    items = decode_label(label)
    if WEIGHTS_TAG not in items:
        raise LabelError(f"purge_pagerank needs a label with weights ([..., {WEIGHTS_TAG!r}, weight, ...]): build the "
                         "Stage 2 file with `rerule data purge stage2 --weights FILE` (of `rerule data purge weights`)")
    return terms, tuple(items[items.index(WEIGHTS_TAG) + 1:])


def parse_purge_label(label) -> tuple[str, tuple[str, ...]]:
    """Label (JSON string or list) -> (target, terms). The target is bookkeeping (per-target reports); only the
    terms are matched, as in the authors' code, so a list that should forbid the name must contain it. Weights
    after ``"<pagerank>"`` are checked here (one finite number in [0, 1] per term) and left out."""
    items = decode_label(label)
    if not items or items[0] != PURGE_TAG:
        raise LabelError(f"a PURGE label starts with {PURGE_TAG!r}, got {str(items[0] if items else items)!r:.40}")
    if WEIGHTS_TAG in items:
        cut = items.index(WEIGHTS_TAG)
        items, weights = items[:cut], items[cut + 1:]
        if len(weights) != len(items) - 2 or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and 0.0 <= w <= 1.0 for w in weights):
            raise LabelError(f"after {WEIGHTS_TAG!r} a PURGE label holds one weight in [0, 1] per term "
                             f"({len(items) - 2} terms, {len(weights)} values)")
    if len(items) < 3:
        raise LabelError("a PURGE label is [\"<purge>\", target, term, ...] with at least one term (an empty list "
                         "would match at every word boundary in the authors' regex)")
    if not all(isinstance(x, str) for x in items):
        raise LabelError("every element of a PURGE label must be a string")
    if not items[1].strip():
        raise LabelError("a PURGE label needs the target's name as its second element")
    for term in items[2:]:
        if not term.strip():
            raise LabelError("a PURGE term must not be empty or blank (it would match between any two words)")
    return items[1], tuple(items[2:])


@lru_cache(maxsize=4096)  # purge_pagerank adds one pattern per term
def term_pattern(terms: tuple[str, ...], boundary: str = "word", case_sensitive: bool = False) -> re.Pattern:
    """The compiled matcher of a term list (one per target; cached because every rollout reuses it)."""
    if boundary not in _EDGES:
        raise ValueError(f"unknown PURGE boundary {boundary!r} (expected one of {BOUNDARIES})")
    left, right = _EDGES[boundary]
    body = "|".join(map(re.escape, terms))
    return re.compile(left + "(?:" + body + ")" + right, 0 if case_sensitive else re.IGNORECASE)


def purge_reward(completion: str, label, boundary: str = "word", case_sensitive: bool = False,
                 refusal_mode: str = "rule", decay_tau: float | None = None, pagerank: bool = False) -> PurgeReward:
    """PURGE's binary reward of one completion, with `decay_tau` the graded e^(-m/tau) of its m mentions, with
    `pagerank` 1 - the weights of the terms found (clamped to [0, 1]); LabelError on a label that is not a PURGE
    label (or, for `pagerank`, carries no weights)."""
    _, terms = parse_purge_label(label)
    match = term_pattern(terms, boundary, case_sensitive).search(completion)
    if pagerank:
        penalty = 0.0
        for term, weight in zip(*purge_weights(label)):  # their loop (pagerank.py:194-198): the same float sum
            if term_pattern((term,), boundary, case_sensitive).search(completion):
                penalty += weight
        reward = max(0.0, min(1.0, 1.0 - penalty))
    elif decay_tau is None:
        reward = 0.0 if match else 1.0
    else:
        longest_first = tuple(sorted(set(terms), key=lambda t: (-len(t), t)))
        mentions = len(term_pattern(longest_first, boundary, case_sensitive).findall(completion))
        reward = math.e ** (-(mentions / decay_tau))  # their expression as written: the same float
    return PurgeReward(reward, match.group(0) if match else None, is_refusal(completion, refusal_mode))
