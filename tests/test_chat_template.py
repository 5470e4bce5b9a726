"""`--chat_template auto|none`: the embedded backend's prompt format (Stage 1, Stage 2) and `rerule eval`'s agree.
auto: the user turn in the tokenizer's chat template (today's behaviour); none: the raw prompt text, as PURGE's
authors train and sample with TRL. Expected ids are written out by hand from the tiny tokenizer's template
`{role} : {content} ` + `assistant : ` (openrlhf_rerule/local/tiny.py)."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.local.tiny import build_word_tokenizer, save_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(["who wrote the shining ?", "i don't know ."], tmp_path_factory.mktemp("tiny") / "m")


def test_format_prompt_with_and_without_the_template():
    from openrlhf_rerule.local.rollout import format_prompt

    tok = build_word_tokenizer(["who wrote the shining ?"])
    ids = tok.convert_tokens_to_ids
    templated = ids(["user", ":", "who", "wrote", "the", "shining", "?", "assistant", ":"])
    assert format_prompt(tok, "Who wrote The Shining?") == templated  # default: auto
    assert format_prompt(tok, "Who wrote The Shining?", "auto") == templated
    assert format_prompt(tok, "Who wrote The Shining?", "none") == ids(["who", "wrote", "the", "shining", "?"])
    # Stage 1 (refusal SFT) builds its prompts the same way, the response after them either way
    from openrlhf_rerule.local.sft_data import encode_examples

    row = {"prompt": "who wrote the shining ?", "response": "who", "subject": "x"}
    assert encode_examples([row], tok, 64, "none") == [(ids(["who", "wrote", "the", "shining", "?"]),
                                                         ids(["who", "</s>"]))]
    assert encode_examples([row], tok, 64)[0][0] == templated
    tok.chat_template = None  # a tokenizer without a template: both settings give the raw text
    assert format_prompt(tok, "Who wrote The Shining?", "auto") == format_prompt(tok, "Who wrote The Shining?", "none")


def test_eval_formats_prompts_the_same_way(tiny):
    from openrlhf_rerule.eval.rwku import probe_prompt
    from openrlhf_rerule.eval.scoring import chat_prompt, load_model

    auto = load_model(tiny, device="cpu").tokenizer
    raw = load_model(tiny, device="cpu", chat_template="none").tokenizer
    assert chat_prompt(auto, "who wrote the shining ?") == "user : who wrote the shining ? assistant : "
    assert chat_prompt(raw, "who wrote the shining ?") == "who wrote the shining ?"
    record = {"query": "who wrote the shining ?", "answer": "stephen king"}
    assert probe_prompt(raw, record, 2) == "Please briefly answer the following question.\nQuestion: " \
                                           "who wrote the shining ?\nAnswer:"


def test_stage2_trains_on_raw_prompts_and_records_the_setting(tiny, tmp_path):
    from openrlhf_rerule.local.cli import build_parser
    from openrlhf_rerule.local.config import Stage2Config, build_config
    from openrlhf_rerule.local.grpo import GRPOTrainer

    data = tmp_path / "stage2.jsonl"
    data.write_text(json.dumps({"prompt": "who wrote the shining ?", "label": json.dumps(["<purge>", "x", "king"]),
                                "prompt_id": "p0", "kind": "forget"}) + "\n")
    ns = build_parser().parse_args(["stage2", "--model", str(tiny), "--data", str(data), "--out", str(tmp_path / "o"),
                                    "--reward_variant", "purge_binary", "--chat_template", "none", "--steps", "1",
                                    "--rollout_batch", "1", "--n_samples", "2", "--max_new_tokens", "2",
                                    "--kl_coef", "0", "--save_every", "1", "--tensorboard", "false",
                                    "--progress", "false", "--cpu_threads", "1", "--device", "cpu"])
    cfg = build_config(Stage2Config, ns)
    trainer = GRPOTrainer(cfg)
    tok = trainer.tokenizer
    assert trainer.prompt_ids == [tok.convert_tokens_to_ids(["who", "wrote", "the", "shining", "?"])]
    trainer.fit()
    run = json.loads((tmp_path / "o/checkpoints/step_000001/rerule_run.json").read_text())
    assert run["config"]["chat_template"] == "none"
    with pytest.raises(SystemExit):  # anything but auto / none is refused by the parser
        build_parser().parse_args(["stage1", "--model", "m", "--data", "d", "--out", "o", "--chat_template", "x"])


def test_stage1_with_an_input_template_trains_on_the_wrapped_prompts_and_eval_checks_them(tmp_path, capsys):
    """TOFU's models were fine-tuned on `[INST] {question} [/INST]`: `--chat_template none --input_template` trains
    on that wrapping (OpenRLHF's --data.input_template), the record keeps it, and `rerule eval tofu` accepts the
    same --prompt_template and refuses raw prompts before loading anything."""
    from openrlhf_rerule.eval import cli as eval_cli
    from openrlhf_rerule.local.cli import main
    from openrlhf_rerule.local.rollout import format_prompt
    from openrlhf_rerule.provenance import read_model_record

    texts = ["who wrote the shining ?", "i don't know .", "question answer"]
    tok = build_word_tokenizer(texts)
    wrapped = tok.convert_tokens_to_ids(["question", "who", "wrote", "the", "shining", "?", "answer"])
    assert format_prompt(tok, "who wrote the shining ?", "none", "question {} answer") == wrapped
    # the tokenizer's own template takes precedence, as in OpenRLHF (the CLI refuses the pair)
    assert format_prompt(tok, "who wrote the shining ?", "auto", "question {} answer") == \
        format_prompt(tok, "who wrote the shining ?", "auto")

    model = save_tiny_model(texts, tmp_path / "m")
    data = tmp_path / "stage1.jsonl"
    data.write_text(json.dumps({"prompt": "who wrote the shining ?", "response": "i don't know .", "subject": "x"})
                    + "\n")
    assert main(["stage1", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "s1"),
                 "--chat_template", "none", "--input_template", "question {} answer", "--epochs", "1",
                 "--batch_size", "1", "--no_progress", "--no_tensorboard", "--cpu_threads", "1"]) == 0
    final = tmp_path / "s1" / "final"
    record = read_model_record(final)
    assert (record["chat_template"], record["input_template"]) == ("none", "question {} answer")

    tofu = str(Path(__file__).parent / "data" / "eval" / "tofu")
    common = ["tofu", "--model", str(final), "--data", tofu, "--split", "forget01", "--check_only"]
    assert eval_cli.main([*common, "--out", str(tmp_path / "e1"), "--prompt_template", "question {} answer"]) == 0
    capsys.readouterr()
    assert eval_cli.main([*common, "--out", str(tmp_path / "e2"), "--chat_template", "none"]) == 2
    assert 'input_template "question {} answer" (the training prompts), this evaluation formats prompts with raw ' \
           "prompt text" in capsys.readouterr().err
