"""Multiple choice through transformers (RWKU's MMLU: 5-shot prompts, the next token's A/B/C/D log-probs): logits at
each prompt's last token only (`logits_to_keep`, what `rerule eval` does) against the whole [B, T, V] logits indexed
afterwards (what it did before), side by side in one run: wall time and peak memory, and the largest difference of
the log-probs between the two.

    .venv/bin/python benchmarks/multiple_choice_logits.py --model .venv-e2e/models/SmolLM2-135M-Instruct \
        --mmlu RULE-Unlearn/data/RWKU/Target/2_Confucius/retain_mmlu.json

Each measurement is a fresh process (peak RSS is per process: ru_maxrss), the two ways alternating over --repeats so
that load on a shared machine falls on both; the table gives medians and the ratio of medians."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

WAYS = ("whole logits", "logits_to_keep")


def measure(args) -> None:
    """One process: load, score --limit prompts one way, print a JSON line."""
    import torch

    from openrlhf_rerule.eval import scoring
    from openrlhf_rerule.eval.rwku_utility import mmlu_prompt

    torch.set_num_threads(args.threads)
    lm = scoring.load_model(args.model, batch_size=args.batch_size, device="cpu")
    records = json.load(open(args.mmlu))[:args.limit]
    prompts = [scoring.chat_prompt(lm.tokenizer, mmlu_prompt(r)) + "Answer:" for r in records]
    candidates = [lm.tokenizer.encode(" " + c, add_special_tokens=False)[-1] for c in "ABCD"]
    start = time.perf_counter()
    with torch.no_grad():
        if args.way == "logits_to_keep":
            out = scoring.next_token_logprobs(lm, prompts, candidates)
        else:  # the whole [B, T, V] logits, each row's last real position picked afterwards
            sequences = [lm.tokenizer(p)["input_ids"] for p in prompts]
            out = torch.empty(len(prompts), len(candidates))
            for idx, _, lengths, logits in scoring._forward(lm, sequences, "whole logits"):
                for row, i in enumerate(idx):
                    out[i] = torch.log_softmax(logits[row, lengths[row] - 1].float(), dim=-1)[candidates]
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "logprobs": out.tolist()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mmlu", required=True, help="RWKU's retain_mmlu.json of a target")
    parser.add_argument("--limit", type=int, default=64, help="prompts scored per measurement")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.way:
        return measure(args)
    results = {way: [] for way in WAYS}
    for _ in range(args.repeats):
        for way in WAYS:
            out = subprocess.run([sys.executable, *sys.argv, "--way", way], capture_output=True, text=True, check=True)
            results[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch

    diff = max(float((torch.tensor(a["logprobs"]) - torch.tensor(b["logprobs"])).abs().max())
               for a, b in zip(*results.values()))
    med = {way: {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_rss_gb")}
           for way, runs in results.items()}
    print(f"{args.limit} prompts, batch {args.batch_size}, {args.threads} threads, {args.repeats} repeats (medians)\n")
    print("| | scoring (s) | peak RSS (GB) |\n|---|---|---|")
    for way in WAYS:
        print(f"| {way} | {med[way]['seconds']:.1f} | {med[way]['peak_rss_gb']:.2f} |")
    a, b = (med[w] for w in WAYS)
    print(f"| ratio | {a['seconds'] / b['seconds']:.2f}× | {a['peak_rss_gb'] / b['peak_rss_gb']:.2f}× |")
    print(f"\nlargest log-prob difference between the two ways: {diff:.2e}")


if __name__ == "__main__":
    main()
