"""Issue 10 items 6-8 and the eval CLI's flag convention: `rerule report` in the papers' units beside their
published rows, naturalness read by its own benchmark's table, every input checked before any model loads."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_rerule.eval import cli, report

DATA = Path(__file__).parent / "data" / "eval"


def _write(run_dir: Path, key: str, summary: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{key}_summary.json").write_text(json.dumps(summary))
    return run_dir


def _row(md: str, name: str) -> list[str]:
    """The cells of the first table row whose first cell is `name`."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} in\n{md}")


# ---- item 6: the papers' units and column order, published rows beside ours -----------------------------------

def test_rwku_tables_in_the_papers_units(tmp_path):
    run = _write(tmp_path / "Ours", "rwku", {
        "forget_level1": 0.281, "forget_level2": 0.168, "forget_level3": 0.383, "forget_all": 0.2773,
        "forget_all_pooled": 0.3, "neighbor_level1": 0.762, "neighbor_level2": 0.713, "neighbor_all": 0.7375,
        "neighbor_all_pooled": 0.74,
        "mia_forget_loss": -2.267, "mia_retain_loss": -2.304,  # mean log-likelihood, as RWKU's eval_mia returns
        "mmlu_acc": 0.657, "bbh_em": 0.423, "truthfulqa_mc1": 0.368, "truthfulqa_mc2": 0.52, "triviaqa_f1": 0.535,
        "fluency_entropy": 7.058})
    md = report.render(report.load_runs([run]))
    # ReRULE Table 1 layout: FB QA AA All | Read Help Truth All | FB QA All, ROUGE-L x 100, All = level mean.
    rerule_layout, rwku_layout = md.split("**RWKU** (RWKU paper layout)")
    assert _row(rerule_layout, "Ours") == ["28.1", "16.8", "38.3", "27.7", "-", "-", "-", "-", "76.2", "71.3", "73.8"]
    # RWKU's layout: FB QA AA All(pooled) | FB QA All(pooled) | MIA FM RM as NLL x 100 | Gen Rea Tru(MC1) Fac Flu x 100
    assert _row(rwku_layout, "Ours") == ["28.1", "16.8", "38.3", "30.0", "76.2", "71.3", "74.0", "226.7", "230.4",
                                         "65.7", "42.3", "36.8", "53.5", "705.8"]
    # The ReRULE paper's rows, as printed in its Table 1 (Original, RULE, ReRULE).
    assert _row(rerule_layout, "*ReRULE paper:* Original") == \
        ["85.6", "70.3", "74.7", "76.9", "94.0", "26.4", "91.5", "70.6", "93.1", "82.0", "87.6"]
    assert _row(rerule_layout, "*ReRULE paper:* ReRULE") == \
        ["26.5", "13.1", "33.2", "24.2", "95.2", "56.3", "94.7", "82.1", "79.5", "68.8", "74.1"]
    assert "*ReRULE paper:*" not in rwku_layout  # the ReRULE paper prints no MIA / utility columns
    assert "*ReRULE paper:*" not in report.render(report.load_runs([run]), published=False)


def test_muse_and_tofu_tables_in_the_papers_units(tmp_path):
    run = _write(tmp_path / "Ours", "muse", {"verbmem_f": 0.04, "knowmem_f": 1.44, "utility": 56.21,
                                             "privleak": -12.3})
    _write(run, "tofu", {"forget_quality": 4.4883e-06, "model_utility": 0.61514, "forget_rougeL_recall": 0.13219,
                         "split": "forget01"})
    md = report.render(report.load_runs([run]))
    muse = md.split("**MUSE**")[1].split("**TOFU**")[0]
    tofu = md.split("**TOFU**")[1]
    assert _row(muse, "Ours") == ["0.0", "1.4", "-", "-", "-", "56.2", "-12.3"]  # MUSE metrics are already x 100
    assert _row(muse, "*ReRULE paper:* RULE") == ["0.0", "1.4", "99.2", "38.2", "90.8", "46.3", "-"]
    assert _row(muse, "*ReRULE paper:* Original") == ["58.4", "63.9", "-", "-", "-", "55.2", "-"]
    # TOFU Table 5: 4 decimals, scientific notation only below 1e-3.
    assert _row(tofu, "Ours") == ["4.4883e-06", "0.6151", "0.1322", "-"]  # no retain run recorded: "-"
    assert _row(tofu, "*ReRULE paper:* Retained LLM") == ["1.0000", "0.6267", "0.4080", "-"]
    assert _row(tofu, "*ReRULE paper:* ReRULE") == ["0.1650", "0.6076", "0.1322", "-"]


# ---- item 7: naturalness belongs to one benchmark's model, the proxy is labelled ---------------------------------

def test_each_table_reads_its_own_naturalness_and_marks_the_proxy(tmp_path):
    run = _write(tmp_path / "Ours", "rwku", {"forget_level1": 0.1})
    _write(run, "muse", {"verbmem_f": 1.0})
    nat = {"readability": 80.0, "helpfulness": 50.0, "truthfulness": 100.0, "all": 76.66666}
    _write(run, "naturalness_rwku", {**nat, "scorer": "proxy", "for_benchmark": "rwku"})
    _write(run, "naturalness_muse", {"readability": 60.0, "helpfulness": 40.0, "truthfulness": 90.0,
                                     "all": 63.3333, "scorer": "http:judge", "for_benchmark": "muse"})
    _write(run, "naturalness", {**nat, "readability": 10.0, "scorer": "proxy"})  # untagged: no benchmark table
    md = report.render(report.load_runs([run]), published=False)
    rwku_part = md.split("**RWKU** (RWKU paper layout)")[0]
    muse_part = md.split("**MUSE**")[1].split("**Forget naturalness**")[0]
    assert _row(rwku_part, "Ours")[4:8] == ["80.0†", "50.0†", "100.0†", "76.7†"]
    assert report.PROXY_NOTE in rwku_part
    assert _row(muse_part, "Ours")[2:5] == ["60.0", "40.0", "90.0"] and report.PROXY_NOTE not in muse_part
    nat_part = md[md.index("**Forget naturalness**"):]  # one table per benchmark's prompts (issue 25)
    rows = [line for line in nat_part.splitlines() if line.startswith("| Ours")]
    assert [r.split("|")[2].strip() for r in rows] == ["-", "rwku", "muse"]  # the For column
    assert nat_part.count("**Forget naturalness**") == 3 and report.PROXY_NOTE in nat_part


# ---- item 8 and the flags: checked before any model loads, one message, exit 2 ---------------------------------

@pytest.fixture
def no_model_load(monkeypatch):
    from openrlhf_rerule.eval import scoring

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(scoring, "load_model", refuse)


def test_all_problems_of_all_targets_in_one_message_before_any_model(tmp_path, capsys, no_model_load):
    data = tmp_path / "rwku"
    shutil.copytree(DATA / "rwku", data)
    first = data / "1_Mira_Solvane/forget_level2.json"
    rows = json.loads(first.read_text())
    del rows[1]["answer"]
    first.write_text(json.dumps(rows))
    second = data / "2_Ada_Quillon/neighbor_level1.json"
    rows = json.loads(second.read_text())
    second.write_text(json.dumps(rows).replace(json.dumps(rows[0]["answer"]), "NaN", 1))  # json.loads reads NaN
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    rc = cli.main(["rwku", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and not (tmp_path / "o").exists()
    assert err == [f"rerule eval rwku: {first}: record 2: missing field 'answer'",
                   f"rerule eval rwku: {second}: record 1: field 'answer' must be a non-empty string, got nan"]


def test_tofu_nan_answer_and_bad_model_dir_are_reported_together(tmp_path, capsys, no_model_load):
    data = tmp_path / "tofu"
    shutil.copytree(DATA / "tofu", data)
    path = data / "world_facts_perturbed.json"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "perturbed_answer": []})
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["tofu", "--model", str(tmp_path / "none"), "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"rerule eval tofu: --model {tmp_path / 'none'}: not a Hugging Face model directory (no config.json)",
                   f"rerule eval tofu: {path}: line 2: field 'perturbed_answer' must be a non-empty list of strings, "
                   "got list []"]


def test_engine_vllm_without_vllm_is_one_line_before_any_model(tmp_path, capsys, monkeypatch, no_model_load):
    import importlib.metadata

    # no distribution provides vllm (a test's stub module of that name does not count)
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {})
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    rc = cli.main(["rwku", "--model", str(model), "--data", str(DATA / "rwku"), "--out", str(tmp_path / "o"),
                   "--engine", "vllm"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and not (tmp_path / "o").exists()
    assert err == [f"rerule eval rwku: --engine vllm: vLLM is not installed in {sys.prefix}: install it (GPU: "
                   "`pip install vllm`; CPU: the e2e environment, `make install-e2e`) or use --engine hf"]


def test_usage_errors_are_one_line_exit_2_without_traceback():
    run = [sys.executable, "-m", "openrlhf_rerule.eval.cli", "muse", "--model", "m", "--data", "d", "--out", "o"]
    bad = subprocess.run(run + ["--batch-size", "-3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == \
        ["rerule eval muse: error: argument --batch_size: must be >= 1, got -3 (see rerule eval muse --help)"]
    missing = subprocess.run(run[:4], capture_output=True, text=True)
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "the following arguments are required: --model, --data, --out" in missing.stderr


def test_hyphen_spelling_is_an_alias_and_help_shows_defaults():
    parser = cli.build_parser()
    base = ["rwku", "--model", "m", "--data", "d", "--out", "o"]
    assert parser.parse_args(base + ["--batch-size", "3", "--max-new-tokens=5", "--stop-at-newline"]) == \
        parser.parse_args(base + ["--batch_size", "3", "--max_new_tokens=5", "--stop_at_newline"])
    assert parser.parse_args(["muse", *base[1:]]).dtype == "fp32"  # muse_bench loads fp32
    assert parser.parse_args(base).dtype == "auto" and parser.parse_args(base).stop_at_newline is False
    for bench in ("tofu", "muse", "rwku", "naturalness"):
        text = parser._subparsers._group_actions[0].choices[bench].format_help()
        assert "(required)" in text and "(default: 8)" in text
    assert "(required)" in report.build_parser().format_help()


def test_judge_settings_are_checked_with_the_data(tmp_path, capsys, monkeypatch, no_model_load):
    monkeypatch.delenv("RERULE_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("RERULE_JUDGE_MODEL", raising=False)
    data = tmp_path / "nat"
    data.mkdir()
    (data / "forget.jsonl").write_text('{"prompt": "Where was X born?", "answer": ""}\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert cli.main(["naturalness", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "o"),
                     "--judge", "http"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rerule eval naturalness: {data / 'forget.jsonl'}: line 1: field 'answer' must be a non-empty string, "
        'got str ""',
        "rerule eval naturalness: --judge http needs RERULE_JUDGE_BASE_URL and RERULE_JUDGE_MODEL (or --judge_model)"]
