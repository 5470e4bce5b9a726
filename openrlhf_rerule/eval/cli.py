"""`rerule eval {tofu,muse,rwku,naturalness} --model DIR --data DIR --out DIR [options]`.
Writes OUT/{benchmark}_summary.json (aggregates) and OUT/{benchmark}_items.json (per item), atomically.
Every input file is read and checked before the model is loaded; all problems are reported together (exit 2).
Flags use OpenRLHF's underscore spelling (--batch_size); the hyphen spelling (--batch-size) is accepted too
(the `rerule` convention, openrlhf_rerule/cli/__init__.py)."""

import importlib.metadata
import json
import os
import sys
from pathlib import Path

from openrlhf_rerule.chat_endpoint import EndpointError
from openrlhf_rerule.cli_convention import Parser, UserError, number
from openrlhf_rerule.provenance import file_sha256, read_model_record, source_entry, tokenizer_fingerprint

from . import run_record
from .io import EvalDataError, Problems, files_read, finite_or_none, save_results


COUNT = number(int, minimum=1)  # batch sizes and token counts


def _add_common(parser, dtype_default: str, dtype_why: str):
    parser.add_argument("--model", required=True, help="local Hugging Face causal-LM directory")
    parser.add_argument("--data", required=True, help="benchmark data directory (layouts: docs/evaluation.md)")
    parser.add_argument("--out", required=True, help="output directory (one run = one directory)")
    parser.add_argument("--batch_size", type=COUNT, default=8, help="prompts per forward / generate call")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ...; auto: cuda if available")
    parser.add_argument("--dtype", default=dtype_default, choices=["auto", "fp32", "bf16", "fp16"],
                        help=f"weights' dtype; auto: the checkpoint's own{dtype_why}")
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm", "auto"],
                        help="hf: transformers' generate and forward passes, as the benchmarks' references; vllm: "
                             "greedy generation and plain log-probs through vLLM in this process (needs vllm "
                             "installed; parity and speed: docs/evaluation.md#engines), Min-K%%++ moments and "
                             "multiple-choice scores still through transformers; auto: vllm where it is installed, "
                             "else hf (what the plans pass; the summary records the engine that ran)")
    parser.add_argument("--vllm_gpu_memory_utilization", type=number(float, minimum=0.05, maximum=0.95),
                        default=0.5, help="--engine vllm on CUDA: vLLM's share of GPU memory (the rest holds "
                                          "transformers' copy when a metric needs it)")
    parser.add_argument("--cpu_threads", type=number(int, minimum=0), default=0,
                        help="torch.set_num_threads; 0 keeps torch's default (a tiny model on a busy CPU runs "
                             "fastest with 1)")
    parser.add_argument("--name", default=None, help="method name shown by `rerule report`; default: OUT's name")
    parser.add_argument("--check_only", action="store_true",
                        help="read and check every input as the run would (data, retain run, OUT, the model's record "
                             "when --model is a local folder; a hub id is not checked) and stop before loading a "
                             "model, writing nothing: what a plan runs before its training")
    parser.add_argument("--chat_template", default="auto", choices=["auto", "none"],
                        help="auto: prompts in the tokenizer's chat template when it has one (as the benchmarks' "
                             "references do for chat models); none: the raw prompt text, as PURGE's authors train "
                             "and sample (match the training run's `rerule train --chat_template`)")
    parser.add_argument("--allow_chat_template_mismatch", action="store_true",
                        help="evaluate even though the model's rerule_model.json says it was trained with the other "
                             "--chat_template setting (refused without this; recorded in the summary)")
    parser.add_argument("--overwrite_out", action="store_true",
                        help="OUT holds summaries of another model: remove them (and their items files) when this "
                             "run writes (refused without this; re-evaluating the same model needs no flag)")


def build_parser() -> Parser:
    parser = Parser(prog="rerule eval", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)

    tofu = sub.add_parser("tofu", help="TOFU: Forget Quality, Model Utility, Forget ROUGE-L", description=__doc__)
    _add_common(tofu, "auto", "")
    tofu.add_argument("--split", default="forget01", help="forget01 / forget05 / forget10")
    tofu.add_argument("--max_new_tokens", type=COUNT, default=200, help="greedy generation length")
    tofu.add_argument("--prompt_template", default=None,
                      help='plain prompt instead of the chat template, e.g. "[INST] {} [/INST]" (TOFU Llama-2)')
    tofu.add_argument("--system_prompt", default=None, help="system turn for the chat template")
    tofu.add_argument("--retain_run", default=None,
                      help="the retain model's `rerule eval tofu` OUT directory, or TOFU's eval_log_forget.json "
                           "of the retain model of this split (forget01: retain99, forget05: retain95, forget10: "
                           "retain90): enables Forget Quality; must cover this split's forget items")

    muse = sub.add_parser("muse", help="MUSE: VerbMem, KnowMem forget/retain, PrivLeak", description=__doc__)
    _add_common(muse, "fp32", "; fp32 as muse_bench, which loads with from_pretrained(dir) and no dtype")
    muse.add_argument("--corpus", default="books", choices=["books", "news"], help="sets AUC_retrain of PrivLeak")
    muse.add_argument("--metrics", nargs="+", default=["verbmem_f", "knowmem_f", "knowmem_r", "privleak"],
                      choices=["verbmem_f", "knowmem_f", "knowmem_r", "privleak"], help="the subset to run")
    muse.add_argument("--verbmem_max_new_tokens", type=COUNT, default=128, help="VerbMem generation length")
    muse.add_argument("--knowmem_max_new_tokens", type=COUNT, default=32, help="KnowMem generation length")
    muse.add_argument("--prompt_format", default="muse", choices=["muse", "rule_muse"],
                      help="VerbMem prompts: muse = as muse_bench; rule_muse = as RULE's evaluation and the data "
                           "commands' rule_muse formats, 'Completion: {text}\\nAnswer: ', cut at the first newline "
                           "(KnowMem is the same 10-shot prompt either way)")

    rwku = sub.add_parser("rwku", help="RWKU: forget levels 1-3, neighbours 1-2, MIA, utility", description=__doc__)
    _add_common(rwku, "auto", "")
    from .rwku import SUBSETS

    rwku.add_argument("--subsets", nargs="+", default=None, choices=list(SUBSETS), metavar="PART",
                      help=f"parts to run ({', '.join(SUBSETS)}), each then required in every target, e.g. "
                           "`--subsets forget neighbor` "
                           "for a quick run without MIA, fluency and the utility suites; default: forget and "
                           "neighbor plus every other part whose file a target has")
    rwku.add_argument("--max_new_tokens", type=COUNT, default=30, help="probe answer length")
    rwku.add_argument("--fluency_max_new_tokens", type=COUNT, default=256, help="fluency answer length")
    rwku.add_argument("--stop_at_newline", action="store_true",
                      help="cut each probe answer at its first newline (not what the reference does: its newline "
                           "stop id is None or <unk> on Llama tokenizers)")

    for bench in (tofu, muse, rwku):
        bench.add_argument("--unlearning_data", nargs="+", default=None, metavar="FILE",
                           help="the jsonl files this model was unlearned with (RULE/ReRULE: Stage 1 and Stage 2 "
                                "files; PURGE: its Stage 2 file and the answers file its entities came from): "
                                "recorded so that `rerule report` shows how many of their rows were dropped as "
                                "copies of evaluation probes or trained overlapping one (their .meta.json "
                                "sidecars), and `rerule report --tokenizer` counts their tokens (RWKU)")

    nat = sub.add_parser("naturalness", help="forget naturalness: readability, helpfulness, truth",
                         description=__doc__)
    _add_common(nat, "auto", "")
    nat.add_argument("--for_benchmark", default=None, choices=["rwku", "muse", "tofu"],
                     help="the benchmark whose model this is: writes naturalness_{benchmark}_summary.json, which "
                          "only that benchmark's table reads; none: naturalness_summary.json, naturalness table only")
    nat.add_argument("--judge", default="proxy", choices=["proxy", "hf", "http"],
                     help="proxy: offline keyword heuristic (not publishable); hf: local model (--judge_model DIR); "
                          "http: OpenAI-compatible endpoint (RERULE_JUDGE_BASE_URL, RERULE_JUDGE_MODEL, "
                          "RERULE_JUDGE_API_KEY)")
    nat.add_argument("--judge_model", default=None, help="judge model directory (hf) or model name (http)")
    nat.add_argument("--judge_cache", default=None, help="jsonl reply cache; default: OUT/judge_cache.jsonl")
    nat.add_argument("--refusal_mode", default="rule", choices=["rule", "strict"], help="proxy's refusal detector")
    nat.add_argument("--max_new_tokens", type=COUNT, default=128, help="answer length")
    return parser


def check_inputs(args) -> dict:
    """Read and check everything the run will read, before any model is loaded: one EvalDataError lists all.
    Returns what the summary's provenance records (run_record) and what the run reuses: the retain run, and the
    summaries of another model in OUT that --overwrite_out removes."""
    problems = Problems()
    is_model = (Path(args.model) / "config.json").is_file()
    if not is_model and not (args.check_only and not Path(args.model).exists()):
        problems.add(f"--model {args.model}: not a Hugging Face model directory (no config.json)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        problems.add(f"--out {args.out}: exists and is not a directory")
    data, retain = [], None
    try:
        if not Path(args.data).is_dir():
            raise EvalDataError(f"--data {args.data}: not a directory")
        with files_read() as files:
            if args.benchmark == "tofu":
                from .tofu import load_tofu

                data = load_tofu(args.data, args.split)
            elif args.benchmark == "muse":
                from .muse import load_muse

                data = load_muse(args.data, args.metrics)
            elif args.benchmark == "rwku":
                from .rwku import load_rwku

                data = load_rwku(args.data, args.subsets)
            else:
                from .naturalness import load_naturalness

                data = {"forget": load_naturalness(args.data)}
        if args.benchmark == "tofu" and args.retain_run:
            from .tofu import load_retain_run

            retain = load_retain_run(args.retain_run, [r["question"] for r in data["forget"]], args.split)
        if getattr(args, "unlearning_data", None):
            from .data_tokens import counted_texts

            counted_texts(args.unlearning_data)
    except (EvalDataError, UserError) as e:  # UserError: a training-data file that does not read (data.schema)
        problems.lines += str(e).splitlines()
    # vLLM's own distribution (its CUDA or its CPU build), not whatever answers to `import vllm` (a stub)
    has_vllm = bool(importlib.metadata.packages_distributions().get("vllm"))
    if args.engine == "auto":  # resolved here, so the summary's settings name the engine that ran
        args.engine = "vllm" if has_vllm else "hf"
    if args.engine == "vllm" and not has_vllm:
        problems.add(f"--engine vllm: vLLM is not installed in {sys.prefix}: install it (GPU: `pip install "
                     "vllm`; CPU: the e2e environment, `make install-e2e`) or use --engine hf")
    judge_model = getattr(args, "judge_model", None) or os.environ.get("RERULE_JUDGE_MODEL")
    if getattr(args, "judge", None) == "hf" and not (judge_model and (Path(judge_model) / "config.json").is_file()):
        problems.add(f"--judge hf: --judge_model {judge_model}: not a Hugging Face model directory (no config.json)")
    if getattr(args, "judge", None) == "http" and not (os.environ.get("RERULE_JUDGE_BASE_URL") and judge_model):
        problems.add("--judge http needs RERULE_JUDGE_BASE_URL and RERULE_JUDGE_MODEL (or --judge_model)")

    # What made this run, and what it must agree with (issue 25): the model's record, OUT, the retain run.
    try:
        fingerprint = tokenizer_fingerprint(args.model) if is_model else None
    except (ValueError, OSError) as e:  # a tokenizer.json that does not read: the model would not load either
        fingerprint = None
        problems.add(f"--model {args.model}: its tokenizer files do not read ({e})")
    record = read_model_record(args.model) if is_model else None
    if (record or {}).get("unreadable"):
        print(f"rerule eval {args.benchmark}: warning: {record['unreadable']}: the model's record does not read, "
              "so its chat template is not checked", file=sys.stderr)
    model = {"path": str(Path(args.model).resolve()), "record": record, "tokenizer": fingerprint}
    settings = run_record.settings(args, fingerprint)
    overrides = []
    mismatch = run_record.chat_template_mismatch(args, record, fingerprint, settings["chat_template_applied"])
    if mismatch and args.allow_chat_template_mismatch:
        overrides.append(f"{mismatch} (--allow_chat_template_mismatch)")
    elif mismatch:
        fix = f"--prompt_template {json.dumps(record['input_template'])}" if record.get("input_template") \
            else f"--chat_template {record['chat_template']}"
        problems.add(f"--model {args.model}: {mismatch}: not the prompts it was trained on; pass {fix}, or "
                     "--allow_chat_template_mismatch to evaluate anyway (recorded in the summary)")
    if retain is not None:
        line = run_record.retain_mismatch(retain, settings, fingerprint)
        if line:
            problems.add(line)
    stale = run_record.other_models(args.out, (model["path"], (fingerprint or {}).get("sha256")))
    if stale and not args.overwrite_out:
        names = ", ".join(path.name for path, _ in stale)
        problems.add(f"--out {args.out}: holds {names} of another model ({stale[0][1]}); this run evaluates "
                     f"{model['path']}: one output directory per model, or --overwrite_out to remove that "
                     "model's summaries and items there")
    problems.check()
    counts = {k: {part: len(v) for part, v in recs.items()} if isinstance(recs, dict) else len(recs)
              for k, recs in data.items()}  # RWKU: per target, per file
    return {"model": model, "settings": settings, "items": counts, "retain": retain, "stale": stale,
            "overrides": overrides,
            "data": {"dir": str(Path(args.data).resolve()),
                     "files": [{"path": str(p.resolve()), "sha256": file_sha256(p)} for p in dict.fromkeys(files)]}}


def run(args) -> tuple[dict, list, dict]:
    """(summary, items, what check_inputs found)."""
    checked = check_inputs(args)
    from .scoring import load_model

    if args.cpu_threads:
        import torch

        torch.set_num_threads(args.cpu_threads)
    device = None if args.device == "auto" else args.device
    lm = load_model(args.model, device=device, batch_size=args.batch_size, dtype=args.dtype,
                    chat_template=args.chat_template, engine=args.engine,
                    gpu_memory_utilization=args.vllm_gpu_memory_utilization)
    if args.benchmark == "tofu":
        from .tofu import evaluate_tofu

        return (*evaluate_tofu(lm, args.data, args.split, args.max_new_tokens, checked["retain"],
                               args.prompt_template, args.system_prompt), checked)
    if args.benchmark == "muse":
        from .muse import evaluate_muse

        return (*evaluate_muse(lm, args.data, args.corpus, args.metrics, args.verbmem_max_new_tokens,
                               args.knowmem_max_new_tokens, args.prompt_format), checked)
    if args.benchmark == "rwku":
        from .rwku import evaluate_rwku

        return (*evaluate_rwku(lm, args.data, args.max_new_tokens, args.fluency_max_new_tokens,
                               args.stop_at_newline, args.subsets), checked)
    from .naturalness import evaluate_naturalness, judge_from_env

    judge = None if args.judge == "proxy" else judge_from_env(
        args.judge, args.judge_cache or Path(args.out) / "judge_cache.jsonl", args.judge_model)
    return (*evaluate_naturalness(lm, args.data, judge, args.max_new_tokens, args.refusal_mode,
                                  args.for_benchmark), checked)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check_only:
            checked = check_inputs(args)
            model = "checked" if checked["model"]["tokenizer"] else f"not checked ({args.model}: not a local folder)"
            print(f"rerule eval {args.benchmark}: inputs checked, nothing evaluated (--check_only): items "
                  f"{checked['items']}; retain run {'checked' if checked['retain'] else 'none'}; model {model}")
            return 0
        summary, items, checked = run(args)
    except (EvalDataError, OSError, EndpointError) as e:  # bad data or settings, judge endpoint failing
        for line in str(e).splitlines():
            print(f"rerule eval {args.benchmark}: {line}", file=sys.stderr)
        return 2
    summary["name"] = args.name  # None: `rerule report` shows the run directory's name
    summary["model"] = str(args.model)
    summary["data"] = str(args.data)
    summary["dtype"] = args.dtype
    summary["chat_template"] = args.chat_template
    unlearning_data = getattr(args, "unlearning_data", None) or []
    if unlearning_data:
        summary["unlearning_data"] = [str(Path(f).resolve()) for f in unlearning_data]
    retain = checked["retain"]
    if retain is not None:
        checked_settings = bool((retain["summary"] or {}).get("provenance"))
        retain = {"path": str(Path(retain["path"]).resolve()), "sha256": retain["sha256"], "kind": retain["kind"],
                  "items": retain["items"], "settings_checked": checked_settings,
                  "note": None if checked_settings else run_record.UNCHECKED[retain["kind"]]}
        if retain["note"]:
            summary["forget_quality_note"] = retain["note"]
    for path, model in checked["stale"]:  # --overwrite_out: another model's results leave the folder
        for stale in (path, path.with_name(path.name.replace("_summary.json", "_items.json"))):
            if stale.is_file():
                stale.unlink()
                checked["overrides"].append(f"removed {stale.name} of {model} (--overwrite_out)")
                print(f"rerule eval {args.benchmark}: removed {stale} ({model})", file=sys.stderr)
    # One block, stable field names (docs/evaluation.md#what-a-summary-records): what made these numbers.
    summary["provenance"] = {"command": f"rerule eval {args.benchmark}", "model": checked["model"],
                             "settings": checked["settings"], "items": checked["items"], "data": checked["data"],
                             "retain_run": retain, "unlearning_data": [source_entry(f) for f in unlearning_data],
                             "overrides": checked["overrides"]}
    tag = getattr(args, "for_benchmark", None)
    name = f"{args.benchmark}_{tag}" if tag else args.benchmark
    summary_path, _ = save_results(args.out, name, summary, items)
    print(json.dumps(finite_or_none({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}), indent=2))
    print(f"wrote {summary_path} and {name}_items.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
