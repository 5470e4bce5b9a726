"""RULE's verifiable reward (arXiv 2506.07171), on labels ``["<reject>", refusal_text, target]`` (forget prompts)
and ``["<normal>", gold_answer]`` (boundary / retain prompts).

Variants, as in the authors' EasyR1 code (``forget_reward_two_stage_abs_target`` / ``forget_reward_two_stage_abs``):
- ``two_stage_abs_target`` (RWKU): <reject>: 0.5 if refusal, +0.5 if the refusal also names the target
  (case-sensitive substring, as theirs); <normal>: 0.5 if not a refusal, +0.5 if ROUGE-L recall > 0.3.
- ``two_stage_abs`` (MUSE): <reject>: 1.0 if refusal else 0; <normal> as above.
"""

import json
from dataclasses import dataclass
from functools import lru_cache

from .refusal import is_refusal

VARIANTS = ("two_stage_abs_target", "two_stage_abs")
ROUGE_BACKENDS = ("rouge", "rouge_score")
ROUGE_THRESHOLD = 0.3


class LabelError(ValueError):
    """A Stage 2 label that is not ``["<reject>", text, target]`` or ``["<normal>", gold, ...]``."""


@dataclass
class RuleReward:
    reward: float
    refused: bool
    named_target: bool | None  # None for <normal> labels
    rouge: float | None  # None for <reject> labels


def decode_label(label) -> list:
    """A Stage 2 label as a list (labels are stored as JSON text); LabelError if it is not a JSON list."""
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as e:
            raise LabelError(f"label is not valid JSON ({e.msg})") from None
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack
            raise LabelError("label is nested too deeply to be a Stage 2 label") from None
    if not isinstance(label, (list, tuple)):
        raise LabelError(f"label must be a list [tag, ...], got {label!r:.80}")
    return list(label)


def parse_label(label) -> tuple[str, list[str], str | None]:
    """Label (JSON string or list) -> (tag, answers, target). For <reject>, target is the third element when
    present; for <normal>, answers are the gold answers (elements 1:). A PURGE label is refused by name."""
    label = decode_label(label)
    if label and label[0] == "<purge>":
        raise LabelError("a PURGE label (\"<purge>\") is scored by the PURGE reward (reward variant purge_binary), "
                         "not by a RULE variant")
    if len(label) < 2:
        raise LabelError(f"label must be a list [tag, answer, ...], got {label!r:.80}")
    if not all(isinstance(x, str) for x in label):
        raise LabelError("every element of the label must be a string")
    tag = label[0]
    if tag == "<reject>":
        if len(label) > 3:
            raise LabelError(f"a <reject> label has at most 3 elements, got {len(label)}")
        return tag, [label[1]], (label[2] if len(label) == 3 else None)
    if tag == "<normal>":
        if not any(answer.strip() for answer in label[1:]):
            raise LabelError("a <normal> label needs a non-empty gold answer")
        return tag, list(label[1:]), None
    raise LabelError(f"label tag must be '<reject>' or '<normal>', got {tag!r}")


@lru_cache(maxsize=2)
def _rouge_score_scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l_recall(completion: str, golds: list[str] | str, backend: str = "rouge", use_stemmer: bool = False) -> float:
    """ROUGE-L recall of `completion` against the gold answer(s), averaged over golds.

    ``backend="rouge"`` (default) is the authors' choice, the pltrdy ``rouge`` package: case-sensitive,
    tokens are whitespace-split with punctuation attached ("Paris." != "Paris"), text is cut into sentences
    at every "." and scored with the summary-level union LCS; an empty completion or gold raises there and
    scores 0.0 (the authors catch it). ``backend="rouge_score"`` is Google's ``rouge-score`` rougeL:
    lower-cased, punctuation dropped, one sentence-level LCS, optional Porter stemmer (TOFU's choice).
    """
    golds = [golds] if isinstance(golds, str) else list(golds)
    if backend == "rouge":
        from rouge import Rouge

        try:
            return float(Rouge(["rouge-l"]).get_scores([completion] * len(golds), golds, avg=True)["rouge-l"]["r"])
        except (ValueError, RecursionError):
            return 0.0
    if backend == "rouge_score":
        scorer = _rouge_score_scorer(use_stemmer)
        return sum(scorer.score(gold, completion)["rougeL"].recall for gold in golds) / max(1, len(golds))
    raise ValueError(f"unknown ROUGE backend {backend!r} (expected one of {ROUGE_BACKENDS})")


def rule_reward(completion: str, label, variant: str = "two_stage_abs_target", refusal_mode: str = "rule",
                rouge_backend: str = "rouge") -> RuleReward:
    """RULE reward of one completion. Raises LabelError on a malformed label (the OpenRLHF entry point
    catches it); a <reject> label without a target is an error only for ``two_stage_abs_target``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown reward variant {variant!r} (expected one of {VARIANTS})")
    tag, answers, target = parse_label(label)
    refused = is_refusal(completion, refusal_mode)
    if tag == "<reject>":
        if variant == "two_stage_abs":
            return RuleReward(1.0 if refused else 0.0, refused, None, None)
        if not target:
            raise LabelError("two_stage_abs_target needs the target name as the third label element")
        named = target in completion
        return RuleReward(0.5 * refused + 0.5 * (refused and named), refused, named, None)
    # The authors score the first gold for the *_target variant and the mean over all golds otherwise.
    golds = answers[:1] if variant == "two_stage_abs_target" else answers
    rouge = rouge_l_recall(completion, golds, backend=rouge_backend)
    reward = 0.0 if refused else 0.5 + 0.5 * (rouge > ROUGE_THRESHOLD)
    return RuleReward(reward, refused, None, rouge)
