"""What every command that writes a training file shares (stage1, stage2, convert rule): its options (the evaluation
files it must not repeat, the prompt format, whole rollout batches) and the two steps that apply them."""

import sys

from openrlhf_rerule.cli_convention import number

from .overlap import add_eval_arguments
from .schema import read_records


def format_prompts(rows: list[dict], args, label_of) -> list[dict]:
    """--prompt_format applied to the rows' prompts (templates.apply_prompt_format)."""
    from .templates import apply_prompt_format

    icl = read_records(args.icl) if args.icl else []
    normal_icl = read_records(args.normal_icl) if args.normal_icl else []
    return apply_prompt_format(rows, args.prompt_format, icl, normal_icl, args.bos, label_of)


def fill_batches(rows: list[dict], args) -> list[dict]:
    """Stage 2 rows cut / cycled to exactly --steps x --rollout_batch, or a warning when the last rollout batch
    of the paper's size (32) would be short."""
    from .builders import whole_batches

    if args.steps:
        out = whole_batches(rows, args.steps, args.rollout_batch, seed=args.seed)
        repeats = sum(1 for r in out if r.get("repeat"))
        print(f"whole batches: {len(out)} = {args.steps} steps x {args.rollout_batch} prompts from {len(rows)} rows "
              f"({min(len(rows), len(out))} distinct, {repeats} repeats)")
        return out
    if len(rows) % 32:
        print(f"warning: {len(rows)} prompts are not a multiple of 32 (the paper's rollout batch): at rollout batch "
              f"32 each pass ends with a short batch of {len(rows) % 32} prompts; --steps S --rollout_batch 32 writes "
              f"exactly S x 32 (RULE's dataloader drops the short batch)", file=sys.stderr)
    return rows


def add_training_file_args(p, stage2: bool) -> None:
    """The options of every command that writes a training file: the evaluation files it must not repeat, the
    prompt format, and (Stage 2) whole rollout batches."""
    from .templates import PROMPT_FORMATS

    add_eval_arguments(p)
    p.add_argument("--prompt_format", choices=PROMPT_FORMATS, default="plain",
                   help="plain: the prompt as is; rule_muse: RULE's MUSE prompt (BOS, the --icl few-shot block, "
                        "'Question: q\\nAnswer: ' or 'Completion: text\\nAnswer: ') with one block for every row; "
                        "rule_muse_label_leak: the authors' Stage 2, --normal_icl's block for <normal> rows (the block "
                        "gives the label away)")
    p.add_argument("--icl", metavar="FILE", help="few-shot {question, answer} examples (MUSE knowmem/forget_qa_icl.json)")
    p.add_argument("--normal_icl", metavar="FILE",
                   help="rule_muse_label_leak: the block of <normal> rows (MUSE knowmem/retain_qa_icl.json)")
    p.add_argument("--bos", default="<s>", help="text put first by the rule_muse formats (Llama-2's BOS: OpenRLHF "
                                                "tokenizes prompts without special tokens)")
    if stage2:
        p.add_argument("--steps", type=number(int, 1), help="write exactly STEPS x ROLLOUT_BATCH prompts (seeded "
                                                              "shuffled passes over the rows)")
        p.add_argument("--rollout_batch", type=number(int, 1), default=32, help="prompts per rollout batch")
