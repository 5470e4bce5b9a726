"""What each run trained on, against the evaluation probes: `rerule report`'s training-data table and its § marker.

`rerule eval --unlearning_data FILE...` records a model's training files (the reproduce plans pass each arm's Stage 1
/ Stage 2 files). Every file the data commands write with `--eval` has an `OUT.meta.json` sidecar
(data/overlap.py::drop_eval_overlaps) that counts the training rows copying or nearly copying a probe: dropped
(`rows_dropped`, the default) or, with `--allow_eval_overlap` (the plans' EVAL_OVERLAP=keep, the files as released),
trained and marked (`rows_overlapping`). A file without a sidecar, or made without `--eval`, and a run that records
no files, are "unknown": never 0. In a PURGE run the answers file (`rerule data purge answers`: its sidecar's command,
or rows of {prompt, response} without one) is not training data: the reward reads the entity list built from it,
and only the Stage 2 prompts train."""

from __future__ import annotations

import json
from pathlib import Path

from openrlhf_rerule.data.schema import read_records

from .io import EvalDataError

MARK = "§"
NOTE = f"{MARK} trained the authors' files as released (`--allow_eval_overlap`, the plans' `EVAL_OVERLAP=keep`, as " \
       "the papers did): some training rows copy or nearly copy an evaluation probe (how many: the training-data " \
       "table); not a clean experiment."
UNKNOWN = "unknown"


def _file(path: str) -> dict:
    """One training file's counts from its sidecar, or the reason they are unknown ("why")."""
    meta_path = Path(f"{path}.meta.json")
    if not meta_path.is_file():
        return {"file": path, "why": "no .meta.json sidecar"}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise EvalDataError(f"{meta_path}: expected a JSON object (a `rerule data` sidecar)")
    if not meta.get("eval_files"):
        return {"file": path, "why": "made without --eval", "command": meta.get("command")}
    for field, kind in (("rows_dropped", int), ("rows_overlapping", int), ("allow_eval_overlap", bool)):
        if not isinstance(meta.get(field), kind) or (kind is int and isinstance(meta[field], bool)):
            raise EvalDataError(f"{meta_path}: field '{field}' must be {'an integer' if kind is int else 'true or false'}"
                                f", got {json.dumps(meta.get(field))}")
    released = meta["allow_eval_overlap"]
    return {"file": path, "command": meta.get("command"), "as_released": released,
            "dropped": meta["rows_dropped"], "trained": meta["rows_overlapping"] if released else 0}


def _target(run: dict) -> str:
    if "rwku" in run:
        return ", ".join(run["rwku"].get("targets") or []) or "-"
    return str((run.get("tofu") or {}).get("split") or (run.get("muse") or {}).get("corpus") or "-")


def _combine(parts: list[dict]) -> dict:
    """Totals over files, or over a method's targets: a count is unknown when any part's is; marked when a known
    part trained a row that overlaps a probe."""
    unknown = [u for p in parts for u in p.get("unknown", [])] + [f"{p['file']}: {p['why']}" for p in parts if "why" in p]
    known = [p for p in parts if "why" not in p]
    policies = {x for p in known for x in p.get("policies", ["as released" if p.get("as_released") else "dropped"])}
    return {"dropped": None if unknown else sum(p["dropped"] for p in known),
            "trained": None if unknown else sum(p["trained"] for p in known), "policies": sorted(policies),
            "marked": any(p.get("marked", p.get("as_released") and p.get("trained", 0) > 0) for p in known),
            "unknown": unknown}


def run_overlap(run: dict) -> dict:
    """One `rerule eval` run (one target): its recorded files' counts, combined."""
    files = next((run[k]["unlearning_data"] for k in ("rwku", "muse", "tofu") if run.get(k, {}).get("unlearning_data")),
                 [])
    if not files:
        return {"dropped": None, "trained": None, "policies": [], "marked": False, "target": _target(run),
                "files": [], "unknown": ["no training files recorded (`rerule eval --unlearning_data`)"]}
    parts = [_file(f) for f in files]
    if any(p.get("command") == "purge stage2" for p in parts):  # its answers file is not trained on: told by its
        # sidecar, or, written before `purge answers` had one, by its rows' shape
        parts = [p for p in parts if not (p.get("command") == "purge answers" or (
            p.get("why") == "no .meta.json sidecar" and "response" in read_records(p["file"])[0]))]
    return {**_combine(parts), "target": _target(run), "files": files}


def overlap_rows(loaded: list[dict], runs: list[dict], skip: str | None = None) -> list[dict]:
    """Per row of the report (`runs`, RWKU targets averaged), the row itself and, for a mean over targets, one row
    per target before it. `loaded`: the runs before averaging; `skip`: the base model's name (trained on nothing)."""
    by_dir = {run["dir"]: run_overlap(run) for run in loaded}
    rows = []
    for run in runs:
        if run["name"] == skip:
            continue
        members = [by_dir[d] for d in run.get("members", [run["dir"]])]
        if len(members) > 1:
            rows += [{"name": run.get("method", run["name"]), **m} for m in members]
            rows.append({"name": run["name"], **_combine(members), "target": f"sum over {len(members)} targets"})
        else:
            rows.append({"name": run["name"], **members[0]})
        run["training_data"] = {k: v for k, v in rows[-1].items() if k != "name"}
    return rows


def overlap_table(rows: list[dict], table) -> str:
    cells = [[r["name"] + (MARK if r["marked"] else ""), r["target"],
              {0: UNKNOWN, 1: (r["policies"] or [""])[0]}.get(len(r["policies"]), "mixed")]
             + [UNKNOWN if r[k] is None else str(r[k]) for k in ("dropped", "trained")] for r in rows]
    groups = "**Training data against the evaluation probes** (the `.meta.json` sidecars of the files `rerule eval " \
             "--unlearning_data` recorded; docs/evaluation.md#training-data-against-the-evaluation-probes) — " \
             "Dropped = training rows dropped as copies or near copies of a probe · Trained overlapping = rows " \
             "trained as released that copy or nearly copy a probe"
    notes = [NOTE] if any(r["marked"] for r in rows) else []
    if any(r["dropped"] is None for r in rows):
        notes.append(f"{UNKNOWN}: a training file without its `.meta.json` sidecar or made without `--eval`, or a run "
                     "that recorded no training files (`rerule eval --unlearning_data`): not counted, not 0.")
    return table(["Methods", "Target", "Overlap policy", "Dropped", "Trained overlapping"], cells, groups,
                 "\n".join(notes) or None)
