"""Our unlearning-data token count (`rerule report --tokenizer`, openrlhf_rerule/eval/data_tokens.py) against the
PURGE authors' own `src/misc/token_budget_calculations/compute_token_budget.py` (github strzar/purge), run side by
side on their released `data/PURGE/<target>/qa_pairs.json` of the first N targets: theirs counts the first 100
question-answer pairs; ours counts the PURGE Stage 2 file `rerule data purge stage2` writes (the first 100
questions as listed, a repeat kept as a marked repeat) with the answers file beside it.

Their code is not part of this repository: fetch a copy anywhere and point at it.

    RERULE_PURGE_AUTHORS_DIR=/path/to/purge python benchmarks/purge_token_budget.py --tokenizer TOKENIZER_JSON

`--tokenizer` is a local tokenizer.json (Phi-3-mini's for the authors' numbers); without it a whitespace
word-level tokenizer stands in (every word one token), which checks the counting rule, not Phi-3's numbers.
"""

import argparse
import json
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

from openrlhf_rerule.data.purge import stage2_rows
from openrlhf_rerule.eval.data_tokens import count_tokens, load_tokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=None, help="a local tokenizer.json; default: whitespace word-level")
    ap.add_argument("--limit", type=int, default=20, help="the first N numbered targets, as the authors' --limit")
    args = ap.parse_args()
    authors = Path(os.environ.get("RERULE_PURGE_AUTHORS_DIR", ""))
    script = authors / "src/misc/token_budget_calculations/compute_token_budget.py"
    if not script.is_file():
        print(f"set RERULE_PURGE_AUTHORS_DIR to a copy of github strzar/purge (no {script})", file=sys.stderr)
        return 2
    theirs = runpy.run_path(str(script), run_name="authors")  # their functions, without running their main
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer)
    else:
        tok = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tmp = Path(tempfile.mkdtemp())
    total_theirs = total_ours = unexplained = 0
    for target in theirs["pick_first_n_numeric_dirs"](authors / "data" / "PURGE", args.limit):
        pairs = theirs["extract_qa_pairs"](json.loads((target / "qa_pairs.json").read_text(encoding="utf-8")))
        their_count = sum(theirs["count_pair_tokens"](tok, p) for p in pairs[:100])
        stage2 = tmp / "stage2.jsonl"
        rows = stage2_rows([q for q, _ in pairs], re.sub(r"^\d+_", "", target.name), ["x"])[:100]
        stage2.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        ours = count_tokens(tok, [stage2, target / "qa_pairs.json"])
        total_theirs, total_ours = total_theirs + their_count, total_ours + ours["tokens"]
        repeats = 100 - len({q for q, _ in pairs[:100]}) if len(pairs) >= 100 else 0
        why = "" if their_count == ours["tokens"] else \
            f"  DIFFERENT ({repeats} repeated question(s) in their first 100: they count the pair again, " \
            "we count each distinct pair once)" if repeats else "  DIFFERENT (unexplained)"
        unexplained += why.endswith("(unexplained)")
        print(f"{target.name}: theirs {their_count} ({len(pairs[:100])} pairs), ours {ours['tokens']} "
              f"({ours['rows']} pairs){why}")
    print(f"all: theirs {total_theirs}, ours {total_ours}; unexplained differences: {unexplained}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
