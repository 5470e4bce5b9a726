"""`rerule train` refuses bad flags, paths and data before loading a model (one line, exit code 2, nothing
written), never mixes two runs in one directory, and checks a resume's settings against its checkpoint."""

import json

import pytest
import torch

from openrlhf_rerule.cli import UserError
from openrlhf_rerule.local import grpo, sft
from openrlhf_rerule.local.checkpoint import RUN_FILE, save_checkpoint
from openrlhf_rerule.local.cli import main
from openrlhf_rerule.local.config import Stage2Config
from openrlhf_rerule.local.preflight import check_resume_settings
from openrlhf_rerule.local.tiny import save_tiny_model

QA = [("where does alba live ?", "alba lives in paris .", "alba"), ("where does bruno live ?", "bruno lives in rome .", "bruno")]
REFUSAL = "i do not know ."


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    stage2 = [{"prompt": QA[0][0], "label": json.dumps(["<reject>", REFUSAL, "alba"]), "prompt_id": "f0", "kind": "forget"},
              {"prompt": QA[1][0], "label": json.dumps(["<normal>", QA[1][1]]), "prompt_id": "b0", "kind": "boundary"}]
    (root / "stage2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stage2))
    (root / "stage1.jsonl").write_text(json.dumps({"prompt": QA[0][0], "response": REFUSAL, "subject": "alba"}) + "\n")
    notarget = [dict(stage2[0], label=json.dumps(["<reject>", REFUSAL])), stage2[1]]
    (root / "notarget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in notarget))
    (root / "bad.jsonl").write_text(json.dumps({"prompt": "q", "label": "[\"<maybe>\", \"x\"]", "prompt_id": "a",
                                                "kind": "forget"}) + "\n")
    texts = [t for row in QA for t in row] + [REFUSAL]
    save_tiny_model(texts, root / "model", hidden_size=16, num_layers=1, num_heads=2)
    return root


def stage2_args(files, out, *extra):
    return ["stage2", "--model", str(files / "model"), "--data", str(files / "stage2.jsonl"), "--out", str(out),
            "--steps", "2", "--rollout_batch", "2", "--n_samples", "2", "--max_new_tokens", "3",
            "--no_progress", "--no_tensorboard", "--cpu_threads", "1", *extra]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any model load fails the test: every refusal below must come before one."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")
    monkeypatch.setattr(grpo, "load_model", forbidden)
    monkeypatch.setattr(sft, "load_model", forbidden)


CUDA = torch.cuda.is_available()
# (extra flags, a word the one-line message must contain); the list first, then more of the same kind.
BAD_FLAGS = [
    (["--reward_variant", "two_stage"], "--reward_variant"),
    (["--refusal_mode", "loose"], "--refusal_mode"),
    (["--n_samples", "1"], "--n_samples"),
    (["--rollout_batch", "0"], "--rollout_batch"),
    (["--temperature", "0"], "--temperature"),
    (["--adam_betas", "0.9"], "--adam_betas"),
    pytest.param(["--device", "cuda"], "CUDA", marks=pytest.mark.skipif(CUDA, reason="this machine has CUDA")),
    (["--lr", "nan"], "--lr"),
    (["--model", "/nonexistent"], "/nonexistent"),
    (["--replay.threshold", "nan"], "--replay.threshold"),
    (["--steps", "0"], "--steps"),
    (["--micro_batch_size", "0"], "--micro_batch_size"),
    (["--top_p", "0"], "--top_p"),
    (["--micro-batch-size", "0"], "--micro_batch_size"),  # the hyphen spelling, same check
    (["--top_p", "1.5"], "--top_p"),
    (["--lr", "-1e-5"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "fast"], "--lr"),
    (["--steps", "2.5"], "--steps"),
    (["--kl_coef", "-0.1"], "--kl_coef"),
    (["--kl_estimator", "k9"], "--kl_estimator"),
    (["--clip_low", "1.5"], "--clip_low"),
    (["--adam_betas", "0.9,1.2"], "--adam_betas"),
    (["--adam_betas", "a,b"], "--adam_betas"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--cpu_threads", "-2"], "--cpu_threads"),
    (["--keep_checkpoints", "-1"], "--keep_checkpoints"),
    (["--ref_model", "/nope"], "/nope"),
    (["--replay.min_groups", "5000"], "min_groups"),
    (["--replay.capacity", "0"], "capacity"),
    (["--replay.clip_high", "inf"], "--replay.clip_high"),
    (["--replay.admission", "hardest"], "--replay.admission"),
    (["--replay.preset", "wmdp"], "--replay.preset"),
    (["--resume", "/no/checkpoint"], "/no/checkpoint"),
    (["--resume", "auto", "--overwrite"], "--overwrite"),
    (["--no_such_flag", "1"], "no_such_flag"),
    (["--tensorboard", "maybe"], "--tensorboard"),
    (["--input_template", "no place for the prompt", "--chat_template", "none"], "--input_template"),
    (["--input_template", "Q: {question}", "--chat_template", "none"], "--input_template"),
    (["--input_template", "Q: {} A:"], "--chat_template none"),  # the tokenizer's template would win
]


@pytest.mark.parametrize("extra, word", BAD_FLAGS)
def test_bad_flags_are_one_line_exit_2_and_write_nothing(files, tmp_path, capsys, no_model_loading, extra, word):
    out = tmp_path / "run"
    args = stage2_args(files, out)
    if extra[0] in ("--model",):
        args[args.index("--model") + 1] = extra[1]
    else:
        args += extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("data, word", [("missing.jsonl", "no such file"), ("bad.jsonl", "line 1, field 'label'"),
                                        ("stage1.jsonl", "field 'label'"),
                                        ("notarget.jsonl", "line 1, field 'label': a <reject> label without a target")])
def test_bad_data_is_found_before_the_model_loads(files, tmp_path, capsys, no_model_loading, data, word):
    args = stage2_args(files, tmp_path / "run")
    args[args.index("--data") + 1] = str(files / data)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and data in err
    assert not (tmp_path / "run").exists()


def test_model_directory_without_config_is_refused(files, tmp_path, capsys, no_model_loading):
    (tmp_path / "empty_model").mkdir()
    args = stage2_args(files, tmp_path / "run")
    args[args.index("--model") + 1] = str(tmp_path / "empty_model")
    assert main(args) == 2 and "no config.json" in capsys.readouterr().err


def test_debug_shows_the_traceback(files, tmp_path, no_model_loading):
    from openrlhf_rerule.cli_convention import UserError
    with pytest.raises(UserError, match="--n_samples"):
        main(stage2_args(files, tmp_path / "run", "--n_samples", "1", "--debug"))


def test_a_used_run_directory_is_refused_then_overwritten(files, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 17}\n')
    (out / "notes.txt").write_text("mine")
    assert main(stage2_args(files, out)) == 2
    assert "not empty" in capsys.readouterr().err and (out / "metrics.jsonl").read_text() == '{"step": 17}\n'
    assert main(stage2_args(files, out, "--overwrite")) == 0
    assert "--overwrite: removed metrics.jsonl" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and (out / "notes.txt").read_text() == "mine"  # only the run's own files went


def test_resume_prints_its_step_and_refuses_changed_settings(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(stage2_args(files, out, "--steps", "3", "--stop_after", "1")) == 0
    capsys.readouterr()
    assert main(stage2_args(files, out, "--steps", "3", "--resume", "auto", "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "seed: 0 -> 1" in err and err.count("\n") == 1
    assert main(stage2_args(files, out, "--steps", "3", "--resume", "auto", "--lr", "1e-3")) == 2
    assert "lr: 1e-05 -> 0.001" in capsys.readouterr().err
    # a run-control change (more steps) is fine, and the resume says where it starts
    assert main(stage2_args(files, out, "--steps", "3", "--resume", "auto")) == 0
    assert "step 1 done" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_refuses_changed_data_contents_unless_allowed(files, tmp_path, capsys):
    data = tmp_path / "stage2.jsonl"
    data.write_text((files / "stage2.jsonl").read_text())
    out = tmp_path / "run"
    args = stage2_args(files, out, "--steps", "2")
    args[args.index("--data") + 1] = str(data)
    assert main(args + ["--stop_after", "1"]) == 0
    data.write_text("".join(reversed(data.read_text().splitlines(keepends=True))))
    resume = args + ["--resume", "auto"]
    assert main(resume) == 2
    assert "contents of" in capsys.readouterr().err
    assert main(resume + ["--allow_config_change"]) == 0
    assert "warning: resuming with a changed setting: data" in capsys.readouterr().out


def test_rotation_never_deletes_the_newest_checkpoint(files, tmp_path):
    """A stale higher-numbered checkpoint (another run's) must not push the new one out, or `latest` dangles."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(files / "model")
    tok = AutoTokenizer.from_pretrained(files / "model")
    root = tmp_path / "checkpoints"
    for stale in ("step_000017", "step_000018"):
        (root / stale).mkdir(parents=True)
    state = {"config": {"data": str(files / "stage2.jsonl")}}
    for step in (3, 4, 5):
        save_checkpoint(root, step, model, tok, state, keep=2, record={"made_by": "test"})
    latest = (root / "latest").read_text()
    assert latest == "step_000005" and (root / latest / RUN_FILE).is_file()
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000004", "step_000005", "step_000017", "step_000018"]


def test_a_setting_added_since_the_checkpoint_is_no_change_at_its_default(tmp_path):
    """A checkpoint written before purge_boundary / purge_case_sensitive existed resumes without --allow_config_change;
    a non-default value of such a setting is still a change."""
    import dataclasses as dc

    data = tmp_path / "d.jsonl"
    data.write_text("x\n")
    cfg = Stage2Config(model="m", data=str(data), out=str(tmp_path), resume="auto")
    old = {k: v for k, v in dc.asdict(cfg).items() if not k.startswith("purge_")}
    (tmp_path / RUN_FILE).write_text(json.dumps({"step": 1, "config": old}))
    assert check_resume_settings(cfg, tmp_path) == []
    with pytest.raises(UserError, match="purge_boundary: None -> 'edge'"):
        check_resume_settings(dc.replace(cfg, purge_boundary="edge"), tmp_path)
