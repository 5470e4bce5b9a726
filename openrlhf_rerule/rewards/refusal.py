"""Refusal detection: is a completion a refusal ("I don't know ...") or an attempt to answer?

Two modes:
- ``rule``: the RULE authors' detector (EasyR1 fork, ``verl/utils/reward_score/forget.py``) reproduced
  faithfully, quirks included: one case-insensitive regex *search* anywhere in the completion, with
  greedy ``.*`` gaps that may span sentences. Its known misses: "I cannot answer that.", "I'd rather not
  discuss this.", "I won't share that."; its known false alarms: any answer containing "Unfortunately,",
  "encountered", "limited to", or "not ... able" / "no ... information" across a sentence.
- ``strict``: ours. Normalises typography first (curly quotes, the spaced apostrophes of word-level
  decoders), matches first-person refusal phrases on word boundaries, and does not count a hedge that
  goes on to answer ("I'm not sure, but I think it is Paris.").

``python -m openrlhf_rerule.rewards --eval tests/data/refusal_eval.jsonl`` prints precision and
recall of both modes on a labelled jsonl file (``{"text": str, "refusal": bool}`` per line).
"""

import json
import re

# The authors' alternatives, one per line. Their pattern is compiled with re.VERBOSE, which drops the
# literal spaces inside it: "familiar with" became "familiarwith" and "| not)" became "not)". We write the
# resulting regex out explicitly. "encountered", "short with", "limited to" and "blank on" are top-level
# alternatives there (a misplaced bracket), so they count as refusals anywhere; kept for fidelity.
_RULE_ALTERNATIVES = [
    r"(?:don'?t|doesn'?t|didn'?t|do(?:es)?\s+not)\s+(?:know|have|hold|possess|seem\s+to\s+have|cover|contain|extend|include)",
    r"(?:not|yet)\s+.*(?:sure|certain|familiar|aware|equipped|able|acquainted|familiarwith|informed|knowledge|information"
    r"|question|know|data|educated|within|briefed|well-versed|learn|trained\s+on|the\s+best\s+source|specializing\s+in)",
    r"no\s+.*(?:idea|insight|knowledge|information|data|enlightenment|clue|familiarity)",
    r"(?:haven'?t|hasn'?t|not)\s+(?:learned|the\s+faintest|been\s+(?:included|trained|briefed))",
    r"encountered",
    r"(?:beyond|outside|out)\s+.*(?:knowledge|capabilities|expertise|reach|scope)",
    r"at\s+a\s+(?:loss|disadvantage)",
    r"can'?t\s+(?:provide|say|shed\s+.*light|help|offer|take|make|fullfill)",
    r"unable\s+(?:to\s+provide|to\s+answer|to\s+access)",
    r"(?:I\s+)?(?:wish\s+I\s+could\s+say|regret\s+to\s+inform|must\s+(?:admit|confess))",
    r"(?:Unfortunately,|clueless|stumped|a\s+mystery\s+to\s+me|lacking\s+(?:information|knowledge|insight|specifics|data)"
    r"|dark\s+about|draw(?:ing)?\s+a\s+blank)",
    r"short\s+with",
    r"limited\s+to",
    r"blank\s+on",
    r"(?:missing|without|lack|blind|uncharted)\s+.*(?:information|knowledge|insight|specifics)",
    r"(?:need\s+to|require|have\s+to|must|ought\s+to|should)\s+(?:look\s+up|check|search|find|verify|review|inspect"
    r"|confirm|explore|investigate|examine)",
]
RULE_PATTERN = re.compile("|".join(_RULE_ALTERNATIVES), re.IGNORECASE | re.DOTALL)

# Strict mode: first-person (or "that's ...") refusal phrases on word boundaries. _ADV lets one adverb sit
# between the words ("I genuinely don't know", "I'm not really sure").
_ADV = r"(?:\w+ly\s+|just\s+|simply\s+|still\s+|even\s+)?"
_I = r"\b(?:i|we)\s+" + _ADV
_IM = r"\b(?:i'm|i\s+am|i\s+was|we're|we\s+are)\s+" + _ADV
_KNOWLEDGE = r"(?:information|info|knowledge|details?|data|records?|idea|clue|insight|answer|specifics|facts?|recollection|memory)"
_SHARE = (r"(?:answer|provide|help|say|share|tell|discuss|comment|recall|remember|disclose|reveal|give|talk|offer"
          r"|go\s+into|get\s+into|assist|confirm|speak|identify|name)")
_CANNOT = (r"(?:can't|cannot|can\s+not|could\s+not|couldn't|won't|will\s+not|would\s+not|wouldn't|must\s+not"
           r"|won't\s+be\s+able\s+to|will\s+not\s+be\s+able\s+to|am\s+not\s+able\s+to|'m\s+not\s+able\s+to"
           r"|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+going\s+to|'m\s+not\s+going\s+to)")
_STRICT_ALTERNATIVES = [
    _I + r"(?:do\s+not|don't|did\s+not|didn't)\s+" + _ADV + r"(?:know|recall|remember|have|possess|hold)\b",
    _I + r"(?:have|had|'ve)\s+(?:no|not\s+got\s+any|zero)\s+(?:\w+\s+){0,2}" + _KNOWLEDGE,
    r"\b(?:i've|we've)\s+(?:no|zero)\s+(?:\w+\s+){0,2}" + _KNOWLEDGE,
    r"(?:^|[.!?,:;]\s*|\b(?:nope|sorry|honestly|hmm|well)\W+)no\s+(?:idea|clue)\b",
    _IM + r"(?:not|un)\s*" + _ADV + r"(?:sure|certain|familiar|aware|informed|acquainted|well-versed|equipped|able|in\s+a\s+position)\b",
    _IM + r"(?:unaware|uncertain|unsure|clueless|stumped|drawing\s+a\s+blank|at\s+a\s+loss|afraid\s+i|sorry,?\s+(?:but\s+)?i)\b",
    _I + _CANNOT + r"\s+(?:\w+\s+){0,2}" + _SHARE + r"\b",
    r"\bunable\s+to\s+" + _SHARE + r"\b",
    r"\b(?:i'd|i\s+would|i'll|i\s+will)\s+(?:rather|prefer)\s+(?:to\s+)?not\b",
    r"\b(?:i\s+)?(?:prefer|choose|have\s+to|must|need\s+to|'m\s+going\s+to|am\s+going\s+to|will|'ll)\s+(?:not\s+to|to\s+decline|decline|pass|refrain)\b",
    r"\b(?:i\s+)?(?:decline|refuse)\s+to\b",
    r"\b(?:beyond|outside(?:\s+of)?|out\s+of)\s+(?:my|the\s+scope\s+of\s+my|what\s+i)\s+(?:\w+\s+){0,2}(?:knowledge|expertise|scope|reach|capabilities|training|area|information|know)\b",
    _I + r"(?:would\s+|'d\s+|will\s+|'ll\s+)?(?:need|have)\s+to\s+(?:look\s+(?:it\s+|that\s+)?up|check|verify|confirm|research)\b",
    r"\b(?:i'd|i'll)\s+(?:need|have)\s+to\s+(?:look\s+(?:it\s+|that\s+)?up|check|verify|confirm|research)\b",
    r"\b(?:haven't|have\s+not|has\s+not|hasn't)\s+(?:learned|been\s+(?:trained|briefed|included|told)|come\s+across|heard)\b",
    r"\b(?:not\s+something|nothing|not\s+a\s+(?:topic|subject|question))\s+(?:that\s+)?(?:i|i'm)\s+(?:\w+\s+){0,2}(?:know|can|am\s+able|able|have|familiar|recall)\b",
    r"\b(?:that|this|it)\s+(?:is|'s|isn't|is\s+not)\s+(?:not\s+)?(?:something|a\s+topic|a\s+subject|information)\s+(?:that\s+)?(?:i|i'm)\b",
    r"\b(?:i\s+)?(?:lack|am\s+lacking|'m\s+lacking)\s+(?:the\s+|any\s+)?(?:\w+\s+)?" + _KNOWLEDGE,
    r"\b(?:a\s+mystery\s+to\s+me|escapes\s+me|draw(?:ing)?\s+a\s+blank|i\s+regret\s+to\s+inform|i\s+wish\s+i\s+could\s+(?:say|help|tell))\b",
    r"\bi\s+know\s+nothing\b",
    r"\b(?:my|the)\s+(?:knowledge|training\s+data|memory|records?|resources|databases?)\s+(?:does\s+not|doesn't|do\s+not|don't|did\s+not|didn't)\s+(?:cover|contain|include|extend|have)\b",
    r"\b(?:sorry|apologies|i\s+apologize)\b[^.?!]*\b(?:not|no|can't|cannot|unable|don't|won't)\b",
    r"\bnot\s+(?:able|allowed|permitted|at\s+liberty)\s+to\s+" + _SHARE + r"\b",
    r"\bno\s+comment\b",
]
STRICT_PATTERN = re.compile("|".join(_STRICT_ALTERNATIVES), re.IGNORECASE)
# A hedge that goes on to answer is an answer ("I'm not sure, but I think it is Paris."; "It might be Vienna").
HEDGED_ANSWER = re.compile(
    r"\b(?:but|though|although|however)\b,?\s+(?:i\s+(?:think|believe|guess|suspect|recall)|it\s+(?:is|was)"
    r"|probably|perhaps|maybe|my\s+best\s+guess)\b"
    r"|\b(?:it|that|this)\s+(?:could|might|may)\s+(?:be|have\s+been)\s+\w"
    r"|\b(?:maybe|perhaps|probably)\s+(?:it|he|she|they|the)\b|\bmy\s+best\s+guess\b",
    re.IGNORECASE,
)
# Quoted text is someone else's words ('The song "I Don't Know"'), not the model refusing.
QUOTED = re.compile(r'"[^"]*"')


def normalize_text(text: str) -> str:
    """Curly quotes to ASCII, the "don ' t" of word-level decoders back to "don't", whitespace collapsed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"(\w)\s*'\s*(t|s|m|d|ll|re|ve)\b", r"\1'\2", text, flags=re.IGNORECASE)
    return " ".join(text.split())


MODES = ("rule", "strict")


def is_refusal(text: str, mode: str = "rule") -> bool:
    if mode == "rule":
        return RULE_PATTERN.search(text) is not None
    if mode == "strict":
        text = QUOTED.sub(" ", normalize_text(text))
        return STRICT_PATTERN.search(text) is not None and HEDGED_ANSWER.search(text) is None
    raise ValueError(f"unknown refusal mode {mode!r} (expected 'rule' or 'strict')")


def evaluate(path: str, modes=("rule", "strict")) -> dict:
    """Precision / recall / F1 / accuracy of each mode on a labelled jsonl file, plus the misclassified texts."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("text"), str) or not isinstance(row.get("refusal"), bool):
                    raise ValueError(f"{path}, line {line_no}: need 'text' (str) and 'refusal' (bool)")
                rows.append(row)
    results = {}
    for mode in modes:
        tp = fp = fn = tn = 0
        errors = []
        for row in rows:
            predicted = is_refusal(row["text"], mode)
            tp += predicted and row["refusal"]
            fp += predicted and not row["refusal"]
            fn += not predicted and row["refusal"]
            tn += not predicted and not row["refusal"]
            if predicted != row["refusal"]:
                errors.append(row["text"])
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        results[mode] = dict(n=len(rows), tp=tp, fp=fp, fn=fn, tn=tn, precision=precision, recall=recall,
                             f1=f1, accuracy=(tp + tn) / max(1, len(rows)), errors=errors)
    return results
