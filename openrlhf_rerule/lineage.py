"""What a model folder's `rerule_model.json` says about how it was trained, and what Stage 2 refuses to put together.
Both backends call these (the embedded `rerule train`, and the OpenRLHF entry points before Ray starts), so one
rule holds everywhere. Stdlib only: the checks read records, config and tokenizer files, never weights.

Stage 2 refuses (UserError: one line, exit 2), before any weights load:
  (a) a reference (or reward / critic) model whose tokenizer gives other token ids than the policy's: a KL term
      (or a score) across two vocabularies compares unrelated tokens. No override.
  (c) a policy (or resume checkpoint) folder whose tokenizer files are not the ones its record says it was trained
      with (files swapped after training). No override.
  (b) prompts wrapped otherwise than the policy's record says it was trained on (chat template, input template,
      or the data sidecars' `prompt_format`), unless --allow_format_change: then a WARNING, and the new model's
      record keeps what changed. A policy without a record (a hub model) is not checked; its record says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cli_convention import UserError
from .provenance import (EVALUATION, MODEL_RECORD, common_fields, read_model_record, read_sidecar, source_entry,
                         tokenizer_fingerprint)

NO_RECORD = "base without record"
FORMAT_FLAG = "--allow_format_change"
FORMAT_HELP = ("train Stage 2 although its prompt format (chat template, input template, or the data's "
               "prompt_format) differs from the one the --model's rerule_model.json says it was trained with; the "
               "change is printed as a WARNING and kept in the new model's rerule_model.json")


def stage_fields(base_model: str, data: list[str]) -> dict:
    """The record fields every stage shares: the model it started from, with that model's own record one level deep
    (the base's `base_record` is dropped; its `base_model` names the folder whose record holds the rest), and the
    training files with what their sidecars say (prompt_format, benchmark, split: a value, a list when the files
    disagree, None when no sidecar says). Refuses (UserError) a training file whose sidecar says "evaluation"."""
    evaluation = [p for p in data if (read_sidecar(p) or {}).get("role") == EVALUATION]
    if evaluation:  # the data commands refuse these as training inputs; a file made or converted from one is too
        raise UserError(f"{', '.join(map(str, evaluation))}: an evaluation file (field 'role' of its .meta.json "
                        "sidecar: \"evaluation\"): training on the test; to train on it on purpose, make the training "
                        "file with the data command's --allow_eval_as_training (recorded in its sidecar)")
    path = Path(base_model)
    base = read_model_record(path) if path.is_dir() else None
    return {"base_model": str(path.resolve()) if path.is_dir() else base_model,
            "base_record": {k: v for k, v in base.items() if k != "base_record"} if base else NO_RECORD,
            "data": [source_entry(p) for p in data], **common_fields(data, ("prompt_format", "benchmark", "split"))}


def _ids(fp: dict) -> str:
    return f"vocab_size {fp['vocab_size']}, sha256 {fp['sha256'][:12]}"


def check_stage2(policy: str, data: list[str], chat_template: str, input_template: str | None, format_setting: str,
                 references: list[tuple[str, str]] = (), allow_format_change: bool = False,
                 resume: str | None = None, model_flag: str = "--model") -> dict:
    """Checks (a), (b), (c) of the module docstring. `format_setting` names the Stage 2 flags in the message
    (e.g. "--chat_template none"); `references` are (flag, path) of models that must share the policy's token
    ids; `resume` is a checkpoint folder the weights will come from instead of `policy`. Returns the new model's
    record fields: stage_fields(policy, data), and `format_change` (the accepted differences, or None)."""
    tokenizer = tokenizer_fingerprint(policy) if Path(policy).is_dir() else None
    for flag, path in references:
        other = tokenizer_fingerprint(path) if Path(path).is_dir() else None
        if other and tokenizer and other["sha256"] != tokenizer["sha256"]:  # (the token ids; not the chat template)
            raise UserError(f"{flag} {path}: its tokenizer is not the policy's ({model_flag} {policy}), field "
                            f"'tokenizer': {_ids(other)} vs {_ids(tokenizer)}; a KL term or score across two "
                            "vocabularies compares unrelated tokens: use a model that shares the policy's tokenizer")
    for flag, folder in ((model_flag, policy), ("--resume", resume)):
        own = read_model_record(folder) if folder and Path(folder).is_dir() else None
        recorded, found = (own or {}).get("tokenizer"), tokenizer_fingerprint(folder) if own else None
        if recorded and (not found or found["sha256"] != recorded["sha256"]):
            raise UserError(f"{flag} {folder}: its tokenizer files are not the ones {Path(folder) / MODEL_RECORD} "
                            f"recorded (field 'tokenizer': {_ids(found) if found else 'none'} now, {_ids(recorded)} "
                            "recorded): the folder's files were changed after training; put its own tokenizer back")
    fields = stage_fields(policy, data)
    record = fields["base_record"]
    if record == NO_RECORD or "unreadable" in record:
        if record != NO_RECORD:
            print(f"note: {record['unreadable']}: formats not compared", file=sys.stderr)
        return {**fields, "format_change": None}
    where = Path(policy) / MODEL_RECORD
    differences = []
    if record.get("chat_template") is not None:  # None: a model trained on text rows only, no prompt wrapped
        # What a prompt is wrapped in, in one vocabulary for both backends: `--chat_template auto` and OpenRLHF's
        # `--data.apply_chat_template` both mean the tokenizer's own template (which a template-less one lacks).
        sides = ((record["chat_template"], record.get("input_template"), record.get("tokenizer")),
                 (chat_template, input_template, tokenizer))
        before, now = (f"the tokenizer's chat template (sha256 {sha[:12]})" if chat == "auto" and sha else
                       f"the input template {template!r}" if template else "the raw prompt"
                       for chat, template, sha in ((c, t, (fp or {}).get("chat_template_sha256"))
                                                   for c, t, fp in sides))
        if before != now:
            differences.append(f"field 'chat_template': {before} in {where}, {now} with {format_setting}")
    old, new = record.get("prompt_format"), fields["prompt_format"]
    if old is not None and new is not None and old != new:
        differences.append(f"field 'prompt_format': {old!r} in {where}, {new!r} in the sidecar of {', '.join(data)}")
    if differences and not allow_format_change:
        raise UserError(f"{model_flag} {policy} was trained on other prompts than Stage 2 would give it "
                        f"({'; '.join(differences)}); use the format it was trained with, or pass {FORMAT_FLAG} "
                        "to train on the new one (kept in the new model's record)")
    if differences:
        print(f"WARNING: {FORMAT_FLAG}: Stage 2 changes the prompt format: {'; '.join(differences)}", file=sys.stderr)
    return {**fields, "format_change": "; ".join(differences) or None}
