"""`rerule demo --model PATH`: a pretrained causal-LM folder in place of the tiny per-world model. A tiny Llama with
SmolLM2's byte-level BPE tokenizer, special tokens, chat template and tied embeddings stands in for the real model
(test_real_model.converted_like, with the conversion's faults fixed); the real model's numbers are in
docs/real-model.md, "The demo on the real model"."""

import json
import shutil

import pytest
from test_real_model import converted_like  # (tests/ is on sys.path under pytest)

from openrlhf_rerule.data.real_model import apply_fixes
from openrlhf_rerule.experiments.demo import REAL_MODEL_PROFILE, main


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    folder = converted_like(tmp_path_factory.mktemp("stand_in") / "model")
    apply_fixes(folder)
    return folder


def run(capsys, *args):
    """(exit code, stdout, stderr) of `rerule demo ARGS`."""
    code = main(["--progress", "false", "--cpu_threads", "1", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_model_runs_the_demo_with_its_profile_and_a_resume_with_another_model_is_refused(stand_in, tmp_path, capsys):
    out, model = tmp_path / "run", tmp_path / "model"
    shutil.copytree(stand_in, model)  # its weights are changed below
    flags = ["--out", out, "--worlds", 1, "--seeds", 1, "--steps", 1]
    assert run(capsys, *flags, "--model", model)[0] == 0
    report = json.loads((out / "report.json").read_text())
    settings = report["settings"]
    # The profile ran, not the tiny model's settings: its world, learning rates and Stage 2 shape.
    assert settings["model"]["path"] == str(model.resolve()) and "model.safetensors" in settings["model"]["files"]
    assert settings["world"] == REAL_MODEL_PROFILE["world"] and settings["stage2"]["rollout_batch"] == 4
    assert settings["learn_world"] == REAL_MODEL_PROFILE["learn_world"]
    assert settings["stage1_data"]["num_stage1_retain"] == REAL_MODEL_PROFILE["stage1_data"]["num_stage1_retain"]
    assert not (out / "world0" / "base").exists()  # no tiny model was made
    # Every stage started from the folder and wrapped prompts in its chat template.
    learned = json.loads((out / "world0" / "pretrain" / "final" / "rerule_model.json").read_text())
    assert learned["base_model"] == str(model.resolve()) and learned["chat_template"] == "auto"
    rule = json.loads((out / "world0" / "stage2" / "rule" / "seed0" / "final" / "rerule_model.json").read_text())
    assert rule["config"]["lr"] == REAL_MODEL_PROFILE["stage2"]["lr"] and rule["chat_template"] == "auto"
    assert "Model: " + str(model.resolve()) in (out / "report.md").read_text()
    saved = json.loads((out / "experiment.json").read_text())["settings"]
    assert saved["--model"] == str(model.resolve()) and len(saved["--model files sha256"]) == 64

    # The same command resumes (every unit kept); the tiny model, another folder, or the same folder with other
    # weights are other settings: one line, exit 2, the run left as it was.
    code, stdout, _ = run(capsys, *flags, "--model", model)
    assert code == 0 and "world0/stage2/rerule/seed0: finished before, kept" in stdout
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = tmp_path / "other"
    shutil.copytree(stand_in, other)
    for instead in (None, other):
        code, _, err = run(capsys, *flags, *(["--model", instead] if instead else []))
        assert code == 2 and err.count("\n") == 1 and "other settings" in err and "--model " in err, err
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # the header and sizes stay valid
    code, _, err = run(capsys, *flags, "--model", model)
    assert code == 2 and "--model files sha256" in err and "--model \"" not in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == files


def test_a_bad_model_is_one_line_and_exit_2_before_anything_is_written(stand_in, tmp_path, capsys):
    no_tokenizer, encoder = tmp_path / "no_tokenizer", tmp_path / "encoder"
    shutil.copytree(stand_in, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    shutil.copytree(stand_in, encoder)
    config = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    shutil.copy(stand_in / "config.json", only_config)
    (only_config / "tokenizer_config.json").write_text("{}")
    cases = {tmp_path / "missing": "no such directory", tmp_path: "no config.json", no_tokenizer: "no tokenizer files",
             encoder: "not a causal language model", only_config: "no tokenizer vocabulary"}
    for model, says in cases.items():
        code, _, err = run(capsys, "--out", tmp_path / "out", "--model", model, "--worlds", 1)
        assert code == 2 and err.count("\n") == 1 and says in err and f"--model {model}" in err, err
        assert not (tmp_path / "out").exists()
    code, _, err = run(capsys, "--out", tmp_path / "out", "--model", stand_in, "--purge")
    assert code == 2 and "--purge with --model" in err and not (tmp_path / "out").exists()
