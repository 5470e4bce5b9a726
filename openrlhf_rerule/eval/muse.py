"""MUSE (Shi et al., 2024), matching swj0419/muse_bench `eval.py` and its `metrics/`.

On disk (the repository's `data/{books,news}/` layout; JSON arrays or JSON lines):
  verbmem/forget.json                       {"prompt", "gt"}
  knowmem/forget_qa.json, retain_qa.json    {"question", "answer"}
  knowmem/forget_qa_icl.json, retain_qa_icl.json   the few-shot examples {"question", "answer"}
  privleak/forget.json, holdout.json (retain.json unused by PrivLeak)   strings, or {"text"}
Prompts are raw text (no chat template), tokenised with special tokens, as the reference does.
"""

from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from openrlhf_rerule.data.templates import few_shot_block, format_prompt

from .io import TEXT, Problems
from .rouge import muse_rouge_f1
from .scoring import LoadedModel, generate, text_logprobs

AUC_RETRAIN = {"books": 0.5393, "news": 0.4772}
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")
METRICS = ("verbmem_f", "knowmem_f", "knowmem_r", "privleak")
QA = {"question": TEXT, "answer": TEXT}
# metric -> {key: (file, fields, kind)}
FILES = {
    "verbmem_f": {"verbmem": ("verbmem/forget.json", {"prompt": TEXT, "gt": TEXT}, dict)},
    "knowmem_f": {"forget_qa": ("knowmem/forget_qa.json", QA, dict),
                  "forget_icl": ("knowmem/forget_qa_icl.json", QA, dict)},
    "knowmem_r": {"retain_qa": ("knowmem/retain_qa.json", QA, dict),
                  "retain_icl": ("knowmem/retain_qa_icl.json", QA, dict)},
    "privleak": {"forget_texts": ("privleak/forget.json", None, str),
                 "holdout_texts": ("privleak/holdout.json", None, str)},
}


# ---- formulas ---------------------------------------------------------------------------------------------

def knowmem_prompt(question: str, icl: list[dict]) -> str:
    """MUSE's few-shot KnowMem prompt: the same strings as the training data's `rule_muse` prompt format."""
    return format_prompt(question, "qa", few_shot_block(icl))


def verbmem_prompt(prompt: str, prompt_format: str) -> str:
    """muse_bench gives VerbMem prompts as they are; RULE's evaluation (verl/eval/eval_muse/verbmem.py) wraps them
    as its training's completion rows, "Completion: {text}\nAnswer: ", and stops at the first newline."""
    return format_prompt(prompt, "completion") if prompt_format == "rule_muse" else prompt


def cut_at_stops(text: str, stops=KNOWMEM_STOPS) -> str:
    """Keep what precedes the first of each stop string in turn (the reference's prefix-before-words)."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def min_k_score(logprobs, k: float = 0.4) -> float:
    """Min-K% Prob: minus the mean of the lowest int(k * T) token log-probs (higher = less likely)."""
    lp = np.sort(np.asarray(logprobs, dtype=float))[: int(len(logprobs) * k)]
    return float(-np.mean(lp)) if len(lp) else float("nan")


def mia_auc(forget_scores, holdout_scores) -> float:
    """ROC AUC with forget = 0, holdout = 1 and score = -(Min-K), as the reference's sweep(ppl, y).
    Mann-Whitney U / (n0 n1) is exactly the ROC AUC with ties counted one half."""
    label1 = -np.asarray(holdout_scores, float)
    label0 = -np.asarray(forget_scores, float)
    return float(mannwhitneyu(label1, label0).statistic / (len(label1) * len(label0)))


def privleak(auc: float, auc_retrain: float) -> float:
    """(AUC - AUC_retrain) / AUC_retrain x 100: 0 is a retrained model, negative = under-, positive = over-unlearned."""
    return (auc - auc_retrain) / auc_retrain * 100


# ---- runner ---------------------------------------------------------------------------------------------------

def load_muse(data_dir, metrics=METRICS) -> dict:
    """{key: records} for the files the chosen metrics read, all checked before any model runs (one
    EvalDataError listing every problem)."""
    problems, data = Problems(), {}
    for metric in metrics:
        for key, (fname, fields, kind) in FILES[metric].items():
            data[key] = problems.load(Path(data_dir) / fname, fields, kind)
    problems.check()
    return data


def _verbmem(lm, records, max_new_tokens, prompt_format="muse"):
    outputs = generate(lm, [verbmem_prompt(r["prompt"], prompt_format) for r in records], max_new_tokens,
                       add_special_tokens=True, desc="muse verbmem")
    if prompt_format == "rule_muse":  # greedy decoding: cutting afterwards equals stopping there
        outputs = [out.split("\n")[0] for out in outputs]
    items = []
    for r, out in zip(records, outputs):
        # The reference cuts the ground truth to its first max_new_tokens tokens (special tokens included).
        gt_ids = lm.tokenizer(r["gt"], add_special_tokens=True)["input_ids"][:max_new_tokens]
        gt_short = lm.tokenizer.decode(gt_ids, skip_special_tokens=True)
        items.append({"metric": "verbmem_f", "prompt": r["prompt"], "gt": gt_short, "output": out,
                      "rougeL_f1": muse_rouge_f1(out, gt_short)})
    return float(np.mean([it["rougeL_f1"] for it in items]) * 100), items


def _knowmem(lm, qa, icl, which, max_new_tokens):
    prompts = [knowmem_prompt(r["question"], icl) for r in qa]
    outputs = generate(lm, prompts, max_new_tokens, add_special_tokens=True, desc=f"muse knowmem {which}")
    items = []
    for r, out in zip(qa, outputs):
        answer = cut_at_stops(out)
        items.append({"metric": f"knowmem_{which[0]}", "question": r["question"], "answer": r["answer"],
                      "output": answer, "rougeL_f1": muse_rouge_f1(answer, r["answer"])})
    return float(np.mean([it["rougeL_f1"] for it in items]) * 100), items


def _privleak(lm, forget, holdout, corpus):
    scores = {name: [min_k_score(lp.numpy()) for lp in text_logprobs(lm, texts, desc=f"muse privleak {name}")]
              for name, texts in (("forget", forget), ("holdout", holdout))}
    auc = mia_auc(scores["forget"], scores["holdout"])
    items = [{"metric": "privleak", "split": name, "index": i, "min_40": s}
             for name, vals in scores.items() for i, s in enumerate(vals)]
    return auc, privleak(auc, AUC_RETRAIN[corpus]), items


def evaluate_muse(lm: LoadedModel, data_dir, corpus: str = "books", metrics=METRICS,
                  verbmem_max_new_tokens: int = 128, knowmem_max_new_tokens: int = 32,
                  prompt_format: str = "muse") -> tuple[dict, list]:
    if corpus not in AUC_RETRAIN:
        raise ValueError(f"--corpus must be one of {sorted(AUC_RETRAIN)}, got {corpus!r}")
    data = load_muse(data_dir, metrics)
    summary, items = {"benchmark": "muse", "corpus": corpus, "prompt_format": prompt_format}, []
    if "verbmem_f" in metrics:
        summary["verbmem_f"], its = _verbmem(lm, data["verbmem"], verbmem_max_new_tokens, prompt_format)
        items += its
    for which in ("forget", "retain"):
        if f"knowmem_{which[0]}" in metrics:
            summary[f"knowmem_{which[0]}"], its = _knowmem(lm, data[f"{which}_qa"], data[f"{which}_icl"], which,
                                                          knowmem_max_new_tokens)
            items += its
    if "privleak" in metrics:
        summary["privleak_auc"], summary["privleak"], its = _privleak(lm, data["forget_texts"],
                                                                      data["holdout_texts"], corpus)
        items += its
    if "knowmem_r" in summary:
        summary["utility"] = summary["knowmem_r"]  # the ReRULE/RULE tables' "Utility" column
    sizes = {"verbmem_f_n": "verbmem", "knowmem_f_n": "forget_qa", "knowmem_r_n": "retain_qa",
             "privleak_forget_n": "forget_texts", "privleak_holdout_n": "holdout_texts"}
    summary.update({key: len(data[name]) for key, name in sizes.items() if name in data})
    return summary, items  # subset or not: `rerule report`, against published.RELEASED_ITEMS
