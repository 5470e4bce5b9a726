"""Issue 25, "Well-formed but wrong, across stages", the evaluation and report side (cases 4-7): every case ran with
exit 0 and gave a number a researcher would trust. Now each is refused before any model loads (one line, exit 2,
nothing written), done only with an explicit flag and recorded, or split into tables that say what differs.

Model folders here hold what the checks before loading read (config.json, a word-level tokenizer.json, a chat
template, a rerule_model.json written as the training commands write it); the evaluation itself is replaced by a
stub where a test is about what the CLI records, and summaries for `rerule report` are built by hand. Expected lines
and cells are written out here, never read back from our output."""

import hashlib
import json
from pathlib import Path

import pytest

from openrlhf_rerule.eval import cli, report
from openrlhf_rerule.provenance import tokenizer_fingerprint, write_model_record
from test_eval_cli import _row

DATA = Path(__file__).parent / "data" / "eval"
TEMPLATE = "{{ messages[0]['content'] }} assistant :"
TOFU_FULL = {"forget": 40, "retain": 400, "real_authors": 100, "world_facts": 117}  # TOFU's files as released


def _model(root: Path, name: str, words="alpha beta gamma", template=True, trained: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    vocab = {w: i for i, w in enumerate(["<unk>", *words.split()])}
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": vocab},
                                                       "added_tokens": []}))
    if template:
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    if trained:
        write_model_record(folder, {"made_by": "rerule train stage2", "base_model": "base", "chat_template": trained,
                                    "prompt_format": "plain", "benchmark": "tofu", "split": "forget01"})
    return folder


@pytest.fixture
def no_model_load(monkeypatch):
    from openrlhf_rerule.eval import scoring

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(scoring, "load_model", refuse)


@pytest.fixture
def stub_eval(monkeypatch):
    """No model: `load_model` returns a marker and each benchmark a fixed summary (the retain run's path and item
    count where TOFU has one, as evaluate_tofu records them); what the CLI writes around it is what is tested."""
    from openrlhf_rerule.eval import muse, naturalness, rwku, scoring, tofu

    monkeypatch.setattr(scoring, "load_model", lambda *a, **k: "model")

    def fake_tofu(lm, data, split, max_new_tokens, retain, *rest):
        fq = {"forget_quality": 0.003, "retain_run": retain["path"], "forget_quality_n": retain["items"]} \
            if retain else {}
        return {"benchmark": "tofu", "split": split, "model_utility": 0.6, **fq}, []

    monkeypatch.setattr(tofu, "evaluate_tofu", fake_tofu)
    monkeypatch.setattr(muse, "evaluate_muse", lambda *a: ({"benchmark": "muse", "verbmem_f": 1.0}, []))
    monkeypatch.setattr(rwku, "evaluate_rwku", lambda *a: ({"benchmark": "rwku", "forget_level1": 0.1}, []))
    monkeypatch.setattr(naturalness, "evaluate_naturalness",
                        lambda *a: ({"benchmark": "naturalness", "readability": 50.0, "scorer": "proxy"}, []))


def _eval(bench: str, model: Path, out: Path, *extra) -> int:
    return cli.main([bench, "--model", str(model), "--data", str(DATA / bench), "--out", str(out), *extra])


def _summary(run_dir: Path, key: str, settings: dict, items: dict | None = None, **fields) -> str:
    """A summary as `rerule eval` writes it, as far as `rerule report` reads it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{key}_summary.json").write_text(json.dumps(
        {"benchmark": key, **fields, "provenance": {"settings": settings, "items": items or {}}}))
    return str(run_dir)


def _tables(md: str, caption: str) -> list[str]:
    """Every table whose caption starts with `caption`, each up to the blank line that ends it."""
    return [part for part in md.split("\n\n") if part.startswith(caption)]


# ---- what every summary records ----------------------------------------------------------------------------------

def test_summary_provenance_names_model_settings_items_and_data_files(tmp_path, stub_eval):
    model = _model(tmp_path, "rule", trained="auto")
    assert _eval("tofu", model, tmp_path / "out", "--max_new_tokens", "32", "--system_prompt", "Be brief.") == 0
    prov = json.loads((tmp_path / "out/tofu_summary.json").read_text())["provenance"]
    record = json.loads((model / "rerule_model.json").read_text())
    assert prov["command"] == "rerule eval tofu"
    assert prov["model"] == {"path": str(model.resolve()), "record": record, "tokenizer": record["tokenizer"]}
    assert {k: prov["settings"][k] for k in ("split", "max_new_tokens", "prompt_template", "system_prompt",
                                             "chat_template", "chat_template_applied", "dtype")} == \
        {"split": "forget01", "max_new_tokens": 32, "prompt_template": None, "system_prompt": "Be brief.",
         "chat_template": "auto", "chat_template_applied": True, "dtype": "auto"}
    assert "batch_size" not in prov["settings"] and "out" not in prov["settings"]  # change no number
    # the fixture's files: 4 forget, 4 retain, 3 real authors, 3 world facts lines; each named with its sha256
    assert prov["items"] == {"forget": 4, "retain": 4, "real_authors": 3, "world_facts": 3}
    files = ["forget01_perturbed.json", "retain_perturbed.json", "real_authors_perturbed.json",
             "world_facts_perturbed.json"]
    assert prov["data"]["files"] == [{"path": str((DATA / "tofu" / f).resolve()),
                                      "sha256": hashlib.sha256((DATA / "tofu" / f).read_bytes()).hexdigest()}
                                     for f in files]
    assert prov["retain_run"] is None and prov["overrides"] == [] and prov["unlearning_data"] == []


# ---- case 4: the chat template the model was trained with; MUSE prompt formats side by side ---------------------

def test_case4_a_chat_template_other_than_the_records_is_refused_before_loading(tmp_path, capsys, no_model_load):
    trained_auto = _model(tmp_path, "auto", trained="auto")
    out = tmp_path / "out"
    assert _eval("tofu", trained_auto, out, "--chat_template", "none") == 2
    assert not out.exists()
    assert capsys.readouterr().err.splitlines() == [
        f'rerule eval tofu: --model {trained_auto}: {trained_auto}/rerule_model.json says chat_template "auto" (the '
        "training prompts), this evaluation formats prompts with raw prompt text (--chat_template none): not the "
        "prompts it was trained on; pass --chat_template auto, or --allow_chat_template_mismatch to evaluate anyway "
        "(recorded in the summary)"]
    trained_raw = _model(tmp_path, "raw", trained="none")  # the reverse: the default auto on a raw-trained model
    assert _eval("rwku", trained_raw, out) == 2 and not out.exists()
    assert capsys.readouterr().err.splitlines() == [
        f'rerule eval rwku: --model {trained_raw}: {trained_raw}/rerule_model.json says chat_template "none" (the '
        "training prompts), this evaluation formats prompts with the tokenizer's chat template (--chat_template "
        "auto): not the prompts it was trained on; pass --chat_template none, or --allow_chat_template_mismatch to "
        "evaluate anyway (recorded in the summary)"]


def test_case4_the_flag_evaluates_anyway_and_the_summary_says_so(tmp_path, stub_eval):
    model = _model(tmp_path, "auto", trained="auto")
    assert _eval("tofu", model, tmp_path / "out", "--chat_template", "none", "--allow_chat_template_mismatch") == 0
    prov = json.loads((tmp_path / "out/tofu_summary.json").read_text())["provenance"]
    assert prov["overrides"] == [
        f'{model}/rerule_model.json says chat_template "auto" (the training prompts), this evaluation formats '
        "prompts with raw prompt text (--chat_template none) (--allow_chat_template_mismatch)"]
    assert prov["settings"]["chat_template_applied"] is False


def test_case4_no_refusal_where_the_prompts_are_the_same(tmp_path, stub_eval):
    # MUSE prompts are raw text whatever the flag; a tokenizer without a template formats auto and none alike; a
    # base model has no record; TOFU's --prompt_template on a model trained with that input template (the TOFU
    # plan's OpenRLHF runs: --data.input_template) wraps the prompts as training did
    assert _eval("muse", _model(tmp_path, "muse", trained="none"), tmp_path / "a") == 0
    assert _eval("tofu", _model(tmp_path, "plain", template=False, trained="auto"), tmp_path / "b",
                 "--chat_template", "none") == 0
    assert _eval("tofu", _model(tmp_path, "base"), tmp_path / "c", "--chat_template", "none") == 0
    inst = _model(tmp_path, "inst")
    write_model_record(inst, {"made_by": "openrlhf_rerule train_ppo_ray", "chat_template": "none",
                              "input_template": "[INST] {} [/INST]"})
    assert _eval("tofu", inst, tmp_path / "d", "--prompt_template", "[INST] {} [/INST]") == 0


def test_case4_an_input_template_other_than_the_records_is_refused(tmp_path, capsys, no_model_load):
    """A model trained on raw prompts (embedded backend: no input template) evaluated in TOFU's Llama-2 wrapping, and
    one trained with that wrapping evaluated raw: both are other prompts than training's."""
    raw = _model(tmp_path, "raw", trained="none")
    assert _eval("tofu", raw, tmp_path / "a", "--prompt_template", "[INST] {} [/INST]") == 2
    assert capsys.readouterr().err.splitlines() == [
        f'rerule eval tofu: --model {raw}: {raw}/rerule_model.json says chat_template "none" (the training prompts), '
        'this evaluation formats prompts with --prompt_template "[INST] {} [/INST]": not the prompts it was trained '
        "on; pass --chat_template none, or --allow_chat_template_mismatch to evaluate anyway (recorded in the summary)"]
    inst = _model(tmp_path, "inst")
    write_model_record(inst, {"chat_template": "none", "input_template": "[INST] {} [/INST]"})
    assert _eval("tofu", inst, tmp_path / "b", "--chat_template", "none") == 2
    assert 'says chat_template "none", input_template "[INST] {} [/INST]" (the training prompts), this evaluation ' \
           "formats prompts with raw prompt text (--chat_template none)" in capsys.readouterr().err


def test_case4_report_puts_muse_prompt_formats_in_separate_tables(tmp_path):
    books = {"corpus": "books", "verbmem_max_new_tokens": 128, "knowmem_max_new_tokens": 32}
    runs = [_summary(tmp_path / "rule_muse", "muse", {**books, "prompt_format": "rule_muse"}, name="ReRULE",
                     verbmem_f=5.8, knowmem_f=1.0),
            _summary(tmp_path / "muse", "muse", {**books, "prompt_format": "muse"}, name="ReRULE (muse)",
                     verbmem_f=1.0, knowmem_f=1.0)]
    md = report.render(report.load_runs(runs))
    first, second = _tables(md, "**MUSE**")
    assert first.splitlines()[1] == 'Settings: prompt_format "rule_muse"'
    assert second.splitlines()[1] == 'Settings: prompt_format "muse"'
    assert _row(first, "ReRULE")[:2] == ["5.8", "1.0"] and "| ReRULE (muse) |" not in first
    assert _row(second, "ReRULE (muse)")[:2] == ["1.0", "1.0"] and "| ReRULE |" not in second
    # the paper does not state its prompt format: its rows stand above both
    assert "*ReRULE paper:* RULE" in first and "*ReRULE paper:* RULE" in second


def test_report_keeps_rows_of_the_two_engines_apart_and_reads_old_summaries_as_transformers(tmp_path):
    books = {"corpus": "books", "prompt_format": "muse", "verbmem_max_new_tokens": 128, "knowmem_max_new_tokens": 32}
    runs = [_summary(tmp_path / "hf", "muse", {**books, "engine": "hf"}, name="A", verbmem_f=5.8, knowmem_f=1.0),
            _summary(tmp_path / "old", "muse", books, name="B", verbmem_f=4.0, knowmem_f=1.0),  # before --engine
            _summary(tmp_path / "vllm", "muse", {**books, "engine": "vllm"}, name="C", verbmem_f=5.7, knowmem_f=1.0)]
    md = report.render(report.load_runs(runs))
    first, second = _tables(md, "**MUSE**")
    assert first.splitlines()[1] == 'Settings: engine "hf"' and second.splitlines()[1] == 'Settings: engine "vllm"'
    assert "| A |" in first and "| B |" in first and "| C |" not in first and "| C |" in second


# ---- case 5: TOFU Forget Quality against a retain run of other settings ----------------------------------------

def _retain_dir(root: Path, settings: dict, tokenizer: dict) -> Path:
    """A retain run's OUT folder: its per-item forget truth ratios and its summary's provenance."""
    root.mkdir(parents=True)
    questions = [json.loads(line)["question"] for line in (DATA / "tofu/forget01_perturbed.json").read_text()
                 .splitlines()]
    (root / "tofu_items.json").write_text(json.dumps([{"set": "forget", "index": i, "question": q,
                                                       "truth_ratio": 0.5 + i / 10} for i, q in enumerate(questions)]))
    (root / "tofu_summary.json").write_text(json.dumps({"benchmark": "tofu", "provenance": {
        "model": {"path": "/models/retain99", "tokenizer": tokenizer},
        "settings": {"split": "forget01", "chat_template_applied": False, "prompt_template": None,
                     "system_prompt": None, "max_new_tokens": 200, **settings}}}))
    return root


def test_case5_retain_run_with_another_prompt_format_is_refused(tmp_path, capsys, no_model_load):
    model = _model(tmp_path, "rule")
    retain = _retain_dir(tmp_path / "Retain99", {"prompt_template": "[INST] {} [/INST]"}, tokenizer_fingerprint(model))
    assert _eval("tofu", model, tmp_path / "out", "--prompt_template", "Question: {} Answer:",
                 "--retain_run", str(retain)) == 2
    assert not (tmp_path / "out").exists()
    assert capsys.readouterr().err.splitlines() == [
        f'rerule eval tofu: --retain_run {retain}/tofu_summary.json: the retain run was evaluated with prompt_template '
        '"[INST] {} [/INST]"; this evaluation: prompt_template "Question: {} Answer:": Forget Quality compares truth '
        "ratios of the same split, prompts and tokenizer; re-evaluate the retain model with this evaluation's "
        "settings"]


def test_case5_retain_run_of_another_model_family_and_length_is_refused(tmp_path, capsys, no_model_load):
    model = _model(tmp_path, "rule", template=False)
    other = tokenizer_fingerprint(_model(tmp_path, "other_family", words="un deux trois quatre", template=False))
    mine = tokenizer_fingerprint(model)
    retain = _retain_dir(tmp_path / "Retain99", {}, other)
    assert _eval("tofu", model, tmp_path / "out", "--max_new_tokens", "32", "--retain_run", str(retain)) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rerule eval tofu: --retain_run {retain}/tofu_summary.json: the retain run was evaluated with max_new_tokens "
        f"200, tokenizer {other['sha256'][:12]} (vocab 5); this evaluation: max_new_tokens 32, tokenizer "
        f"{mine['sha256'][:12]} (vocab 4): Forget Quality compares truth ratios of the same split, prompts and "
        "tokenizer; re-evaluate the retain model with this evaluation's settings"]


def test_case5_a_tofu_log_is_accepted_and_marked_unchecked(tmp_path, stub_eval):
    questions = [json.loads(line)["question"] for line in (DATA / "tofu/forget01_perturbed.json").read_text()
                 .splitlines()]
    log = tmp_path / "retain99/eval_results/ds_size300/eval_log_forget.json"
    log.parent.mkdir(parents=True)
    keys = [str(i) for i in range(len(questions))]
    log.write_text(json.dumps({"avg_paraphrased_loss": {k: 1.0 for k in keys},
                               "average_perturb_loss": {k: [1.5, 2.0] for k in keys},
                               "generated_text": {k: [f"[INST] {q} [/INST]", "a", "b"] for k, q in zip(keys, questions)}}))
    assert _eval("tofu", _model(tmp_path, "rule"), tmp_path / "out", "--retain_run", str(log)) == 0
    summary = json.loads((tmp_path / "out/tofu_summary.json").read_text())
    assert summary["forget_quality_note"] == "retain log without record: settings unchecked"
    assert summary["provenance"]["retain_run"] == {
        "path": str(log.resolve()), "sha256": hashlib.sha256(log.read_bytes()).hexdigest(), "kind": "tofu log",
        "items": 4, "settings_checked": False, "note": "retain log without record: settings unchecked"}


def test_case5_report_tells_two_retain_logs_of_one_name_apart(tmp_path):
    def run(name, family, fq, sha):
        path = f"/data/{family}_retain99/eval_results/ds_size300/eval_log_forget.json"
        block = {"path": path, "sha256": sha, "kind": "tofu log", "items": 40, "settings_checked": False,
                 "note": "retain log without record: settings unchecked"}
        d = tmp_path / name
        d.mkdir()
        (d / "tofu_summary.json").write_text(json.dumps({
            "benchmark": "tofu", "split": "forget01", "name": name, "forget_quality": fq, "model_utility": 0.6,
            "forget_rougeL_recall": 0.1, "retain_run": path, "forget_quality_n": 40,
            "forget_quality_note": block["note"], "provenance": {"retain_run": block}}))
        return str(d)

    md = report.render(report.load_runs([run("llama", "llama2", 0.0030, "ab" * 32), run("phi", "phi", 5.0e-4, "cd" * 32)]),
                       published=False)
    assert _row(md, "llama") == ["0.0030¶", "0.6000", "0.1000", "ds_size300/eval_log_forget.json @abababab (40 items, "
                                 "retain log without record: settings unchecked¶)"]
    assert _row(md, "phi") == ["5.0000e-04¶", "0.6000", "0.1000", "ds_size300/eval_log_forget.json @cdcdcdcd (40 "
                               "items, retain log without record: settings unchecked¶)"]
    assert md.rstrip().splitlines()[-1].startswith("¶ Forget Quality against a retain run whose settings could not")


# ---- case 6: rows that cannot be compared ------------------------------------------------------------------------

def test_case6_other_split_subset_and_generation_lengths_get_their_own_tables(tmp_path):
    def tofu(name, split="forget01", mnt=200, items=TOFU_FULL):
        settings = {"split": split, "max_new_tokens": mnt, "chat_template_applied": False,
                    "prompt_template": "[INST] {} [/INST]", "system_prompt": None}
        return _summary(tmp_path / name, "tofu", settings, items, name=name, split=split, model_utility=0.5)

    runs = [tofu("A"), tofu("A2"), tofu("B", split="forget05", items={**TOFU_FULL, "forget": 200}),
            tofu("C", items={"forget": 20, "retain": 10, "real_authors": 10, "world_facts": 10}),
            tofu("D", mnt=8), tofu("E", mnt=32)]
    full, forget05, subset, short, medium = _tables(report.render(report.load_runs(runs)), "**TOFU**")
    full_items = "items forget 40, retain 400, real_authors 100, world_facts 117"
    assert full.splitlines()[1] == f'Settings: split "forget01" · max_new_tokens 200 · {full_items}'
    assert [_row(full, n)[1] for n in ("A", "A2", "*ReRULE paper:* ReRULE")] == ["0.5000", "0.5000", "0.6076"]
    assert forget05.splitlines()[1] == 'Settings: split "forget05" · max_new_tokens 200 · items forget 200, ' \
                                       'retain 400, real_authors 100, world_facts 117'
    assert "| B |" in forget05 and "*ReRULE paper:*" not in forget05  # the paper's rows are forget01
    assert subset.splitlines()[1] == 'Settings: split "forget01" · max_new_tokens 200 · items forget 20, retain 10, ' \
                                     'real_authors 10, world_facts 10'
    assert "| C‡ |" in subset and "*ReRULE paper:*" not in subset
    assert subset.splitlines()[-1].startswith("‡ subset: fewer items than TOFU forget01 as released (forget "
                                              "40, retain 400, real_authors 100, world_facts 117) in some part")
    assert short.splitlines()[1] == f'Settings: split "forget01" · max_new_tokens 8 · {full_items}' and "| D |" in short
    assert medium.splitlines()[1] == f'Settings: split "forget01" · max_new_tokens 32 · {full_items}'
    assert "| E |" in medium and "*ReRULE paper:*" not in short + medium
    assert "‡" not in full + forget05 + short + medium


def test_case6_rwku_subset_is_marked_against_the_largest_run(tmp_path):
    settings = {"chat_template_applied": True, "stop_at_newline": False, "max_new_tokens": 30,
                "fluency_max_new_tokens": 256}
    probes = {"forget_level1": 20, "forget_level2": 20, "forget_level3": 20, "neighbor_level1": 10,
              "neighbor_level2": 10}
    runs = [_summary(tmp_path / "full", "rwku", settings, {"1_A": probes}, name="full", targets=["1_A"],
                     forget_level1=0.3),
            _summary(tmp_path / "quick", "rwku", settings, {"1_A": {**probes, "forget_level1": 5}}, name="quick",
                     targets=["1_A"], forget_level1=0.1)]
    md = report.render(report.load_runs(runs))
    full, quick = _tables(md, "**RWKU** (ReRULE paper layout)")
    assert "| full |" in full and "‡" not in full and "*ReRULE paper:* RULE" in full
    assert "| quick‡ |" in quick and "*ReRULE paper:*" not in quick
    assert quick.splitlines()[-1].startswith("‡ subset: fewer items than the largest run of this report on the same "
                                             "data (the full size is not known here)")


# ---- case 7: a reused --out ---------------------------------------------------------------------------------------

def test_case7_another_models_out_is_refused_and_overwrite_replaces_it(tmp_path, capsys, stub_eval):
    a, b, c = (_model(tmp_path, name) for name in ("A", "B", "C"))
    out = tmp_path / "out"
    assert _eval("tofu", a, out) == 0
    before = (out / "tofu_summary.json").read_bytes()
    capsys.readouterr()
    line = f"--out {out}: holds tofu_summary.json of another model ({a.resolve()}); this run evaluates {{}}: one " \
           "output directory per model, or --overwrite_out to remove that model's summaries and items there"
    assert _eval("tofu", b, out) == 2
    assert capsys.readouterr().err.splitlines() == ["rerule eval tofu: " + line.format(b.resolve())]
    assert _eval("naturalness", c, out) == 2
    assert capsys.readouterr().err.splitlines() == ["rerule eval naturalness: " + line.format(c.resolve())]
    assert (out / "tofu_summary.json").read_bytes() == before and sorted(p.name for p in out.iterdir()) == \
        ["tofu_items.json", "tofu_summary.json"]
    assert _eval("naturalness", a, out) == 0 and _eval("tofu", a, out) == 0  # the same model: allowed
    assert _eval("tofu", b, out, "--overwrite_out") == 0
    assert sorted(p.name for p in out.iterdir()) == ["tofu_items.json", "tofu_summary.json"]  # A's naturalness gone
    prov = json.loads((out / "tofu_summary.json").read_text())["provenance"]
    assert prov["model"]["path"] == str(b.resolve())
    assert prov["overrides"] == [f"removed {f} of {a.resolve()} (--overwrite_out)" for f in
                                 ("naturalness_summary.json", "naturalness_items.json", "tofu_summary.json",
                                  "tofu_items.json")]


def test_case7_report_refuses_a_run_directory_of_two_models(tmp_path, capsys):
    d = tmp_path / "ReRULE"
    d.mkdir()
    (d / "tofu_summary.json").write_text(json.dumps({"benchmark": "tofu", "model": "/models/A"}))  # before provenance
    (d / "naturalness_summary.json").write_text(json.dumps({"benchmark": "naturalness", "provenance": {
        "model": {"path": "/models/C", "tokenizer": {"sha256": "c" * 64}}}}))
    assert report.main([str(d)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rerule report: {d}: tofu_summary.json evaluates /models/A, naturalness_summary.json evaluates /models/C: "
        "one run directory per model (`rerule eval --overwrite_out` replaces another model's results)"]


def test_case6_rwku_targets_of_other_settings_are_not_averaged(tmp_path, capsys):
    def target(t, mnt):
        settings = {"chat_template_applied": True, "stop_at_newline": False, "max_new_tokens": mnt,
                    "fluency_max_new_tokens": 256}
        return _summary(tmp_path / t, "rwku", settings, {t: {"forget_level1": 20}}, name="RULE", targets=[t],
                        forget_level1=0.2)

    a, b = target("1_A", 30), target("2_B", 8)
    assert report.main([a, b]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rerule report: runs named 'RULE' differ in max_new_tokens ({a}: 30; {b}: 8): not averaged over targets; "
        "re-evaluate them alike or give each setting its own `rerule eval --name`"]


def test_case6_runs_of_other_settings_get_their_own_plot(tmp_path):
    def tofu(name, mnt):
        return _summary(tmp_path / name, "tofu", {"split": "forget01", "max_new_tokens": mnt}, TOFU_FULL, name=name,
                        split="forget01", model_utility=0.5, forget_rougeL_recall=0.2)

    assert report.main([tofu("A", 200), tofu("B", 8), "--out", str(tmp_path / "r"), "--hide_published"]) == 0
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == ["tofu_tradeoff_1.png", "tofu_tradeoff_2.png"]
