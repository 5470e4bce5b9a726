"""`python -m openrlhf_rerule.rewards`: the refusal detector's command line (the detector: refusal.py).

    python -m openrlhf_rerule.rewards "I don't know." --mode strict
    python -m openrlhf_rerule.rewards --eval tests/data/refusal_eval.jsonl --show_errors
"""

import sys

from openrlhf_rerule.cli_convention import Parser, UserError, user_errors

from .refusal import MODES, evaluate, is_refusal


@user_errors("python -m openrlhf_rerule.rewards")
def main(argv=None) -> int:
    parser = Parser(prog="python -m openrlhf_rerule.rewards",
                    description="Refusal detector: classify a text, or score both modes on a labelled jsonl.")
    parser.add_argument("text", nargs="?", help="a completion to classify")
    parser.add_argument("--mode", choices=MODES, default="rule", help="detector")
    parser.add_argument("--eval", metavar="FILE", help='labelled jsonl: {"text": str, "refusal": bool} per line')
    parser.add_argument("--show_errors", action="store_true", help="also list the misclassified texts")
    args = parser.parse_args(argv)
    if args.eval:
        try:
            results = evaluate(args.eval)
        except (OSError, UnicodeDecodeError, ValueError) as e:  # unreadable file, bad JSON, bad row: the input's fault
            raise UserError(f"--eval {args.eval}: {e}") from None
        n_refusals = results["rule"]["tp"] + results["rule"]["fn"]
        print(f"{args.eval}: {results['rule']['n']} responses, {n_refusals} refusals\n")
        print("| mode | precision | recall | F1 | accuracy | FP | FN |")
        print("|---|---|---|---|---|---|---|")
        for mode, r in results.items():
            print(f"| {mode} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['accuracy']:.3f} | {r['fp']} | {r['fn']} |")
        if args.show_errors:
            for mode, r in results.items():
                print(f"\n{mode} misclassified:")
                print("\n".join(f"  {t}" for t in r["errors"]))
        return 0
    if args.text is None:
        parser.error("give a text to classify or --eval FILE")
    print(is_refusal(args.text, args.mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
