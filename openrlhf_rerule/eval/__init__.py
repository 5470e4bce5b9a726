"""Evaluation: TOFU, MUSE, RWKU (each matching its reference implementation) and forget naturalness.

Library entry points (each returns (summary: dict, items: list)):
    lm = load_model(model_dir)
    evaluate_tofu(lm, data_dir, split="forget01", retain_run=None)
    evaluate_muse(lm, data_dir, corpus="books")                  # load_model(..., dtype="fp32") as muse_bench
    evaluate_rwku(lm, data_dir, subsets=None, stop_at_newline=False)
    evaluate_naturalness(lm, data_dir, judge=None, for_benchmark=None)
load_tofu / load_muse / load_rwku / load_naturalness read and check a data directory without a model
(EvalDataError lists every problem).
Command line: `rerule eval {tofu,muse,rwku,naturalness}` and `rerule report` (docs/evaluation.md).
The metric formulas import torch / numpy / scipy / rouge only."""

import importlib

# Names resolve lazily so that `rerule report` (tables, plots) never pays for importing torch.
_EXPORTS = {
    "io": ["EvalDataError", "load_records", "save_results", "write_json_atomic"],
    "rouge": ["muse_rouge_f1", "rwku_rouge_recall", "tofu_rouge_recall"],
    "scoring": ["LoadedModel", "answer_nll", "chat_prompt", "generate", "load_model", "next_token_logprobs",
                "text_logprobs", "token_logprobs"],
    "tofu": ["evaluate_tofu", "forget_quality", "model_utility", "load_retain_run", "load_tofu"],
    "muse": ["evaluate_muse", "load_muse"],
    "rwku": ["evaluate_rwku", "load_rwku"],
    "naturalness": ["evaluate_naturalness", "score_responses", "load_naturalness"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
