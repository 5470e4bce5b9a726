"""`rerule report` on RWKU runs of one target each: one row per method, every metric the mean over targets of the
per-target value (RWKU's protocol; the RULE release's make_table.py), and the number of targets in the row."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.eval import report
from test_eval_cli import _row


def _eval(run_dir: Path, target: str, name: str, **metrics) -> str:
    run_dir.mkdir(parents=True)
    (run_dir / "rwku_summary.json").write_text(json.dumps({"benchmark": "rwku", "targets": [target], "name": name,
                                                            "stop_at_newline": False, **metrics}))
    return str(run_dir)


def test_per_target_runs_average_into_one_row_per_method(tmp_path, capsys):
    runs = [
        _eval(tmp_path / "1_A/eval/rule", "1_A", "RULE", forget_level1=0.2, forget_level2=0.4, forget_level3=0.0,
              forget_all=0.2, neighbor_level1=0.9, neighbor_level2=0.7, neighbor_all=0.8),
        _eval(tmp_path / "2_B/eval/rule", "2_B", "RULE", forget_level1=0.4, forget_level2=0.0, forget_level3=0.2,
              forget_all=0.2, neighbor_level1=0.5, neighbor_level2=0.5, neighbor_all=0.5),
        _eval(tmp_path / "3_C/eval/rule", "3_C", "RULE", forget_level1=0.0, forget_level2=0.2, forget_level3=0.4,
              forget_all=0.2, neighbor_level1=0.7, neighbor_level2=0.3, neighbor_all=0.5),
        _eval(tmp_path / "1_A/eval/rerule", "1_A", "ReRULE", forget_level1=0.1, forget_level2=0.1,
              forget_level3=0.1, forget_all=0.1, neighbor_level1=1.0, neighbor_level2=1.0, neighbor_all=1.0),
    ]
    assert report.main(runs + ["--hide_published", "--out", str(tmp_path / "report")]) == 0
    md = capsys.readouterr().out
    # FB (0.2+0.4+0)/3, QA (0.4+0+0.2)/3, AA (0+0.2+0.4)/3, All 0.2; neighbours (0.9+0.5+0.7)/3, (0.7+0.5+0.3)/3
    assert _row(md, "RULE (mean of 3 targets)")[:4] == ["20.0", "20.0", "20.0", "20.0"]
    assert _row(md, "RULE (mean of 3 targets)")[8:] == ["70.0", "50.0", "60.0"]
    assert _row(md, "ReRULE")[:4] == ["10.0", "10.0", "10.0", "10.0"]  # one target: its own row, as before
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved[0]["targets"] == ["1_A", "2_B", "3_C"] and saved[0]["rwku"]["targets"] == ["1_A", "2_B", "3_C"]


def test_a_metric_some_target_lacks_is_not_averaged_over_fewer_targets(tmp_path):
    runs = report.load_runs([_eval(tmp_path / "a", "1_A", "RULE", forget_level1=0.2, mmlu_acc=0.6),
                             _eval(tmp_path / "b", "2_B", "RULE", forget_level1=0.4)])
    (merged,) = report.average_rwku_targets(runs)
    assert merged["rwku"]["forget_level1"] == pytest.approx(0.3) and "mmlu_acc" not in merged["rwku"]


def test_the_same_target_twice_under_one_name_is_refused(tmp_path, capsys):
    runs = [_eval(tmp_path / "a", "1_A", "RULE", forget_level1=0.2), _eval(tmp_path / "b", "1_A", "RULE")]
    assert report.main(runs) == 2
    err = capsys.readouterr().err
    assert err.startswith("rerule report: runs named 'RULE' evaluate target 1_A twice (") and err.count("\n") == 1
