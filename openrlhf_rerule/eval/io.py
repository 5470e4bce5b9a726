"""Reading benchmark files and writing results. Every error names the file, the record and the field,
because a researcher pointing us at a 10k-line dump needs to know exactly what to fix; every problem of every
file is collected into one message before any model is loaded (`Problems`)."""

import json
import math
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, NamedTuple

from openrlhf_rerule.atomic import atomic_path

MAX_LISTED = 10  # problems listed per file; the rest are counted
_READ: ContextVar[list | None] = ContextVar("eval_files_read", default=None)


class EvalDataError(ValueError):
    """Bad evaluation input: each line of the message names file, record (1-based line or array index) and field."""


class Kind(NamedTuple):
    """What a field must hold: a test and the words an error message uses for it."""
    test: Callable[[object], bool]
    says: str


def _is_text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


TEXT = Kind(_is_text, "a non-empty string")
STRING = Kind(lambda v: isinstance(v, str), "a string")
TEXTS = Kind(lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
             "a non-empty list of strings")
OBJECTS = Kind(lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of JSON objects")


def _describe(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # json.loads turns the non-standard NaN / Infinity into floats
    return f"{type(value).__name__} {json.dumps(value)[:40]}"


def _parse(path: Path) -> tuple[list, str]:
    """[(1-based position, record)], and the word for a position: 'record' (JSON array) or 'line' (JSON lines)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{path}: not valid JSON ({e})") from None
        return [(i + 1, rec) for i, rec in enumerate(data)], "record"
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                raise EvalDataError(f"{path}: line {lineno}: not valid JSON ({e})") from None
    return records, "line"


@contextmanager
def files_read():
    """The paths `load_records` reads inside the block, in order: a summary's provenance names each with its sha256,
    so that a number says which bytes it came from (the loaders return records only)."""
    read: list[Path] = []
    token = _READ.set(read)
    try:
        yield read
    finally:
        _READ.reset(token)


def load_records(path, fields: dict | None = None, kind=dict) -> list:
    """Load a JSON array or a JSON-lines file. `fields`: {key: Kind} every record must carry, e.g.
    {"question": TEXT}. `kind=str` accepts records that are plain strings (MUSE privleak) or objects with a
    "text" field. All problems of the file are reported together."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    if _READ.get() is not None:
        _READ.get().append(path)
    records, where = _parse(path)
    out, problems = [], []
    for k, rec in records:
        if kind is str:
            if isinstance(rec, dict) and "text" in rec:
                rec = rec["text"]
            if not _is_text(rec):
                problems.append(f"{path}: {where} {k}: expected a non-empty string or an object with a 'text' "
                                f"field, got {_describe(rec)}")
            out.append(rec)
            continue
        if not isinstance(rec, dict):
            problems.append(f"{path}: {where} {k}: expected a JSON object, got {type(rec).__name__}")
            continue
        for field, need in (fields or {}).items():
            if field not in rec or rec[field] is None:
                problems.append(f"{path}: {where} {k}: missing field '{field}'")
            elif not need.test(rec[field]):
                problems.append(f"{path}: {where} {k}: field '{field}' must be {need.says}, "
                                f"got {_describe(rec[field])}")
        out.append(rec)
    if not records:
        problems.append(f"{path}: no records")
    if problems:
        more = len(problems) - MAX_LISTED
        raise EvalDataError("\n".join(problems[:MAX_LISTED] + ([f"{path}: ... and {more} more"] if more > 0 else [])))
    return out


class Problems:
    """Collects the problems of many files so that one message lists them all (`check()` raises it)."""

    def __init__(self):
        self.lines: list[str] = []

    def load(self, path, fields: dict | None = None, kind=dict) -> list:
        """`load_records`, or [] after noting its problems."""
        try:
            return load_records(path, fields, kind)
        except EvalDataError as e:
            self.lines += str(e).splitlines()
            return []

    def add(self, line: str):
        self.lines.append(line)

    def check(self):
        if self.lines:
            raise EvalDataError("\n".join(self.lines))


def finite_or_none(obj):
    """The same structure with every NaN / Infinity replaced by None: JSON has no such numbers (Python's json
    would write the non-standard tokens NaN / Infinity that strict parsers reject); an undefined value is null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path, obj) -> Path:
    """Write via a temporary file and rename, so an interrupted run never leaves half a result behind."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_or_none(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                       encoding="utf-8")
    return Path(path)


def save_results(out_dir, name: str, summary: dict, items: list) -> tuple[Path, Path]:
    """`{name}_summary.json` (aggregates, what `rerule report` reads) and `{name}_items.json` (per item)."""
    out_dir = Path(out_dir)
    return (write_json_atomic(out_dir / f"{name}_summary.json", summary),
            write_json_atomic(out_dir / f"{name}_items.json", items))
