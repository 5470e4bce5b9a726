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
PURGE_VARIANTS = ("purge_binary", "purge_exp_decay")
DECAY_TAU = 1.0  # exponential_decay.py: _tau = 1.00 (and _base = math.e)
BOUNDARIES = ("word", "edge", "none")
_EDGES = {"word": (r"\b", r"\b"), "edge": (r"(?<!\w)", r"(?!\w)"), "none": ("", "")}


@dataclass
class PurgeReward:
    reward: float
    mentioned: str | None  # the first forbidden term found in the completion (as written there), None if none
    refused: bool  # a diagnostic only (the reward ignores it): does the completion refuse, per the refusal detector


def purge_label(target: str, terms: list[str]) -> str:
    """The Stage 2 label of one PURGE prompt (JSON text, as stored in the ``label`` field)."""
    label = [PURGE_TAG, target, *terms]
    parse_purge_label(label)
    return json.dumps(label, ensure_ascii=False)


def parse_purge_label(label) -> tuple[str, tuple[str, ...]]:
    """Label (JSON string or list) -> (target, terms). The target is bookkeeping (per-target reports); only the
    terms are matched, as in the authors' code, so a list that should forbid the name must contain it."""
    items = decode_label(label)
    if not items or items[0] != PURGE_TAG:
        raise LabelError(f"a PURGE label starts with {PURGE_TAG!r}, got {str(items[0] if items else items)!r:.40}")
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


@lru_cache(maxsize=256)
def term_pattern(terms: tuple[str, ...], boundary: str = "word", case_sensitive: bool = False) -> re.Pattern:
    """The compiled matcher of a term list (one per target; cached because every rollout reuses it)."""
    if boundary not in _EDGES:
        raise ValueError(f"unknown PURGE boundary {boundary!r} (expected one of {BOUNDARIES})")
    left, right = _EDGES[boundary]
    body = "|".join(map(re.escape, terms))
    return re.compile(left + "(?:" + body + ")" + right, 0 if case_sensitive else re.IGNORECASE)


def purge_reward(completion: str, label, boundary: str = "word", case_sensitive: bool = False,
                 refusal_mode: str = "rule", decay_tau: float | None = None) -> PurgeReward:
    """PURGE's binary reward of one completion, or with `decay_tau` the graded e^(-m/tau) of its m mentions;
    LabelError on a label that is not a PURGE label."""
    _, terms = parse_purge_label(label)
    match = term_pattern(terms, boundary, case_sensitive).search(completion)
    if decay_tau is None:
        reward = 0.0 if match else 1.0
    else:
        longest_first = tuple(sorted(set(terms), key=lambda t: (-len(t), t)))
        mentions = len(term_pattern(longest_first, boundary, case_sensitive).findall(completion))
        reward = math.e ** (-(mentions / decay_tau))  # their expression as written: the same float
    return PurgeReward(reward, match.group(0) if match else None, is_refusal(completion, refusal_mode))
