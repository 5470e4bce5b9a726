"""TOFU (Maini et al., 2024), matching locuslab/tofu `aggregate_eval_stat.py` and open-unlearning.

On disk (the files of the `locuslab/TOFU` dataset, JSON lines or JSON arrays), in one directory:
  {split}_perturbed.json            question, answer, paraphrased_answer, perturbed_answer[list]  (forget01/05/10)
  retain_perturbed.json             same fields
  real_authors_perturbed.json       question, answer, perturbed_answer[list]
  world_facts_perturbed.json        question, answer, perturbed_answer[list]
"""

import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import hmean, ks_2samp

from openrlhf_rerule.provenance import file_sha256, read_json_record

from .io import TEXT, TEXTS, EvalDataError, Problems, load_records
from .rouge import tofu_rouge_recall
from .scoring import LoadedModel, answer_nll, chat_prompt, generate

# name -> (file, answer the truth ratio compares against: paraphrased for forget/retain, the answer itself otherwise)
SETS = {
    "forget": ("{split}_perturbed.json", "paraphrased_answer"),
    "retain": ("retain_perturbed.json", "paraphrased_answer"),
    "real_authors": ("real_authors_perturbed.json", "answer"),
    "world_facts": ("world_facts_perturbed.json", "answer"),
}
UTILITY_SETS = ("retain", "real_authors", "world_facts")


# ---- formulas (pure numpy, tested against independent computations) -------------------------------------

def probability(nll: float) -> float:
    """Length-normalised answer probability exp(-mean token NLL)."""
    return math.exp(-nll)


def normalised_probability(true_nll: float, perturbed_nlls: list[float]) -> float:
    """p_true / (p_true + sum p_perturbed), the score of real authors / world facts."""
    p_true = math.exp(-true_nll)
    return p_true / (p_true + sum(math.exp(-x) for x in perturbed_nlls))


def truth_ratio(base_nll: float, perturbed_nlls: list[float]) -> float:
    """R = exp(-mean_j l_perturbed_j) / exp(-l_base): geometric-mean perturbed probability over the
    paraphrased (or true) answer's probability. Below 1 means the model prefers the correct answer."""
    return math.exp(base_nll - float(np.mean(perturbed_nlls)))


def truth_ratio_score(ratios, forget: bool) -> float:
    """Forget set: mean(min(R, 1/R)) (1 = indifferent, as a model that never saw the data).
    Other sets: mean(max(0, 1 - R)) (1 = always prefers the correct answer)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(r, 1 / r)) if forget else np.mean(np.maximum(0.0, 1 - r)))


def model_utility(stats: dict) -> float:
    """Harmonic mean of the nine retain / real authors / world facts x (probability, ROUGE-L, truth ratio)."""
    return float(hmean([stats[f"{name}_{metric}"] for name in UTILITY_SETS
                        for metric in ("prob", "rougeL_recall", "truth_ratio")]))


def forget_quality(unlearned_ratios, retain_model_ratios) -> dict:
    """Two-sample KS test between the forget-set truth ratios of the unlearned and of the retain model.
    (TOFU tests exp(l_pert - l_para) = 1/R; KS is invariant under that monotone map, so the p-value is equal.)"""
    res = ks_2samp(np.asarray(unlearned_ratios, float), np.asarray(retain_model_ratios, float))
    return {"forget_quality": float(res.pvalue), "ks_statistic": float(res.statistic)}


# ---- runner ----------------------------------------------------------------------------------------------

def load_tofu(data_dir, split: str = "forget01") -> dict:
    """{set name: records}, all four files checked before any model runs (one EvalDataError for all problems)."""
    problems, data = Problems(), {}
    for name, (pattern, base_key) in SETS.items():
        fields = {"question": TEXT, "answer": TEXT, base_key: TEXT, "perturbed_answer": TEXTS}
        data[name] = problems.load(Path(data_dir) / pattern.format(split=split), fields)
    problems.check()
    return data


def evaluate_tofu(lm: LoadedModel, data_dir, split: str = "forget01", max_new_tokens: int = 200,
                  retain_run: dict | None = None, prompt_template: str | None = None,
                  system_prompt: str | None = None) -> tuple[dict, list]:
    """Returns (summary, items). `retain_run`: `load_retain_run`'s result (the retain model's per-item forget
    truth ratios, checked against this split) to compute Forget Quality; when it covers the first k items only
    (a TOFU log capped at ds_size 300 for forget10), the unlearned model's first k items are compared, as TOFU
    does. The prompt is the question in the model's chat template (with `system_prompt` if given), or
    `prompt_template.format(question)` when given or when the tokenizer has no template, e.g. TOFU's Llama-2
    format "[INST] {} [/INST]"."""
    data = load_tofu(data_dir, split)
    tok = lm.tokenizer
    templated = prompt_template is None and bool(getattr(tok, "chat_template", None))
    summary, items = {"benchmark": "tofu", "split": split}, []
    for name, records in data.items():
        base_key = SETS[name][1]
        prompts = [chat_prompt(tok, r["question"], system=system_prompt) if templated
                   else (prompt_template or "{}").format(r["question"]) for r in records]
        n_pert = [len(r["perturbed_answer"]) for r in records]
        # One scoring pass over every (prompt, answer) pair of the set: answer, base, perturbed ones.
        pairs = [(p, r["answer"]) for p, r in zip(prompts, records)]
        pairs += [(p, r[base_key]) for p, r in zip(prompts, records)]
        pairs += [(p, a) for p, r in zip(prompts, records) for a in r["perturbed_answer"]]
        # A chat template writes its own BOS; a plain template gets the tokenizer's special tokens.
        nll = answer_nll(lm, [p for p, _ in pairs], [a for _, a in pairs], add_special_tokens=not templated,
                         desc=f"tofu {name} nll")
        n = len(records)
        true_nll, base_nll, pert_flat = nll[:n], nll[n:2 * n], nll[2 * n:]
        offsets = np.cumsum([0] + n_pert)
        pert_nll = [pert_flat[offsets[i]:offsets[i + 1]] for i in range(n)]
        generations = generate(lm, prompts, max_new_tokens, add_special_tokens=not templated,
                               desc=f"tofu {name} generate")

        probs, ratios, rouges = [], [], []
        for i, rec in enumerate(records):
            prob = (probability(true_nll[i]) if name in ("forget", "retain")
                    else normalised_probability(true_nll[i], pert_nll[i]))
            ratio = truth_ratio(base_nll[i], pert_nll[i])
            rouge = tofu_rouge_recall(generations[i].strip(), rec["answer"])
            probs.append(prob), ratios.append(ratio), rouges.append(rouge)
            items.append({"set": name, "index": i, "prompt": prompts[i], "question": rec["question"],
                          "answer": rec["answer"], "generation": generations[i], "answer_nll": true_nll[i],
                          "base_nll": base_nll[i], "perturbed_nll": pert_nll[i], "prob": prob,
                          "truth_ratio": ratio, "rougeL_recall": rouge})
        summary[f"{name}_prob"] = float(np.mean(probs))
        summary[f"{name}_rougeL_recall"] = float(np.mean(rouges))
        summary[f"{name}_truth_ratio"] = truth_ratio_score(ratios, forget=name == "forget")
        summary[f"{name}_n"] = n
    summary["model_utility"] = model_utility(summary)
    if retain_run is not None:
        forget_ratios = [it["truth_ratio"] for it in items if it["set"] == "forget"][:retain_run["items"]]
        summary.update(forget_quality(forget_ratios, retain_run["ratios"]))
        summary["retain_run"], summary["forget_quality_n"] = retain_run["path"], retain_run["items"]
    return summary, items


# TOFU's retain model for each forget split: trained on the rest of the data (retain99 for forget01, ...).
RETAIN_OF_SPLIT = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}


def load_retain_run(path, forget_questions: list[str], split: str) -> dict:
    """The retain model's per-item forget truth ratios, from the output directory (or items file) of an
    earlier `rerule eval tofu`, or from TOFU's own `eval_log_forget.json` (avg_paraphrased_loss and
    average_perturb_loss per index), as released with the TOFU retain models. Checked against this split's
    forget questions: the same number of items (a TOFU log capped by its ds_size may cover the first k), and the
    same questions in the same order where the file has them (TOFU logs: in generated_text's input). Returns
    {"ratios", "path", "items", "questions_checked", "sha256", "kind", "summary"}: kind "rerule eval" (with the
    run's tofu_summary.json beside the items, whose provenance the caller compares with its own settings; None when
    absent) or "tofu log" (no record of its settings)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tofu_items.json"
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict):
        for field in ("avg_paraphrased_loss", "average_perturb_loss"):
            if field not in data:
                raise EvalDataError(f"{path}: missing field '{field}' (expected TOFU's eval_log_forget.json)")
        keys = sorted(data["avg_paraphrased_loss"], key=int)
        ratios = [truth_ratio(data["avg_paraphrased_loss"][k], data["average_perturb_loss"][k]) for k in keys]
        texts = data.get("generated_text") or {}
        # TOFU's log holds the templated prompt ("[INST] question [/INST]"), not the bare question
        inputs = [texts[k][0] if k in texts and texts[k] else None for k in keys]
        match = lambda i, q: inputs[i] is not None and q.strip() in inputs[i]  # noqa: E731
        has_questions, kind, summary = bool(texts), "tofu log", None
    else:
        records = load_records(path)
        for k, r in enumerate(records, 1):
            if r.get("set") == "forget" and not isinstance(r.get("truth_ratio"), (int, float)):
                raise EvalDataError(f"{path}: record {k}: field 'truth_ratio' must be a number")
        forget = [r for r in records if r.get("set") == "forget"]
        if not forget:
            raise EvalDataError(f"{path}: no items with set 'forget'")
        ratios = [float(r["truth_ratio"]) for r in forget]
        match = lambda i, q: forget[i].get("question", "").strip() == q.strip()  # noqa: E731
        has_questions = all("question" in r for r in forget)
        kind, summary = "rerule eval", read_json_record(path.with_name("tofu_summary.json"))
    n, k = len(forget_questions), len(ratios)
    hint = f"TOFU's reference for {split} is the {RETAIN_OF_SPLIT[split]} model's eval_log_forget.json" \
        if split in RETAIN_OF_SPLIT else "use the retain model's run on this same forget split"
    if k > n or (k < n and not has_questions):
        raise EvalDataError(f"{path}: the retain run has {k} forget items, --split {split} has {n}: it was run on "
                            f"other items (a retain-set eval_log.json?); {hint}")
    for i, question in enumerate(forget_questions[:k] if has_questions else []):
        if not match(i, question):
            raise EvalDataError(f"{path}: item {i}: the retain run's question is not --split {split}'s "
                                f"{question[:60]!r}: it was run on other items; {hint}")
    return {"ratios": ratios, "path": str(path), "items": k, "questions_checked": has_questions,
            "sha256": file_sha256(path), "kind": kind, "summary": summary}
