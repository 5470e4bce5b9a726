"""`rerule data convert {rule,tofu,muse,muse_raw,rwku}`: the released files into ours, each output with its sidecar
(role "training" or "evaluation", the sources with their sha256, the benchmark; roles.py)."""

import sys
from collections import Counter
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError, number
from openrlhf_rerule.provenance import EVALUATION, TRAINING, source_entry
from openrlhf_rerule.rewards.rule import parse_label

from . import convert
from .roles import add_allow_argument, is_evaluation
from .schema import read_records, validate_rows, write_with_sidecar
from .training_file import add_training_file_args, fill_batches, format_prompts


def sources(role: str, paths) -> list[dict]:
    return [{"as": role, **source_entry(p)} for p in paths]


def convert_rwku(folder, out_dir: Path) -> None:
    """The probes -> out_dir/eval/ (evaluation only), the corpus side -> out_dir/train/forget.jsonl, minus any
    corpus row that overlaps a probe of this target."""
    from .overlap import Prompt, find_overlaps, read_prompts

    probes = convert.from_rwku(folder)
    train, counts = convert.from_rwku_corpus(folder)
    target = convert.rwku_target(folder)
    probe_files = {kind: sorted(Path(folder).glob(f"{kind}_level*.json")) for kind in ("forget", "neighbor")}
    corpus = [Prompt("corpus", i, row["prompt"]) for i, row in enumerate(train)]
    every_probe = [p for files in probe_files.values() for f in files for p in read_prompts(f)]
    leaking = {h.train.line for h in find_overlaps(corpus, every_probe)}
    train = [row for i, row in enumerate(train) if i not in leaking]
    for kind in ("forget", "neighbor"):
        subset = [r for r in probes if r["kind"] == kind]
        if subset:
            meta = {"command": "convert rwku", "role": EVALUATION, "benchmark": "rwku", "target": target,
                    "prompt_format": "plain", "sources": sources("probes", probe_files[kind])}
            path = write_with_sidecar(out_dir / "eval" / f"{kind}.jsonl", subset, "eval", meta)
            print(f"wrote {path} ({len(subset)} {kind} probes: EVALUATION ONLY, pass it to --eval, never train on it)")
    if not train:
        print(f"{folder}: no training rows (no reject.json / passage.json, or all of them overlap a probe): bring "
              "your own forget questions about the target")
        return
    names = ", ".join(f"{n} from {name}" for name, n in counts.items())
    meta = {"command": "convert rwku", "role": TRAINING, "benchmark": "rwku", "target": target,
            "prompt_format": "plain", "sources": sources("corpus", [Path(folder) / n for n, k in counts.items() if k]),
            "counts": counts, "dropped_overlapping_a_probe": len(leaking)}
    path = write_with_sidecar(out_dir / "train" / "forget.jsonl", train, "eval", meta)
    print(f"wrote {path} ({len(train)} training forget rows: {names}; {len(leaking)} dropped as overlapping a probe)")
    print(f"next: boundary questions by entity swap (rerule data boundary --forget {path} --out "
          f"{out_dir}/train/boundary.jsonl), then rerule data stage1 / stage2 with --eval {out_dir}/eval/forget.jsonl "
          f"{out_dir}/eval/neighbor.jsonl")


def cmd_convert(args):
    if (args.out_dir if args.source == "rwku" else args.out) is None:
        raise UserError(f"convert {args.source} needs {'--out_dir' if args.source == 'rwku' else '--out'}")
    if args.source != "rule" and (args.eval or args.steps or args.prompt_format != "plain" or args.allow_eval_overlap
                                  or args.allow_eval_as_training):
        raise UserError("--eval / --allow_eval_overlap / --allow_eval_as_training / --steps / --prompt_format apply "
                        "to convert rule only "
                        "(the other converters write evaluation-format rows)")
    if args.source == "rwku":
        convert_rwku(args.input, Path(args.out_dir))
        return
    if args.source == "rule":  # Stage 1 or Stage 2 file, told apart by its fields
        convert_rule(args)
        return
    note, counts = "", {}
    # MUSE's QA (knowmem) is evaluation data; TOFU's files and MUSE's corpus train, but for TOFU's evaluation sets
    role = EVALUATION if args.source == "muse" or is_evaluation(args.input) else TRAINING
    if args.source == "tofu":
        rows = convert.from_tofu(args.input, args.kind, args.subject, args.exclude, counts)
        if args.exclude:
            note = f"; {counts['excluded']} rows dropped as questions of {', '.join(args.exclude)}"
        unread = counts.get("dropped_unattributed", {})
        if sum(n for key, n in unread.items() if key != "first"):
            print(f"WARNING: convert tofu --kind boundary {args.input}: dropped {unread['no_author']} rows that name "
                  f"no author, {unread['shared_surname']} that name only a surname authors share and "
                  f"{unread['two_authors']} that name two authors equally (a boundary row's author keeps forget "
                  f"authors out of the boundary; these cannot be checked); first: {unread['first']}", file=sys.stderr)
        counts["subjects"] = dict(Counter(r["subject"] for r in rows))  # in order of first appearance
        subjects = list(counts["subjects"])
        note += f"; subjects: {', '.join(repr(s) for s in subjects[:6])}{' ...' if len(subjects) > 6 else ''}"
    elif args.source == "muse_raw":
        rows = convert.from_muse_raw(args.input, args.subject or "", args.chunk_words)
    else:
        rows = convert.from_muse(args.input, args.kind, args.subject or "")
    meta = {"command": f"convert {args.source}", "role": role, "benchmark": args.source.split("_")[0],
            "split": Path(args.input).stem, "kind": args.kind, "prompt_format": "plain", "subject_given": args.subject,
            "sources": sources("input", [args.input]) + sources("--exclude", args.exclude), **counts}
    print(f"wrote {write_with_sidecar(args.out, rows, 'eval', meta)} ({len(rows)} eval rows, role {role}{note})")


def convert_rule(args):
    """The authors' Stage 2 file (warned about, and its output's role "evaluation", when it looks like an evaluation
    set), or their Stage 1 file; a Stage 1 file with org_answer / neighbor_question also gives forget and boundary
    eval rows beside --out."""
    from .overlap import drop_eval_overlaps

    counts, extra = {}, {}
    stage2 = "solution" in read_records(args.input)[0]
    warning = None
    if stage2:
        rows = convert.from_rule_stage2(args.input, counts)
        warning = convert.evaluation_file_warning(args.input, rows)
        if warning:
            print(f"WARNING: {args.input}: {warning}", file=sys.stderr)
    else:
        rows, extra["forget"], extra["boundary"] = convert.from_rule_stage1(args.input, counts)
    kind = "stage2" if stage2 else "stage1"
    if args.steps and not stage2:
        raise UserError("--steps / --rollout_batch apply to Stage 2 files; this is a Stage 1 file")
    extra = {name: (rows_, f"{args.out_dir or Path(args.out).parent}/{Path(args.out).stem}_{name}.jsonl")
             for name, rows_ in extra.items() if rows_}
    for name, (rows_, _) in extra.items():  # all validated before anything is written
        validate_rows(rows_, "eval", f"<{name} rows of {args.input}>")
    rows, overlap = drop_eval_overlaps(rows, args.out, args, [args.input])
    role, allowed = EVALUATION if warning or is_evaluation(args.input) else TRAINING, []
    if role == EVALUATION and args.allow_eval_as_training:  # on purpose: a training file, and the sidecar says why
        role, allowed = TRAINING, [f"eval_as_training: input {args.input}"]
        print(f"WARNING: convert rule {args.input}: an evaluation file, converted for training as you asked "
              "(--allow_eval_as_training); the output's sidecar records it", file=sys.stderr)
    made = {"command": "convert rule", "role": role, "benchmark": convert.release_benchmark(args.input),
            "sources": sources("input", [args.input]), "allowed": allowed}
    meta = {**made, "input": args.input, "prompt_format": args.prompt_format, "steps": args.steps,
            "rollout_batch": args.rollout_batch, **overlap}
    if stage2:
        rows = fill_batches(rows, args)
    rows = format_prompts(rows, args, label_of=lambda row: parse_label(row["label"])[0] if stage2 else "<reject>")
    print(f"wrote {write_with_sidecar(args.out, rows, kind, meta)} ({len(rows)} {kind} rows, role {role}; "
          f"{counts['duplicate_dropped']} repeated prompts dropped)")
    for name, (rows_, path) in extra.items():
        field = "org_answer" if name == "forget" else "neighbor_question"
        print(f"wrote {write_with_sidecar(path, rows_, 'eval', {**made, 'field': field})} ({len(rows_)} {name} eval "
              f"rows from {field})")
    if counts.get("org_answer_empty") or counts.get("neighbor_unanswered"):
        # the authors' Stage 1 never reads these fields (docs/data.md, "The RULE authors' Stage 1 files, as released")
        print(f"{args.input}: kept for Stage 1 without an eval row: {counts['org_answer_empty']} rows with an empty "
              f"org_answer, {counts['neighbor_unanswered']} rows whose neighbor_question has no answer")
    if len(extra) == 2:
        print(f"next: rerule data stage2 --forget {extra['forget'][1]} --boundary {extra['boundary'][1]} "
              "--out STAGE2.jsonl")


def add_convert_command(sub) -> None:
    p = sub.add_parser("convert", help="convert RULE / TOFU / MUSE / RWKU releases into our files")
    p.add_argument("source", choices=["rule", "tofu", "muse", "muse_raw", "rwku"],
                   help="rule: the authors' Stage 1 or Stage 2 JSON array -> stage1 / stage2; tofu, muse: QA -> eval; "
                        "muse_raw: MUSE's raw/forget.txt -> completion rows (training side); "
                        "rwku: a target folder -> OUT_DIR/train/forget.jsonl (corpus side: reject.json questions, "
                        "passage.json blanks) and OUT_DIR/eval/{forget,neighbor}.jsonl (the probes, evaluation only)")
    p.add_argument("input", help="source JSON file (an RWKU target folder for rwku)")
    p.add_argument("--out", help="output jsonl (rule, tofu, muse)")
    p.add_argument("--kind", default="forget", help="eval kind of the rows: forget, retain, ... (tofu, muse)")
    p.add_argument("--subject", help="subject of every row (muse: e.g. 'Harry Potter'; tofu: default = the author "
                                     "each record's question or answer names)")
    p.add_argument("--exclude", nargs="+", default=[],
                   help="tofu: drop rows whose question is in these files, e.g. retain_perturbed.json (the retain "
                        "evaluation set) when taking boundary QA from retain99.json")
    p.add_argument("--out_dir", help="output directory (rwku; rule: of the _forget / _boundary files a Stage 1 file "
                                     "with org_answer / neighbor_question gives, default: beside --out)")
    p.add_argument("--chunk_words", type=number(int, 8), default=300, help="muse_raw: words per completion prompt")
    p.add_argument("--seed", type=int, default=0, help="rule: order of the whole-batch passes")
    add_training_file_args(p, stage2=True)
    add_allow_argument(p)  # rule: an evaluation file (one it warns about) converted into a training file on purpose
    p.set_defaults(func=cmd_convert)
