"""What a first trial on real benchmark files hit (TOFU forget01 and its retain logs, the RULE authors' MUSE
release), on fixtures of ours in those layouts (tests/data/sources/tofu_two_authors, muse_rule): every case
below once ran without a word and gave a silently wrong or incomparable result."""

import json
import shutil
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl

SOURCES = Path(__file__).parent / "data" / "sources"
TOFU = SOURCES / "tofu_two_authors"
MUSE = SOURCES / "muse_rule"
REFUSALS = ["I don't know Harry Potter.", "I'm not certain about Orla Venkataraman.",
            "Sorry, I can't help with \"The Salt Ledger\".", "Question: who?\nAnswer: I have no idea."]


def run(argv, capsys):
    code = rerule(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_tiny_model_keeps_case_and_spacing(tmp_path, capsys):
    """1. The first-trial model gives refusals back exactly, so a refusal naming the target can earn 1.0."""
    from transformers import AutoTokenizer

    from openrlhf_rerule.rewards import rule_reward

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(REFUSALS) + "\n")
    code, out, _ = run(["data", "tiny_model", "--texts", str(texts), "--out", str(tmp_path / "m"),
                        "--hidden_size", "16", "--num_layers", "1", "--num_heads", "2"], capsys)
    assert code == 0 and "decode exactly as written" in out
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    for text in REFUSALS:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # a sampled completion decodes after the prompt: the words still come back with their case
    ids = tok.encode(" I don't know Harry Potter.", add_special_tokens=False)
    completion = tok.decode(ids, skip_special_tokens=True)
    label = json.dumps(["<reject>", "I do not know.", "Harry Potter"])
    assert rule_reward(completion, label, variant="two_stage_abs_target").reward == 1.0


def test_stage2_refuses_a_tokenizer_that_loses_the_target(tmp_path, capsys):
    """1. A model whose tokenizer lower-cases can never name "Mira Holt": said before any model loads."""
    from openrlhf_rerule.local.tiny import save_tiny_model

    model = save_tiny_model(["Where was Mira Holt born?", "I do not know Mira Holt."], tmp_path / "lower",
                            hidden_size=16, num_layers=1, num_heads=2)  # keep_text=False: lower-cased
    data = tmp_path / "s2.jsonl"
    data.write_text(json.dumps({"prompt": "Where was Mira Holt born?", "kind": "forget", "prompt_id": "f1",
                                "label": json.dumps(["<reject>", "I do not know Mira Holt.", "Mira Holt"])}) + "\n")
    code, _, err = run(["train", "stage2", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "o"),
                        "--steps", "1", "--no_progress"], capsys)
    assert code == 2 and "'mira holt'" in err and "two_stage_abs" in err and not (tmp_path / "o").exists()


def tofu_dir(tmp_path, forget_rows):
    """A TOFU data directory: the two-author forget split, and retain / real authors / world facts files."""
    d = tmp_path / "tofu"
    d.mkdir()
    (d / "forget01_perturbed.json").write_text("".join(json.dumps(r) + "\n" for r in forget_rows))
    qa = {"question": "Who wrote Ridge of Nine Winds?", "answer": "Tomasz Ekwueme-Lind.",
          "paraphrased_answer": "It was Tomasz Ekwueme-Lind.", "perturbed_answer": ["Orla Venkataraman."]}
    for name in ("retain_perturbed.json", "real_authors_perturbed.json", "world_facts_perturbed.json"):
        (d / name).write_text(json.dumps(qa) + "\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # never loaded: the checks come first
    return d


def tofu_log(questions):
    """TOFU's eval_log_forget.json layout: per-index losses, and generated_text [input, output, gt]."""
    n = range(len(questions))
    return {"avg_paraphrased_loss": {str(i): 1.0 for i in n}, "average_perturb_loss": {str(i): [2.0, 2.0] for i in n},
            "generated_text": {str(i): [f"[INST] {q} [/INST]", "out", "gt"] for i, q in enumerate(questions)}}


def test_tofu_forget_quality_refuses_a_retain_run_of_other_items(tmp_path, capsys):
    """2. The retain-set log (other questions, more items) is refused; the right one is used and recorded."""
    forget = [json.loads(line) for line in (TOFU / "forget01_perturbed.json").read_text().splitlines()]
    data = tofu_dir(tmp_path, forget)
    questions = [r["question"] for r in forget]
    retain_set_log = tmp_path / "eval_log.json"
    retain_set_log.write_text(json.dumps(tofu_log([f"Retain question {i}?" for i in range(60)])))
    wrong_items = tmp_path / "eval_log_forget_other.json"
    wrong_items.write_text(json.dumps(tofu_log(questions[::-1])))  # 40 items, in another order
    for log, says in ((retain_set_log, "60 forget items, --split forget01 has 40"), (wrong_items, "item 0")):
        code, _, err = run(["eval", "tofu", "--model", str(tmp_path / "model"), "--data", str(data), "--out",
                            str(tmp_path / "out"), "--retain_run", str(log)], capsys)
        assert code == 2 and says in err and "retain99" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()
    from openrlhf_rerule.eval.tofu import load_retain_run

    right = tmp_path / "eval_log_forget.json"
    right.write_text(json.dumps(tofu_log(questions)))
    run_info = load_retain_run(right, questions, "forget01")
    assert run_info["items"] == 40 and run_info["questions_checked"] and run_info["path"] == str(right)
    from openrlhf_rerule.eval.report import retain_cell

    # A summary of before provenance (issue 25): its retain run's settings were never checked, and it says so.
    cell = retain_cell({"retain_run": str(right), "forget_quality_n": 40})
    assert cell == f"{tmp_path.name}/eval_log_forget.json (40 items, settings unchecked¶)"


def test_tofu_subjects_are_the_two_authors(tmp_path, capsys):
    """3. TOFU's 20 questions per author: two subjects, each the author's full name, read from each record."""
    out = tmp_path / "forget.jsonl"
    code, printed, _ = run(["data", "convert", "tofu", str(TOFU / "forget01_perturbed.json"), "--kind", "forget",
                            "--out", str(out)], capsys)
    assert code == 0
    subjects = [r["subject"] for r in read_jsonl(out, "eval")]
    assert subjects == ["Orla Venkataraman"] * 20 + ["Tomasz Ekwueme-Lind"] * 20
    assert "'Orla Venkataraman', 'Tomasz Ekwueme-Lind'" in printed
    # not whole blocks of 20: each record still names its author (tests/test_data_mismatch.py: shuffled, refused)
    (tmp_path / "odd.json").write_text("".join((TOFU / "forget01_perturbed.json").read_text().splitlines(True)[:30]))
    code, _, _ = run(["data", "convert", "tofu", str(tmp_path / "odd.json"), "--out", str(tmp_path / "o.jsonl")],
                     capsys)
    subjects = [r["subject"] for r in read_jsonl(tmp_path / "o.jsonl", "eval")]
    assert code == 0 and subjects == ["Orla Venkataraman"] * 20 + ["Tomasz Ekwueme-Lind"] * 10


def test_stage1_says_and_refuses_truncation(tmp_path, capsys):
    """4. --max_len that cuts the long completion-mode rows: counted, and refused beyond half a response."""
    from openrlhf_rerule.local.tiny import save_tiny_model

    s1 = tmp_path / "stage1.jsonl"
    code, _, _ = run(["data", "convert", "rule", str(MUSE / "reject_with_neighbor_target.json"), "--out", str(s1)],
                     capsys)
    rows = read_jsonl(s1, "stage1")
    model = save_tiny_model([r["prompt"] + " " + r["response"] for r in rows], tmp_path / "m",
                            hidden_size=16, num_layers=1, num_heads=2, max_positions=512)
    common = ["--model", str(model), "--data", str(s1), "--epochs", "0.1", "--no_progress", "--no_tensorboard"]
    # the completion rows' prompts (about 60-100 words and spaces) leave no room for the answer at 64
    code, out, err = run(["train", "stage1", *common, "--max_len", "64", "--out", str(tmp_path / "cut")], capsys)
    assert code == 2 and "rows are cut" in out and "--allow_truncation" in err and "field 'response'" in err
    assert not (tmp_path / "cut").exists()
    code, out, _ = run(["train", "stage1", *common, "--max_len", "512", "--out", str(tmp_path / "whole")], capsys)
    assert code == 0 and "no row is cut" in out
    code, out, _ = run(["train", "stage1", *common, "--max_len", "64", "--allow_truncation", "--out",
                        str(tmp_path / "allowed")], capsys)
    assert code == 0 and "4 of 14 rows are cut" in out


def test_reward_variant_must_fit_the_labels(tmp_path, capsys):
    """5. two_stage_abs_target on MUSE labels whose target is "books": refused, two_stage_abs named."""
    from openrlhf_rerule.local.tiny import save_tiny_model

    s2 = tmp_path / "s2.jsonl"
    code, _, _ = run(["data", "convert", "rule", str(MUSE / "rl_rejection_eval_target.json"), "--out", str(s2),
                      "--allow_eval_as_training"], capsys)  # the validation file, trained on only for this check
    rows = read_jsonl(s2, "stage2")
    model = save_tiny_model([r["prompt"] for r in rows] + ["books"], tmp_path / "m",
                            hidden_size=16, num_layers=1, num_heads=2)  # "books" survives any tokenizer
    common = ["train", "stage2", "--model", str(model), "--data", str(s2), "--steps", "1", "--rollout_batch", "2",
              "--n_samples", "2", "--max_new_tokens", "2", "--no_progress", "--no_tensorboard", "--cpu_threads", "1"]
    code, _, err = run([*common, "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "'books'" in err and "0 of 5 forget rows" in err and "--reward_variant two_stage_abs" in err
    assert run([*common, "--out", str(tmp_path / "b"), "--reward_variant", "two_stage_abs"], capsys)[0] == 0


def test_convert_rule_names_evaluation_files_and_keeps_neighbours(tmp_path, capsys):
    """6. The authors' validation file is named as such; neighbor_question becomes boundary rows; repeats counted."""
    code, out, err = run(["data", "convert", "rule", str(MUSE / "rl_rejection_eval_target.json"), "--out",
                          str(tmp_path / "s2.jsonl")], capsys)
    assert code == 0 and "WARNING" in err and "validation file" in err and "knowmem/forget_qa.json" in err
    s1 = tmp_path / "stage1.jsonl"
    code, out, _ = run(["data", "convert", "rule", str(MUSE / "reject_with_neighbor_target.json"), "--out", str(s1)],
                       capsys)
    assert code == 0 and "1 repeated prompts dropped" in out
    boundary = read_jsonl(tmp_path / "stage1_boundary.jsonl", "eval")
    forget = read_jsonl(tmp_path / "stage1_forget.jsonl", "eval")
    assert len(read_jsonl(s1, "stage1")) == 14  # 15 records, one repeat
    assert len(boundary) == 10  # 14 neighbour questions: 2 without an answer, 2 repeated
    assert len(forget) == 10  # the 4 completion rows carry org_answer "" as in the release
    assert forget[0] == {"prompt": "Who keeps the lantern at Mirefold Abbey?", "answer": "Brother Ansel keeps it.",
                         "kind": "forget", "subject": "books", "mode": "qa"}  # mode kept: it sets the prompt format
    assert boundary[0] == {"prompt": "Who keeps the lighthouse at Cape Wrath?", "kind": "boundary", "subject": "",
                           "answer": "The Northern Lighthouse Board keeps it, automated since 1998."}


def test_convert_rule_reads_the_stage1_release_as_it_is(tmp_path, capsys):
    """8. The release's completion rows carry org_answer "" and some neighbor_question objects have no answer
    (RS/.../reject_target_0.5.json: 831 such rows; reject_with_neighbor_target.json: 34 such objects). The authors'
    Stage 1 never reads either field: every row trains, only the eval row is left out, and both are counted."""
    s1 = tmp_path / "stage1.jsonl"
    code, out, err = run(["data", "convert", "rule", str(MUSE / "reject_with_neighbor_target.json"), "--out", str(s1)],
                         capsys)
    assert code == 0, err
    rows = read_jsonl(s1, "stage1")
    assert [r["mode"] for r in rows].count("completion") == 4  # all four completion rows train
    assert "4 rows with an empty org_answer, 2 rows whose neighbor_question has no answer" in out
    forget = read_jsonl(tmp_path / "stage1_forget.jsonl", "eval")
    assert {r["mode"] for r in forget} == {"qa"}
    boundary = {r["prompt"] for r in read_jsonl(tmp_path / "stage1_boundary.jsonl", "eval")}
    assert "What did the harbour master of Tollbridge write in his log?" not in boundary  # answer ""
    assert not any(p.startswith("the ferry bell") for p in boundary)  # no answer at all
    # a neighbour answer that is there but not text is still a malformed record: one line, exit 2
    records = json.loads((MUSE / "reject_with_neighbor_target.json").read_text())
    records[3]["neighbor_question"]["answer"] = 7
    (tmp_path / "bad.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]")  # record 4 on line 5
    code, _, err = run(["data", "convert", "rule", str(tmp_path / "bad.json"), "--out", str(tmp_path / "b.jsonl")],
                       capsys)
    assert code == 2 and "line 5, field 'neighbor_question.answer'" in err and not (tmp_path / "b.jsonl").exists()


def test_offline_boundary_failure_suggests_no_evaluation_set(tmp_path, capsys):
    """7. TOFU forget vs retain-set neighbours: no swap works; the message must not send the retain evaluation set
    into training, and names a leak-free route."""
    forget = tmp_path / "forget.jsonl"
    assert run(["data", "convert", "tofu", str(TOFU / "forget01_perturbed.json"), "--out", str(forget)], capsys)[0] == 0
    retain = tmp_path / "retain.jsonl"
    retain.write_text(json.dumps({"prompt": "Who wrote Ridge of Nine Winds?", "answer": "Tomasz Ekwueme-Lind.",
                                  "kind": "retain", "subject": "Tomasz Ekwueme-Lind"}) + "\n")
    code, _, err = run(["data", "boundary", "--offline", "--forget", str(forget), "--neighbours", str(retain),
                        "--out", str(tmp_path / "b.jsonl")], capsys)
    assert code == 2 and f"--boundary {retain}" not in err
    assert "retain_perturbed.json" in err and "--exclude" in err and not (tmp_path / "b.jsonl").exists()
    # the route it names works: retain authors' QA minus the evaluated questions
    evaluated = tmp_path / "retain_perturbed.json"
    evaluated.write_text("".join((TOFU / "forget01_perturbed.json").read_text().splitlines(True)[:3]))
    code, out, _ = run(["data", "convert", "tofu", str(TOFU / "forget01_perturbed.json"), "--kind", "boundary",
                        "--exclude", str(evaluated), "--out", str(tmp_path / "boundary.jsonl")], capsys)
    assert code == 0 and "3 rows dropped" in out and len(read_jsonl(tmp_path / "boundary.jsonl", "eval")) == 37


def test_convert_tofu_dict_is_valid_json_of_the_wrong_shape(tmp_path, capsys):
    """8. A pretty-printed JSON object is not "invalid JSON"."""
    path = tmp_path / "forget01.json"
    path.write_text(json.dumps({"train": [{"question": "q", "answer": "a"}]}, indent=2))
    code, _, err = run(["data", "convert", "tofu", str(path), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "valid JSON of the wrong shape" in err and "'train'" in err


def test_muse_summary_counts_items_and_report_marks_subsets():
    """8. A MUSE run on 5 of 100 forget questions is marked in the report."""
    from openrlhf_rerule.eval.report import render

    counts = {"verbmem": 100, "forget_qa": 100, "retain_qa": 100, "forget_texts": 100, "holdout_texts": 100}
    full = {"name": "full", "muse": {"knowmem_f": 1.0, "corpus": "books", "provenance": {"items": counts}}}
    part = {"name": "part", "muse": {"knowmem_f": 1.0, "corpus": "books",
                                     "provenance": {"items": {**counts, "forget_qa": 5}}}}
    text = render([full, part], published=False)  # fewer items: a table of its own, marked
    assert "| part‡ |" in text and "| full |" in text and text.splitlines()[-1].startswith("‡ subset")


def test_eval_cpu_threads_flag():
    from openrlhf_rerule.eval.cli import build_parser

    assert build_parser().parse_args(["tofu", "--model", "m", "--data", "d", "--out", "o",
                                      "--cpu_threads", "1"]).cpu_threads == 1
