"""`rerule report`'s training-data table (issue 24): per method and per target, the training rows the data steps
dropped as copies of evaluation probes and the rows trained as released that overlap one (`--allow_eval_overlap`,
marked § in every table with a legend), read from the `.meta.json` sidecars of the files `rerule eval
--unlearning_data` recorded; a file without a sidecar, or a run that records no files, is "unknown", never 0.
Hand-made sidecars; every expected cell is worked out in the comments."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.data.cli import main as data_main
from openrlhf_rerule.eval import report
from test_eval_cli import _row
from test_report_purge import _table

HEADING = "**Training data against the evaluation probes**"


def _data(path: Path, dropped: int = 0, overlapping: int = 0, released: bool = False, command="convert rule") -> str:
    """A training file and the sidecar drop_eval_overlaps writes (only the fields the report reads vary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"prompt": "q", "label": "[\"<reject>\"]"}) + "\n")
    Path(f"{path}.meta.json").write_text(json.dumps({
        "command": command, "eval_files": ["forget_level1.json"], "eval_prompts": 9, "rows_overlapping": overlapping,
        "rows_dropped": dropped, "allow_eval_overlap": released}))
    return str(path)


def _eval(run_dir: Path, target: str, name: str, files=(), **summary) -> str:
    run_dir.mkdir(parents=True)
    data = {"unlearning_data": list(files)} if files else {}
    (run_dir / "rwku_summary.json").write_text(json.dumps({"benchmark": "rwku", "targets": [target], "name": name,
                                                            "forget_level1": 0.5, **data, **summary}))
    return str(run_dir)


def test_counts_per_target_and_per_method_with_the_as_released_rows_marked(tmp_path, capsys):
    d = tmp_path / "data"
    runs = [
        # 1_A dropped 2 (Stage 1) + 3 (Stage 2) = 5, trained 0
        _eval(tmp_path / "A/rule", "1_A", "RULE", [_data(d / "A1.jsonl", dropped=2), _data(d / "A2.jsonl", dropped=3)]),
        # 2_B as released: 4 + 1 = 5 trained rows overlapping a probe, none dropped
        _eval(tmp_path / "B/rule", "2_B", "RULE", [_data(d / "B1.jsonl", overlapping=4, released=True),
                                                   _data(d / "B2.jsonl", overlapping=1, released=True)]),
        # as released, but nothing overlaps: 0 trained, not marked
        _eval(tmp_path / "A/rerule", "1_A", "ReRULE", [_data(d / "C.jsonl", released=True)]),
        # a Stage 2 file without its sidecar: unknown, however the Stage 1 file counts
        _eval(tmp_path / "A/stage1", "1_A", "Stage 1", [_data(d / "A1.jsonl", dropped=2), str(d / "bare.jsonl")]),
        _eval(tmp_path / "A/other", "1_A", "Other"),  # records no files
    ]
    assert report.main(runs + ["--hide_published", "--out", str(tmp_path / "r")]) == 0
    md = capsys.readouterr().out
    data = _table(md, HEADING)
    assert _row(data, "RULE") == ["1_A", "dropped", "5", "0"]
    assert _row(data, "RULE§") == ["2_B", "as released", "0", "5"]  # the target row that trained them is marked
    # RULE over both targets: dropped 5 + 0, trained 0 + 5, one target each way; marked because 2_B trained 5
    assert _row(data, "RULE (mean of 2 targets)§") == ["sum over 2 targets", "mixed", "5", "5"]
    assert _row(data, "ReRULE") == ["1_A", "as released", "0", "0"]
    assert _row(data, "Stage 1") == ["1_A", "dropped", "unknown", "unknown"]
    assert _row(data, "Other") == ["1_A", "unknown", "unknown", "unknown"]
    assert "§ trained the authors' files as released" in data and "unknown: a training file without" in data
    # The benchmark tables mark the method row and carry the legend; the unmarked rows stay as they were.
    rwku = _table(md, "**RWKU** (ReRULE paper layout)")  # the mean over 1_A and 2_B: its own table (issue 25)
    assert _row(rwku, "RULE (mean of 2 targets)§")[0] == "50.0" and _row(md, "ReRULE")[0] == "50.0"
    assert rwku.splitlines()[-1].startswith("§ trained the authors' files as released")
    saved = {r["name"]: r["training_data"] for r in json.loads((tmp_path / "r" / "report.json").read_text())}
    assert (saved["RULE (mean of 2 targets)"]["dropped"], saved["RULE (mean of 2 targets)"]["trained"]) == (5, 5)
    assert saved["Stage 1"]["dropped"] is None and saved["Stage 1"]["unknown"] == [f"{d}/bare.jsonl: no .meta.json sidecar"]


def test_no_legend_and_no_mark_when_nothing_trained_overlaps(tmp_path, capsys):
    run = _eval(tmp_path / "rule", "1_A", "RULE", [_data(tmp_path / "s2.jsonl", dropped=1)])
    assert report.main([run, "--hide_published"]) == 0
    md = capsys.readouterr().out
    assert "§" not in md and _row(_table(md, HEADING), "RULE") == ["1_A", "dropped", "1", "0"]
    assert "unknown" not in _table(md, HEADING)


def test_purge_counts_its_stage2_file_not_the_answers_it_was_built_from(tmp_path, capsys):
    """The real `purge stage2 --allow_eval_overlap` writes the sidecar; the answers file has none and does not
    train (the reward reads the entity list made from it), so the run's count is Stage 2's: 1 trained, marked."""
    probe = "What prize did Mira Holt win in 1988?"
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": probe, "subject": "Mira Holt"},
                                                 {"instruction": "Which town did Mira Holt grow up in?", "subject": "Mira Holt"}]))
    (tmp_path / "forget_level2.json").write_text(json.dumps([{"query": probe, "answer": "The Lark Prize"}]))
    (tmp_path / "fts.json").write_text(json.dumps(["Mira Holt"]))
    stage2 = tmp_path / "stage2.jsonl"
    assert data_main(["purge", "stage2", "--questions", str(tmp_path / "q.json"), "--entities",
                      str(tmp_path / "fts.json"), "--out", str(stage2), "--eval", str(tmp_path / "forget_level2.json"),
                      "--allow_eval_overlap"]) in (0, None)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": probe, "response": "The Lark Prize."}) + "\n")
    runs = [_eval(tmp_path / "base", "3_M", "Base"),
            _eval(tmp_path / "purge", "3_M", "PURGE", [str(stage2), str(answers)])]
    capsys.readouterr()
    assert report.main(runs + ["--hide_published"]) == 0
    data = _table(capsys.readouterr().out, HEADING)
    assert _row(data, "PURGE§") == ["3_M", "as released", "0", "1"]
    assert _row(data, "Base") == ["3_M", "unknown", "unknown", "unknown"]  # without --base: a run with no files
    assert report.main(runs + ["--hide_published", "--base", "Base"]) == 0
    data = _table(capsys.readouterr().out, HEADING)
    assert "| Base |" not in data and "unknown" not in data  # the base model trained on nothing


def test_purge_answers_with_their_sidecar_are_not_training_data_either(tmp_path, capsys, chat_stub):
    """`purge answers` writes a sidecar (made without --eval, as it has no --eval): the report still leaves the
    answers out of the run's training data, by the sidecar's command, so the PURGE row keeps Stage 2's counts."""
    probe = "What prize did Mira Holt win in 1988?"
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": probe, "subject": "Mira Holt"}]))
    (tmp_path / "forget_level2.json").write_text(json.dumps([{"query": probe, "answer": "The Lark Prize"}]))
    (tmp_path / "fts.json").write_text(json.dumps(["Mira Holt"]))
    stage2, answers = tmp_path / "stage2.jsonl", tmp_path / "answers.jsonl"
    assert data_main(["purge", "stage2", "--questions", str(tmp_path / "q.json"), "--entities",
                      str(tmp_path / "fts.json"), "--out", str(stage2), "--eval", str(tmp_path / "forget_level2.json"),
                      "--allow_eval_overlap"]) in (0, None)
    stub = chat_stub(lambda body: " The Lark Prize.")
    assert data_main(["purge", "answers", "--questions", str(tmp_path / "q.json"), "--base_url", stub.url,
                      "--model", "m", "--out", str(answers)]) in (0, None)
    assert json.loads(Path(f"{answers}.meta.json").read_text())["command"] == "purge answers"
    runs = [_eval(tmp_path / "purge", "3_M", "PURGE", [str(stage2), str(answers)])]
    capsys.readouterr()
    assert report.main(runs + ["--hide_published"]) == 0
    # Stage 2's sidecar: 1 row overlapping the probe, trained as released; the answers file counts nothing
    assert _row(_table(capsys.readouterr().out, HEADING), "PURGE§") == ["3_M", "as released", "0", "1"]


def test_a_bad_sidecar_is_one_line_naming_file_and_field(tmp_path, capsys):
    path = _data(tmp_path / "s2.jsonl", dropped=1)
    Path(f"{path}.meta.json").write_text(json.dumps({"eval_files": ["f.json"], "rows_dropped": "1",
                                                     "rows_overlapping": 0, "allow_eval_overlap": False}))
    assert report.main([_eval(tmp_path / "rule", "1_A", "RULE", [path])]) == 2
    err = capsys.readouterr().err
    assert err == f"rerule report: {path}.meta.json: field 'rows_dropped' must be an integer, got \"1\"\n"


def test_a_report_killed_mid_write_leaves_the_previous_one_whole(tmp_path, capsys, monkeypatch):
    """report.md and report.json are each the previous report or the new one, never half of one: a write that
    fails half-way (here: the disk fills after half the text) leaves the previous files as they were."""
    out = tmp_path / "report"
    runs = [_eval(tmp_path / "rule", "1_A", "RULE", [_data(tmp_path / "A1.jsonl", dropped=2)])]
    assert report.main(runs + ["--hide_published", "--out", str(out)]) == 0
    before = {name: (out / name).read_text() for name in ("report.md", "report.json")}
    write_text = Path.write_text

    def half_then_full_disk(self, text, *args, **kwargs):
        if "report" in self.name:
            write_text(self, text[:len(text) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    runs.append(_eval(tmp_path / "rerule", "1_A", "ReRULE", [_data(tmp_path / "A2.jsonl", dropped=3)]))
    with pytest.raises(OSError, match="No space left"):
        report.main(runs + ["--hide_published", "--out", str(out)])
    monkeypatch.undo()
    assert {name: (out / name).read_text() for name in ("report.md", "report.json")} == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
