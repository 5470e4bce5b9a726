"""Precision and recall of the train / evaluation overlap check (openrlhf_rerule/data/overlap.py) on hand-labelled
pairs of the authors' released files. The labels (benchmarks/overlap_labels.jsonl) hold references only: for each
pair the training file and 1-based record, the evaluation file and record, a class and a label ("leak": the
training prompt copies or nearly copies the probe; "not": it does not). The texts are read from the releases:

    python benchmarks/overlap_detector.py --rule path/to/RULE-Unlearn --purge path/to/purge --tofu path/to/TOFU

`rule:` paths are in github xwtMarch/RULE-Unlearn, `purge:` in github strzar/purge (its data/RWKU copy of RWKU),
`tofu:` in a folder of TOFU's files (forget01.json, retain_perturbed.json). A pair with a "format" is compared as
Stage 2 trains it: the training prompt put in RULE's MUSE few-shot prompt (`--prompt_format rule_muse`, the block of
its "icl" file). Prints precision and recall over all pairs and per class, and every miss.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from openrlhf_rerule.data.overlap import Prompt, find_overlaps, read_prompts
from openrlhf_rerule.data.schema import read_records
from openrlhf_rerule.data.templates import few_shot_block, format_prompt

LABELS = Path(__file__).with_name("overlap_labels.jsonl")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rule", required=True, help="a checkout of github xwtMarch/RULE-Unlearn")
    ap.add_argument("--purge", required=True, help="a checkout of github strzar/purge")
    ap.add_argument("--tofu", required=True, help="a folder with TOFU's forget01.json and retain_perturbed.json")
    ap.add_argument("--labels", default=str(LABELS))
    args = ap.parse_args(argv)
    roots = {"rule": Path(args.rule), "purge": Path(args.purge), "tofu": Path(args.tofu)}
    files: dict[str, list[Prompt]] = {}

    def prompt(ref: list) -> Prompt:
        name, item = ref
        root, path = name.split(":", 1)
        if name not in files:
            files[name] = read_prompts(roots[root] / path)
        return files[name][item - 1]

    counts: Counter = Counter()  # (class, label, detected)
    misses = []
    for line in Path(args.labels).read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        train, probe = prompt(pair["train"]), prompt(pair["probe"])
        if pair.get("format") == "rule_muse":
            icl_root, icl_path = pair["icl"].split(":", 1)
            block = few_shot_block(read_records(roots[icl_root] / icl_path))
            train = Prompt(train.file, train.line, format_prompt(train.text, "qa", block, "<s>"), train.item)
        detected = bool(find_overlaps([train], [probe]))
        counts[pair["class"], pair["label"], detected] += 1
        if detected != (pair["label"] == "leak"):
            misses.append(f"{'false positive' if detected else 'missed'} ({pair['class']}): "
                          f"{pair['train'][0]} #{pair['train'][1]} ~ {pair['probe'][0]} #{pair['probe'][1]}")

    def line_for(name: str, keep) -> str:
        tp = sum(n for (c, label, hit), n in counts.items() if keep(c) and label == "leak" and hit)
        fn = sum(n for (c, label, hit), n in counts.items() if keep(c) and label == "leak" and not hit)
        fp = sum(n for (c, label, hit), n in counts.items() if keep(c) and label == "not" and hit)
        tn = sum(n for (c, label, hit), n in counts.items() if keep(c) and label == "not" and not hit)
        precision = f"{tp / (tp + fp):.3f}" if tp + fp else "-"
        recall = f"{tp / (tp + fn):.3f}" if tp + fn else "-"
        return f"{name:<20} {tp + fn:>5} {fp + tn:>5} {tp:>4} {fn:>4} {fp:>4} {precision:>9} {recall:>7}"

    print(f"{'class':<20} {'leaks':>5} {'not':>5} {'TP':>4} {'FN':>4} {'FP':>4} {'precision':>9} {'recall':>7}")
    for name in sorted({c for c, _, _ in counts}):
        print(line_for(name, lambda c, name=name: c == name))
    print(line_for("all", lambda c: True))
    print(line_for("all but paraphrase", lambda c: c != "paraphrase"))
    for miss in misses:
        print(miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
