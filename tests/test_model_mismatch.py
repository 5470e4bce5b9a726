"""Issue 25, cases 3 and 4, on the embedded backend: what Stage 2 refuses to put together, read from the model
folders' rerule_model.json and tokenizer files before any weights load, and the record every final/ and checkpoint
carries. (The OpenRLHF entry points: tests/test_openrlhf_records.py.)

The two tokenizers are built here from word lists whose vocabulary sizes are counted below by hand: 4 special
tokens, the chat template's "user", ":", "assistant", and the words and punctuation of the texts."""

import hashlib
import json
import shutil

import pytest

from openrlhf_rerule.local import grpo, sft
from openrlhf_rerule.local.cli import main
from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.provenance import write_model_record, write_sidecar

QUESTIONS = ["where does alba live ?", "where does bruno live ?"]
REFUSAL = "i do not know ."
ANSWER = "bruno lives in rome ."
# <pad> <unk> <s> </s> + user : assistant + where does alba live ? bruno i do not know . lives in rome = 4 + 3 + 14
VOCAB_A = 21
EXTRA_WORDS = "zebra yak quokka lemur"  # 4 more words: another vocabulary, the same ids for the shared ones
VOCAB_B = VOCAB_A + 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mismatch")
    texts = QUESTIONS + [REFUSAL, ANSWER]
    save_tiny_model(texts, root / "a", hidden_size=16, num_layers=1, num_heads=2)
    save_tiny_model(texts + [EXTRA_WORDS], root / "b", hidden_size=16, num_layers=1, num_heads=2)
    shutil.copytree(root / "a", root / "a_copy")  # the same tokenizer in another folder
    stage2 = [{"prompt": QUESTIONS[0], "label": json.dumps(["<reject>", REFUSAL, "alba"]), "prompt_id": "f0",
               "kind": "forget"},
              {"prompt": QUESTIONS[1], "label": json.dumps(["<normal>", ANSWER]), "prompt_id": "b0",
               "kind": "boundary"}]
    (root / "stage2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stage2))
    (root / "stage1.jsonl").write_text(json.dumps({"prompt": QUESTIONS[0], "response": REFUSAL,
                                                   "subject": "alba"}) + "\n")
    return root


def stage1(files, out, *extra):
    assert main(["stage1", "--model", str(files / "a"), "--data", str(files / "stage1.jsonl"), "--out", str(out),
                 "--epochs", "2", "--batch_size", "1", "--no_progress", "--no_tensorboard", "--cpu_threads", "1",
                 *extra]) == 0
    return out / "final"


def stage2_args(model, data, out, *extra):
    return ["stage2", "--model", str(model), "--data", str(data), "--out", str(out), "--steps", "1",
            "--rollout_batch", "2", "--n_samples", "2", "--max_new_tokens", "3", "--reward_variant", "two_stage_abs",
            "--no_progress", "--no_tensorboard", "--cpu_threads", "1", *extra]


@pytest.fixture
def no_model_loading(monkeypatch):
    """A model load raises "a model was loaded": a refusal must come before one, and a check that lets a run
    through shows it by reaching one."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(grpo, "load_model", forbidden)
    monkeypatch.setattr(sft, "load_model", forbidden)


def refusal(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def test_the_two_tokenizers_have_the_sizes_counted_by_hand(files):
    for name, size in (("a", VOCAB_A), ("b", VOCAB_B)):
        vocab = json.loads((files / name / "tokenizer.json").read_text())["model"]["vocab"]
        assert len(vocab) == size


def test_case_3_a_reference_with_another_tokenizer_is_refused(files, tmp_path, capsys, no_model_loading):
    out = tmp_path / "run"
    rc = main(stage2_args(files / "a", files / "stage2.jsonl", out, "--ref_model", str(files / "b")))
    assert rc == 2
    refusal(capsys, f"--ref_model {files / 'b'}", f"--model {files / 'a'}", "field 'tokenizer'",
            f"vocab_size {VOCAB_B}", f"vocab_size {VOCAB_A}")
    assert not out.exists()
    # The same tokenizer in another folder is no mismatch; without a KL term no reference is loaded or checked.
    for extra in (["--ref_model", str(files / "a_copy")], ["--ref_model", str(files / "b"), "--kl_coef", "0"]):
        with pytest.raises(AssertionError, match="a model was loaded"):
            main(stage2_args(files / "a", files / "stage2.jsonl", tmp_path / "ok", *extra))


@pytest.mark.parametrize("stage1_template, stage2_template", [("auto", "none"), ("none", "auto")])
def test_case_4_a_chat_template_other_than_stage_1s_is_refused(files, tmp_path, capsys, stage1_template,
                                                                 stage2_template):
    model = stage1(files, tmp_path / "stage1", "--chat_template", stage1_template)
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(stage2_args(model, files / "stage2.jsonl", out, "--chat_template", stage2_template)) == 2
    refusal(capsys, f"--model {model}", str(model / "rerule_model.json"), "field 'chat_template'",
            f"--chat_template {stage2_template}", "--allow_format_change")
    assert not out.exists()


def test_case_4_allowed_the_change_is_a_warning_and_stays_in_the_record(files, tmp_path, capsys):
    model = stage1(files, tmp_path / "stage1")
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(stage2_args(model, files / "stage2.jsonl", out, "--chat_template", "none",
                            "--allow_format_change")) == 0
    assert "WARNING: --allow_format_change" in capsys.readouterr().err
    record = json.loads((out / "final" / "rerule_model.json").read_text())
    assert record["overrides"] == ["--allow_format_change"] and record["chat_template"] == "none"
    assert "field 'chat_template'" in record["format_change"]
    assert record["base_record"]["chat_template"] == "auto"


def test_a_data_prompt_format_other_than_stage_1s_is_refused(files, tmp_path, capsys, no_model_loading):
    """Stage 1 trained on a file whose sidecar says prompt_format rule_muse; the Stage 2 file's says plain."""
    data1, data2 = tmp_path / "stage1.jsonl", tmp_path / "stage2.jsonl"
    shutil.copy(files / "stage1.jsonl", data1)
    shutil.copy(files / "stage2.jsonl", data2)
    write_sidecar(data1, {"command": "stage1", "role": "training", "prompt_format": "rule_muse"})
    write_sidecar(data2, {"command": "stage2", "role": "training", "prompt_format": "plain"})
    record = {"made_by": "rerule train stage1", "chat_template": "auto", "prompt_format": "rule_muse"}
    model = tmp_path / "stage1"
    shutil.copytree(files / "a", model)
    write_model_record(model, record)
    assert main(stage2_args(model, data2, tmp_path / "run")) == 2
    refusal(capsys, "field 'prompt_format'", "'rule_muse'", "'plain'", str(data2), str(model / "rerule_model.json"))


def test_case_c_tokenizer_files_swapped_after_training_are_refused(files, tmp_path, capsys):
    model = stage1(files, tmp_path / "stage1", "--save_every", "1")
    capsys.readouterr()
    swapped = tmp_path / "swapped"
    shutil.copytree(model, swapped)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(files / "b" / name, swapped / name)
    assert main(stage2_args(swapped, files / "stage2.jsonl", tmp_path / "run")) == 2
    refusal(capsys, f"--model {swapped}", str(swapped / "rerule_model.json"), "field 'tokenizer'",
            f"vocab_size {VOCAB_B}", f"vocab_size {VOCAB_A}")
    assert main(stage2_args(swapped, files / "stage2.jsonl", tmp_path / "run", "--allow_format_change")) == 2
    refusal(capsys, "field 'tokenizer'")  # no flag lets it through
    # a resume checkpoint whose tokenizer was swapped: the weights would come from there
    run = tmp_path / "stage2"
    assert main(stage2_args(model, files / "stage2.jsonl", run, "--steps", "2", "--stop_after", "1")) == 0
    ckpt = run / "checkpoints" / "step_000001"
    shutil.copy(files / "b" / "tokenizer.json", ckpt / "tokenizer.json")
    capsys.readouterr()
    assert main(stage2_args(model, files / "stage2.jsonl", run, "--steps", "2", "--resume", "auto")) == 2
    refusal(capsys, f"--resume {ckpt}", "field 'tokenizer'")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_final_and_checkpoint_of_a_short_run_has_its_record(files, tmp_path):
    data1 = tmp_path / "stage1.jsonl"
    shutil.copy(files / "stage1.jsonl", data1)
    write_sidecar(data1, {"command": "stage1", "role": "training", "prompt_format": "plain", "benchmark": "rwku",
                          "split": "forget"})
    s1 = tmp_path / "s1"
    assert main(["stage1", "--model", str(files / "a"), "--data", str(data1), "--out", str(s1), "--epochs", "2",
                 "--batch_size", "1", "--save_every", "1", "--keep_checkpoints", "5", "--no_progress",
                 "--no_tensorboard", "--cpu_threads", "1"]) == 0
    s2 = tmp_path / "s2"
    assert main(stage2_args(s1 / "final", files / "stage2.jsonl", s2, "--steps", "2", "--save_every", "1",
                            "--keep_checkpoints", "5", "--replay.enable", "--replay.min_groups", "1",
                            "--replay.batch_groups", "1", "--replay.warmup_steps", "0")) == 0
    tokenizer = {"vocab_size": VOCAB_A}
    folders = {s1 / "checkpoints/step_000001": 1, s1 / "checkpoints/step_000002": 2, s1 / "final": 2,
               s2 / "checkpoints/step_000001": 1, s2 / "checkpoints/step_000002": 2, s2 / "final": 2}
    for folder, steps in folders.items():
        record = json.loads((folder / "rerule_model.json").read_text())
        assert record["steps"] == steps and record["tokenizer"]["vocab_size"] == tokenizer["vocab_size"], folder
        assert record["tokenizer"]["sha256"] == json.loads((s1 / "final/rerule_model.json").read_text())[
            "tokenizer"]["sha256"]
        if folder.is_relative_to(s1):
            assert record["made_by"] == "rerule train stage1" and record["stage"] == 1
            assert record["base_model"] == str(files / "a") and record["base_record"] == "base without record"
            assert record["data"] == [{"path": str(data1), "sha256": sha256(data1), "role": "training",
                                       "made_by": "stage1"}]
            assert (record["prompt_format"], record["benchmark"], record["split"]) == ("plain", "rwku", "forget")
            assert record["chat_template"] == "auto" and record["rows"] == 1 and record["algorithm"] == "sft"
        else:
            assert record["made_by"] == "rerule train stage2" and record["stage"] == 2
            assert record["base_model"] == str(s1 / "final") and record["reference_model"] == str(s1 / "final")
            # the Stage 1 record, one level deep: its own base is named, its base_record dropped
            assert record["base_record"]["made_by"] == "rerule train stage1"
            assert record["base_record"]["base_model"] == str(files / "a") and "base_record" not in record[
                "base_record"]
            assert record["data"] == [{"path": str(files / "stage2.jsonl"), "sha256": sha256(files / "stage2.jsonl"),
                                       "role": None, "made_by": None}]
            assert record["prompt_format"] is None and record["format_change"] is None
            assert record["algorithm"] == "grpo+replay" and record["reward_variant"] == "two_stage_abs"
            assert record["chat_template"] == "auto" and record["rows"] == 2 and record["overrides"] == []
            assert record["config"]["replay"]["enable"] is True
    # a hub-like base (no record) checks nothing, and its Stage 2 record says so
    s3 = tmp_path / "s3"
    assert main(stage2_args(files / "a", files / "stage2.jsonl", s3)) == 0
    assert json.loads((s3 / "final/rerule_model.json").read_text())["base_record"] == "base without record"


def test_a_kill_while_the_record_is_written_leaves_no_final_folder(files, tmp_path, monkeypatch):
    """final/ appears complete or not at all: its record is written inside the temporary folder."""
    from openrlhf_rerule.local import checkpoint

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing rerule_model.json")
    monkeypatch.setattr(checkpoint, "write_model_record", killed)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        main(stage2_args(files / "a", files / "stage2.jsonl", out))
    assert not (out / "final").exists() and list(out.glob(".tmp-final-*"))
    monkeypatch.undo()
    assert main(stage2_args(files / "a", files / "stage2.jsonl", out, "--overwrite")) == 0
    assert (out / "final/rerule_model.json").is_file() and not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_a_training_file_whose_sidecar_says_evaluation_is_refused_before_loading(files, tmp_path, capsys,
                                                                                   no_model_loading, stage):
    """`convert rule` of the authors' validation file, or a converted probe file, writes role "evaluation": the data
    commands refuse it as an input, and so does training on it directly (both stages)."""
    data = tmp_path / f"{stage}.jsonl"
    shutil.copy(files / f"{stage}.jsonl", data)
    write_sidecar(data, {"command": "convert rule", "role": "evaluation"})
    argv = stage2_args(files / "a", data, tmp_path / "run") if stage == "stage2" else \
        ["stage1", "--model", str(files / "a"), "--data", str(data), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    refusal(capsys, str(data), "field 'role'", "--allow_eval_as_training")
    assert not (tmp_path / "run").exists()
