"""Property-based bad input (hypothesis): whatever bytes, JSON values, labels, reward calls or flag values come
in, the validators, the label parser, the OpenRLHF reward entry point and the trainer's flag checks either
accept them (and what they accept is usable downstream) or refuse them with their own error type — never
another exception, never a silently wrong value. Examples are derandomised, so every run tries the same
EXAMPLES inputs per property (docs/development.md gives the total)."""

import dataclasses
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_rerule.cli_convention import UserError
from openrlhf_rerule.data.schema import DataError, read_jsonl, read_records, validate_rows, write_jsonl
from openrlhf_rerule.local.config import Stage1Config, Stage2Config
from openrlhf_rerule.local.preflight import check_flags
from openrlhf_rerule.rewards.openrlhf_reward import LOG_NAMES, reward_func
from openrlhf_rerule.rewards.rule import LabelError, parse_label, rule_reward

EXAMPLES = 200
PROPERTY = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Text including lone surrogates, control characters and non-BMP characters.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                           max_leaves=12)
FIELDS = ["prompt", "response", "subject", "label", "prompt_id", "kind", "answer", "text"]
# Rows that are close to valid: the real field names, with values of any type (tags and kinds often right).
NEAR_ROWS = st.dictionaries(st.sampled_from(FIELDS) | TEXT,
                            st.sampled_from(["forget", "boundary", "retain", '["<reject>", "no", "x"]',
                                             '["<normal>", "a"]', "", " "]) | JSON_VALUES, max_size=6)
KINDS = [None, "stage1", "stage2", "eval", "sft"]


def encodable(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@PROPERTY
@given(data=st.binary(max_size=300), kind=st.sampled_from(KINDS))
def test_any_bytes_are_rows_or_a_data_error(tmp_path_factory, data, kind):
    path = tmp_path_factory.mktemp("bytes") / "f.jsonl"
    path.write_bytes(data)
    try:
        rows = read_jsonl(path, kind)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert rows and all(isinstance(r, dict) and encodable(r) for r in rows)


@PROPERTY
@given(rows=st.lists(NEAR_ROWS | JSON_VALUES, min_size=1, max_size=4), kind=st.sampled_from(KINDS))
def test_any_json_lines_are_valid_rows_or_a_data_error(tmp_path_factory, rows, kind):
    root = tmp_path_factory.mktemp("json")
    path = root / "f.jsonl"
    # ensure_ascii keeps lone surrogates as \\ud800 escapes: the file is valid UTF-8, the text is not valid Unicode.
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    try:
        read = read_jsonl(path, kind)
    except DataError as e:
        assert e.line >= 0 and str(path) in str(e)
        return
    assert encodable(read)  # no lone surrogate and no NaN got through
    validate_rows(read, kind or _guessed(read[0]), path)
    out = write_jsonl(root / "out.jsonl", read, kind or _guessed(read[0]))  # what we accept we can write back
    assert read_jsonl(out, kind) == read


def _guessed(row):
    from openrlhf_rerule.data.schema import SCHEMAS
    return next(k for k, fields in SCHEMAS.items() if all(name in row for name in fields))


@PROPERTY
@given(data=st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_converter_sources_are_records_or_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("src") / "f.json"
    path.write_bytes(data)
    try:
        records = read_records(path)
    except DataError:
        return
    assert all(isinstance(r, dict) and isinstance(r["__line__"], int) for r in records)


@PROPERTY
@given(label=JSON_VALUES | TEXT | JSON_VALUES.map(json.dumps)
       | st.lists(st.sampled_from(["<reject>", "<normal>", "", " ", "x"]) | TEXT, max_size=4).map(json.dumps))
def test_parse_label_returns_a_rule_label_or_raises_label_error(label):
    try:
        tag, answers, target = parse_label(label)
    except LabelError:
        return
    assert tag in ("<reject>", "<normal>") and answers and all(isinstance(a, str) for a in answers)
    assert target is None or isinstance(target, str)
    if tag == "<normal>":
        assert any(a.strip() for a in answers) and target is None


def test_parse_label_survives_deep_nesting():
    with pytest.raises(LabelError):
        parse_label("[" * 100_000)


LABELS = st.sampled_from(['["<reject>", "I do not know.", "Alba"]', '["<normal>", "Alba lives in Paris."]',
                          '["<reject>", "no"]']) | TEXT | JSON_VALUES
QUERY_LISTS = st.lists(TEXT | st.just("P: I do not know Alba.") | JSON_VALUES, max_size=3)


@PROPERTY
@given(queries=QUERY_LISTS | TEXT, prompts=st.lists(st.just("P: ") | TEXT, max_size=3) | TEXT,
       labels=st.lists(LABELS, max_size=3) | TEXT)
def test_reward_func_never_raises_and_never_truncates(queries, prompts, labels):
    out = reward_func(queries, prompts, labels)
    batch = len(queries) if isinstance(queries, list) else 1
    rewards = out["rewards"]
    assert rewards.shape == (batch,) and set(rewards.tolist()) <= {0.0, 0.5, 1.0}
    logs = out["extra_logs"]
    assert set(logs) == set(LOG_NAMES) and all(v.shape == (batch,) for v in logs.values())
    broken = not (isinstance(queries, list) and isinstance(prompts, list) and isinstance(labels, list)
                  and len(queries) == len(prompts) == len(labels)
                  and all(isinstance(x, str) for x in queries + prompts))
    assert logs["bad_call"].tolist() == [float(broken)] * batch
    for i in range(batch):  # a sample with any problem flag earns nothing
        flagged = any(logs[k][i] for k in ("bad_call", "bad_label", "reward_error", "prompt_not_found"))
        assert not (flagged and rewards[i] > 0)


@PROPERTY
@given(completion=TEXT, gold=st.text(min_size=1, max_size=30).filter(str.strip),
       target=st.text(min_size=1, max_size=30).filter(str.strip),  # two_stage_abs_target needs one (documented)
       variant=st.sampled_from(["two_stage_abs_target", "two_stage_abs"]),
       mode=st.sampled_from(["rule", "strict"]), backend=st.sampled_from(["rouge", "rouge_score"]))
def test_rule_reward_is_one_of_its_three_values(completion, gold, target, variant, mode, backend):
    for label in (["<normal>", gold], ["<reject>", "I do not know.", target]):
        try:
            r = rule_reward(completion, json.dumps(label), variant=variant, refusal_mode=mode, rouge_backend=backend)
        except LabelError:
            assert False, "a well-formed label was refused"
        assert r.reward in (0.0, 0.5, 1.0)


NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3)
STAGE2_NUMERIC = [f.name for f in dataclasses.fields(Stage2Config) if f.type in ("int", "float", int, float)]
STAGE1_NUMERIC = [f.name for f in dataclasses.fields(Stage1Config) if f.type in ("int", "float", int, float)]


@PROPERTY
@given(stage=st.sampled_from([1, 2]), changes=st.data())
def test_flag_checks_refuse_or_leave_a_sane_config(stage, changes):
    cls, numeric = (Stage1Config, STAGE1_NUMERIC) if stage == 1 else (Stage2Config, STAGE2_NUMERIC)
    names = changes.draw(st.lists(st.sampled_from(numeric), min_size=1, max_size=3, unique=True))
    values = {n: changes.draw(NUMBERS) for n in names}
    betas = changes.draw(st.sampled_from(["0.9,0.95", "0.9", "1,1", "a,b", "0.5,0.5,0.5", "-0.1,0.9"]))
    cfg = cls(model="m", data="d", out="o", adam_betas=betas, **values)
    try:
        check_flags(cfg)
    except UserError as e:
        assert str(e).startswith("--")  # names the flag
        return
    # accepted: every number is finite and the ones the trainer divides by / samples with are in range
    assert all(math.isfinite(getattr(cfg, n)) for n in numeric)
    assert cfg.lr > 0 and cfg.micro_batch_size >= 1 and all(0 <= float(b) < 1 for b in betas.split(","))
    if stage == 2:
        assert cfg.n_samples >= 2 and cfg.temperature > 0 and 0 < cfg.top_p <= 1 and cfg.steps >= 1
        assert cfg.rollout_batch >= 1 and cfg.max_new_tokens >= 1
    else:
        assert cfg.batch_size >= 1 and cfg.epochs > 0 and cfg.max_len >= 2
