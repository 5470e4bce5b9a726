"""What made an evaluation summary, and the checks that compare it with what it must agree with (issue 25).

`rerule eval` writes one `provenance` block into every summary (cli.py: the model with its `rerule_model.json`
record and tokenizer fingerprint, the settings, the item counts, the data files with their sha256, the retain run,
the overrides), and before any model loads it refuses:
- a chat template other than the one the model's record says it was trained with (`--allow_chat_template_mismatch`);
- an --out folder holding summaries of another model (`--overwrite_out` removes them);
- a TOFU retain run evaluated with other settings (no flag: Forget Quality would compare other prompts).
Stdlib only: `rerule report` reads the same fields without importing torch."""

from __future__ import annotations

import json
from pathlib import Path

from openrlhf_rerule.provenance import MODEL_RECORD, read_json_record

# Flags that change no number (where to read and write, speed, labels, overrides; the retain run and the unlearning
# data have their own entries): every other flag of `rerule eval` is a setting, recorded under its flag name.
NOT_SETTINGS = frozenset({"benchmark", "model", "data", "out", "name", "batch_size", "device", "cpu_threads",
                          "judge_cache", "retain_run", "unlearning_data", "allow_chat_template_mismatch",
                          "overwrite_out", "check_only", "vllm_gpu_memory_utilization"})
# What a TOFU retain run must share with the evaluation whose Forget Quality it makes.
RETAIN_COMPARED = ("split", "chat_template_applied", "prompt_template", "system_prompt", "max_new_tokens")
UNCHECKED = {"tofu log": "retain log without record: settings unchecked",
             "rerule eval": "retain run without provenance: settings unchecked"}


def settings(args, fingerprint: dict | None) -> dict:
    """The setting flags under their names, and whether the prompts went through the tokenizer's chat template:
    MUSE's never do (raw text by the benchmark's definition), TOFU's not with --prompt_template, no benchmark's
    when the tokenizer has none."""
    out = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_SETTINGS}
    out["chat_template_applied"] = (args.chat_template == "auto" and args.benchmark != "muse"
                                    and not getattr(args, "prompt_template", None)
                                    and bool((fingerprint or {}).get("chat_template_sha256")))
    return out


def model_of(summary: dict) -> tuple[str, str | None] | None:
    """Which model a summary evaluated: (resolved path, tokenizer sha256) from its provenance; a summary written
    before provenance existed gives its `model` path as typed (resolved from here, the best guess) and no
    fingerprint; None: it names no model."""
    model = (summary.get("provenance") or {}).get("model")
    if model:
        return model.get("path"), (model.get("tokenizer") or {}).get("sha256")
    return (str(Path(summary["model"]).resolve()), None) if isinstance(summary.get("model"), str) else None


def same_model(a: tuple, b: tuple) -> bool:
    """One model: the same folder with the same tokenizer (a fingerprint an older summary lacks is not held
    against it). A model retrained into its own folder counts as the same: its new summaries replace the old."""
    return a[0] == b[0] and (a[1] == b[1] or None in (a[1], b[1]))


def other_models(out_dir, model: tuple) -> list[tuple[Path, str]]:
    """The summaries in `out_dir` of a model other than `model`, each with the model it names."""
    found = []
    for path in sorted(Path(out_dir).glob("*_summary.json")) if Path(out_dir).is_dir() else []:
        theirs = model_of(read_json_record(path) or {})
        if theirs is None or not same_model(theirs, model):
            found.append((path, theirs[0] if theirs else "a model it does not name"))
    return found


def chat_template_mismatch(args, record: dict | None, fingerprint: dict | None, applied: bool) -> str | None:
    """What differs between the prompt wrapping the model's record says it trained on (the tokenizer's chat
    template, an input template such as OpenRLHF's --data.input_template, or the raw prompt) and this evaluation's,
    or None. MUSE's prompts are raw text whatever the flag says, so only the other benchmarks are compared; a
    tokenizer without a chat template formats both settings alike."""
    trained = (record or {}).get("chat_template")
    if args.benchmark == "muse" or trained not in ("auto", "none"):
        return None
    chat = bool((fingerprint or {}).get("chat_template_sha256"))
    template = getattr(args, "prompt_template", None)
    before = "chat" if trained == "auto" and chat else record.get("input_template") or "raw"
    now = "chat" if applied else template or "raw"
    if before == now:
        return None
    said = {"chat": "the tokenizer's chat template", "raw": "raw prompt text"}
    here = said.get(now, f"--prompt_template {json.dumps(now)}") + \
        (" (--chat_template auto)" if now == "chat" else " (--chat_template none)" if now == "raw" else "")
    there = f"chat_template {json.dumps(trained)}" + (f", input_template {json.dumps(before)}"
                                                      if before not in said else "")
    return f"{Path(args.model) / MODEL_RECORD} says {there} (the training prompts), this evaluation formats " \
           f"prompts with {here}"


def retain_mismatch(retain: dict, ours: dict, fingerprint: dict | None) -> str | None:
    """One line naming both sides where the retain run's recorded settings differ from this evaluation's (None:
    they agree, or it recorded none, which the summary then marks). The tokenizer compares by its fingerprint,
    and by its chat template where the prompts use it."""
    prov = (retain.get("summary") or {}).get("provenance")
    if not prov:
        return None
    sides = []
    for recorded, fp in ((prov.get("settings") or {}, (prov.get("model") or {}).get("tokenizer")), (ours, fingerprint)):
        side, fp = {k: recorded.get(k) for k in RETAIN_COMPARED}, fp or {}
        template = f", chat template {str(fp.get('chat_template_sha256'))[:12]}" \
            if ours["chat_template_applied"] else ""
        side["tokenizer"] = f"{fp['sha256'][:12]} (vocab {fp.get('vocab_size')}{template})" if fp.get("sha256") \
            else "unknown"
        sides.append(side)
    theirs, mine = sides
    if fingerprint is None:  # --check_only with a hub id: no tokenizer here to compare
        del theirs["tokenizer"], mine["tokenizer"]
    differ = [k for k in theirs if theirs[k] != mine[k]]
    if not differ:
        return None
    say = lambda side: ", ".join(f"{k} {side[k] if k == 'tokenizer' else json.dumps(side[k])}"  # noqa: E731
                                 for k in differ)
    return f"--retain_run {Path(retain['path']).with_name('tofu_summary.json')}: the retain run was evaluated with " \
           f"{say(theirs)}; this evaluation: {say(mine)}: Forget Quality compares truth ratios of the same split, " \
           "prompts and tokenizer; re-evaluate the retain model with this evaluation's settings"
