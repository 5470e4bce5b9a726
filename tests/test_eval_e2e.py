"""End to end: `rerule eval` on tiny local models over the committed fixtures (tests/data/eval/, each in its
benchmark's on-disk layout; all sentences written for these tests), then `rerule report`. The numbers in the
written JSON are re-derived here from the per-item files and from independent forward passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import hmean, ks_2samp

from openrlhf_rerule.eval import cli, report
from openrlhf_rerule.eval.scoring import answer_nll, chat_prompt, generate, load_model, next_token_logprobs

DATA = Path(__file__).parent / "data" / "eval"
EXTRA_WORDS = "user assistant Please complete the blank in the following question. Question: Answer: Instruction:"


def _train_on_forget_answers(model_dir, steps=40):
    """A few steps of SFT on the TOFU forget answers so that generations overlap the references."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (DATA / "tofu/forget01_perturbed.json").read_text().splitlines()]
    seqs = [chat_prompt(tok, r["question"]) + r["answer"] + tok.eos_token for r in rows]
    tok.padding_side = "right"
    enc = tok(seqs, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(model_dir)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_torch_thread):
    from openrlhf_rerule.local.tiny import save_tiny_model

    root = tmp_path_factory.mktemp("models")
    texts = [p.read_text() for p in sorted(DATA.rglob("*.json*"))] + [EXTRA_WORDS]
    retain = save_tiny_model(texts, root / "retain", seed=1)
    trained = save_tiny_model(texts, root / "trained", seed=0)
    _train_on_forget_answers(trained)
    return {"retain": retain, "trained": trained}


def _eval(bench, model, out, *extra):
    return cli.main([bench, "--model", str(model), "--data", str(DATA / bench), "--out", str(out),
                     "--batch-size", "3", *extra])


def _read(out, bench):
    return (json.loads((out / f"{bench}_summary.json").read_text()),
            json.loads((out / f"{bench}_items.json").read_text()))


def test_batched_generation_and_scoring_do_not_depend_on_batch_size(models):
    rows = [json.loads(line) for line in (DATA / "tofu/retain_perturbed.json").read_text().splitlines()]
    lm = load_model(models["trained"], batch_size=1)
    prompts = [chat_prompt(lm.tokenizer, r["question"]) for r in rows]  # different lengths: real padding
    answers = [r["answer"] for r in rows]
    one_gen, one_nll = generate(lm, prompts, 10), answer_nll(lm, prompts, answers)
    lm.batch_size = 4
    assert generate(lm, prompts, 10) == one_gen
    assert answer_nll(lm, prompts, answers) == pytest.approx(one_nll, abs=1e-5)


def test_next_token_logprobs_of_padded_batches_are_each_prompts_own_last_position(models):
    """Multiple choice computes logits at each row's last token only (`logits_to_keep` with the batch's positions):
    in batches of 4 prompts of different lengths, each row must get what a plain forward pass of its prompt alone
    gives at its last position, and a model without `logits_to_keep` the same through full logits."""
    rows = [json.loads(line) for line in (DATA / "tofu/retain_perturbed.json").read_text().splitlines()]
    lm = load_model(models["trained"], batch_size=4)
    tok = lm.tokenizer
    prompts = [chat_prompt(tok, r["question"]) for r in rows]
    assert len({len(tok(p)["input_ids"]) for p in prompts[:4]}) > 1  # a batch with several last positions
    candidates = [tok.encode(" " + w, add_special_tokens=False)[-1] for w in ("the", "a", "is")]
    with torch.no_grad():
        alone = torch.stack([torch.log_softmax(lm.model(input_ids=torch.tensor([tok(p)["input_ids"]])).logits[0, -1],
                                               dim=-1)[candidates] for p in prompts])
    assert torch.allclose(next_token_logprobs(lm, prompts, candidates), alone, atol=1e-5)

    class WithoutLogitsToKeep(torch.nn.Module):  # the older transformers signature: full logits, indexed after
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    lm._model = WithoutLogitsToKeep(lm.model)
    assert torch.allclose(next_token_logprobs(lm, prompts, candidates), alone, atol=1e-5)


def test_tofu_end_to_end(models, tmp_path):
    assert _eval("tofu", models["retain"], tmp_path / "retain", "--max-new-tokens", "12") == 0
    out = tmp_path / "RULE"
    assert _eval("tofu", models["trained"], out, "--max-new-tokens", "12",
                 "--retain-run", str(tmp_path / "retain")) == 0
    summary, items = _read(out, "tofu")
    _, retain_items = _read(tmp_path / "retain", "tofu")

    # The answer NLL of one item, recomputed with a plain forward pass: answer tokens + EOS after the prompt.
    lm = load_model(models["trained"])
    item = items[0]
    prompt_ids = lm.tokenizer(chat_prompt(lm.tokenizer, item["question"]), add_special_tokens=False)["input_ids"]
    answer_ids = lm.tokenizer(item["answer"], add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0]
    targets = ids[0, len(prompt_ids):]
    nll = torch.nn.functional.cross_entropy(logits[len(prompt_ids) - 1:-1], targets).item()
    assert item["answer_nll"] == pytest.approx(nll, abs=1e-5)
    assert item["prob"] == pytest.approx(np.exp(-nll), rel=1e-5)

    # Aggregates from per-item values.
    forget = [it for it in items if it["set"] == "forget"]
    assert summary["forget_rougeL_recall"] == pytest.approx(np.mean([it["rougeL_recall"] for it in forget]))
    assert summary["forget_rougeL_recall"] > 0.3  # the trained model reproduces its forget answers
    nine = [summary[f"{s}_{m}"] for s in ("retain", "real_authors", "world_facts")
            for m in ("prob", "rougeL_recall", "truth_ratio")]
    assert summary["model_utility"] == pytest.approx(hmean(nine))
    ks = ks_2samp([it["truth_ratio"] for it in forget],
                  [it["truth_ratio"] for it in retain_items if it["set"] == "forget"])
    assert summary["forget_quality"] == pytest.approx(ks.pvalue)

    assert _eval("tofu", models["retain"], tmp_path / "plain", "--max-new-tokens", "2",
                 "--prompt-template", "Question: {}\nAnswer:") == 0
    _, plain = _read(tmp_path / "plain", "tofu")
    assert plain[0]["prompt"] == "Question: " + plain[0]["question"] + "\nAnswer:"
    assert items[0]["prompt"] == "user : " + items[0]["question"] + " assistant : "  # the tiny chat template

    assert report.main([str(tmp_path / "retain"), str(out), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| Model | FQ (↑) | MU (↑) | F-RL (↓) |" in md and "| RULE |" in md
    assert (tmp_path / "report" / "tofu_tradeoff.png").stat().st_size > 1000


def test_muse_end_to_end(models, tmp_path):
    from rouge_score import rouge_scorer

    assert _eval("muse", models["trained"], tmp_path, "--verbmem-max-new-tokens", "16") == 0
    summary, items = _read(tmp_path, "muse")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    know_f = [it for it in items if it["metric"] == "knowmem_f"]
    assert len(know_f) == 3
    assert summary["knowmem_f"] == pytest.approx(
        100 * np.mean([scorer.score(it["answer"], it["output"])["rougeL"].fmeasure for it in know_f]))
    assert all("\n\n" not in it["output"] and "Question:" not in it["output"] for it in know_f)
    verb = [it for it in items if it["metric"] == "verbmem_f"]
    assert summary["verbmem_f"] == pytest.approx(
        100 * np.mean([scorer.score(it["gt"], it["output"])["rougeL"].fmeasure for it in verb]))
    f = [it["min_40"] for it in items if it.get("split") == "forget"]
    h = [it["min_40"] for it in items if it.get("split") == "holdout"]
    pairs = [(1.0 if -hh > -ff else 0.5 if hh == ff else 0.0) for hh in h for ff in f]
    auc = sum(pairs) / len(pairs)
    assert summary["privleak_auc"] == pytest.approx(auc)
    assert summary["privleak"] == pytest.approx((auc - 0.5393) / 0.5393 * 100)
    assert summary["utility"] == summary["knowmem_r"]


def test_rwku_end_to_end_averages_over_targets(models, tmp_path):
    from rouge import Rouge

    assert _eval("rwku", models["trained"], tmp_path, "--fluency-max-new-tokens", "16") == 0
    summary, items = _read(tmp_path, "rwku")
    assert summary["targets"] == ["1_Mira_Solvane", "2_Ada_Quillon"]
    for probe in ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2"):
        per_target = []
        for target in summary["targets"]:
            rows = [it for it in items if it["probe"] == probe and it["target"] == target]
            hyps = [it["prediction"] for it in rows]
            assert all(h.strip() for h in hyps)
            per_target.append(Rouge().get_scores(hyps=hyps, refs=[it["answer"] for it in rows],
                                                 avg=True)["rouge-l"]["r"])
        assert summary[probe] == pytest.approx(np.mean(per_target))
    assert summary["forget_all"] == pytest.approx(np.mean([summary[f"forget_level{i}"] for i in (1, 2, 3)]))
    loss = [it["loss"] for it in items if it["probe"] == "forget_mia"]
    assert summary["mia_forget_loss"] == pytest.approx(np.mean(loss)) and all(v < 0 for v in loss)
    assert "fluency_entropy" in summary

    # Utility suites (only the first target has their files): MMLU re-derived with a plain forward pass.
    mmlu = [it for it in items if it["probe"] == "mmlu"]
    assert summary["per_target"]["1_Mira_Solvane"]["mmlu_acc"] == pytest.approx(np.mean([it["correct"] for it in mmlu]))
    assert "mmlu_acc" not in summary["per_target"]["2_Ada_Quillon"]
    lm = load_model(models["trained"])
    tok = lm.tokenizer
    record = json.loads((DATA / "rwku/1_Mira_Solvane/retain_mmlu.json").read_text())[0]
    from openrlhf_rerule.eval.rwku_utility import mmlu_prompt

    ids = torch.tensor([tok(chat_prompt(tok, mmlu_prompt(record)) + "Answer:")["input_ids"]])
    with torch.no_grad():
        last = lm.model(input_ids=ids).logits[0, -1]
    candidates = [tok.encode(" " + c, add_special_tokens=False)[-1] for c in "ABCD"]
    assert mmlu[0]["prediction"] == int(last[candidates].argmax())
    for key in ("bbh_em", "bbh_em_whole_answer", "truthfulqa_mc1", "truthfulqa_mc2", "triviaqa_em", "triviaqa_f1"):
        assert 0.0 <= summary[key] <= 1.0
    mc2 = [it["mc2"] for it in items if it["probe"] == "truthfulqa"]
    assert summary["truthfulqa_mc2"] == pytest.approx(np.mean(mc2))
    # TruthfulQA (every question's answers scored in one batched call) re-derived one answer at a time, each with
    # its own unpadded forward pass: MC1 = the first true answer beats every false one, MC2 = the true answers'
    # share of the probability mass.
    from openrlhf_rerule.eval.rwku_utility import TRUTHFULQA_PRIMER

    truthful = [it for it in items if it["probe"] == "truthfulqa"]
    records = json.loads((DATA / "rwku/1_Mira_Solvane/truthful.json").read_text())
    assert len(truthful) == len(records) >= 2
    for record, item in zip(records, truthful):
        prompt = chat_prompt(tok, TRUTHFULQA_PRIMER + "\n\nQ: " + record["question"])
        prompt += "A:" if prompt[-1] in "\n " else " A:"
        n_prompt = len(tok(prompt)["input_ids"])

        def logprob(answer):
            ids = torch.tensor([tok(prompt + ("" if prompt[-1] in "\n " else " ") + answer)["input_ids"]])
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
            return float(logp[n_prompt - 1:].gather(-1, ids[0, n_prompt:, None]).sum())

        mc1, mc2 = record["mc1_targets"], record["mc2_targets"]
        first_true = logprob([c for c, lab in zip(mc1["choices"], mc1["labels"]) if lab == 1][0])
        assert item["mc1"] == float(first_true > max(logprob(c) for c, lab in zip(mc1["choices"], mc1["labels"])
                                                     if lab != 1))
        mass = {lab: sum(np.exp(logprob(c)) for c, l in zip(mc2["choices"], mc2["labels"]) if l == lab)
                for lab in (0, 1)}
        assert item["mc2"] == pytest.approx(mass[1] / (mass[0] + mass[1]), abs=1e-5)


def test_naturalness_proxy_end_to_end_and_report(models, tmp_path):
    assert _eval("naturalness", models["trained"], tmp_path / "ReRULE", "--max-new-tokens", "12") == 0
    summary, items = _read(tmp_path / "ReRULE", "naturalness")
    assert summary["scorer"] == "proxy" and len(items) == 3
    for aspect in ("readability", "helpfulness", "truthfulness"):
        assert summary[aspect] == pytest.approx(np.mean([it[aspect] for it in items]))
    assert report.main([str(tmp_path / "ReRULE")]) == 0
    # Tagged with the benchmark whose model it is: its own file, read by that benchmark's table.
    assert _eval("naturalness", models["trained"], tmp_path / "ReRULE", "--max_new_tokens", "12",
                 "--for_benchmark", "muse") == 0
    tagged = json.loads((tmp_path / "ReRULE/naturalness_muse_summary.json").read_text())
    assert tagged["for_benchmark"] == "muse" and tagged["readability"] == pytest.approx(summary["readability"])
    # --engine auto (what the plans pass) finds no vLLM in this environment: transformers ran, and the summary
    # names the engine that ran, not "auto"
    assert summary["provenance"]["settings"]["engine"] == "hf"
    assert _eval("naturalness", models["trained"], tmp_path / "auto", "--max_new_tokens", "12", "--engine",
                 "auto") == 0
    assert _read(tmp_path / "auto", "naturalness")[0]["provenance"]["settings"]["engine"] == "hf"


def test_cli_reports_file_line_and_field(models, tmp_path, capsys):
    data = tmp_path / "tofu"
    shutil.copytree(DATA / "tofu", data)
    path = data / "retain_perturbed.json"
    lines = path.read_text().splitlines()
    bad = json.loads(lines[2])
    del bad["paraphrased_answer"]
    lines[2] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    rc = cli.main(["tofu", "--model", str(models["retain"]), "--data", str(data), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "retain_perturbed.json: line 3: missing field 'paraphrased_answer'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert report.main([str(tmp_path / "nothing")]) == 2


def test_local_hf_judge_unparsable_replies_are_counted_not_fatal(models, tmp_path):
    from openrlhf_rerule.eval.naturalness import CachedJudge, HFJudge, score_responses

    judge = CachedJudge(HFJudge(load_model(models["retain"]), "tiny"), tmp_path / "cache.jsonl")
    summary, items = score_responses(["Where was X born?", "What does X write?"], ["In Peru.", "Poems."],
                                     ["I don't know.", "Cookbooks."], judge)
    # An untrained tiny model cannot produce the JSON verdict: both items unscored, nothing averaged.
    assert summary["unscored"] == 2 and summary["readability"] is None and summary["all"] is None
    assert all(it["judge_reply"] is not None for it in items)
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 2
