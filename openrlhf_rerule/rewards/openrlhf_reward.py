"""RULE / PURGE reward as an OpenRLHF custom reward file:

    --reward.remote_url openrlhf_rerule/rewards/openrlhf_reward.py --data.label_key label

OpenRLHF 0.11.2 (``openrlhf/utils/agent.py``) loads this file with ``spec_from_file_location`` and calls
``reward_func(queries, prompts, labels)`` once per rollout (lists of length 1), where a query is
``tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)``. An exception there is only
logged and the sample gets no reward, so this function never raises. The contract (docs/data.md):
- queries, prompts and labels are lists (or tuples) of strings of one length B; the result has B rewards.
  A call that breaks this (a plain string, lengths that differ, a non-string element) is scored 0 for every
  query — never truncated, never scored character by character — and counted in ``bad_call``;
- a prompt that cannot be located in its query scores 0 (``prompt_not_found``): no completion can be trusted;
- a malformed label scores 0 (``bad_label``); any other error while scoring scores 0 (``reward_error``).
Every such 0 also prints one ``[rerule reward]`` line, which OpenRLHF's rollout workers log.
Each extra_logs value is a tensor [B]; OpenRLHF keeps its first element per sample and logs the batch mean,
so rates of a subset are ratios of means, e.g. the refusal rate on forget prompts =
mean(forget_refused) / mean(is_forget).

Options come from the environment (the file has no arguments): RERULE_REWARD_VARIANT
(two_stage_abs_target | two_stage_abs | purge_binary | purge_exp_decay |
purge_pagerank), RERULE_REFUSAL_MODE (rule | strict),
RERULE_ROUGE_BACKEND (rouge | rouge_score), and for the PURGE variants RERULE_PURGE_BOUNDARY (word | edge | none) and
RERULE_PURGE_CASE_SENSITIVE (1 | 0). ``mentioned`` logs PURGE's forbidden-term hits (always 0 under RULE);
``named_target`` and ``rouge_l`` stay 0 under PURGE.
"""

import os
import re

import torch

from openrlhf_rerule.rewards.purge import PURGE_VARIANTS
from openrlhf_rerule.rewards.rule import LabelError
from openrlhf_rerule.rewards.variants import make_scorer

DEFAULT_VARIANT = "two_stage_abs_target"  # when RERULE_REWARD_VARIANT is unset (the launcher checks labels with it too)
LOG_NAMES = ("refused", "named_target", "rouge_l", "is_forget", "forget_refused", "boundary_refused", "mentioned",
             "bad_label", "prompt_not_found", "reward_error", "bad_call")

# Special tokens of the common chat templates (Llama 2/3, Qwen, Mistral, GPT-2 style, our tiny models).
SPECIAL_TOKENS = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|<pad>|<unk>|<eos>|<bos>|<\|?endoftext\|?>|\[PAD\]|\[/?INST\]")


def completion_from_query(query: str, prompt: str, as_decoded: bool = False) -> tuple[str, bool]:
    """The response part of a decoded prompt+response, with special tokens removed.

    A decode round trip can change whitespace and case (word-level tokenizers lower-case and join tokens
    with spaces), so when the prompt is not a literal prefix we match it ignoring whitespace and case.
    RULE's scorers see whitespace runs collapsed to one space (as since the first version; their refusal
    patterns use \\s+ and ROUGE splits at whitespace). `as_decoded` (PURGE) keeps the text as generated, only
    special tokens dropped and the ends trimmed: TRL scores ``batch_decode(completion_ids,
    skip_special_tokens=True)``, and the authors' regex matches a multi-word term only with its one space.
    Returns (completion, found); found is False when the prompt cannot be located (completion is "").
    """
    if query.startswith(prompt):
        rest = query[len(prompt):]
    else:
        compact = "".join(prompt.split()).lower()
        matched, cut = 0, None
        for i, ch in enumerate(query):
            if ch.isspace():
                continue
            if matched < len(compact) and ch.lower() == compact[matched]:
                matched += 1
                if matched == len(compact):
                    cut = i + 1
                    break
            else:
                break
        if cut is None:
            return "", False
        rest = query[cut:]
    if as_decoded:  # the ends cannot change a match: \b and (?<!\w) see a space as they see the text's edge
        return SPECIAL_TOKENS.sub("", rest).strip(), True
    return " ".join(SPECIAL_TOKENS.sub(" ", rest).split()), True


def call_problem(queries, prompts, labels) -> str | None:
    """Why a call breaks the contract (None when it does not)."""
    args = {"queries": queries, "prompts": prompts, "labels": labels}
    for name, value in args.items():
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return f"{name} must be a list, got {type(value).__name__}"
    lengths = {name: len(value) for name, value in args.items()}
    if len(set(lengths.values())) > 1:
        return f"lengths differ: {lengths}"
    for name in ("queries", "prompts"):
        if not all(isinstance(x, str) for x in args[name]):
            return f"every element of {name} must be a string"
    return None


def reward_func(queries, prompts, labels, **kwargs):
    options = dict(variant=os.environ.get("RERULE_REWARD_VARIANT", DEFAULT_VARIANT),
                   refusal_mode=os.environ.get("RERULE_REFUSAL_MODE", "rule"),
                   rouge_backend=os.environ.get("RERULE_ROUGE_BACKEND", "rouge"),
                   purge_boundary=os.environ.get("RERULE_PURGE_BOUNDARY", "word"),
                   purge_case_sensitive=os.environ.get("RERULE_PURGE_CASE_SENSITIVE", "0") in ("1", "true"))
    batch = len(queries) if isinstance(queries, (list, tuple)) else 1
    logs = {name: [0.0] * batch for name in LOG_NAMES}
    rewards = [0.0] * batch
    problem = call_problem(queries, prompts, labels)
    if problem is not None:
        print(f"[rerule reward] bad call, every reward 0: {problem}")
        logs["bad_call"] = [1.0] * batch
        queries = prompts = labels = []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        completion, found = completion_from_query(query, prompt, as_decoded=options["variant"] in PURGE_VARIANTS)
        if not found:
            logs["prompt_not_found"][i] = 1.0
            print(f"[rerule reward] reward 0: prompt not found in query {query[:80]!r}")
            continue
        try:
            r = make_scorer(**options)(completion, label)
        except Exception as e:  # never raise into OpenRLHF: score 0 and count it
            logs["bad_label" if isinstance(e, LabelError) else "reward_error"][i] = 1.0
            print(f"[rerule reward] reward 0 for label {str(label)[:120]!r}: {type(e).__name__}: {e}")
            continue
        rouge = getattr(r, "rouge", None)  # None: a forget prompt (<reject>, or any PURGE prompt)
        forget = rouge is None
        rewards[i] = r.reward
        logs["refused"][i] = float(r.refused)
        logs["named_target"][i] = float(bool(getattr(r, "named_target", False)))
        logs["rouge_l"][i] = 0.0 if forget else float(rouge)
        logs["mentioned"][i] = float(getattr(r, "mentioned", None) is not None)
        logs["is_forget"][i] = float(forget)
        logs["forget_refused"][i] = float(forget and r.refused)
        logs["boundary_refused"][i] = float(not forget and r.refused)
    rewards = torch.tensor(rewards, dtype=torch.float32)
    return {
        "rewards": rewards,
        "scores": rewards.clone(),
        "extra_logs": {name: torch.tensor(values, dtype=torch.float32) for name, values in logs.items()},
    }
