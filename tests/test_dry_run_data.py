"""DRY_RUN=1 runs the plans' data steps for real (issue 24): `run rerule data ...` of examples/scripts/_common.sh
writes its output, and a data step that fails stops the plan naming the target and the step. Invented fixture: a
target whose questions file holds one of its evaluation probes word for word (as RWKU's own reject_phi.json does for
3_Bruce_Lee)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
PROBE = "What prize did Mira Holt win in 1988?"


def dry_run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    script = f'source "{SCRIPTS}/_common.sh"; TARGET_NAME=3_Mira_Holt; run {" ".join(argv)}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=SCRIPTS.parents[1],
                          env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PYTHON": sys.executable,
                               "RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(SCRIPTS.parents[1])})


def test_a_data_step_runs_and_drops_the_probe_copy(tmp_path):
    questions = [{"instruction": PROBE, "subject": "Mira Holt"},
                 {"instruction": "Which town did Mira Holt grow up in?", "subject": "Mira Holt"}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "forget_level2.json").write_text(json.dumps([{"query": PROBE, "answer": "The Lark Prize"}]))
    (tmp_path / "fts.json").write_text(json.dumps(["Mira Holt"]))
    out = tmp_path / "runs" / "stage2.jsonl"
    result = dry_run(tmp_path, "rerule", "data", "purge", "stage2", "--questions", str(tmp_path / "q.json"),
                     "--entities", str(tmp_path / "fts.json"), "--out", str(out),
                     "--eval", str(tmp_path / "forget_level2.json"))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["prompt"] for line in out.read_text().splitlines()] == [questions[1]["instruction"]]
    assert json.loads(Path(f"{out}.meta.json").read_text())["rows_dropped"] == 1


def test_a_failing_data_step_stops_the_plan_naming_target_and_step(tmp_path):
    (tmp_path / "bad.json").write_text("[{\"instruction\": 3}]")
    result = dry_run(tmp_path, "rerule", "data", "convert", "rule", str(tmp_path / "bad.json"), "--out",
                     str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and not (tmp_path / "o.jsonl").exists()
    lines = result.stderr.strip().splitlines()
    assert str(tmp_path / "bad.json") in lines[-2] and "Traceback" not in result.stderr
    assert lines[-1].startswith("DRY_RUN: stopped at target 3_Mira_Holt, step: rerule data convert rule (exit 2")
