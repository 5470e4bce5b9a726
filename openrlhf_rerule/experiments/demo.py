"""`rerule demo`: the whole story on one CPU in a few minutes, and the project's end-to-end test.

For each of --worlds synthetic worlds: a tiny word-level Llama learns the world -> Stage 1 refusal SFT on the
forget questions (mixed with answered questions of retain people) -> Stage 2 from that same checkpoint: RULE
(GRPO) and ReRULE (GRPO + hard-case replay), same seeds -> greedy evaluation of every model. Then one report over
the worlds (mean and 95% t-interval per cell, each README claim with how often it held): OUT/report.md,
OUT/report.json, OUT/plots/*.png; the runs of world k under OUT/world<k>/. With --purge, PURGE arms run beside them
(purge_arms.py) and the report gains a PURGE section.

Choices of ours, said here and in the report:
- The "learn the world" corpus is the world's pretrain.jsonl plus the world's refusal sentences as plain text
  (about every person). A real base model already knows how to phrase "I do not know ..."; Stage 1 then has to
  teach *when* to say it, not a new language, which a 145k-parameter model cannot do in a few steps.
- Stage 1 mixes answered retain rows into the refusal data (STAGE1_DATA below; --stage1_retain 0 turns it off).
- The paper's replay settings (Appendix D: min_groups 100 / warm-up 15 of ~37 steps / 32 groups) are scaled to a
  96-prompt world: min_groups 24, warm-up 8, 16 replayed groups per step (= the rollout batch, as in the paper).
- --model PATH: a pretrained causal LM (a local Hugging Face folder, e.g. SmolLM2-135M-Instruct from `rerule data
  real_model`) replaces the tiny per-world model, with REAL_MODEL_PROFILE's settings (below, with why each differs).
  Every prompt is wrapped in the model's chat template (format_prompt's "auto", as `rerule train` and `rerule eval`
  do), when learning the world, in both stages and in the evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from openrlhf_rerule.cli_convention import Parser, UserError, number, user_errors
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.local.config import Stage1Config, Stage2Config, parse_bool
from openrlhf_rerule.local.evaluate import evaluate_model
from openrlhf_rerule.local.grpo import GRPOTrainer
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.local.preflight import check_model_dir
from openrlhf_rerule.local.sft import train_stage1
from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.provenance import MODEL_RECORD, file_sha256, tokenizer_fingerprint
from openrlhf_rerule.replay import ReplayConfig
from openrlhf_rerule.replay.config import HELP as REPLAY_HELP, add_replay_arguments
from openrlhf_rerule.rewards import is_refusal

from . import purge_arms, units
from .report import (METHODS, aggregate_eval, claim, hard_case_rewards, hardest_prompts, mean_metrics, mean_std,
                     plot_all, training_summary, write_report)

WORLD = dict(num_forget=6, num_boundary=6, num_retain=12, num_refusal_templates=2)
# RULE's Stage 1 shape: refusal rows mixed with answered rows of retain people (6 extra people, in no evaluation
# split, so eval/retain.jsonl still measures collateral damage). Refusal rows alone made Stage 1 generalise the
# refusal to everyone in some worlds (world 7: retain accuracy 0.08, chance 0.09); mixed, the model keeps what it
# knows. The authors' RS/scripts/full/run_rt_epoch_target.sh trains 3 epochs at lr 4e-7 on Llama-3-8B;
# a 145k-parameter model learning from 120 rows needs a larger step (measured: 10 epochs at 1e-3).
STAGE1_DATA = dict(num_stage1_retain=6)
MODEL = dict(hidden_size=64, num_layers=2, num_heads=4)
LEARN_WORLD = dict(epochs=40, lr=3e-3, batch_size=32, warmup_ratio=0.05)
STAGE1 = dict(epochs=10, lr=1e-3, batch_size=16)
STAGE2 = dict(rollout_batch=16, n_samples=8, max_new_tokens=16, lr=1.5e-4, kl_coef=1e-2, temperature=1.0,
              reward_variant="two_stage_abs", refusal_mode="rule", micro_batch_size=128)
REPLAY = dict(threshold=0.6, min_groups=24, warmup_steps=8, capacity=200, batch_groups=16)
DEMO_REPLAY = {**dataclasses.asdict(ReplayConfig()), **REPLAY}  # what the ReRULE arm runs with unless overridden
TINY_PROFILE = dict(world=WORLD, stage1_data=STAGE1_DATA, learn_world=LEARN_WORLD, stage1=STAGE1, stage2=STAGE2,
                    replay=REPLAY)
# --model PATH. Measured on SmolLM2-135M-Instruct (135M parameters, world seed 0) on a shared 2-core CPU; commands and
# numbers in docs/real-model.md, "The demo on the real model". Why each setting differs from the tiny model's:
REAL_MODEL_PROFILE = dict(
    # 10 people (80 QA rows, 32 Stage 2 prompts) instead of 30: a 16-row SFT step takes ~6 s on one thread, not
    # milliseconds, and every evaluation greedily answers every evaluation prompt.
    world=dict(num_forget=2, num_boundary=2, num_retain=4, num_refusal_templates=2),
    stage1_data=dict(num_stage1_retain=2),
    # The model learns pretrain.jsonl's questions and answers as chat turns, without the tiny model's plain-text
    # refusal corpus (it already phrases refusals). The tiny model's lr 3e-3 is for weights learning a language from
    # a random start; 3e-4 for 40 steps brought this model from knowing no one to accuracy 1.0 on every split.
    learn_world=dict(epochs=8, lr=3e-4, batch_size=16, warmup_ratio=0.05),
    # 32 rows: batch 8 gives 16 steps at 1e-4: forget (and held-out forget) refusal 1.0, while a quarter of the
    # boundary and retain questions and 3 in 4 held-out boundary questions are refused too: Stage 2's job.
    stage1=dict(epochs=4, lr=1e-4, batch_size=8),
    # 4 prompts x 4 samples x 24 tokens: 13-80 s a step here, by load (the tiny model's 16 x 8 samples would be 8
    # times the work). lr 1e-4 instead of 1.5e-4, a step of 16 samples on pretrained weights: 4 RULE steps at 1e-4 took
    # boundary refusal from 0.25 to 0 and kept forget refusal at 1.0 (KL to Stage 1 at most 0.18).
    stage2={**STAGE2, "rollout_batch": 4, "n_samples": 4, "max_new_tokens": 24, "lr": 1e-4, "micro_batch_size": 16},
    # The paper's tau 0.6; a step has 4 groups, of which 0-2 fell below tau: with min_groups 4 and warm-up 1 replay
    # started at step 5 of 6 in world 0 and not within 6 steps in world 1 (a smaller min_groups is not measured);
    # 4 groups a replay update = the rollout batch.
    replay=dict(threshold=0.6, min_groups=4, warmup_steps=1, capacity=64, batch_groups=4),
)


def build_parser() -> Parser:
    p = Parser(prog="rerule demo", description=__doc__.split("\n\n")[0],
               epilog="Each finished unit (a world learned, its Stage 1, one arm and seed's Stage 2 run, each with its "
                      "evaluation) is saved under OUT/units/ as it finishes; the same command again resumes a killed "
                      "run without redoing them (OUT/experiment.json holds the settings; other settings are refused). "
                      "--restart starts over; --report_only rebuilds the report from what is on disk.")
    p.add_argument("--out", default="runs/demo", help="output directory (report.md, report.json, plots/, runs)")
    p.add_argument("--worlds", type=number(int, minimum=1), default=4,
                   help="synthetic worlds (world seeds --world_seed, --world_seed + 1, ...); each has its own "
                        "tiny model and Stage 1 checkpoint; the report's intervals are over worlds")
    p.add_argument("--seeds", type=number(int, minimum=1), default=2,
                   help="Stage 2 seeds per method and world (averaged within the world)")
    p.add_argument("--steps", type=number(int, minimum=1), default=40, help="Stage 2 steps per run")
    p.add_argument("--world_seed", type=number(int, minimum=0), default=0, help="seed of the first world")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a local Hugging Face causal-LM folder (e.g. SmolLM2-135M-Instruct built by `rerule data "
                        "real_model`) that learns each world instead of a fresh tiny model, run with the real-model "
                        "settings (REAL_MODEL_PROFILE in experiments/demo.py: a smaller world, its own learning "
                        "rates and batch sizes; docs/real-model.md); prompts go through its chat template")
    p.add_argument("--stage1_retain", type=number(int, minimum=0), default=None,
                   help="extra retain people whose answered questions are mixed into the Stage 1 refusal data "
                        f"(default: {STAGE1_DATA['num_stage1_retain']}; with --model "
                        f"{REAL_MODEL_PROFILE['stage1_data']['num_stage1_retain']}; 0: refusal rows only, the demo's "
                        "earlier Stage 1, which made the tiny model refuse everyone in some worlds)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    p.add_argument("--cpu_threads", type=int, default=1, help="torch threads (1 is fastest for a tiny model)")
    p.add_argument("--progress", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="tqdm bars (default: on)")
    p.add_argument("--no_progress", action="store_false", dest="progress", help="turn off --progress")
    p.add_argument("--purge", action="store_true",
                   help="also run PURGE (binary forbidden-term reward, from the pretrained model, forget questions "
                        "only), PURGE + hard-case replay and PURGE + replay with require_variance, and report them "
                        "beside RULE and ReRULE (about doubles the Stage 2 time)")
    p.add_argument("--purge_reward", default="binary", choices=purge_arms.REWARDS,
                   help="the PURGE arms' reward: binary (the paper's), exp_decay (e^-m, m = mentions counted) or "
                        "pagerank (1 - the summed PageRank weights of the terms named; the weights computed per "
                        "forget person from the model PURGE starts from), the graded rewards of the authors' "
                        "follow-up (docs/purge.md)")
    p.add_argument("--restart", action="store_true",
                   help="delete the run under --out (experiment.json, units/, world*/, the report) and start over; "
                        "without it a rerun resumes, and a rerun with other settings is refused")
    p.add_argument("--report_only", action="store_true",
                   help="rebuild report.md, report.json and plots/ from the finished units under --out, training "
                        "nothing (the run's flags are read from --out); unfinished worlds are named and left out")
    add_replay_arguments(p, suppress_defaults=True)
    # The ReRULE arm's replay flags: help shows the value the demo uses, not ReplayConfig's default.
    for action in p._actions:
        name = action.dest.removeprefix("replay.")
        if action.dest.startswith("replay.") and name in REPLAY_HELP:
            used = {"enable": "set by the demo (ReRULE arm only)", "seed": "set by the demo (= the Stage 2 seed)"}
            real = {**DEMO_REPLAY, **REAL_MODEL_PROFILE["replay"]}
            shown = used.get(name) or f"{DEMO_REPLAY[name]}; --model: {real[name]}"
            action.help = REPLAY_HELP[name].replace("%", "%%") + f" (demo: {shown})"
    return p


def language_corpus(world_dir: Path) -> Path:
    """pretrain.jsonl + every refusal sentence of the world's Stage 1 / Stage 2 data, about every person, as
    plain text rows (see the module docstring for why)."""
    names = sorted({r["subject"] for split in ("forget", "boundary", "retain")
                    for r in read_jsonl(world_dir / "eval" / f"{split}.jsonl", "eval")})
    # Stage 1 also holds answered retain rows (STAGE1_DATA): only its refusals are language to generalise.
    refusals = {(r["response"], r["subject"]) for r in read_jsonl(world_dir / "stage1.jsonl", "stage1")
                if is_refusal(r["response"], "rule")}
    for row in read_jsonl(world_dir / "stage2.jsonl", "stage2"):
        label = json.loads(row["label"])
        if label[0] == "<reject>" and len(label) > 2:
            refusals.add((label[1], label[2]))
    texts = sorted({text.replace(subject, name) for text, subject in refusals for name in names})
    rows = read_jsonl(world_dir / "pretrain.jsonl", "stage1") + [{"text": t} for t in texts]
    path = world_dir / "pretrain_with_language.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def learn_world(world_seed: int, out: Path, common: dict, model: str | None = None, **knobs) -> tuple[Path, Path]:
    """Build world `world_seed` into OUT/world and teach a fresh tiny model all of it, or, given `model` (--model), that
    pretrained model its questions and answers (REAL_MODEL_PROFILE): (world dir, model dir). `knobs` are build_world
    arguments over the profile's world and Stage 1 data (the study's world shape, Stage 1 knobs)."""
    profile = REAL_MODEL_PROFILE if model else TINY_PROFILE
    world = build_world(seed=world_seed, **{**profile["world"], **profile["stage1_data"], **knobs})
    world.write(out / "world")
    if model:
        base, corpus = model, out / "world" / "pretrain.jsonl"
    else:
        base = save_tiny_model(world.all_texts(), out / "base", seed=world_seed, **MODEL)
        corpus = language_corpus(out / "world")
    pretrained = train_stage1(Stage1Config(model=str(base), data=str(corpus), out=str(out / "pretrain"),
                                           seed=world_seed, **profile["learn_world"], **common))
    return out / "world", pretrained


def stage2_run(stage1: Path, world_dir: Path, out: Path, seed: int, steps: int, replay: ReplayConfig,
               common: dict, data: str = "stage2.jsonl", **overrides) -> Path:
    """One Stage 2 run from the Stage 1 checkpoint (RULE when replay.enable is off) on the world's `data` file, with
    STAGE2's settings but `overrides` (the PURGE arms: another start model, file and reward); returns its run
    directory."""
    cfg = Stage2Config(model=str(stage1), data=str(world_dir / data), steps=steps, out=str(out), seed=seed,
                       replay=replay, **{**STAGE2, **overrides}, **common)
    GRPOTrainer(cfg).fit()
    return out


@user_errors("rerule demo")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, argv = units.parse_args(build_parser(), argv)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # weight-loading bars would drown the training bars
    out = Path(args.out)
    if args.purge_reward != "binary" and not args.purge:
        raise UserError(f"--purge_reward {args.purge_reward} without --purge: it sets the PURGE arms' reward")
    if args.model:  # checked before anything is loaded or written (Units writes experiment.json, --restart deletes)
        if args.purge:
            raise UserError("--purge with --model: the PURGE arms' settings are the tiny model's and were not measured "
                            "on a pretrained model; run --model without --purge")
        check_model_dir("--model", args.model)
        config = json.loads((Path(args.model) / "config.json").read_text())
        if not any(name.endswith("ForCausalLM") for name in config.get("architectures") or []):
            raise UserError(f"--model {args.model}: not a causal language model (config.json architectures: "
                            f"{config.get('architectures')}); the demo generates with AutoModelForCausalLM")
        if tokenizer_fingerprint(args.model) is None:
            raise UserError(f"--model {args.model}: no tokenizer vocabulary (tokenizer.json, vocab.json, ...)")
    profile = REAL_MODEL_PROFILE if args.model else TINY_PROFILE
    stage1_retain = profile["stage1_data"]["num_stage1_retain"] if args.stage1_retain is None else args.stage1_retain
    # The model's identity: every file's digest (not rerule_model.json, which a parity check rewrites), so that a
    # resume with another model, or with this folder's weights or tokenizer changed, is refused.
    model_files = {str(f.relative_to(args.model)): file_sha256(f) for f in sorted(Path(args.model).rglob("*"))
                   if f.is_file() and f.name != MODEL_RECORD} if args.model else None
    # overwrite: a unit that was killed half-way is redone from scratch (its sub-run would refuse a non-empty --out)
    common = dict(device=args.device, cpu_threads=args.cpu_threads, progress=args.progress, overwrite=True)
    replay_settings = {**profile["replay"], **{key[len("replay."):]: value for key, value in vars(args).items()
                                    if key.startswith("replay.") and key not in ("replay.enable", "replay.seed")}}
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    settings = {"--worlds": args.worlds, "--seeds": args.seeds, "--steps": args.steps, "--world_seed": args.world_seed,
                "--stage1_retain": stage1_retain, "--purge": args.purge, "--device": device,
                # absent for the binary reward, so runs from before --purge_reward existed still resume
                **({"--purge_reward": args.purge_reward} if args.purge_reward != "binary" else {}),
                "--cpu_threads": args.cpu_threads, **{f"--replay.{k}": v for k, v in {**DEMO_REPLAY, **replay_settings}
                                                     .items() if k not in ("enable", "seed")},
                # absent (None) for the tiny model, so runs from before --model existed still resume
                **({"--model": str(Path(args.model).resolve()), "--model files sha256": hashlib.sha256(
                    json.dumps(model_files, sort_keys=True).encode()).hexdigest()} if args.model else {})}
    store = units.Units(out, "rerule demo", argv, settings, restart=args.restart, report_only=args.report_only)
    worlds = list(range(args.world_seed, args.world_seed + args.worlds))
    phases = dict.fromkeys(("learn world", "stage 1", "stage 2", "evaluation", *(("purge stage 2",) * args.purge)),
                           0.0)
    # With --purge every model is also scored on the forget people's terms (purge_arms.evaluate_with_terms).
    evaluate = purge_arms.evaluate_with_terms if args.purge else lambda *a: evaluate_model(*a)["metrics"]
    t_start = time.perf_counter()
    # arm -> (start model, replay overrides, Stage 2 overrides, phase); PURGE starts from the pretrained model.
    arms = {**{m: ("stage1", {"enable": m == "rerule"}, profile["stage2"], "stage 2") for m in METHODS},
            **({arm: ("pretrain", {**(extra or {}), "enable": extra is not None},
                      purge_arms.overrides(args.purge_reward), "purge stage 2")
                for arm, extra in purge_arms.ARMS.items()} if args.purge else {})}
    runs, evals, world_dirs = {}, {}, {}

    def run_unit(key, *steps):
        """Unit `key`'s record: read back when it finished before, else made by running `steps` ((phase, fn) each;
        the last one is the evaluation) and saved at once. None: not finished (--report_only)."""
        record = store.get(key)
        if record is None and not args.report_only:
            seconds = {}
            for phase, fn in steps:
                t = time.perf_counter()
                result = fn()
                seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - t
            record = store.put(key, {"evaluation": result, "seconds": seconds})
        for phase, spent in (record or {}).get("seconds", {}).items():
            phases[phase] += spent
        return record and record["evaluation"]

    for ws in worlds:
        wout, world_dirs[ws] = out / f"world{ws}", out / f"world{ws}" / "world"
        model = {"pretrain": wout / "pretrain" / "final", "stage1": wout / "stage1" / "final"}
        runs[ws] = {arm: [wout / "stage2" / arm / f"seed{seed}" for seed in range(args.seeds)] for arm in arms}
        learn = partial(learn_world, ws, wout, common, args.model, num_stage1_retain=stage1_retain, purge=args.purge)
        stage1 = partial(train_stage1, Stage1Config(model=str(model["pretrain"]), out=str(wout / "stage1"), seed=ws,
                                                    data=str(world_dirs[ws] / "stage1.jsonl"), **profile["stage1"],
                                                    **common))
        evals[ws] = {
            "pretrained": run_unit(f"world{ws}/learn", ("learn world", learn),
                                   # purge_pagerank's weights, from the model the PURGE arms start from
                                   *([("learn world", partial(purge_arms.write_pagerank_data, world_dirs[ws],
                                                              model["pretrain"]))]
                                     if args.purge_reward == "pagerank" else []),
                                   ("evaluation", partial(evaluate, model["pretrain"], world_dirs[ws], device))),
            "stage1": run_unit(f"world{ws}/stage1", ("stage 1", stage1),
                               ("evaluation", partial(evaluate, model["stage1"], world_dirs[ws], device))),
            **{arm: [run_unit(f"world{ws}/stage2/{arm}/seed{seed}",
                              (phase, partial(stage2_run, model[start], world_dirs[ws], run, seed, args.steps,
                                              ReplayConfig(**{**replay_settings, **extra, "seed": seed}), common,
                                              **overrides)),
                              ("evaluation", partial(evaluate, run / "final", world_dirs[ws], device)))
                     for seed, run in enumerate(runs[ws][arm])]
               for arm, (start, extra, overrides, phase) in arms.items()}}
    if store.missing:  # --report_only: the world is the independent unit, so the complete worlds make a report
        complete = [ws for ws in worlds if not any(key.startswith(f"world{ws}/") for key in store.missing)]
        line = f"--report_only: {store.missing_line(len(store.kept) + len(store.missing))}"
        if not complete:
            raise UserError(f"{line}; no world is complete")
        print(f"rerule demo: {line}; the report covers the complete world(s) {', '.join(map(str, complete))}",
              file=sys.stderr)
        worlds = complete

    tau, warmup = replay_settings["threshold"], replay_settings["warmup_steps"]
    tail = max(1, args.steps // 4)
    histories = {ws: {m: [read_log(d / "reward_history.jsonl") for d in runs[ws][m]] for m in METHODS}
                 for ws in worlds}
    # Hard cases per world and seed (the same definition as `rerule study`), and the paired ReRULE - RULE gap.
    hard = {ws: [hard_case_rewards(histories[ws]["rule"][k], {m: histories[ws][m][k] for m in METHODS}, warmup, tau)
                 for k in range(args.seeds)] for ws in worlds}
    # The unit of the intervals is the world; with a single world it is the Stage 2 seed (Stage 1 is one model).
    unit = "world" if len(worlds) > 1 else "seed"
    per_unit = {name: [evals[ws][name] if name in ("pretrained", "stage1") else mean_metrics(evals[ws][name])
                       for ws in worlds] if unit == "world" or name in ("pretrained", "stage1")
                else evals[worlds[0]][name] for name in ("pretrained", "stage1", *METHODS)}
    evaluation = {name: aggregate_eval(values) for name, values in per_unit.items()}
    training = {m: training_summary([d for ws in worlds for d in runs[ws][m]], tail, tau) for m in METHODS}

    # The first world illustrates: its hardest prompts and the plots.
    first = worlds[0]
    prompts = {r["prompt_id"]: r for r in read_jsonl(world_dirs[first] / "stage2.jsonl", "stage2")}
    hard_ids = hardest_prompts(histories[first]["rule"], warmup, k=6)
    # The plots show seed 0 of the first world: mark where replay started in that run.
    activation = next((m["step"] for m in read_log(runs[first]["rerule"][0] / "metrics.jsonl")
                       if m.get("replay/active")), None)
    plots = plot_all(out, runs[first], hard_ids, prompts, activation)

    def prompt_reward(method, pid, lo, hi):
        vals = [r["mean_reward"] for h in histories[first][method] for r in h
                if r["prompt_id"] == pid and lo <= r["step"] <= hi]
        return statistics.fmean(vals) if vals else float("nan")

    hard_cases = [{"prompt_id": pid, "prompt": prompts[pid]["prompt"], "kind": prompts[pid]["kind"],
                   "early_rule": prompt_reward("rule", pid, 1, warmup),
                   "final_rule": prompt_reward("rule", pid, warmup + 1, args.steps),
                   "final_rerule": prompt_reward("rerule", pid, warmup + 1, args.steps)} for pid in hard_ids]
    claims = demo_claims(evals, hard, worlds)
    purge = None
    if args.purge:
        purge = purge_arms.purge_section(evals, runs, worlds, tail, warmup, tau, args.purge_reward)
        plots.append(purge_arms.plot(out, purge, runs, first))
        purge["markdown"] = purge_arms.markdown(purge, plots[-1])
    report = {
        "command": store.command, "wall_seconds": time.perf_counter() - t_start, "phase_seconds": phases,
        "units_kept": len(store.kept), "units_missing": store.missing,
        "settings": {"worlds": worlds, "seeds": args.seeds, "steps": args.steps, "tail": tail,
                     "world": profile["world"],
                     "stage1_data": {**profile["stage1_data"], "num_stage1_retain": stage1_retain},
                     "model": {"path": settings["--model"], "files": model_files} if args.model else MODEL,
                     "parameters": AutoModelForCausalLM.from_pretrained(
                         args.model or out / f"world{first}" / "base").num_parameters(),
                     "learn_world": profile["learn_world"], "stage1": profile["stage1"], "stage2": profile["stage2"],
                     "replay": replay_settings,
                     "replay_scaling": "paper (RWKU): tau 0.6, min_groups 100, warm-up 15, 32 groups; scaled to "
                                       + ("32 Stage 2 prompts, 4 a step: min_groups 4, warm-up 1, 4 groups"
                                          if args.model else "96 Stage 2 prompts: min_groups 24, warm-up 8, 16 groups"),
                     "late_window_from_step": warmup + 1, "interval_unit": unit},
        "evaluation": evaluation, "per_world": {str(ws): evals[ws] for ws in worlds}, "training": training,
        "hard_case_gap": hard_case_gap(hard, worlds, unit), "hard_cases": hard_cases, "hard_cases_world": first,
        "plots": plots, "claims": claims, "verdict": verdict(evaluation, training, claims, unit),
        **({"purge": purge} if purge else {}),
    }
    write_report(out, report)
    print((out / "report.md").read_text().split("## Stage 2")[0])
    print(f"report: {out / 'report.md'}  ({report['wall_seconds']:.0f} s)")
    return 0


def hard_case_gap(hard: dict, worlds: list[int], unit: str) -> dict:
    """Per unit (a world: its seeds' mean; or, with one world, a seed): hard prompts found, RULE's early and late
    reward on them, ReRULE - RULE late; with intervals over the units."""
    groups = [hard[ws] for ws in worlds] if unit == "world" else [[h] for h in hard[worlds[0]]]
    keys = {"n_hard": lambda h: len(h["hard_ids"]), "early_rule": lambda h: h["early"], "late_rule": lambda h: h["rule"],
            "late_rerule": lambda h: h["rerule"], "gap": lambda h: h["rerule"] - h["rule"]}
    return {key: mean_std([statistics.fmean(map(fn, group)) for group in groups]) for key, fn in keys.items()}


def demo_claims(evals: dict, hard: dict, worlds: list[int]) -> list[dict]:
    """Each sentence the README makes about the demo, checked in every world (Stage 1) or every run (Stage 2)."""
    s1 = [evals[ws]["stage1"] for ws in worlds]
    pairs = [(evals[ws]["stage1"], evals[ws][m][k], m) for ws in worlds for m in METHODS
             for k in range(len(evals[ws][m]))]

    def knows(ev, split):  # of the answers it does not refuse, the share that names the true value
        answered = 1 - ev[split]["refusal_rate"]
        return ev[split]["accuracy"] / answered if answered > 0 else 0.0  # refusing everything shows no knowledge

    out = [
        claim("Stage 1 refuses ≥ 90% of the forget questions", [e["forget"]["refusal_rate"] >= 0.9 for e in s1],
              "worlds"),
        claim("Stage 1 keeps the knowledge: ≥ 80% of the retain answers it gives are right",
              [knows(e, "retain") >= 0.8 for e in s1], "worlds"),
        claim("Stage 1 keeps the knowledge: ≥ 80% of the boundary answers it gives are right",
              [knows(e, "boundary") >= 0.8 for e in s1], "worlds"),
        claim("Stage 1 over-refuses: ≥ 10% of the boundary questions refused", [e["boundary"]["refusal_rate"] >= 0.1
                                                                                 for e in s1], "worlds"),
    ]
    for m, label in (("rule", "RULE"), ("rerule", "ReRULE")):
        mine = [(a, b) for a, b, method in pairs if method == m]
        out += [claim(f"{label} keeps ≥ 90% forget refusal", [b["forget"]["refusal_rate"] >= 0.9 for _, b in mine],
                      "runs"),
                claim(f"{label} lowers boundary refusal below Stage 1's",
                      [b["boundary"]["refusal_rate"] < a["boundary"]["refusal_rate"] for a, b in mine], "runs"),
                claim(f"{label} raises boundary accuracy above Stage 1's",
                      [b["boundary"]["accuracy"] > a["boundary"]["accuracy"] for a, b in mine], "runs"),
                claim(f"{label} raises retain accuracy above Stage 1's",
                      [b["retain"]["accuracy"] > a["retain"]["accuracy"] for a, b in mine], "runs")]
    paired = [(evals[ws]["rule"][k], evals[ws]["rerule"][k]) for ws in worlds for k in range(len(evals[ws]["rule"]))]
    out += [claim("ReRULE − RULE > 0 on boundary accuracy",
                  [b["boundary"]["accuracy"] > a["boundary"]["accuracy"] for a, b in paired], "runs"),
            claim("ReRULE − RULE < 0 on forget refusal (replay costs forgetting)",
                  [b["forget"]["refusal_rate"] < a["forget"]["refusal_rate"] for a, b in paired], "runs"),
            claim("ReRULE − RULE > 0 on the hard cases' late training reward",
                  [h["rerule"] > h["rule"] for ws in worlds for h in hard[ws] if h["hard_ids"]], "runs")]
    return out


def verdict(ev: dict, tr: dict, claims: list[dict], unit: str) -> list[str]:
    """Plain sentences: the paired ReRULE - RULE differences with their intervals over units, and how often."""
    lines = []
    for split, metric in (("forget", "refusal_rate"), ("boundary", "accuracy"), ("retain", "accuracy"),
                          ("heldout_forget", "refusal_rate"), ("heldout_boundary", "accuracy")):
        diff = mean_std([b - a for a, b in zip(ev["rule"][split][metric]["values"],
                                                ev["rerule"][split][metric]["values"])])
        if diff["lo"] is None:
            tag = f"one {unit}: no interval"
        elif diff["lo"] > 0 or diff["hi"] < 0:
            tag = "the interval excludes 0"
        else:
            tag = "the interval includes 0"
        interval = "" if diff["lo"] is None else f" [{diff['lo']:+.3f}, {diff['hi']:+.3f}]"
        lines.append(f"- {split} {metric}: ReRULE − RULE = {diff['mean']:+.3f}{interval} over {diff['n']} "
                     f"{unit}(s) ({tag}).")
    rr = tr["rerule"]
    below_b, below_f = rr["groups_below_tau_boundary"]["mean"], rr["groups_below_tau_forget"]["mean"]
    lines.append(f"- {below_b / max(below_b + below_f, 1):.0%} of the ReRULE runs' groups below τ were boundary "
                 "prompts: the hard cases sit mostly on the answering side of the boundary.")
    cost = rr["stage2_seconds"]["mean"] / tr["rule"]["stage2_seconds"]["mean"] - 1
    lines.append(f"- Stage 2 wall time: ReRULE {cost:+.0%} vs RULE (paper: +5–11% with vLLM generation dominating).")
    lines += [f"- {c['claim']}: held in {c['held']} of {c['of']} {c['unit']}." for c in claims]
    return lines


if __name__ == "__main__":
    sys.exit(main())
