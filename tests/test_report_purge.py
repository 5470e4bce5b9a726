"""`rerule report --base NAME`: PURGE's headline numbers against the base model's run on the same target, per target
and averaged over targets; `rerule report --tokenizer PATH`: the tokens of each model's unlearning data, counted as
the PURGE authors count (tokenizers' encode with its default special tokens, prompt and response encoded apart).
Every expected value is worked out by hand in the comments."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from openrlhf_rerule.eval import report
from openrlhf_rerule.eval.data_tokens import count_tokens, counted_texts
from openrlhf_rerule.eval.headline import headline
from test_eval_cli import _row

BASE = dict(forget_level1=0.6, forget_level2=0.5, forget_level3=0.4, forget_all=0.5, mmlu_acc=0.6, bbh_em=0.4,
            truthfulqa_mc1=0.5, triviaqa_f1=0.8, fluency_entropy=5.0)


def _table(md: str, heading: str) -> str:
    """The table under the line that starts with `heading` (tables are separated by blank lines)."""
    return md[md.index(heading):].split("\n\n")[0]


def _eval(run_dir: Path, target: str, name: str, **summary) -> str:
    run_dir.mkdir(parents=True)
    (run_dir / "rwku_summary.json").write_text(json.dumps({"benchmark": "rwku", "targets": [target], "name": name,
                                                            **summary}))
    return str(run_dir)


def test_headline_numbers_of_one_target():
    run = dict(forget_all=0.4, forget_level3=0.3, mmlu_acc=0.54, bbh_em=0.4, truthfulqa_mc1=0.55, triviaqa_f1=0.72,
               fluency_entropy=5.5)
    h = headline(run, BASE)
    assert h["effectiveness"] == pytest.approx(0.2)            # 1 - 0.4 / 0.5
    assert h["effectiveness_points"] == pytest.approx(10.0)    # (0.5 - 0.4) x 100
    assert h["utility_kept"] == pytest.approx(1.0)             # (0.9 + 1.0 + 1.1 + 0.9 + 1.1) / 5
    assert h["utility_kept_of"] == ["Gen", "Rea", "Tru", "Fac", "Flu"]
    assert h["fluency_change"] == pytest.approx(0.1)           # 5.5 / 5.0 - 1
    assert h["aa_robustness"] == pytest.approx(0.25)           # 1 - 0.3 / 0.4
    # Only the utility suites both runs have count; a base value of 0 or a missing one gives no number.
    partial = headline({"mmlu_acc": 0.3, "forget_all": 0.1}, {**BASE, "forget_all": 0.0})
    assert partial["utility_kept"] == pytest.approx(0.5) and partial["utility_kept_of"] == ["Gen"]
    assert partial["effectiveness"] is None and partial["fluency_change"] is None and partial["aa_robustness"] is None
    assert partial["effectiveness_points"] == pytest.approx(-10.0)  # forget rose from 0 to 0.1


def test_report_shows_headline_per_target_and_mean(tmp_path, capsys):
    runs = [_eval(tmp_path / "A/base", "1_A", "Base", **BASE),
            _eval(tmp_path / "B/base", "2_B", "Base", **{**BASE, "forget_all": 0.8, "forget_level3": 0.5}),
            _eval(tmp_path / "A/purge", "1_A", "PURGE", **{**BASE, "forget_all": 0.45, "forget_level3": 0.3,
                                                            "mmlu_acc": 0.3, "fluency_entropy": 6.0}),
            _eval(tmp_path / "B/purge", "2_B", "PURGE", **{**BASE, "forget_all": 0.4, "forget_level3": 0.5,
                                                            "fluency_entropy": 4.0}),
            _eval(tmp_path / "A/rule", "1_A", "RULE", **{**BASE, "forget_all": 0.25})]
    assert report.main(runs + ["--hide_published", "--base", "Base", "--out", str(tmp_path / "r")]) == 0
    md = _table(capsys.readouterr().out, "**PURGE headline numbers**")
    # 1_A: eff 1 - 0.45/0.5 = 10%, 5.0 pts; utility (0.5 + 1 + 1 + 1 + 1.2) / 5 = 94%; Flu +20%; AA 1 - 0.3/0.4 = 25%
    assert _row(md, "PURGE")[:6] == ["1_A", "10.0", "5.0", "94.0", "20.00", "25.00"]
    # 2_B: eff 1 - 0.4/0.8 = 50%, 40.0 pts; utility (1 + 1 + 1 + 1 + 0.8) / 5 = 96%; Flu -20%; AA 0%
    rows = [line for line in md.splitlines() if line.startswith("| PURGE |")]
    assert rows[1].split("|")[2:8] == [" 2_B ", " 50.0 ", " 40.0 ", " 96.0 ", " -20.00 ", " 0.00 "]
    # the mean over the two targets: 30%, 22.5 pts, 95%, 0%, 12.5%
    assert rows[2].split("|")[2:8] == [" mean of 2 targets ", " 30.0 ", " 22.5 ", " 95.0 ", " 0.00 ", " 12.50 "]
    # RULE has only 1_A: one row; the base itself gets none
    assert _row(md, "RULE")[:3] == ["1_A", "50.0", "25.0"] and "| Base |" not in md
    saved = json.loads((tmp_path / "r" / "report_purge.json").read_text())
    assert saved["headline"][2]["targets"] == ["1_A", "2_B"]


def test_a_missing_base_is_one_line_exit_2(tmp_path, capsys):
    runs = [_eval(tmp_path / "a", "1_A", "PURGE", **BASE), _eval(tmp_path / "b", "2_B", "Base", **BASE)]
    assert report.main(runs[:1] + ["--base", "Base"]) == 2
    assert capsys.readouterr().err == "rerule report: --base Base: no RWKU run has this name (names: PURGE)\n"
    assert report.main(runs + ["--base", "Base"]) == 2  # no shared target
    err = capsys.readouterr().err
    assert err.startswith("rerule report: --base Base: method 'PURGE' shares no target") and err.count("\n") == 1


def test_base_and_method_evaluated_differently_are_refused(tmp_path, capsys):
    """The headline divides a method's numbers by the base's on the same target: both must have been evaluated
    with the same settings (all but the targets: the base may be one run over both targets) and the same items
    of that target's forget levels and shared parts; else one line, exit 2, nothing written."""
    probes = {"forget_level1": 10, "forget_level2": 10, "forget_level3": 10, "mmlu": 5}
    recorded = {"chat_template_applied": True, "stop_at_newline": False, "max_new_tokens": 30,
                "fluency_max_new_tokens": 256}

    def run(path, name, targets, items, metrics, **changed):
        path.mkdir(parents=True)
        per = {"per_target": {t: metrics for t in targets}} if len(targets) > 1 else metrics
        prov = {"settings": {**recorded, "targets": targets, **changed}, "items": {t: items for t in targets}}
        (path / "rwku_summary.json").write_text(json.dumps({"benchmark": "rwku", "targets": targets, "name": name,
                                                            **per, "provenance": prov}))
        return str(path)

    base = run(tmp_path / "base", "Base", ["1_A", "2_B"], probes, BASE)
    same = run(tmp_path / "same", "PURGE", ["1_A"], {k: n for k, n in probes.items() if k != "mmlu"},
               {**BASE, "forget_all": 0.4})  # no utility suite: left out of the numbers, not a mismatch
    assert report.main([base, same, "--hide_published", "--base", "Base"]) == 0
    assert _row(_table(capsys.readouterr().out, "**PURGE headline numbers**"), "PURGE")[:3] == \
        ["1_A", "20.0", "10.0"]  # 1 - 0.4/0.5; (0.5 - 0.4) x 100
    longer = run(tmp_path / "longer", "PURGE", ["1_A"], probes, BASE, max_new_tokens=64)
    fewer = run(tmp_path / "fewer", "PURGE", ["1_A"], {**probes, "forget_level3": 4}, BASE)
    for method, why in ((longer, "max_new_tokens 64 against the base's 30"),
                        (fewer, "1_A/forget_level3: 4 items against the base's 10")):
        assert report.main([base, method, "--hide_published", "--base", "Base", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"method 'PURGE' ({method}) and the base ({base}) on target 1_A" in err
        assert why in err, err
    assert not (tmp_path / "r").exists()


# ---- unlearning-data tokens ----------------------------------------------------------------------------------

def _word_tokenizer(path: Path, bos: bool) -> Path:
    """One token per whitespace-separated word (every word of the tests is in the vocabulary); `bos`: the
    tokenizer adds <s> to every encode, as a BOS-adding tokenizer.json does by default."""
    words = "<s> <unk> a b c d e f g h i j k l m n o p q r s t u v w x y z".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok.save(str(path))
    return path


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _stage2(prompt: str, tag: str, i: int) -> dict:
    label = ["<purge>", "T", "x"] if tag == "<purge>" else [tag, "I don't know.", "T"]
    return {"prompt": prompt, "label": json.dumps(label), "prompt_id": f"p{i}", "kind": "forget"}


@pytest.fixture
def files(tmp_path):
    f = {"stage1": _jsonl(tmp_path / "stage1.jsonl", [
        {"prompt": "a b c", "response": "d e", "subject": "T"},   # 3 + 2 words
        {"prompt": "a b c", "response": "d e", "subject": "T"},   # the same row again: counted once
        {"prompt": "f", "response": "g h i", "subject": "T"}]),   # 1 + 3
        "rule2": _jsonl(tmp_path / "rule2.jsonl", [_stage2(p, "<reject>", i) for i, p in
                                                   enumerate(["j k", "l m n", "j k"])]),  # 2 + 3; "j k" once
        "purge2": _jsonl(tmp_path / "purge2.jsonl", [_stage2(p, "<purge>", i) for i, p in
                                                     enumerate(["o p", "q", "o p"])]),    # 2 + 1
        "answers": _jsonl(tmp_path / "answers.jsonl", [
            {"prompt": "o p", "response": "r s t", "subject": "T"},    # 3: the first answer to "o p"
            {"prompt": "o p", "response": "u", "subject": "T"},        # a second answer: not counted
            {"prompt": "q", "response": "v w", "subject": "T"},        # 2
            {"prompt": "x y z", "response": "a b c d", "subject": "T"}])}  # not a Stage 2 prompt: not counted
    return f


def test_counted_texts_follow_each_methods_training_data(files):
    # RULE / ReRULE: Stage 1 pairs (prompt + response) and the Stage 2 prompts, each distinct row once
    assert counted_texts([files["stage1"], files["rule2"]]) == [("a b c", "d e"), ("f", "g h i"), ("j k",), ("l m n",)]
    # PURGE: each of its Stage 2 prompts with the first answer to it in the answers file, one pair per prompt
    assert counted_texts([files["purge2"], files["answers"]]) == [("o p", "r s t"), ("q", "v w")]
    assert counted_texts([files["purge2"]]) == [("o p",), ("q",)]  # without the answers file: the prompts alone
    # the answers as a JSON array (the authors' qa_pairs.json layout); an empty answer is kept, as the authors'
    # released answers hold one (18_John_D._Rockefeller, entry 96)
    qa_pairs = Path(files["answers"]).with_name("qa_pairs.json")
    qa_pairs.write_text(json.dumps([{"prompt": "q", "response": ""}, {"prompt": "o p", "response": "r"}]))
    assert counted_texts([files["purge2"], qa_pairs]) == [("o p", "r"), ("q", "")]


def test_token_counts_with_and_without_a_bos_per_encode(tmp_path, files):
    plain = Tokenizer.from_file(str(_word_tokenizer(tmp_path / "plain.json", bos=False)))
    bos = Tokenizer.from_file(str(_word_tokenizer(tmp_path / "bos.json", bos=True)))
    rule = [files["stage1"], files["rule2"]]
    purge = [files["purge2"], files["answers"]]
    assert count_tokens(plain, rule)["tokens"] == 3 + 2 + 1 + 3 + 2 + 3 == 14
    assert count_tokens(bos, rule)["tokens"] == 14 + 6  # six encodes (4 texts of 2 pairs + 2 prompts), a <s> each
    assert count_tokens(plain, purge) == {"rows": 2, "tokens": 2 + 3 + 1 + 2, "files": purge}
    assert count_tokens(bos, purge)["tokens"] == 8 + 4  # four encodes: each pair's prompt and answer apart


def test_answers_that_miss_a_stage2_prompt_are_refused(tmp_path, files):
    other = _jsonl(tmp_path / "other.jsonl", [{"prompt": "o p", "response": "r", "subject": "T"}])
    with pytest.raises(Exception, match=r"other.jsonl: no answer to 1 PURGE Stage 2 prompt\(s\), e.g. 'q'"):
        counted_texts([files["purge2"], other])


def test_report_tokenizer_table_per_target_and_mean(tmp_path, files, capsys):
    tok = _word_tokenizer(tmp_path / "tokenizer.json", bos=False)
    rule = [str(Path(p).resolve()) for p in (files["stage1"], files["rule2"])]
    purge = [str(Path(p).resolve()) for p in (files["purge2"], files["answers"])]
    runs = [_eval(tmp_path / "A/rule", "1_A", "RULE", forget_all=0.2, unlearning_data=rule),
            _eval(tmp_path / "A/purge", "1_A", "PURGE", forget_all=0.3, unlearning_data=purge),
            _eval(tmp_path / "B/purge", "2_B", "PURGE", forget_all=0.3, unlearning_data=purge[:1])]
    assert report.main(runs + ["--hide_published", "--tokenizer", str(tmp_path)]) == 0  # the directory works too
    md = _table(capsys.readouterr().out, "**Unlearning data per target**")
    assert _row(md, "RULE")[:4] == ["1_A", "4", "14", "2.5"]  # 14 over PURGE's mean 5.5 = 2.545
    rows = [line.split("|")[2:6] for line in md.splitlines() if line.startswith("| PURGE |")]
    # 1_A: 2 pairs, 8 tokens (above); 2_B: the Stage 2 file alone, 2 distinct prompts, 2 + 1 tokens;
    # the mean: 2 rows, 5.5 tokens, the fewest
    assert rows == [[" 1_A ", " 2 ", " 8 ", " - "], [" 2_B ", " 2 ", " 3 ", " - "],
                    [" mean of 2 targets ", " 2.0 ", " 5.5 ", " 1.0 "]]


def test_compare_data_counts_rule_files_for_the_same_target(tmp_path, files, capsys):
    """PURGE's "x fewer tokens" compares its data with another method's for the same target: --compare_data adds
    that data as a row, counted as the runs' data are."""
    tok = str(_word_tokenizer(tmp_path / "tokenizer.json", bos=False))
    purge = [str(Path(p).resolve()) for p in (files["purge2"], files["answers"])]
    run = _eval(tmp_path / "A/purge", "1_A", "PURGE", forget_all=0.3, unlearning_data=purge)
    assert report.main([run, "--hide_published", "--tokenizer", tok,
                        "--compare_data", "RULE data", "1_A", files["stage1"]]) == 0
    md = _table(capsys.readouterr().out, "**Unlearning data per target**")
    # PURGE 1_A: 2 pairs, 8 tokens (above); RULE data: stage1's 2 distinct pairs, 3 + 2 and 1 + 3 = 9 tokens,
    # 9 / 8 = 1.125 times PURGE's
    assert _row(md, "PURGE")[:4] == ["1_A", "2", "8", "1.0"] and _row(md, "RULE data")[:4] == ["1_A", "2", "9", "1.1"]
    for argv, words in ((["--compare_data", "RULE data", "1_A", files["stage1"]], "needs --tokenizer"),
                        (["--tokenizer", tok, "--compare_data", "RULE data", "1_A"], "expected NAME TARGET FILE"),
                        (["--tokenizer", tok, "--compare_data", "PURGE", "1_A", files["stage1"]], "another"),
                        (["--tokenizer", tok, "--compare_data", "R", "1_A", str(tmp_path / "none.jsonl")], "none.jsonl")):
        assert report.main([run, *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tokenizer_without_recorded_data_or_file_is_exit_2(tmp_path, capsys):
    run = _eval(tmp_path / "a", "1_A", "RULE", forget_all=0.2)
    assert report.main([run, "--tokenizer", str(tmp_path / "nowhere")]) == 2
    assert "no tokenizer.json there" in capsys.readouterr().err
    assert report.main([run, "--tokenizer", str(_word_tokenizer(tmp_path / "t.json", bos=False))]) == 2
    assert capsys.readouterr().err.startswith("rerule report: --tokenizer: no RWKU run records its unlearning data")


# ---- `rerule eval rwku --unlearning_data`: checked before any model loads, recorded in the summary -------------

def test_eval_rwku_checks_and_records_the_unlearning_data(tmp_path, files, capsys, monkeypatch):
    from openrlhf_rerule.eval import cli, rwku, scoring
    from test_eval_cli import DATA

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    bad = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "subject": "T"}])
    args = ["rwku", "--model", str(model), "--data", str(DATA / "rwku"), "--out", str(tmp_path / "o")]

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(scoring, "load_model", refuse)
    assert cli.main(args + ["--unlearning_data", files["rule2"], bad]) == 2
    assert capsys.readouterr().err == (f"rerule eval rwku: {bad}, line 1, field 'response': missing or not a "
                                       "string (rows of {prompt, response} or {text}, or Stage 2 rows)\n")
    assert not (tmp_path / "o").exists()

    loaded = {}
    monkeypatch.setattr(scoring, "load_model", lambda *a, **k: loaded.update(k))
    monkeypatch.setattr(rwku, "evaluate_rwku", lambda *a, **k: ({"benchmark": "rwku", "targets": ["1_A"]}, []))
    monkeypatch.chdir(tmp_path)
    assert cli.main(args + ["--unlearning_data", "stage1.jsonl", "rule2.jsonl", "--chat_template", "none"]) == 0
    summary = json.loads((tmp_path / "o" / "rwku_summary.json").read_text())
    assert summary["unlearning_data"] == [files["stage1"], files["rule2"]]  # absolute: the report reads them later
    assert summary["chat_template"] == "none" and loaded["chat_template"] == "none"


def test_a_base_evaluated_once_over_all_targets_is_matched_per_target(tmp_path, capsys):
    per_target = {"1_A": BASE, "2_B": {**BASE, "forget_all": 0.8}}
    base = tmp_path / "base"
    base.mkdir()
    (base / "rwku_summary.json").write_text(json.dumps({"benchmark": "rwku", "targets": ["1_A", "2_B"], "name": "Base",
                                                        "forget_all": 0.65, "per_target": per_target}))
    runs = [str(base), _eval(tmp_path / "b", "2_B", "PURGE", **{**BASE, "forget_all": 0.6})]
    assert report.main(runs + ["--hide_published", "--base", "Base"]) == 0
    md = _table(capsys.readouterr().out, "**PURGE headline numbers**")
    assert _row(md, "PURGE")[:3] == ["2_B", "25.0", "20.0"]  # against 2_B's base 0.8, not the mean 0.65
