"""`rerule data purge`: probe answers -> entity file -> Stage 2 rows, on a tiny target folder in RWKU's layout
written here (a made-up novelist), with a tiny local model, a local stub endpoint and an offline entity list;
then two embedded GRPO steps with the PURGE reward on the result."""

import hashlib
import json
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.data.purge import (EXTRACTION_PROMPT, common_word_warnings, entity_list, parse_extraction,
                                        read_questions)
from openrlhf_rerule.data.schema import DataError
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.provenance import read_sidecar
from openrlhf_rerule.rewards import parse_purge_label

TARGET = "Mira Holt"
QUESTIONS = ["What is the title of Mira Holt's first novel, published in 1988, which follows an orchard family in",
             "Which town in the north is Mira Holt from, and how did it shape the",
             "Mira Holt won a major prize for The Salt Orchard; what is the",
             "What is the title of Mira Holt's first novel, published in 1988, which follows an orchard family in",
             "How did Mira Holt's years as a teacher influence the",
             "Who was Mira Holt's editor at Greyline Press, and what did"]


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rwku(tmp_path_factory):
    """A target folder in RWKU's layout: rejection-tuning questions (training side) and evaluation probes."""
    folder = tmp_path_factory.mktemp("rwku") / "3_Mira_Holt"
    folder.mkdir()
    write_json(folder / "reject_phi.json", [{"subject": TARGET, "instruction": q, "input": "",
                                             "output": "I'm not certain about that.",
                                             "intro": "Mira Holt is a novelist."} for q in QUESTIONS])
    probe = {"query": "Mira Holt is best known for the novel The ___ Orchard.", "answer": "Salt", "level": "1",
             "type": "cloze", "subject": TARGET}
    write_json(folder / "forget_level1.json", [probe])
    write_json(folder / "neighbor_level1.json", [dict(probe, neighbor="Dunmore")])
    write_json(folder.parent / "copied_probes.json", [probe])  # probes under an innocent name
    texts = QUESTIONS + ["mira holt wrote the salt orchard in dunmore . it was her first novel . greyline press"]
    model = save_tiny_model(texts, folder.parent / "model", hidden_size=32, num_layers=1, num_heads=2)
    return {"folder": folder, "model": model, "root": folder.parent}


def run(argv, capsys):
    code = rerule(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["forget_level1.json", "neighbor_level1.json", "../copied_probes.json"])
def test_evaluation_probes_are_refused_by_name_and_by_shape(rwku, name, capsys, tmp_path):
    code, out, err = run(["data", "purge", "stage2", "--questions", str(rwku["folder"] / name), "--entities",
                          str(rwku["folder"] / "reject_phi.json"), "--out", str(tmp_path / "s.jsonl")], capsys)
    assert code == 2 and "leaks the test" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.jsonl").exists()


def test_converted_probes_are_refused_too(tmp_path):
    rows = tmp_path / "forget.jsonl"
    rows.write_text(json.dumps({"prompt": "q?", "answer": "a", "kind": "forget", "subject": TARGET,
                                "level": "2"}) + "\n")
    with pytest.raises(DataError, match="field 'level'.*evaluation probe"):
        read_questions(rows)


def test_pipeline_end_to_end_with_a_local_model_and_an_offline_list(rwku, capsys, tmp_path, one_torch_thread):
    questions, root = str(rwku["folder"] / "reject_phi.json"), tmp_path
    code, out, _ = run(["data", "purge", "answers", "--questions", questions, "--local_model", str(rwku["model"]),
                        "--out", str(root / "answers.jsonl"), "--max_new_tokens", "8", "--device", "cpu"], capsys)
    assert code == 0, out
    answers = [json.loads(line) for line in (root / "answers.jsonl").read_text().splitlines()]
    assert [a["prompt"] for a in answers] == QUESTIONS and {a["subject"] for a in answers} == {TARGET}
    assert all(isinstance(a["response"], str) for a in answers)

    (root / "list.txt").write_text("# reviewed by hand\nThe Salt Orchard\nmira holt\nIt\n\nLi\nDunmore\n"
                                   "Greyline Press\n")
    code, out, _ = run(["data", "purge", "entities", "--answers", str(root / "answers.jsonl"), "--offline",
                        str(root / "list.txt"), "--top_k", "5", "--out", str(root / "entities.json")], capsys)
    assert code == 0, out
    # target first; "mira holt" is the target again (case-insensitive); top 5 keeps the first five distinct terms
    assert json.loads((root / "entities.json").read_text()) == [TARGET, "The Salt Orchard", "It", "Li", "Dunmore"]
    assert "warning: 'It' is a common English word" in out and "warning: 'Li' is a short word" in out
    assert f"of {len(QUESTIONS)} answers mention a term" in out

    code, out, _ = run(["data", "purge", "stage2", "--questions", questions, "--entities", str(root / "entities.json"),
                        "--out", str(root / "stage2.jsonl"), "--max_prompts", "4"], capsys)
    assert code == 0, out
    rows = read_jsonl(root / "stage2.jsonl", "stage2")
    # the first four rows as listed, the repeated question included (the authors select rows, not distinct
    # questions: src/purge.py:116-117); the repeat is marked, same prompt_id
    assert [r["prompt"] for r in rows] == QUESTIONS[:4] and [r["repeat"] for r in rows] == [0, 0, 0, 1]
    assert rows[3]["prompt_id"] == rows[0]["prompt_id"] and "1 of them repeat an earlier question" in out
    code, out, _ = run(["data", "purge", "stage2", "--questions", questions, "--entities", str(root / "entities.json"),
                        "--out", str(root / "distinct.jsonl"), "--max_prompts", "4", "--drop_repeats"], capsys)
    # --drop_repeats: the repeat goes first, then the first four distinct questions are kept
    distinct = read_jsonl(root / "distinct.jsonl", "stage2")
    assert code == 0 and [r["prompt"] for r in distinct] == [QUESTIONS[i] for i in (0, 1, 2, 4)]
    assert {r["kind"] for r in rows} == {"forget"}
    assert parse_purge_label(rows[0]["label"]) == (TARGET, (TARGET, "The Salt Orchard", "It", "Li", "Dunmore"))

    # Two embedded GRPO steps with the PURGE reward and replay: the reward is binary, the new metric is logged.
    code, out, err = run(["train", "stage2", "--model", str(rwku["model"]), "--data", str(root / "stage2.jsonl"),
                          "--out", str(root / "run"), "--reward_variant", "purge_binary", "--steps", "2",
                          "--rollout_batch", "2", "--n_samples", "4", "--max_new_tokens", "6", "--cpu_threads", "1",
                          "--progress", "false", "--tensorboard", "false", "--replay.enable", "--replay.min_groups",
                          "1", "--replay.warmup_steps", "0"], capsys)
    assert code == 0, err
    metrics = read_log(root / "run" / "metrics.jsonl")
    assert len(metrics) == 2 and all("rollout/mention_rate_forget" in m for m in metrics)
    assert all(m["rollout/mention_rate_forget"] == pytest.approx(1 - m["rollout/reward_forget"]) for m in metrics)
    assert all(0 <= m["rollout/zero_variance_frac"] <= 1 for m in metrics)
    history = [json.loads(line) for line in (root / "run" / "reward_history.jsonl").read_text().splitlines()]
    assert history and all(set(h["rewards"]) <= {0.0, 1.0} for h in history)


def test_purge_labels_under_a_rule_variant_are_refused_before_loading(rwku, capsys, tmp_path):
    entities = write_json(tmp_path / "fts.json", [TARGET])
    stage2 = tmp_path / "stage2.jsonl"
    assert run(["data", "purge", "stage2", "--questions", str(rwku["folder"] / "reject_phi.json"), "--entities",
                str(entities), "--out", str(stage2)], capsys)[0] == 0
    code, _, err = run(["train", "stage2", "--model", str(rwku["model"]), "--data", str(stage2), "--out",
                        str(tmp_path / "run"), "--reward_variant", "two_stage_abs"], capsys)
    assert code == 2 and "line 1, field 'label'" in err and "purge_binary" in err
    assert not (tmp_path / "run").exists()


def test_answers_and_extraction_through_an_endpoint_with_the_cache(rwku, chat_stub, capsys, tmp_path):
    entities = {"People": ["Mira Holt", "Ada Vance"], "Works": [{"name": "The Salt Orchard", "type": "novel"}],
                "Places": ["Dunmore"]}

    def reply(body):
        if "prompt" in body:  # /completions: the model to be unlearned continues the raw question
            return " she grew up in Dunmore."
        return "```json\n" + json.dumps(entities) + "\n```"

    stub = chat_stub(reply)
    questions, cache = str(rwku["folder"] / "reject_phi.json"), str(tmp_path / "cache.jsonl")
    argv = ["data", "purge", "answers", "--questions", questions, "--base_url", stub.url, "--model", "m",
            "--cache", cache, "--out", str(tmp_path / "answers.jsonl")]
    assert run(argv, capsys)[0] == 0
    first = stub.calls[0]
    assert first["path"] == "/v1/completions" and first["body"]["prompt"] in QUESTIONS
    assert (first["body"]["temperature"], first["body"]["top_p"], first["body"]["max_tokens"]) == (0.7, 0.9, 100)
    # the repeated question is a cache hit or a concurrent second request; a rerun sends nothing at all
    sent = len(stub.calls)
    assert run(argv, capsys)[0] == 0 and len(stub.calls) == sent

    code, out, _ = run(["data", "purge", "entities", "--answers", str(tmp_path / "answers.jsonl"), "--base_url",
                        stub.url, "--model", "extractor", "--cache", cache, "--out", str(tmp_path / "e.json")], capsys)
    assert code == 0, out
    prompt = stub.calls[-1]["body"]["messages"][0]["content"]
    assert prompt == EXTRACTION_PROMPT.format(target=TARGET, ask=60, responses="\n".join(
        [" she grew up in Dunmore."] * len(QUESTIONS)))
    assert prompt.startswith("Suppose you are doing named entity recognition on Mira Holt based only on the "
                             "responses below. What are the top 60 entities")
    assert json.loads((tmp_path / "e.json").read_text()) == [TARGET, "Ada Vance", "The Salt Orchard", "Dunmore"]
    assert f"{len(QUESTIONS)} of {len(QUESTIONS)} answers mention a term" in out
    # the sidecars: which questions were answered by what, with which sampling; which answers the list came from
    answers_meta = read_sidecar(tmp_path / "answers.jsonl")
    assert (answers_meta["command"], answers_meta["role"], answers_meta["rows"], answers_meta["target"]) == \
        ("purge answers", "training", len(QUESTIONS), TARGET)
    assert [(s["as"], s["path"], s["sha256"]) for s in answers_meta["sources"]] == \
        [("--questions", str(Path(questions).resolve()), hashlib.sha256(open(questions, "rb").read()).hexdigest())]
    assert answers_meta["answered_by"].startswith(f"m at {stub.url}") and answers_meta["api"] == "completions"
    assert (answers_meta["temperature"], answers_meta["top_p"], answers_meta["max_new_tokens"]) == (0.7, 0.9, 100)
    entities_meta = read_sidecar(tmp_path / "e.json")
    assert (entities_meta["command"], entities_meta["role"], entities_meta["terms"]) == \
        ("purge entities", "training", 4)
    assert [(s["as"], s["path"], s["made_by"]) for s in entities_meta["sources"]] == \
        [("--answers", str((tmp_path / "answers.jsonl").resolve()), "purge answers")]


def test_extraction_replies_and_entity_lists():
    assert parse_extraction('["A", "B"]') == ["A", "B"]
    assert parse_extraction('{"entities": [{"entity": "A"}, {"text": "B", "type": "x"}]}') == ["A", "B"]
    with pytest.raises(ValueError, match="not JSON"):
        parse_extraction("Here are the entities: A, B")
    assert entity_list("T", ["  A  b ", "a B", "t", "C"], top_k=3) == ["T", "A b", "C"]
    warnings = common_word_warnings(["Stephen King", "It", "Ren", "1947", "Carrie", "the"])
    assert [w.split("'")[1] for w in warnings] == ["It", "Ren", "1947", "the"]
    assert common_word_warnings(["Carrie"], extra_stopwords={"carrie"})


@pytest.mark.parametrize("content, words", [
    ("[]", "no terms"), ('["Mira Holt", 3]', "array of strings"), ('{"terms": ["Mira Holt"]}', "array of strings"),
    ('["Mira Holt"', "invalid JSON"), ("# only a comment\n\n", "no terms"),
])
def test_bad_entity_files_are_one_line_errors(rwku, content, words, capsys, tmp_path):
    (tmp_path / "entities.json").write_text(content)
    code, _, err = run(["data", "purge", "stage2", "--questions", str(rwku["folder"] / "reject_phi.json"),
                        "--entities", str(tmp_path / "entities.json"), "--out", str(tmp_path / "s.jsonl")], capsys)
    assert code == 2 and words in err and "entities.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.parametrize("argv, words", [
    (["--out", "a.jsonl"], "--local_model DIR"),                                     # neither source
    (["--out", "a.jsonl", "--base_url", "http://127.0.0.1:9/v1"], "--model"),        # a server without a model name
    (["--out", "a.jsonl", "--local_model", "no/such/dir"], "--local_model no/such/dir"),
])
def test_bad_answer_sources_are_refused_before_any_work(rwku, argv, words, capsys, tmp_path):
    code, _, err = run(["data", "purge", "answers", "--questions", str(rwku["folder"] / "reject_phi.json"), *argv],
                       capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.jsonl").exists()


def test_a_reply_that_is_not_json_is_a_one_line_error_and_stays_cached(chat_stub, capsys, tmp_path):
    stub = chat_stub(lambda body: "Sure! The entities are Mira Holt and Dunmore.")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": "q", "response": "Mira Holt of Dunmore", "subject": TARGET}) + "\n")
    argv = ["data", "purge", "entities", "--answers", str(answers), "--base_url", stub.url, "--model", "x",
            "--cache", str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "e.json")]
    code, _, err = run(argv, capsys)
    assert code == 2 and "not JSON" in err and "--offline LIST" in err and not (tmp_path / "e.json").exists()
    assert run(argv, capsys)[0] == 2 and len(stub.calls) == 1  # the paid reply is reused, not re-sent


def test_stage2_drops_a_question_that_copies_a_probe_before_the_cut(rwku, capsys, tmp_path):
    """A question that copies an evaluation probe under an innocent file name (RWKU's own reject_phi.json does so for
    3_Bruce_Lee): dropped and counted before --max_prompts cuts, so the target still gets its full count; with
    --allow_eval_overlap kept, marked in its row and counted in the .meta.json sidecar."""
    probe = "Mira Holt is best known for the novel The ___ Orchard."
    questions = write_json(tmp_path / "questions.json", [{"instruction": q, "subject": TARGET}
                                                          for q in [probe, QUESTIONS[0]]])
    entities = write_json(tmp_path / "fts.json", [TARGET])
    argv = ["data", "purge", "stage2", "--questions", str(questions), "--entities", str(entities), "--out",
            str(tmp_path / "s.jsonl"), "--max_prompts", "1", "--eval", str(rwku["folder"] / "forget_level1.json")]
    code, _, err = run(argv, capsys)
    assert code == 0 and "questions.json" in err and "forget_level1.json" in err and "dropped 1 of 2" in err
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [QUESTIONS[0]]
    meta = json.loads((tmp_path / "s.jsonl.meta.json").read_text())
    assert meta["overlaps_exact"] == 1 and meta["rows_dropped"] == 1 and meta["target"] == TARGET
    assert run(argv + ["--allow_eval_overlap"], capsys)[0] == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [probe] and "forget_level1.json" in rows[0]["eval_overlap"]
    meta = json.loads((tmp_path / "s.jsonl.meta.json").read_text())
    assert meta["overlaps_exact"] == 1 and meta["rows_dropped"] == 0 and meta["terms"] == 1



def test_an_offline_list_in_the_authors_layout_is_used_whole(tmp_path, capsys):
    """The released data/PURGE/<n>_<Name>/fts.json lists hold 49-64 terms and their reward reads each file whole
    into a set (src/rewards/base.py:47-50): no cut at 50, no term rewritten, no name added. This list is
    made up in their layout: a comma in the folder name (as 10_Prince_Harry,_Duke_of_Sussex), the folder's name
    not in the list (as 44_Meghan,_Duchess_of_Sussex), a narrow no-break space inside a term (as "The Godfather
    Part\u202fII" in 20_Marlon_Brando), an exact repeat (as "Fletch" in 94_Chevy_Chase)."""
    from openrlhf_rerule.rewards import purge_label, purge_reward

    folder = tmp_path / "PURGE" / "10_Ada_Quill,_Duchess_of_Elm"
    folder.mkdir(parents=True)
    listed = ["Ada Quill", "Elm Abbey", "The Glass Ferry\u202fII"] + [f"Quill Tale {n}" for n in range(1, 55)]
    write_json(folder / "fts.json", listed + ["Elm Abbey"])  # 58 entries, 57 distinct
    code, out, _ = run(["data", "purge", "entities", "--offline", str(folder / "fts.json"), "--target",
                        "Ada Quill, Duchess of Elm", "--out", str(tmp_path / "whole.json")], capsys)
    assert code == 0 and json.loads((tmp_path / "whole.json").read_text()) == listed  # 57 terms, as written
    assert "57 terms" in out and "warning: 'Ada Quill, Duchess of Elm' is not in the list" in out
    label = purge_label("Ada Quill, Duchess of Elm", json.loads((tmp_path / "whole.json").read_text()))
    # their regex escapes U+202F as itself: a plain space between "Ferry" and "II" is another text
    assert purge_reward("She read The Glass Ferry II twice.", label).reward == 1.0
    assert purge_reward("She read The Glass Ferry\u202fII twice.", label).reward == 0.0
    assert purge_reward("Quill Tale 54 came last.", label).reward == 0.0  # the 57th term is still there
    # --top_k K: the extraction's reading (target first, then the list in order, K in all)
    code, out, _ = run(["data", "purge", "entities", "--offline", str(folder / "fts.json"), "--target",
                        "Ada Quill, Duchess of Elm", "--top_k", "50", "--out", str(tmp_path / "top.json")], capsys)
    top = json.loads((tmp_path / "top.json").read_text())
    assert code == 0 and len(top) == 50 and top[:3] == ["Ada Quill, Duchess of Elm", "Ada Quill", "Elm Abbey"]
    assert top[-1] == "Quill Tale 46" and "without it the list is used whole" in out
