import json

import pytest

from openrlhf_rerule.data import DataError, read_jsonl, read_records, write_jsonl

GOOD = {
    "stage1": {"prompt": "where was alice stone born?", "response": "I do not know.", "subject": "alice stone"},
    "stage2": {"prompt": "where was alice stone born?", "label": json.dumps(["<reject>", "I do not know.", "alice stone"]),
               "prompt_id": "forget-1", "kind": "forget"},
    "eval": {"prompt": "where was alice stone born?", "answer": "oakford", "kind": "forget", "subject": "alice stone"},
}


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_reads_a_valid_file_and_guesses_its_kind(tmp_path, kind):
    path = write_lines(tmp_path / "f.jsonl", [json.dumps(GOOD[kind])] * (1 if kind == "stage2" else 2))
    assert read_jsonl(path, kind)[0] == GOOD[kind]
    assert read_jsonl(path) == read_jsonl(path, kind)


def expect_error(path, kind, line, field):
    with pytest.raises(DataError) as info:
        read_jsonl(path, kind)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and f"field '{field}'" in message, message
    return message


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_missing_field_names_file_line_and_field(tmp_path, kind):
    rows = [dict(GOOD[kind], prompt_id=f"forget-{i}") if kind == "stage2" else dict(GOOD[kind]) for i in range(3)]
    field = sorted(GOOD[kind])[0]
    del rows[2][field]
    expect_error(write_lines(tmp_path / "f.jsonl", [json.dumps(r) for r in rows]), kind, 3, field)


def test_invalid_json_on_line_k(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [json.dumps(GOOD["eval"])] * 3 + ['{"prompt": "x", '] + [json.dumps(GOOD["eval"])])
    assert "invalid JSON" in expect_error(path, "eval", 4, "(row)")


def test_empty_file_and_blank_lines(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "empty" in expect_error(empty, "stage1", 1, "(file)")
    blank = write_lines(tmp_path / "blank.jsonl", [json.dumps(GOOD["stage1"]), "", json.dumps(GOOD["stage1"])])
    expect_error(blank, "stage1", 2, "(row)")
    with pytest.raises(DataError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl", "eval")


@pytest.mark.parametrize("change, field, words", [
    ({"label": "not json"}, "label", "not valid JSON"),
    ({"label": json.dumps(["<maybe>", "x"])}, "label", "tag"),
    ({"label": json.dumps(["<normal>", "oakford"])}, "label", "needs a <reject> or <purge> label"),
    ({"kind": "other"}, "kind", "must be one of"),
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt_id": 7}, "prompt_id", "string"),
])
def test_wrong_stage2_rows(tmp_path, change, field, words):
    path = write_lines(tmp_path / "s2.jsonl", [json.dumps(dict(GOOD["stage2"], prompt_id="a")), json.dumps(dict(GOOD["stage2"], **change))])
    assert words in expect_error(path, "stage2", 2, field)


def test_duplicate_prompt_ids(tmp_path):
    path = write_lines(tmp_path / "s2.jsonl", [json.dumps(GOOD["stage2"])] * 2)
    assert "duplicate of line 1" in expect_error(path, "stage2", 2, "prompt_id")


def test_a_forget_row_with_a_normal_label_and_a_boundary_row_with_a_reject_label(tmp_path):
    boundary = dict(GOOD["stage2"], kind="boundary")
    path = write_lines(tmp_path / "s2.jsonl", [json.dumps(boundary)])
    assert "needs a <normal> label" in expect_error(path, "stage2", 1, "label")


def test_write_is_atomic_and_validated(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous content\n")
    with pytest.raises(DataError) as info:
        write_jsonl(out, [GOOD["eval"], {"prompt": "x"}], "eval")
    assert "line 2" in str(info.value) and "field 'answer'" in str(info.value)
    assert out.read_text() == "previous content\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left
    write_jsonl(out, [GOOD["eval"]], "eval")
    assert [json.loads(line) for line in out.read_text().splitlines()] == [GOOD["eval"]]


def test_source_records_from_json_arrays_and_json_lines(tmp_path):
    array = tmp_path / "a.json"
    array.write_text('[\n  {"question": "q1",\n   "answer": "a1"},\n  {"question": "q2", "answer": "a2"}\n]\n')
    records = read_records(array)
    assert [r["question"] for r in records] == ["q1", "q2"]
    assert [r["__line__"] for r in records] == [2, 4]
    lines = write_lines(tmp_path / "l.json", ['{"question": "q1"}', '{"question": "q2"}', "[1, 2"])
    with pytest.raises(DataError) as info:
        read_records(lines)
    assert "line 3" in str(info.value)
    broken = tmp_path / "b.json"
    broken.write_text('[\n {"question": "q1"},\n {"question": }\n]')
    with pytest.raises(DataError, match="line 3"):
        read_records(broken)


def test_source_records_from_json_lines_of_arrays(tmp_path):
    # strzar/purge's data/TOFU/retain99.json: TOFU's records as JSON arrays of up to 1000, one array a line
    batches = write_lines(tmp_path / "retain99.json", [json.dumps([{"question": "q1", "answer": "a1"},
                                                                   {"question": "q2", "answer": "a2"}]),
                                                       json.dumps([{"question": "q3", "answer": "a3"}])])
    records = read_records(batches)
    assert [(r["question"], r["__line__"]) for r in records] == [("q1", 1), ("q2", 1), ("q3", 2)]
    write_lines(batches, [json.dumps([{"question": "q1"}]), '[{"question": }]'])
    with pytest.raises(DataError, match="line 2, field '\\(row\\)': invalid JSON"):
        read_records(batches)
    write_lines(batches, [json.dumps([{"question": "q1"}]), '["q2"]'])
    with pytest.raises(DataError, match="line 2, field '\\(row\\)': expected a JSON object"):
        read_records(batches)


def test_sft_files_mix_stage1_and_text_rows(tmp_path):
    text_row = json.dumps({"text": "alice stone was born in oakford ."})
    good = write_lines(tmp_path / "sft.jsonl", [json.dumps(GOOD["stage1"]), text_row])
    assert [sorted(r) for r in read_jsonl(good, "sft")] == [["prompt", "response", "subject"], ["text"]]
    expect_error(write_lines(tmp_path / "a.jsonl", [text_row, json.dumps({"prompt": "q", "subject": "s"})]),
                 "sft", 2, "response")
    expect_error(write_lines(tmp_path / "b.jsonl", [json.dumps(GOOD["stage1"]), json.dumps({"text": " "})]),
                 "sft", 2, "text")
