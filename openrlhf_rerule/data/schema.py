"""The three jsonl file kinds the trainers and the evaluation read, one validator, and atomic writing.

    stage1  {"prompt": str, "response": str, "subject": str}                       refusal SFT (also pretrain.jsonl)
    stage2  {"prompt": str, "label": str, "prompt_id": str, "kind": forget|boundary|retain}   GRPO prompts
    eval    {"prompt": str, "answer": str, "kind": str, "subject": str}             evaluation QA

``label`` is the JSON encoding of RULE's solution list (see openrlhf_rerule.rewards.parse_label) or of a PURGE
label (openrlhf_rerule.rewards.purge); a forget row must carry a <reject> or <purge> label and a boundary /
retain row a <normal> one. Extra fields are allowed and
kept (e.g. TOFU's perturbed answers). Every error names the file, the 1-based line and the field.
"""

import json
from pathlib import Path

from openrlhf_rerule.atomic import atomic_path
from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.provenance import write_sidecar
from openrlhf_rerule.rewards.rule import LabelError
from openrlhf_rerule.rewards.variants import check_label_fits, label_tag

# field -> must the string be non-empty
SCHEMAS = {
    "stage1": {"prompt": True, "response": True, "subject": False},
    "stage2": {"prompt": True, "label": True, "prompt_id": True, "kind": True},
    "eval": {"prompt": True, "answer": True, "kind": True, "subject": False},
    "text": {"text": True},
}
# An SFT file (Stage 1, or the demo's "learn the world" corpus) may mix stage1 rows with plain-text rows.
MIXED_KINDS = {"sft": ("stage1", "text")}
STAGE2_KINDS = {"forget": ("<reject>", "<purge>"), "boundary": ("<normal>",), "retain": ("<normal>",)}


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, the line and the field (line 0: the file as a whole).
    A UserError, so every command reports it as one line with exit code 2."""

    def __init__(self, path, line, field, message):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}, line {line}, field '{field}': " if line else f"{path}, field '{field}': "
        where = f"{path}: " if field == "(file)" and not line else where
        super().__init__(where + message)


class _RecordError(ValueError):
    """Raised inside json.loads hooks; read_jsonl / read_records add the file and line."""

    def __init__(self, field, message):
        self.field = field
        super().__init__(message)


def _check_text(value: str, field: str) -> None:
    # json.loads accepts "\ud800" escapes: a lone surrogate passes every check, then crashes whoever encodes it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _RecordError(field, f"lone surrogate {value[e.start]!r}: not valid Unicode text") from None


def _object(pairs: list) -> dict:
    """object_pairs_hook: duplicate keys (json.loads keeps the last silently) and lone surrogates are errors."""
    out = {}
    for key, value in pairs:
        _check_text(key, key)
        if key in out:
            raise _RecordError(key, "duplicate key in one object (which value is meant?)")
        if isinstance(value, str):
            _check_text(value, key)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    _check_text(item, key)
        out[key] = value
    return out


def _no_constant(name: str):
    raise _RecordError("(row)", f"{name} is not valid JSON")


def loads_record(text: str, path, line: int, field_line=None):
    """json.loads with the file's strictness: no duplicate keys, no lone surrogates, no NaN / Infinity.
    `field_line` maps an error to its line when `text` spans several (a JSON array)."""
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise DataError(path, line + e.lineno - 1, "(row)", f"invalid JSON: {e.msg} at column {e.colno}") from None
    except _RecordError as e:
        raise DataError(path, line if field_line is None else field_line, e.field, str(e)) from None


def _decode(data: bytes, path, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data[:e.start].count(b"\n")
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(path, line, "(row)", f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                                             "re-save the file as UTF-8") from None


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise DataError(path, 0, "(file)", "is a directory, not a file")
    if not path.is_file():
        raise DataError(path, 0, "(file)", "no such file")


def read_text(path) -> str:
    """A whole UTF-8 text file, or DataError naming the line of the first byte that is not UTF-8."""
    path = Path(path)
    _check_path(path)
    return _decode(path.read_bytes(), path)


def validate_rows(rows: list, kind: str, path="<rows>") -> None:
    """Raise DataError on the first bad row (line = 1-based row index, as in the file)."""
    if kind not in SCHEMAS and kind not in MIXED_KINDS:
        raise ValueError(f"unknown file kind {kind!r} (expected one of {sorted([*SCHEMAS, *MIXED_KINDS])})")
    if not rows:
        raise DataError(path, 1, "(file)", "no rows: the file is empty")
    seen_ids = {}
    for line, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(path, line, "(row)", f"expected a JSON object, got {type(row).__name__}")
        row_kind = kind
        if kind in MIXED_KINDS:  # a row with a "text" field is a text row, any other one a stage1 row
            row_kind = MIXED_KINDS[kind][1] if "text" in row else MIXED_KINDS[kind][0]
        for name, non_empty in SCHEMAS[row_kind].items():
            if name not in row:
                raise DataError(path, line, name, f"missing ({row_kind} rows need {', '.join(SCHEMAS[row_kind])})")
            if not isinstance(row[name], str):
                raise DataError(path, line, name, f"must be a string, got {type(row[name]).__name__}")
            if non_empty and not row[name].strip():
                raise DataError(path, line, name, "must not be empty")
        if kind == "stage2":
            try:
                tag = label_tag(row["label"])
            except LabelError as e:
                raise DataError(path, line, "label", str(e)) from None
            expected = STAGE2_KINDS.get(row["kind"])
            if expected is None:
                raise DataError(path, line, "kind", f"must be one of {sorted(STAGE2_KINDS)}, got {row['kind']!r}")
            if tag not in expected:
                raise DataError(path, line, "label", f"a {row['kind']} prompt needs a {' or '.join(expected)} label, "
                                f"got {tag}")
            first = seen_ids.get(row["prompt_id"])
            if first is not None and not _is_repeat(row, rows[first - 1]):
                raise DataError(path, line, "prompt_id", f"duplicate of line {first} (a deliberate repeat carries "
                                "\"repeat\": k >= 1 and the same prompt, label and kind)")
            seen_ids.setdefault(row["prompt_id"], line)


def check_labels_fit(path, numbered_labels, variant: str, field: str = "label", setting: str = ""):
    """DataError at the first row whose label `variant` cannot score (PURGE labels under a RULE variant and the
    reverse; a <reject> label without a target under two_stage_abs_target). Both backends run it before any model
    loads: `rerule train stage2` on --reward_variant, the OpenRLHF launcher on RERULE_REWARD_VARIANT.
    `numbered_labels`: (line, label) pairs; `setting`: where the variant was chosen (default --reward_variant)."""
    for line, label in numbered_labels:
        try:
            check_label_fits(variant, label)
        except LabelError as e:
            raise DataError(path, line, field, f"{e} ({setting or '--reward_variant ' + variant})") from None


def _is_repeat(row: dict, first: dict) -> bool:
    """A whole-batch file repeats rows on purpose (builders.whole_batches): same prompt, label, kind, marked."""
    repeat = row.get("repeat")
    return (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1
            and all(row[k] == first[k] for k in ("prompt", "label", "kind")))


def read_jsonl(path, kind: str | None = None) -> list[dict]:
    """Read and validate a jsonl file of the given kind (guessed from the first row when None).
    Blank lines are not allowed: they would shift line numbers between tools."""
    path = Path(path)
    _check_path(path)
    rows = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            line = _decode(raw, path, line_no)
            if not line.strip():
                raise DataError(path, line_no, "(row)", "blank line")
            rows.append(loads_record(line.rstrip("\r\n"), path, line_no))
    if kind is None and rows and isinstance(rows[0], dict):  # the first kind whose fields the first row has
        kind = next((k for k, fields in SCHEMAS.items() if all(name in rows[0] for name in fields)), None)
        if kind is None:
            raise DataError(path, 1, "(row)", f"cannot tell the file kind from fields {sorted(rows[0])}; pass kind")
    validate_rows(rows, kind or "eval", path)
    return rows


def write_jsonl(path, rows: list[dict], kind: str) -> Path:
    """Validate `rows` as `kind`, then write them atomically (temp file + rename): on error nothing is written."""
    path = Path(path)
    validate_rows(rows, kind, path)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_records(path, allow_strings: bool = False) -> list:
    """Source files of the converters: a JSON array, JSON lines (TOFU's files are JSON lines), or JSON lines of
    arrays (strzar/purge's copy of TOFU's larger files). Records are objects (with their 1-based line under
    "__line__"); `allow_strings` also accepts plain strings (MUSE privleak)."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(path, 1, "(file)", "no records: the file is empty")
    if text.lstrip().startswith("["):
        try:
            records = loads_record(text, path, 1, field_line=0)
            lines = _object_lines(text) + [0] * len(records if isinstance(records, list) else ())  # non-objects
        except DataError:
            # JSON lines of arrays (strzar/purge's copy of TOFU: retain99.json, full.json, ... as arrays of up to
            # 1000 records, one a line): their records in order, each at its array's line
            arrays = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
            if len(arrays) < 2 or not all(line.lstrip().startswith("[") for _, line in arrays):
                raise
            records, lines = [], []
            for n, line in arrays:
                array = loads_record(line, path, n)
                if not isinstance(array, list):
                    raise DataError(path, n, "(row)", "expected a JSON array of objects on each line") from None
                records += array
                lines += [n] * len(array)
        if not isinstance(records, list):
            raise DataError(path, 1, "(file)", "expected a JSON array of objects")
    else:
        _refuse_one_object(text, path)
        records, lines = [], []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                records.append(loads_record(line, path, line_no))
                lines.append(line_no)
    for record, line in zip(records, lines):
        if allow_strings and isinstance(record, str):
            continue
        if not isinstance(record, dict):
            raise DataError(path, line, "(row)", f"expected a JSON object, got {type(record).__name__}")
        record["__line__"] = line
    return records


def _refuse_one_object(text: str, path) -> None:
    """A pretty-printed JSON object (a dict of splits or columns) is valid JSON of the wrong shape: say that,
    not "invalid JSON" at its first line. (A one-line object is a JSON-lines file of one record.)"""
    if not text.lstrip().startswith("{") or len([line for line in text.splitlines() if line.strip()]) < 2:
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return  # JSON lines, or broken JSON: the line-by-line reader names the line
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:4])
        raise DataError(path, 1, "(file)", f"valid JSON of the wrong shape: one JSON object (keys {keys}), "
                        "expected a JSON array of objects or JSON lines (one object a line)")


def _object_lines(text: str) -> list[int]:
    """1-based line of each top-level object's opening brace in a JSON array (one pass)."""
    depth, line, in_string, escaped, lines = 0, 1, False, False, []
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == 2:
                lines.append(line)
        elif ch in "]}":
            depth -= 1
    return lines


def require(record: dict, field: str, path, kind=str):
    """A source record's field, or DataError naming file, line and field."""
    if field not in record:
        raise DataError(path, record.get("__line__", 0), field, "missing")
    value = record[field]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise DataError(path, record.get("__line__", 0), field, f"must be a non-empty {kind.__name__}")
    return value


def write_with_sidecar(out, rows: list[dict], kind: str, meta: dict) -> Path:
    """The rows, then `<out>.meta.json` beside them (both atomically): how the file was made and checked (`meta`:
    the command, its role and sources, data/roles.py), and how many rows it has."""
    # OpenRLHF loads the file with `datasets`' JSON reader, which wants the same fields in every row
    for key, default in (("mode", "qa"), ("repeat", 0)):
        if any(key in row for row in rows):
            rows = [{key: default, **row} for row in rows]
    path = write_jsonl(out, rows, kind)
    write_sidecar(out, {**meta, "rows": len(rows)})
    return path
