"""`rerule eval` through transformers and through vLLM, side by side in one run: wall time, the share of items whose
greedy text is identical, and every metric's difference between the two engines.

    .venv-e2e/bin/python benchmarks/eval_engines.py --model .venv-e2e/models/SmolLM2-135M-Instruct \
        --rwku RULE-Unlearn/data/RWKU/Target/2_Confucius --out /tmp/eval_engines

Each evaluation is the real command (`python -m openrlhf_rerule.eval.cli`) in its own process, so engine start-up
and model loading count, as they do for a user. The engines alternate (hf, vllm, hf, vllm, ...) over --repeats, so
load on a shared machine falls on both; the table gives medians and the ratio of medians, of wall time and of CPU
time (user + system of the run, what it cost whatever else the machine ran). Needs vLLM: run it from
the e2e environment (.venv-e2e) or any environment with vllm. Measured numbers: docs/evaluation.md#engines."""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Per benchmark: the items' field naming their part, and the fields holding greedy text.
PART_FIELD = {"rwku": "probe", "tofu": "set", "muse": "metric"}
TEXT_FIELDS = ("prediction", "output", "generation")


def subset_copy(src: Path, dst: Path, limit: int) -> Path:
    """The data folder with every .json / .jsonl file cut to its first `limit` records (JSON lists and JSON lines
    alike), other files left out: a quick TOFU / MUSE subset in the benchmark's own layout."""
    for path in sorted(src.rglob("*.json*")):
        if path.suffix not in (".json", ".jsonl"):
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        try:
            rows = json.loads(text)
            target.write_text(json.dumps(rows[:limit] if isinstance(rows, list) else rows))
        except json.JSONDecodeError:  # JSON lines
            target.write_text("".join(line + "\n" for line in text.splitlines()[:limit]))
    return dst


def evaluate(bench: str, engine: str, args, data: str, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one `rerule eval` run; its output goes to OUT/run.log (a failing
    run stops the benchmark). CPU seconds say what the run cost when the machine is shared and wall time is not."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "openrlhf_rerule.eval.cli", bench, "--model", args.model, "--data", data,
           "--out", str(out), "--engine", engine, "--cpu_threads", str(args.cpu_threads),
           "--batch_size", str(args.batch_size), *extra]
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with open(out / "run.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"eval_engines: {' '.join(cmd)} exited {done.returncode}; see {out / 'run.log'}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """Every numeric metric of a summary, flattened (RWKU's per_target included), provenance left out."""
    flat = {}
    for key, value in summary.items():
        if key == "provenance":
            continue
        if isinstance(value, dict):
            flat.update(numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[prefix + key] = float(value)
    return flat


def compare(bench: str, hf_dir: Path, vllm_dir: Path, tokenizer) -> dict:
    """Per part: items, items with identical greedy text, new tokens generated (transformers' side); per metric:
    both values and their difference."""
    items = [json.loads((d / f"{bench}_items.json").read_text()) for d in (hf_dir, vllm_dir)]
    parts: dict[str, dict] = {}
    for a, b in zip(*items):
        fields = [f for f in TEXT_FIELDS if isinstance(a.get(f), str)]
        if not fields:
            continue
        part = parts.setdefault(str(a.get(PART_FIELD[bench])), {"items": 0, "identical": 0, "new_tokens": 0})
        part["items"] += 1
        part["identical"] += all(a[f] == b.get(f) for f in fields)
        part["new_tokens"] += len(tokenizer(a[fields[0]], add_special_tokens=False)["input_ids"])
    sums = [numbers(json.loads((d / f"{bench}_summary.json").read_text())) for d in (hf_dir, vllm_dir)]
    metrics = {k: {"hf": sums[0][k], "vllm": sums[1][k], "diff": sums[1][k] - sums[0][k]}
               for k in sums[0] if k in sums[1]}
    return {"parts": parts, "metrics": metrics}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="local model folder")
    p.add_argument("--rwku", help="an RWKU target folder (every subset its files hold)")
    p.add_argument("--rwku_subsets", nargs="+", default=None, metavar="PART",
                   help="RWKU parts to run (`rerule eval rwku --subsets`); default: every part the target has")
    p.add_argument("--tofu", help="a TOFU data folder (with --split)")
    p.add_argument("--split", default="forget01")
    p.add_argument("--muse", help="a MUSE data folder (books layout)")
    p.add_argument("--limit", type=int, default=None,
                   help="TOFU / MUSE: the first N records of every file (RWKU always runs whole; MUSE's few-shot "
                        "files need N >= 10)")
    p.add_argument("--repeats", type=int, default=1, help="runs per engine, alternating")
    p.add_argument("--cpu_threads", type=int, default=1,
                   help="both engines' torch threads (1: transformers on a busy 2-core CPU runs fastest with one)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rwku_extra = ["--subsets", *args.rwku_subsets] if args.rwku_subsets else []
    benches = [(b, d, x) for b, d, x in (("rwku", args.rwku, rwku_extra), ("tofu", args.tofu, ["--split", args.split]),
                                         ("muse", args.muse, [])) if d]
    if not benches:
        p.error("name at least one of --rwku, --tofu, --muse")
    out, report = Path(args.out), {"model": str(Path(args.model).resolve()), "cpu_threads": args.cpu_threads,
                                   "benchmarks": {}}
    for bench, data, extra in benches:
        if args.limit and bench != "rwku":
            data = str(subset_copy(Path(data), out / "data" / bench, args.limit))
        seconds, cpu = {"hf": [], "vllm": []}, {"hf": [], "vllm": []}
        for r in range(args.repeats):
            for engine in seconds:
                wall, used = evaluate(bench, engine, args, data, out / bench / f"{engine}{r}", extra)
                seconds[engine].append(wall)
                cpu[engine].append(used)
                print(f"{bench} {engine} run {r + 1}: {wall:.1f} s wall, {used:.1f} s CPU", flush=True)
        found = compare(bench, out / bench / "hf0", out / bench / "vllm0", tokenizer)
        medians = {e: statistics.median(s) for e, s in seconds.items()}
        cpu_medians = {e: statistics.median(s) for e, s in cpu.items()}
        report["benchmarks"][bench] = {"data": str(Path(data).resolve()), "seconds": seconds, "cpu_seconds": cpu,
                                       "median": medians, "ratio": medians["hf"] / medians["vllm"],
                                       "cpu_ratio": cpu_medians["hf"] / cpu_medians["vllm"], **found}
        print(f"\n## {bench}: transformers {medians['hf']:.1f} s wall / {cpu_medians['hf']:.1f} s CPU, vLLM "
              f"{medians['vllm']:.1f} s / {cpu_medians['vllm']:.1f} s (medians of {args.repeats}): "
              f"{medians['hf'] / medians['vllm']:.2f}x wall, {cpu_medians['hf'] / cpu_medians['vllm']:.2f}x CPU\n")
        print("| part | items | identical greedy text | new tokens (transformers) |\n|---|---|---|---|")
        for part, c in found["parts"].items():
            print(f"| {part} | {c['items']} | {c['identical']} ({c['identical'] / c['items']:.0%}) | "
                  f"{c['new_tokens']} |")
        print("\n| metric | transformers | vLLM | vLLM - transformers |\n|---|---|---|---|")
        for key, m in found["metrics"].items():
            print(f"| {key} | {m['hf']:.4f} | {m['vllm']:.4f} | {m['diff']:+.4f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_engines.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out / 'eval_engines.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
