"""Table-driven bad input for `rerule data`: every case exits 2 with one line naming the file and line (or the
flag), no traceback, and no output file. Plus the first hour on one's own data: RWKU's neighbour set as the
boundary set, what `stage1` derived and dropped, a tiny model from one's own text, trained end to end."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl

SOURCES = Path(__file__).parent / "data" / "sources"
GOOD_EVAL = {"prompt": "where does alba live?", "answer": "alba lives in paris.", "kind": "forget", "subject": "alba"}
GOOD_LINE = json.dumps(GOOD_EVAL)

# name -> bytes of a file that must be refused, and the line / field the message must name
BAD_FILES = {
    "latin1.jsonl": (GOOD_LINE.encode() + b"\n" + '{"prompt": "caf\u00e9"}'.encode("latin-1") + b"\n", "line 2", "UTF-8"),
    "surrogate.jsonl": (GOOD_LINE.encode() + b'\n{"prompt": "\\ud800x", "answer": "a", "kind": "forget", "subject": ""}\n',
                        "line 2", "surrogate"),
    "dupkey.jsonl": (b'{"prompt": "a", "prompt": "b", "answer": "x", "kind": "forget", "subject": ""}\n', "line 1",
                     "field 'prompt'"),
    "nan.jsonl": (b'{"prompt": "a", "answer": NaN, "kind": "forget", "subject": ""}\n', "line 1", "NaN"),
    "blank.jsonl": (GOOD_LINE.encode() + b"\n\n" + GOOD_LINE.encode() + b"\n", "line 2", "blank"),
    "truncated.jsonl": (GOOD_LINE.encode() + b"\n" + GOOD_LINE[:20].encode() + b"\n", "line 2", "invalid JSON"),
    "missing.jsonl": (b'{"prompt": "a", "kind": "forget", "subject": ""}\n', "line 1", "field 'answer'"),
    "type.jsonl": (b'{"prompt": 3, "answer": "a", "kind": "forget", "subject": ""}\n', "line 1", "field 'prompt'"),
    "empty.jsonl": (b"", "", "empty"),
    "array.jsonl": (b"[1, 2]\n", "line 1", "JSON object"),
    "bom.jsonl": (b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\n", "line 1", "invalid JSON"),
}


@pytest.fixture
def bad(tmp_path):
    for name, (data, _, _) in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "good.jsonl").write_text(GOOD_LINE + "\n")
    (tmp_path / "a_directory").mkdir()
    return tmp_path


def run(argv, capsys):
    code = rerule(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["validate", "stage1", "split", "boundary_offline", "stage2"])
def test_bad_files_in_every_command(bad, capsys, name, command):
    path, out = str(bad / name), bad / "out.jsonl"
    argv = {"validate": ["data", "validate", path, "--kind", "eval"],
            "stage1": ["data", "stage1", "--forget", path, "--out", str(out)],
            "split": ["data", "split", path, "--train_out", str(out), "--heldout_out", str(bad / "h.jsonl")],
            "boundary_offline": ["data", "boundary", "--offline", "--forget", path, "--neighbours",
                                 str(bad / "good.jsonl"), "--out", str(out)],
            "stage2": ["data", "stage2", "--forget", str(bad / "good.jsonl"), "--boundary", path, "--out", str(out)],
            }[command]
    code, _, err = run(argv, capsys)
    _, line, word = BAD_FILES[name]
    assert code == 2
    first = err.splitlines()[0]
    assert path in first and line in first and word in first, first
    assert not out.exists() and not (bad / "h.jsonl").exists()


BAD_FLAGS = [
    (["world", "--out", "{d}/w", "--num_forget", "0"], "--num_forget"),
    (["world", "--out", "{d}/w", "--num-retain", "-1"], "--num_retain"),
    (["world", "--out", "{d}/w", "--ratio", "nan"], "--ratio"),
    (["stage1", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--named_share", "1.5"], "--named_share"),
    (["stage2", "--forget", "{d}/good.jsonl", "--boundary", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--ratio", "-1"],
     "--ratio"),
    (["split", "{d}/good.jsonl", "--fraction", "1", "--train_out", "{d}/o.jsonl", "--heldout_out", "{d}/h.jsonl"],
     "--fraction"),
    (["split", "{d}/good.jsonl", "--train_out", "{d}/o.jsonl"], "--heldout_out"),
    (["boundary", "--offline", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl"], "--neighbours"),
    (["boundary", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--batch_size", "0"], "--batch_size"),
    (["convert", "rwku", "{d}/good.jsonl", "--out", "{d}/o.jsonl"], "--out_dir"),
    (["convert", "rwku", "{d}/a_directory", "--out_dir", "{d}/o"], "a_directory"),
    (["convert", "tofu", "{d}/a_directory", "--out", "{d}/o.jsonl"], "directory"),
    (["convert", "tofu", "{d}/latin1.jsonl", "--out", "{d}/o.jsonl"], "line 2"),
    (["convert", "nope", "x"], "invalid choice"),
    (["validate"], "files"),
    (["validate", "{d}/a_directory"], "is a directory"),
    (["validate", "{d}/good.jsonl", "--kind", "stage3"], "--kind"),
    (["tiny_model", "--texts", "{d}/good.jsonl", "--out", "{d}/m", "--hidden_size", "30", "--num_heads", "4"],
     "--num_heads"),
    (["tiny_model", "--texts", "{d}/nowhere.txt", "--out", "{d}/m"], "no such file"),
    (["tiny_model", "--out", "{d}/m"], "--texts"),
    (["frobnicate"], "invalid choice"),
    (["stage1", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--eval", "{d}/nowhere.json"], "nowhere.json"),
    (["stage1", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--prompt_format", "rule_muse"], "--icl"),
    (["stage1", "--forget", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--icl", "{d}/good.jsonl"], "--prompt_format"),
    (["stage2", "--forget", "{d}/good.jsonl", "--boundary", "{d}/good.jsonl", "--out", "{d}/o.jsonl",
      "--prompt_format", "rule_muse_label_leak", "--icl", "{d}/good.jsonl"], "--normal_icl"),
    (["stage2", "--forget", "{d}/good.jsonl", "--boundary", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--steps", "0"],
     "--steps"),
    (["convert", "tofu", "{d}/good.jsonl", "--out", "{d}/o.jsonl", "--steps", "3"], "convert rule only"),
    (["overlap", "{d}/good.jsonl"], "eval"),
    (["overlap", "{d}/good.jsonl", "{d}/latin1.jsonl"], "line 2"),
]


@pytest.mark.parametrize("args, word", BAD_FLAGS)
def test_bad_flags(bad, capsys, args, word):
    before = sorted(p.name for p in bad.iterdir())
    code, _, err = run(["data", *[a.format(d=bad) for a in args]], capsys)
    assert code == 2 and word in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in bad.iterdir()) == before  # nothing written


def test_validate_reports_every_file(bad, capsys):
    code, out, err = run(["data", "validate", str(bad / "good.jsonl"), str(bad / "latin1.jsonl"),
                          str(bad / "a_directory"), str(bad / "dupkey.jsonl")], capsys)
    lines = err.splitlines()
    assert code == 2 and out.count("ok ") == 1 and len(lines) == 4
    for line, (name, where) in zip(lines, [("latin1.jsonl", "line 2"), ("a_directory", "directory"),
                                           ("dupkey.jsonl", "field 'prompt'")]):
        assert str(bad / name) in line and where in line, line
    assert lines[3] == "3 of 4 files have errors"


def test_rwku_stage1_counts_and_the_offline_boundary_hint(tmp_path, capsys):
    """convert (corpus side for training) -> stage1 says what it derived and dropped; offline swapping on real RWKU
    questions says it cannot work and points to online synthesis, never to the neighbour probes.
    (The whole first hour, as documented, is tests/test_data_protocol.py::test_rwku_first_hour.)"""
    d = tmp_path / "rwku"
    code, out, _ = run(["data", "convert", "rwku", str(SOURCES / "rwku" / "7_Mira_Holt"), "--out_dir", str(d)], capsys)
    assert code == 0 and "EVALUATION ONLY" in out and f"--eval {d}/eval/forget.jsonl {d}/eval/neighbor.jsonl" in out
    forget = read_jsonl(d / "train" / "forget.jsonl", "eval")
    # a duplicate forget prompt must be reported as dropped
    (d / "forget_dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forget + forget[:1]))
    code, out, _ = run(["data", "stage1", "--forget", str(d / "forget_dup.jsonl"), "--out", str(d / "s1.jsonl")], capsys)
    blanks = sum("___" in r["prompt"] for r in forget + forget[:1])
    assert code == 0 and f"from {len(forget) + 1} forget rows" in out
    assert f"{blanks} of them are already fill-in-the-blank" in out and "1 prompts dropped as duplicates" in out
    assert len(read_jsonl(d / "s1.jsonl", "stage1")) == len(forget)  # the questions' "answers" are too short to cut
    swap = ["data", "boundary", "--offline", "--forget", str(d / "train" / "forget.jsonl"), "--neighbours",
            str(d / "eval" / "neighbor.jsonl"), "--out", str(d / "b.jsonl")]
    code, _, err = run(swap, capsys)  # the probes' sidecar says "evaluation": refused as training input
    assert code == 2 and f"--neighbours {d / 'eval' / 'neighbor.jsonl'}: an evaluation file" in err
    code, _, err = run(swap + ["--allow_eval_as_training"], capsys)  # and were they let through, no swap works
    assert code == 2 and "rerule data boundary --forget" in err and "Leak-free routes" in err
    assert not (d / "b.jsonl").exists()
