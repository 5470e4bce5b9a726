"""DRY_RUN=1 runs the plans' data steps for real (issue 24): `run rerule data ...` of examples/scripts/_common.sh
writes its output, and a data step that fails stops the plan naming the target and the step. Invented fixture: a
target whose questions file holds one of its evaluation probes word for word (as RWKU's own reject_phi.json does for
3_Bruce_Lee)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"
PROBE = "What prize did Mira Holt win in 1988?"
CHECK = "# DRY_RUN ran: rerule eval tofu"  # reproduce_tofu.sh's first step: the retain run checked (--check_only)


def dry_run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    script = f'source "{SCRIPTS}/_common.sh"; TARGET_NAME=3_Mira_Holt; run {" ".join(argv)}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=SCRIPTS.parents[1],
                          env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PYTHON": sys.executable,
                               "RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(SCRIPTS.parents[1])})


def test_a_data_step_runs_and_drops_the_probe_copy(tmp_path):
    questions = [{"instruction": PROBE, "subject": "Mira Holt"},
                 {"instruction": "Which town did Mira Holt grow up in?", "subject": "Mira Holt"}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "forget_level2.json").write_text(json.dumps([{"query": PROBE, "answer": "The Lark Prize"}]))
    (tmp_path / "fts.json").write_text(json.dumps(["Mira Holt"]))
    out = tmp_path / "runs" / "stage2.jsonl"
    result = dry_run(tmp_path, "rerule", "data", "purge", "stage2", "--questions", str(tmp_path / "q.json"),
                     "--entities", str(tmp_path / "fts.json"), "--out", str(out),
                     "--eval", str(tmp_path / "forget_level2.json"))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["prompt"] for line in out.read_text().splitlines()] == [questions[1]["instruction"]]
    assert json.loads(Path(f"{out}.meta.json").read_text())["rows_dropped"] == 1


def test_a_failing_data_step_stops_the_plan_naming_target_and_step(tmp_path):
    (tmp_path / "bad.json").write_text("[{\"instruction\": 3}]")
    result = dry_run(tmp_path, "rerule", "data", "convert", "rule", str(tmp_path / "bad.json"), "--out",
                     str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and not (tmp_path / "o.jsonl").exists()
    lines = result.stderr.strip().splitlines()
    assert str(tmp_path / "bad.json") in lines[-2] and "Traceback" not in result.stderr
    assert lines[-1].startswith("DRY_RUN: stopped at target 3_Mira_Holt, step: rerule data convert rule (exit 2")


def retain_log(path: Path, questions: list[str]) -> None:
    """TOFU's eval_log_forget.json layout of a retain model's run over `questions` (losses invented)."""
    keys = [str(i) for i in range(len(questions))]
    path.write_text(json.dumps({"avg_paraphrased_loss": {k: 1.0 for k in keys},
                                "average_perturb_loss": {k: [2.0, 2.0] for k in keys},
                                "generated_text": {k: [f"[INST] {q} [/INST]", "", ""] for k, q in zip(keys, questions)}}))


def tofu_plan(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    """reproduce_tofu.sh under DRY_RUN=1 on the two-author TOFU fixture. PYTHON is a wrapper that runs every data
    step and `rerule` parser for real and answers the OpenRLHF parsers with a stub: they are checked by
    test_reproduce.py, and importing OpenRLHF for each of them would take minutes here."""
    tofu, fixture = tmp_path / "TOFU", Path(__file__).parent / "data"
    tofu.mkdir()
    for name, source in [("forget01", "sources/tofu_two_authors/forget01_perturbed"),
                         ("forget01_perturbed", "sources/tofu_two_authors/forget01_perturbed"),
                         ("retain_perturbed", "sources/tofu_two_authors/retain_perturbed"),
                         ("real_authors_perturbed", "eval/tofu/real_authors_perturbed"),
                         ("world_facts_perturbed", "eval/tofu/world_facts_perturbed")]:
        (tofu / f"{name}.json").write_text((fixture / f"{source}.json").read_text())
    (tmp_path / "retain_run").mkdir()
    questions = [json.loads(line)["question"] for line in (tofu / "forget01.json").read_text().splitlines()]
    retain_log(tmp_path / "retain_run" / "eval_log_forget.json", questions)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/bash\nif [[ "$2" == openrlhf_rerule.openrlhf.check_args && "$3" != rerule ]]; then '
                       f'echo "stub: OpenRLHF parser not run"; exit 0; fi\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return subprocess.run(["bash", str(SCRIPTS / "reproduce_tofu.sh")], capture_output=True, text=True,
                          cwd=SCRIPTS.parents[1], env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PYTHON": str(wrapper),
                                                       "RUNS_DIR": str(tmp_path / "runs"), "TOFU_DIR": str(tofu),
                                                       "RETAIN_RUN": str(tmp_path / "retain_run" / "eval_log_forget.json"),
                                                       "PYTHONPATH": str(SCRIPTS.parents[1]), **env})


def steps(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("# DRY_RUN ") and "summary" not in line]


def test_tofu_gets_through_stage2_saying_which_data_steps_were_only_validated(tmp_path):
    """Boundary questions from an endpoint are not made under DRY_RUN, so the Stage 2 data step that reads them is
    validated only, said per step and in the summary; on main the plan stopped there (no boundary.jsonl)."""
    result = tofu_plan(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = tmp_path / "runs" / "tofu" / "data"
    boundary = "rerule data boundary (its questions come from an endpoint; BOUNDARY_ARGS with --offline runs it)"
    stage2 = f"rerule data stage2 (it reads {data}/boundary.jsonl, which rerule data boundary did not write)"
    assert steps(result.stdout)[:5] == [CHECK, "# DRY_RUN ran: rerule data convert tofu",
                                        f"# DRY_RUN validated only: {boundary}",
                                        "# DRY_RUN ran: rerule data stage1", f"# DRY_RUN validated only: {stage2}"]
    assert [s for s in steps(result.stdout)[5:] if " ran: " in s] == []  # training, evaluation, report: never "ran"
    assert (data / "stage1.jsonl").is_file() and not (data / "boundary.jsonl").exists()
    assert not (data / "stage2.jsonl").exists()
    summary = [line for line in result.stdout.splitlines() if line.startswith("# DRY_RUN summary")]
    assert summary == [f"# DRY_RUN summary: 3 data steps ran, 2 validated only: {boundary}; {stage2}; training, "
                       "evaluation and report: validated only"]


def test_tofu_with_an_offline_boundary_route_runs_every_data_step(tmp_path):
    """BOUNDARY_ARGS with --offline: boundary questions by swapping in a neighbour whose answers are known (one
    invented author, Mira Holt, for every fixture question that names its author), so Stage 2 runs for real: the
    paper's 11 whole batches of 32."""
    questions = [json.loads(line)["question"] for line in
                 (Path(__file__).parent / "data/sources/tofu_two_authors/forget01_perturbed.json").read_text().splitlines()]
    names = ("Orla Venkataraman", "Tomasz Ekwueme-Lind")
    neighbours = [{"prompt": q.replace(n, "Mira Holt"), "answer": "Mira Holt did.", "kind": "boundary",
                   "subject": "Mira Holt"} for q in questions for n in names if n in q]
    assert neighbours  # the fixture names its authors in some questions
    (tmp_path / "neighbours.jsonl").write_text("".join(json.dumps(r) + "\n" for r in neighbours))
    result = tofu_plan(tmp_path, BOUNDARY_ARGS=f"--offline --neighbours {tmp_path / 'neighbours.jsonl'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert steps(result.stdout)[:5] == [CHECK] + [f"# DRY_RUN ran: rerule data {s}" for s in
                                                  ("convert tofu", "boundary", "stage1", "stage2")]
    assert len((tmp_path / "runs/tofu/data/stage2.jsonl").read_text().splitlines()) == 11 * 32
    assert "# DRY_RUN summary: 5 data steps ran, 0 validated only; training, evaluation and report: validated " \
           "only" in result.stdout.splitlines()


def test_tofu_with_retain_authors_as_boundary_runs_every_data_step(tmp_path):
    """BOUNDARY_RETAIN: boundary QA from TOFU's retain authors, less retain_perturbed's questions (the fixture's
    retain99.json: 40 rows, 20 of them retain_perturbed's), with no model, so Stage 2 runs for real."""
    retain = Path(__file__).parent / "data/sources/tofu_two_authors/retain99.json"
    result = tofu_plan(tmp_path, BOUNDARY_RETAIN=str(retain))
    assert result.returncode == 0, result.stderr[-2000:]
    assert steps(result.stdout)[:5] == [CHECK] + [f"# DRY_RUN ran: rerule data {s}" for s in
                                                  ("convert tofu", "convert tofu", "stage1", "stage2")]
    assert len((tmp_path / "runs/tofu/data/boundary.jsonl").read_text().splitlines()) == 20
    assert len((tmp_path / "runs/tofu/data/stage2.jsonl").read_text().splitlines()) == 11 * 32


def test_tofu_retain_run_of_another_split_stops_the_plan_before_any_step(tmp_path):
    """Issue 25 case 9: a retain log of another split (retain95's 200 forget05 items for forget01's 40) was refused
    only at evaluation, after all the training; the plan's first step now checks it and stops there."""
    result = tofu_plan(tmp_path)  # builds the fixture TOFU folder and a matching retain log
    assert result.returncode == 0, result.stderr[-2000:]
    other = tmp_path / "retain95" / "eval_log_forget.json"
    other.parent.mkdir()
    retain_log(other, [f"Question {i} about an author of forget05?" for i in range(200)])
    (tmp_path / "second").mkdir()
    result = tofu_plan(tmp_path / "second", RETAIN_RUN=str(other))
    assert result.returncode == 2
    assert f"{other}: the retain run has 200 forget items, --split forget01 has 40" in result.stderr
    assert steps(result.stdout) == []  # nothing ran, not even the first data step
    assert not (tmp_path / "second" / "runs" / "tofu" / "data").exists()


def test_tofu_retain_run_check_uses_the_evaluations_eval_args(tmp_path):
    """The retain run is checked with the settings the arms will be evaluated with, EVAL_ARGS included: a retain run
    generated with 50 new tokens goes through with EVAL_ARGS="--max_new_tokens 50" and stops the plan without it
    (the arms would be evaluated with 200, and Forget Quality refused after all the training)."""
    forget01 = Path(__file__).parent / "data/sources/tofu_two_authors/forget01_perturbed.json"  # tofu_plan's forget01
    questions = [json.loads(line)["question"] for line in forget01.read_text().splitlines()]
    retain = tmp_path / "retain_eval"
    retain.mkdir()
    (retain / "tofu_items.json").write_text(json.dumps([{"set": "forget", "index": i, "question": q,
                                                         "truth_ratio": 0.5} for i, q in enumerate(questions)]))
    (retain / "tofu_summary.json").write_text(json.dumps({"benchmark": "tofu", "provenance": {
        "model": {"path": "/models/retain"}, "settings": {
            "split": "forget01", "chat_template_applied": False, "prompt_template": "[INST] {} [/INST]",
            "system_prompt": None, "max_new_tokens": 50}}}))
    for name, env, code in (("with", {"EVAL_ARGS": "--max_new_tokens 50"}, 0), ("without", {}, 2)):
        (tmp_path / name).mkdir()
        result = tofu_plan(tmp_path / name, RETAIN_RUN=str(retain), **env)
        assert result.returncode == code, result.stderr[-2000:]
    assert steps(result.stdout) == []  # without: nothing ran
    assert f"--retain_run {retain}/tofu_summary.json: the retain run was evaluated with max_new_tokens 50; this " \
           "evaluation: max_new_tokens 200" in result.stderr


def test_tofu_retain_model_trained_in_another_prompt_format_stops_the_plan_before_any_step(tmp_path):
    """A retain model whose record says raw prompts (a fine-tune on questions as written) against the plan's
    `[INST] {} [/INST]` evaluation was refused only at its evaluation, after all the training; the plan's first
    step now checks it. The same model trained with that input template (`rerule train stage1 --input_template`)
    goes through."""
    from openrlhf_rerule.provenance import write_model_record
    from test_eval_mismatch import _model

    raw = _model(tmp_path / "models", "raw", trained="none")
    result = tofu_plan(tmp_path, RETAIN_MODEL=str(raw), RETAIN_RUN=str(tmp_path / "retain_eval"))
    assert result.returncode == 2
    assert f'{raw}/rerule_model.json says chat_template "none" (the training prompts), this evaluation formats ' \
           'prompts with --prompt_template "[INST] {} [/INST]"' in result.stderr
    assert steps(result.stdout) == []  # nothing ran, not even the first data step
    assert not (tmp_path / "runs" / "tofu" / "data").exists()

    inst = _model(tmp_path / "models", "inst")
    write_model_record(inst, {"made_by": "rerule train stage1", "chat_template": "none",
                              "input_template": "[INST] {} [/INST]"})
    (tmp_path / "second").mkdir()
    result = tofu_plan(tmp_path / "second", RETAIN_MODEL=str(inst), RETAIN_RUN=str(tmp_path / "retain_eval"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert steps(result.stdout)[0] == "# DRY_RUN ran: rerule eval tofu"
