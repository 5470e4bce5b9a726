"""Provenance that travels with every artefact, so that a stage can refuse an input that does not belong with it.

- a data file `F` has the sidecar `F.meta.json` (data/schema.py `write_with_sidecar`): the command that made it,
  its `role` ("training" or "evaluation"), its sources with their hashes and roles, the prompt format;
- a model folder (every `final/` and checkpoint) has `rerule_model.json`: what trained it from which model, on which
  files, with which chat template and prompt format, and its tokenizer's fingerprint;
- an evaluation summary carries the model's record and the evaluation's own settings (eval/cli.py).

Framework-free (stdlib only): the data commands and `rerule report` read records without loading torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_path

SIDECAR_SUFFIX = ".meta.json"
MODEL_RECORD = "rerule_model.json"
TRAINING, EVALUATION = "training", "evaluation"  # a data file's role
# the tokenizer files whose bytes define the token ids when a folder has no tokenizer.json
_VOCAB_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt", "spiece.model")


def file_sha256(path: str | Path) -> str | None:
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_record(path: str | Path) -> dict | None:
    """A provenance JSON object, or None when the file is absent; a corrupt record reads as absent with its
    reason, so that a check says "no record" rather than crash on it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return {"unreadable": f"{path}: {e}"}
    return record if isinstance(record, dict) else {"unreadable": f"{path}: not a JSON object"}


def read_sidecar(data_file: str | Path) -> dict | None:
    """`F.meta.json` of a data file F (None: made by hand or by an older version)."""
    return read_json_record(f"{data_file}{SIDECAR_SUFFIX}")


def write_sidecar(data_file: str | Path, meta: dict) -> Path:
    path = Path(f"{data_file}{SIDECAR_SUFFIX}")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def common_fields(paths, keys) -> dict:
    """What the sidecars of `paths` say of each key: the value they share, a list when they disagree, None when none
    says (a file made from several inputs inherits their benchmark and split this way)."""
    metas = [read_sidecar(p) or {} for p in paths]
    fields = {}
    for key in keys:
        values = []
        for value in (m[key] for m in metas if m.get(key) is not None):
            if value not in values:
                values.append(value)
        fields[key] = values[0] if len(values) == 1 else (values or None)
    return fields


def source_entry(path: str | Path) -> dict:
    """One input file as a record names it: where, which bytes, and what its own sidecar says it is."""
    meta = read_sidecar(path) or {}
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path), "role": meta.get("role"),
            "made_by": meta.get("command")}


def tokenizer_fingerprint(model_dir: str | Path) -> dict | None:
    """What decides the token ids of a model folder's tokenizer: {"vocab_size", "sha256"} over the vocabulary,
    merges and added tokens (not over formatting such as the chat template, which `chat_template_sha256` names
    separately). None: no tokenizer files in the folder."""
    model_dir = Path(model_dir)
    digest, vocab_size = hashlib.sha256(), None
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        model = data.get("model") or {}
        added = sorted((t["id"], t["content"]) for t in data.get("added_tokens") or [])
        digest.update(json.dumps([model.get("type"), model.get("vocab"), model.get("merges"), added],
                                 sort_keys=True, ensure_ascii=False).encode("utf-8"))
        ids = list((model.get("vocab") or {}).values()) if isinstance(model.get("vocab"), dict) \
            else list(range(len(model.get("vocab") or [])))
        vocab_size = max(ids + [i for i, _ in added], default=-1) + 1
    else:
        present = [model_dir / name for name in _VOCAB_FILES if (model_dir / name).is_file()]
        if not present:
            return None
        for path in present:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    config = read_json_record(model_dir / "tokenizer_config.json") or {}
    template = config.get("chat_template")
    if (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    return {"vocab_size": vocab_size, "sha256": digest.hexdigest(),
            "chat_template_sha256": hashlib.sha256(json.dumps(template).encode()).hexdigest() if template else None}


def read_model_record(model_dir: str | Path) -> dict | None:
    """The `rerule_model.json` of a model folder (None: a model this project did not train)."""
    return read_json_record(Path(model_dir) / MODEL_RECORD)


def write_model_record(model_dir: str | Path, record: dict) -> Path:
    """The record, completed with the folder's own tokenizer fingerprint, written atomically into the folder."""
    record = {**record, "tokenizer": tokenizer_fingerprint(model_dir)}
    path = Path(model_dir) / MODEL_RECORD
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
