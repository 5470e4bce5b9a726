"""Atomic model folders: OUT/checkpoints/step_000012/ holds the HF model + tokenizer, rerule_model.json and
trainer_state.pt (optimiser, every RNG stream, data position, replay buffer, step); OUT/final/ the model, tokenizer
and rerule_model.json. A folder is written to a temporary directory, fsynced and renamed into place, and `latest` is
replaced atomically afterwards: a kill at any moment leaves the previous checkpoint intact and `latest` pointing at
a complete one."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from openrlhf_rerule.provenance import file_sha256, write_model_record

STATE_FILE = "trainer_state.pt"
# Small JSON beside the state: the step, the run's settings and the data file's hash, read on resume to
# compare settings without loading the (at real size, many-GB) optimiser state.
RUN_FILE = "rerule_run.json"
TEMP_PREFIXES = (".tmp-", ".old-", ".latest-")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model_dir(path: str | Path, model, tokenizer, record: dict, extra=None) -> Path:
    """Write a model folder atomically: weights, tokenizer, `extra(tmp)`'s files and, last, `rerule_model.json`
    (provenance.write_model_record: its tokenizer fingerprint is of the files beside it) into a temporary sibling,
    fsynced and renamed into place. A reader never sees the folder without its record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if extra is not None:
        extra(tmp)
    write_model_record(tmp, record)
    for p in [*tmp.rglob("*"), tmp]:
        _fsync(p)
    if path.exists():  # re-saving (after a resume): move the old copy aside first, never delete it first
        stale = path.parent / f".old-{path.name}-{os.getpid()}"
        os.rename(path, stale)
        os.rename(tmp, path)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.rename(tmp, path)
    _fsync(path.parent)
    return path


def save_checkpoint(root: str | Path, step: int, model, tokenizer, state: dict, keep: int = 2, *,
                    record: dict) -> Path:
    """Write OUT/checkpoints/step_{step} atomically (with `record` as its rerule_model.json) and point `latest`
    at it; keep the newest `keep`."""
    root = Path(root)
    config = state.get("config", {})

    def trainer_files(tmp: Path) -> None:
        torch.save(state, tmp / STATE_FILE)
        (tmp / RUN_FILE).write_text(json.dumps({"step": step, "config": config, "data_sha256": file_sha256(
            config["data"]) if config.get("data") else None}))

    final = save_model_dir(root / f"step_{step:06d}", model, tokenizer, record, trainer_files)
    pointer = root / f".latest-{os.getpid()}"
    pointer.write_text(final.name)
    _fsync(pointer)
    os.replace(pointer, root / "latest")
    _fsync(root)
    # Rotate only checkpoints older than this one: the newest never goes, so `latest` never dangles (a stale
    # step_* from another run with a higher number must not push the new one out).
    older = [p for p in sorted(root.glob("step_*")) if p.name < final.name]
    for old in older[:max(0, len(older) - (keep - 1))] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_interrupted(root: str | Path) -> list[Path]:
    """Delete what interrupted saves leave behind (.tmp-* directories can hold a whole model each)."""
    root = Path(root)
    stale = sorted(p for p in root.glob(".*") if p.name.startswith(TEMP_PREFIXES)) if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def find_checkpoint(resume: str, out: str | Path) -> Path | None:
    """`resume` = "auto" (OUT/checkpoints/latest, else the newest complete step_*), a path, or "" (none)."""
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(f"--resume {resume}: no {STATE_FILE} there")
        return path
    root = Path(out) / "checkpoints"
    latest = root / "latest"
    if latest.is_file() and (root / latest.read_text().strip() / STATE_FILE).exists():
        return root / latest.read_text().strip()
    complete = [p for p in sorted(root.glob("step_*")) if (p / STATE_FILE).exists()]
    return complete[-1] if complete else None


def load_state(path: Path) -> dict:
    # Our own file: it holds numpy RNG state and python objects, so weights_only loading is not enough.
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
