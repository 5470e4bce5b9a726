"""`rerule data ...` end to end, through the top-level dispatcher."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.provenance import read_sidecar

SOURCES = Path(__file__).parent / "data" / "sources"


def test_world_then_validate(tmp_path, capsys):
    assert rerule(["data", "world", "--out", str(tmp_path), "--num-forget", "2", "--num-boundary", "2",
                   "--num-retain", "2", "--seed", "4"]) == 0
    files = sorted(str(p) for p in tmp_path.rglob("*.jsonl"))
    assert len(files) == 7
    assert rerule(["data", "validate", *files]) == 0
    assert capsys.readouterr().out.count("ok ") == 7
    # sidecars: Stage 1 / 2 are built from the forget and boundary QA (training, evaluated too, as TOFU's forget
    # set); the retain people's QA and the held-out paraphrases are evaluation only
    evaluation = {"eval/retain.jsonl", "eval/heldout.jsonl"}
    for path in files:
        rel, meta = str(Path(path).relative_to(tmp_path)), read_sidecar(path)
        assert (meta["command"], meta["role"], meta["file"], meta["seed"]) == \
            ("world", "evaluation" if rel in evaluation else "training", rel, 4)
        assert meta["rows"] == len(Path(path).read_text().splitlines())
    # so the held-out paraphrases cannot become Stage 1 data by mistake
    code = rerule(["data", "stage1", "--forget", str(tmp_path / "eval/heldout.jsonl"), "--out",
                   str(tmp_path / "s1.jsonl")])
    assert code == 2 and "field 'role'" in capsys.readouterr().err and not (tmp_path / "s1.jsonl").exists()


def test_convert_rwku_then_build_stage1_and_stage2(tmp_path, capsys):
    out = tmp_path / "rwku"
    assert rerule(["data", "convert", "rwku", str(SOURCES / "rwku" / "7_Mira_Holt"), "--out-dir", str(out)]) == 0
    # 3 reject.json questions + 2 passage blanks, of which one question and one blank repeat a probe
    assert "3 training forget rows: 3 from reject.json, 2 from passage.json; 2 dropped" in capsys.readouterr().out
    assert [len(read_jsonl(out / "eval" / f"{k}.jsonl", "eval")) for k in ("forget", "neighbor")] == [3, 1]
    probes = ["--eval", str(out / "eval" / "forget.jsonl"), str(out / "eval" / "neighbor.jsonl")]
    assert rerule(["data", "stage1", "--forget", str(out / "train" / "forget.jsonl"), "--out", str(tmp_path / "s1.jsonl"),
                   *probes]) == 0
    assert len(read_jsonl(tmp_path / "s1.jsonl", "stage1")) == 3  # no blank derived: answers shorter than 4 words
    (tmp_path / "boundary.jsonl").write_text(json.dumps({"prompt": "Which literary prize did Jonas Vell win?",
                                                         "answer": "None", "kind": "boundary", "subject": "Jonas Vell"}) + "\n")
    assert rerule(["data", "stage2", "--forget", str(out / "train" / "forget.jsonl"), "--boundary",
                   str(tmp_path / "boundary.jsonl"), "--out", str(tmp_path / "s2.jsonl"), *probes]) == 0
    kinds = [r["kind"] for r in read_jsonl(tmp_path / "s2.jsonl", "stage2")]
    assert kinds.count("forget") == 3 and kinds.count("boundary") == 1


@pytest.mark.parametrize("source, file, kind, rows", [
    ("rule", "rule_stage2.json", "stage2", 3), ("rule", "rule_stage1.json", "stage1", 2),
    ("tofu", "tofu_two_authors/forget01_perturbed.json", "eval", 40), ("muse", "muse_forget_qa.json", "eval", 2)])
def test_convert_each_source(tmp_path, source, file, kind, rows):
    out = tmp_path / "out.jsonl"
    assert rerule(["data", "convert", source, str(SOURCES / file), "--out", str(out)]) == 0
    assert len(read_jsonl(out, kind)) == rows


def test_split(tmp_path):
    source = tmp_path / "qa.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": "a", "kind": "forget", "subject": ""}) + "\n"
                              for i in range(10)))
    assert rerule(["data", "split", str(source), "--fraction", "0.3", "--train-out", str(tmp_path / "t.jsonl"),
                   "--heldout-out", str(tmp_path / "h.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "t.jsonl")) == 7 and len(read_jsonl(tmp_path / "h.jsonl")) == 3


def test_offline_boundary(tmp_path):
    assert rerule(["data", "world", "--out", str(tmp_path / "w"), "--num-forget", "2", "--num-boundary", "2",
                   "--num-retain", "0"]) == 0
    code = rerule(["data", "boundary", "--offline", "--forget", str(tmp_path / "w/eval/forget.jsonl"),
                   "--neighbours", str(tmp_path / "w/eval/boundary.jsonl"), "--out", str(tmp_path / "b.jsonl")])
    assert code == 0 and read_jsonl(tmp_path / "b.jsonl", "eval")


def test_errors_name_file_line_and_field_and_write_nothing(tmp_path, capsys):
    bad = tmp_path / "forget.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "answer": "a", "kind": "forget", "subject": "s"}) + "\n"
                   + json.dumps({"prompt": "q2", "kind": "forget", "subject": "s"}) + "\n")
    out = tmp_path / "s1.jsonl"
    assert rerule(["data", "stage1", "--forget", str(bad), "--out", str(out)]) == 2
    assert f"{bad}, line 2, field 'answer'" in capsys.readouterr().err
    assert not out.exists()
    assert rerule(["data", "validate", str(bad)]) == 2
    assert rerule(["data", "convert", "rwku", str(tmp_path), "--out", str(out)]) == 2  # rwku needs --out-dir
    assert rerule(["data", "convert", "nope", "x"]) == 2  # a usage error is a return code, not an exception
