"""What `rerule train` (and the Python entry points train_stage1 / GRPOTrainer) check before any model is
loaded — flags, device, model directories, the data file, the run directory and, on resume, the checkpoint's
settings — and the only changes made to the run directory before training starts.

Every problem is a UserError naming the flag (or a DataError naming file, line and field): the CLI prints it
as one line with exit code 2, and nothing has been written to --out at that point.

Run directory rules (re-using a directory used to mix two runs' files silently):
- a non-empty --out with no checkpoint to resume is refused, unless --overwrite (which deletes the previous
  run's own files, nothing else);
- temporary directories of interrupted checkpoint writes (checkpoints/.tmp-*) are deleted on start;
- a resume whose shaping settings (seed, lr, data file contents, ...) differ from the checkpoint's is refused
  unless --allow_config_change; every resume prints the step it continues from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.data import DataError, read_jsonl
from openrlhf_rerule.data.schema import check_labels_fit
from openrlhf_rerule.lineage import check_stage2, stage_fields
from openrlhf_rerule.rewards.rule import parse_label

from .checkpoint import RUN_FILE, clean_interrupted, file_sha256, find_checkpoint
from .sft_data import check_truncation

# Settings that may change between a run and its resume: where and how it runs, not what it computes.
RUN_CONTROL = {"out", "resume", "overwrite", "allow_config_change", "allow_format_change", "steps", "save_every",
               "keep_checkpoints", "allow_truncation", "check_reward_target", "stop_after", "progress", "tensorboard", "wandb_project",
               "device", "cpu_threads", "micro_batch_size"}
# What a run writes into --out (what --overwrite deletes).
RUN_OUTPUTS = ("checkpoints", "final", "tensorboard", "metrics.jsonl", "reward_history.jsonl", "wandb")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

# flag -> (test, what it must be); checked in this order, the first failure is reported.
RULES = {
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "micro_batch_size": (lambda v: v >= 1, ">= 1"),
    "save_every": (lambda v: v >= 0, ">= 0 (0: no periodic checkpoints)"),
    "keep_checkpoints": (lambda v: v >= 0, ">= 0 (0: keep all)"),
    "stop_after": (lambda v: v >= 0, ">= 0 (0: off)"),
    "cpu_threads": (lambda v: v >= 0, ">= 0 (0: torch's default)"),
    "epochs": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "max_len": (lambda v: v >= 2, ">= 2 (a prompt token and a target token)"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "steps": (lambda v: v >= 1, ">= 1"),
    "rollout_batch": (lambda v: v >= 1, ">= 1"),
    "n_samples": (lambda v: v >= 2, ">= 2 (GRPO normalises rewards within a group; one sample has no advantage)"),
    "max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "temperature": (lambda v: v > 0, "> 0 (sampling needs it; log-probs are divided by it)"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "kl_coef": (lambda v: v >= 0, ">= 0 (0: no reference model)"),
    "clip_low": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "clip_high": (lambda v: v >= 0, ">= 0"),
}


def check_flags(cfg) -> None:
    """Raise UserError naming the first bad flag."""
    from openrlhf_rerule.rewards.purge import BOUNDARIES
    from openrlhf_rerule.rewards.refusal import MODES
    from openrlhf_rerule.rewards.variants import REWARD_VARIANTS

    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "replay"}
    if hasattr(cfg, "replay"):
        values.update({f"replay.{f.name}": getattr(cfg.replay, f.name) for f in dataclasses.fields(cfg.replay)})
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{name} {value}: must be a finite number")
    for name, (test, wanted) in RULES.items():
        if name in values and not test(values[name]):
            raise UserError(f"--{name} {values[name]}: must be {wanted}")
    betas = cfg.adam_betas.split(",")
    try:
        ok = len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"--adam_betas {cfg.adam_betas}: must be two numbers in [0, 1) separated by a comma, "
                        "e.g. 0.9,0.95")
    if "reward_variant" in values and cfg.reward_variant not in REWARD_VARIANTS:
        raise UserError(f"--reward_variant {cfg.reward_variant}: must be one of {', '.join(REWARD_VARIANTS)}")
    if "purge_boundary" in values and cfg.purge_boundary not in BOUNDARIES:
        raise UserError(f"--purge_boundary {cfg.purge_boundary}: must be one of {', '.join(BOUNDARIES)}")
    if "refusal_mode" in values and cfg.refusal_mode not in MODES:
        raise UserError(f"--refusal_mode {cfg.refusal_mode}: must be one of {', '.join(MODES)}")
    if cfg.input_template:
        try:
            cfg.input_template.format("")
            ok = "{}" in cfg.input_template
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"--input_template {cfg.input_template!r}: must hold {{}} where the prompt goes, and no "
                            "other braces (it is applied with str.format, as OpenRLHF's --data.input_template)")
        if cfg.chat_template != "none":
            raise UserError(f"--input_template {cfg.input_template!r} needs --chat_template none: with the "
                            "tokenizer's chat template the prompt is wrapped in that instead (as in OpenRLHF)")
    if cfg.overwrite and cfg.resume:
        raise UserError("--overwrite and --resume exclude each other: resume a run, or replace it")


def check_device(name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: the embedded backend runs on cpu or cuda")


def check_model_dir(flag: str, path: str) -> None:
    """A local Hugging Face model directory (nothing is downloaded): config.json and a tokenizer."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{flag} {path}: no such directory (a local Hugging Face model directory is expected)")
    if not (p / "config.json").is_file():
        raise UserError(f"{flag} {path}: not a Hugging Face model directory (no config.json)")
    if not any((p / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{flag} {path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")


def settings_of(config: dict) -> dict:
    """The shaping settings of a config dict, replay knobs flattened to replay.<field>."""
    flat = {k: v for k, v in config.items() if k != "replay" and k not in RUN_CONTROL}
    flat.update({f"replay.{k}": v for k, v in config.get("replay", {}).items()})
    return flat


def check_resume_settings(cfg, ckpt: Path) -> list[str]:
    """Differences between this run's settings and the checkpoint's: refused unless --allow_config_change."""
    run_file = ckpt / RUN_FILE
    if not run_file.is_file():  # a checkpoint written before run files existed: nothing to compare against
        return [f"{ckpt} has no {RUN_FILE}; settings not compared"]
    saved = json.loads(run_file.read_text())
    before, now = settings_of(saved["config"]), settings_of(dataclasses.asdict(cfg))
    # A setting added since the checkpoint was written (e.g. purge_boundary) changes nothing at its default.
    defaults = settings_of(dataclasses.asdict(type(cfg)()))
    diffs = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
             if before.get(k) != now.get(k) and not (k not in before and now.get(k) == defaults.get(k))]
    if saved.get("data_sha256") and saved["data_sha256"] != file_sha256(cfg.data):
        diffs.append(f"data: the contents of {cfg.data} changed since the checkpoint")
    if diffs and not cfg.allow_config_change:
        raise UserError(f"--resume {cfg.resume}: settings differ from {ckpt.name}'s ({'; '.join(diffs)}); "
                        "use the checkpoint's settings, or pass --allow_config_change")
    return diffs


def check_run_dir(cfg) -> Path | None:
    """The checkpoint to resume from (None: a fresh run); refuses a non-empty --out with nothing to resume."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    try:
        ckpt = find_checkpoint(cfg.resume, out)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if ckpt is None and out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        found = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        hint = "nothing there to resume; " if cfg.resume else "pass --resume auto to continue the run there, "
        raise UserError(f"--out {out}: not empty ({found}, ...); {hint}--overwrite to replace it, or another --out")
    return ckpt


# two_stage_abs_target pays +0.5 for naming the <reject> target; when fewer forget prompts than this share name it,
# the target is not the name the task is about (the RULE authors' MUSE labels carry "books") and the +0.5 would
# reward a stray word. Measured on the authors' release: RWKU targets appear in 21% (Meghan, Duchess of Sussex)
# to 100% of their forget prompts; "books" in 3.5% of the MUSE Stage 1 prompts and 4% of its validation prompts.
# (Only prompts count: refusal texts our builder writes name the target by construction.)
MIN_TARGET_SHARE = 0.1


def check_reward_fit(cfg, rows: list[dict]) -> None:
    """Refuse a reward variant the labels or the tokenizer cannot serve (UserError / DataError, before loading)."""
    if cfg.reward_variant != "two_stage_abs_target":
        return
    labels = [(line, row["prompt"], parse_label(row["label"])) for line, row in enumerate(rows, 1)]
    forget = [(line, prompt, target) for line, prompt, (tag, _, target) in labels if tag == "<reject>"]
    if not forget or not cfg.check_reward_target:  # (a missing target was refused with every label's check)
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    for target in sorted({t for _, _, t in forget}):
        back = tokenizer.decode(tokenizer.encode(target, add_special_tokens=False), skip_special_tokens=True)
        if target not in back:
            raise UserError(f"--model {cfg.model}: its tokenizer gives the target {target!r} back as {back!r}, so no "
                            "completion can name it and two_stage_abs_target's +0.5 for a refusal that names the "
                            "target is never paid (a forget reward never exceeds 0.5); use a "
                            "tokenizer that keeps case and spacing (rerule data tiny_model does), or "
                            "--reward_variant two_stage_abs")
    named = sum(t in prompt for _, prompt, t in forget)
    if named < MIN_TARGET_SHARE * len(forget):
        line, _, target = forget[0]
        raise DataError(cfg.data, line, "label",
                        f"the <reject> target {target!r} appears in the prompt of {named} of "
                        f"{len(forget)} forget rows (< {MIN_TARGET_SHARE:.0%}): it is not the name the prompts are "
                        "about, and two_stage_abs_target would pay +0.5 for saying it. For MUSE use "
                        "--reward_variant two_stage_abs (as the RULE authors do); to train anyway, "
                        "--no_check_reward_target")


def start_run(cfg, kind: str) -> tuple[list[dict], Path | None, dict]:
    """Check everything, then prepare --out. Returns (validated data rows, checkpoint to resume or None, the
    rerule_model.json of the folders this run will write, without `steps`)."""
    check_flags(cfg)
    check_device(cfg.device)
    check_model_dir("--model", cfg.model)
    if getattr(cfg, "ref_model", "") and cfg.kl_coef > 0:
        check_model_dir("--ref_model", cfg.ref_model)
    rows = read_jsonl(cfg.data, kind)
    if getattr(cfg, "reward_variant", ""):  # every label must be one the variant scores (RULE vs PURGE, target)
        check_labels_fit(cfg.data, enumerate((row["label"] for row in rows), 1), cfg.reward_variant)
    if kind == "sft":
        check_truncation(cfg, rows)
    else:
        check_reward_fit(cfg, rows)
    ckpt = check_run_dir(cfg)
    # What the folders this run writes will say about it (rerule_model.json; `steps` is added at each save).
    overrides = [f"--{name}" for name in ("allow_format_change", "allow_config_change", "allow_truncation")
                 if getattr(cfg, name, False)]
    if not getattr(cfg, "check_reward_target", True):
        overrides.append("--no_check_reward_target")
    record = {"made_by": "rerule train stage1", "stage": 1, "algorithm": "sft"}
    # text rows wrap no prompt in anything: such a model was trained in no prompt format
    prompts = kind != "sft" or any("prompt" in row for row in rows)
    if kind == "sft":
        record.update(stage_fields(cfg.model, [cfg.data]), chat_template=cfg.chat_template if prompts else None)
    else:
        reference = (cfg.ref_model or cfg.model) if cfg.kl_coef > 0 else None
        setting = f"--chat_template {cfg.chat_template}" + (f" --input_template {cfg.input_template!r}"
                                                            if cfg.input_template else "")
        fields = check_stage2(cfg.model, [cfg.data], cfg.chat_template, cfg.input_template or None, setting,
                              [("--ref_model", cfg.ref_model)] if cfg.ref_model and reference else [],
                              cfg.allow_format_change, resume=str(ckpt) if ckpt else None)
        record = {"made_by": "rerule train stage2", "stage": 2, **fields,
                  "algorithm": "grpo+replay" if cfg.replay.enable else "grpo", "reward_variant": cfg.reward_variant,
                  "reference_model": str(Path(reference).resolve()) if reference else None,
                  "chat_template": cfg.chat_template}
    record.update(input_template=(cfg.input_template or None) if prompts else None, rows=len(rows),
                  overrides=overrides, config=dataclasses.asdict(cfg))
    notes = check_resume_settings(cfg, ckpt) if ckpt is not None else []
    # ---- checks done: from here on --out may change ----
    out = Path(cfg.out)
    if ckpt is None and cfg.overwrite:
        removed = [name for name in RUN_OUTPUTS if (out / name).exists()]
        for name in removed:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if removed:
            print(f"--overwrite: removed {', '.join(removed)} from {out}")
    stale = clean_interrupted(out / "checkpoints") + clean_interrupted(out)  # (out: an interrupted final/)
    if stale:
        print(f"removed {len(stale)} leftover(s) of interrupted checkpoint writes: {', '.join(p.name for p in stale)}")
    if ckpt is not None:
        for note in notes:
            print(f"warning: resuming with a changed setting: {note}")
        saved = json.loads((ckpt / RUN_FILE).read_text()) if (ckpt / RUN_FILE).is_file() else {}
        print(f"resuming from {ckpt}: step {saved.get('step', ckpt.name)} done, continuing with the next one")
    return rows, ckpt, record
