"""Property-style suite for issue 25 ("well-formed but wrong, across stages"): whatever files, models and settings
are paired, a pair that does not belong together is refused (one line, exit 2, nothing written) or kept apart, and
a pair that does is accepted. The expected outcome of each example is worked out here from how the pool was built
(which files share prompts, which are evaluation files, which settings differ), never read back from our output.
Examples are derandomised, so every run tries the same inputs."""

import json
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from openrlhf_rerule.data.cli import main as data_main
from openrlhf_rerule.eval import report
from openrlhf_rerule.provenance import EVALUATION, TRAINING, read_sidecar, write_sidecar

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---- data: which files may be a Stage 2 file's forget, boundary and retain inputs -------------------------------

def _questions(topic: str, n: int = 6) -> list[str]:
    return [f"What did the {topic} person number {i} do in the year {1900 + i}?" for i in range(n)]


# name -> (prompts, kind of its rows, role in its sidecar or None for a file made by hand)
POOL = {
    "forget": (_questions("forgotten"), "forget", TRAINING),
    "boundary": (_questions("neighbouring"), "boundary", TRAINING),
    "retain": (_questions("retained"), "retain", TRAINING),
    "forget_copy": (_questions("forgotten"), "forget", TRAINING),  # the forget file's bytes under another name
    "boundary_sharing_2": (_questions("neighbouring")[:4] + _questions("forgotten")[2:4], "boundary", TRAINING),
    "probes": (_questions("probed"), "forget", EVALUATION),  # what `convert rwku` writes to eval/forget.jsonl
    "own_file": (_questions("hand-written"), "boundary", None),
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    for name, (prompts, kind, role) in POOL.items():
        rows = [{"prompt": q, "answer": f"Answer {i}.", "kind": kind, "subject": "Person"} for i, q in enumerate(prompts)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if role:
            write_sidecar(root / f"{name}.jsonl", {"command": "test pool", "role": role})
    return root


def _belongs_together(names: list[str], allow_eval: bool) -> bool:
    """A Stage 2 file may be built from these inputs: no prompt in two roles, no evaluation file unless allowed."""
    prompts = [{q.lower() for q in POOL[n][0]} for n in names]
    if any(a & b for a, b in combinations(prompts, 2)):
        return False
    return allow_eval or all(POOL[n][2] != EVALUATION for n in names)


@PROPERTY
@given(forget=st.sampled_from(sorted(POOL)), boundary=st.sampled_from(sorted(POOL)),
       retain=st.none() | st.sampled_from(sorted(POOL)), allow_eval=st.booleans())
@example(forget="forget", boundary="boundary", retain="retain", allow_eval=False)  # belong together
@example(forget="forget", boundary="forget", retain=None, allow_eval=True)  # issue 25 case 1: one file, two roles
@example(forget="forget", boundary="boundary_sharing_2", retain=None, allow_eval=False)
@example(forget="probes", boundary="boundary", retain=None, allow_eval=False)  # case 2: the probes trained on
@example(forget="probes", boundary="own_file", retain=None, allow_eval=True)  # ... only with the flag, recorded
def test_stage2_accepts_exactly_the_inputs_that_belong_together(pool, tmp_path_factory, capsys, forget, boundary,
                                                                retain, allow_eval):
    names = [forget, boundary] + ([retain] if retain else [])
    out = tmp_path_factory.mktemp("out") / "stage2.jsonl"
    argv = ["stage2", "--forget", str(pool / f"{forget}.jsonl"), "--boundary", str(pool / f"{boundary}.jsonl"),
            "--out", str(out)] + (["--retain", str(pool / f"{retain}.jsonl")] if retain else []) \
        + (["--allow_eval_as_training"] if allow_eval else [])
    code = data_main(argv)
    err = capsys.readouterr().err
    if _belongs_together(names, allow_eval):
        assert code == 0, err
        evaluation_inputs = [n for n in names if POOL[n][2] == EVALUATION]
        assert len(read_sidecar(out)["allowed"]) == len(evaluation_inputs)  # each one the flag let through, recorded
    else:
        assert code == 2 and not out.exists() and read_sidecar(out) is None
        refusal = [line for line in err.splitlines() if "error" in line]
        assert len(refusal) == 1 and "Traceback" not in err


# ---- report: which runs share a table --------------------------------------------------------------------------

TOFU_RELEASED = {"forget01": {"forget": 40, "retain": 400, "real_authors": 100, "world_facts": 117},
                 "forget05": {"forget": 200, "retain": 400, "real_authors": 100, "world_facts": 117}}
RUN = st.fixed_dictionaries({"split": st.sampled_from(["forget01", "forget05"]),
                             "max_new_tokens": st.sampled_from([8, 200]),
                             "prompt_template": st.sampled_from([None, "[INST] {} [/INST]"]),
                             "subset": st.booleans()})


@PROPERTY
@given(runs=st.lists(RUN, min_size=2, max_size=5))
def test_report_puts_two_tofu_runs_in_one_table_exactly_when_their_settings_agree(tmp_path_factory, runs):
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for i, run in enumerate(runs):
        items = {part: n // 2 if run["subset"] and part == "forget" else n
                 for part, n in TOFU_RELEASED[run["split"]].items()}
        settings_ = {"split": run["split"], "max_new_tokens": run["max_new_tokens"], "system_prompt": None,
                     "prompt_template": run["prompt_template"], "chat_template_applied": False}
        (root / f"R{i}").mkdir()
        (root / f"R{i}" / "tofu_summary.json").write_text(json.dumps(
            {"benchmark": "tofu", "name": f"R{i}", "split": run["split"], "model_utility": 0.5,
             "provenance": {"settings": settings_, "items": items}}))
        dirs.append(str(root / f"R{i}"))
    tables = [part for part in report.render(report.load_runs(dirs)).split("\n\n") if part.startswith("**TOFU**")]
    table_of = {}
    for t, table in enumerate(tables):
        for i in range(len(runs)):
            if f"| R{i} |" in table or f"| R{i}‡ |" in table:
                assert f"R{i}" not in table_of, f"R{i} in two tables"
                table_of[f"R{i}"] = t
                assert (f"| R{i}‡ |" in table) == runs[i]["subset"]  # a subset row is marked, a full one never
    assert len(table_of) == len(runs)
    for i, j in combinations(range(len(runs)), 2):
        assert (table_of[f"R{i}"] == table_of[f"R{j}"]) == (runs[i] == runs[j]), (runs[i], runs[j])


# ---- models: what Stage 2 may start from, against which reference, in which prompt format -----------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Two tokenizers (b has 4 more words: other token ids), policies with Stage 1 records in each prompt wrapping
    and a base without a record, and Stage 2 files whose sidecars name a prompt format (or have no sidecar)."""
    import shutil

    from openrlhf_rerule.local.tiny import save_tiny_model
    from openrlhf_rerule.provenance import write_model_record

    root = tmp_path_factory.mktemp("models")
    texts = ["where does alba live ?", "where does bruno live ?", "i do not know .", "bruno lives in rome ."]
    save_tiny_model(texts, root / "base", hidden_size=16, num_layers=1, num_heads=2)
    save_tiny_model(texts + ["zebra yak quokka lemur"], root / "other_tokenizer", hidden_size=16, num_layers=1,
                    num_heads=2)
    shutil.copytree(root / "base", root / "base_copy")
    for wrapping in ("auto", "none"):
        shutil.copytree(root / "base", root / f"stage1_{wrapping}")
        write_model_record(root / f"stage1_{wrapping}", {"made_by": "rerule train stage1", "chat_template": wrapping,
                                                         "prompt_format": "plain"})
    rows = [{"prompt": texts[0], "label": json.dumps(["<reject>", texts[2], "alba"]), "prompt_id": "f0",
             "kind": "forget"}, {"prompt": texts[1], "label": json.dumps(["<normal>", texts[3]]), "prompt_id": "b0",
                                 "kind": "boundary"}]
    for fmt in ("plain", "rule_muse", None):
        path = root / f"stage2_{fmt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if fmt:
            write_sidecar(path, {"command": "stage2", "role": TRAINING, "prompt_format": fmt})
    return root


@PROPERTY
@given(policy=st.sampled_from(["stage1_auto", "stage1_none", "base"]),
       reference=st.sampled_from([None, "base_copy", "other_tokenizer"]), wrapping=st.sampled_from(["auto", "none"]),
       data_format=st.sampled_from(["plain", "rule_muse", None]), allow=st.booleans())
@example(policy="stage1_auto", reference="other_tokenizer", wrapping="auto", data_format="plain", allow=True)  # case 3
@example(policy="stage1_auto", reference=None, wrapping="none", data_format="plain", allow=False)  # case 4
def test_stage2_starts_exactly_when_model_reference_and_format_belong_together(models, tmp_path_factory, capsys,
                                                                              monkeypatch, policy, reference,
                                                                              wrapping, data_format, allow):
    from openrlhf_rerule.local import grpo
    from openrlhf_rerule.local.cli import main as train_main

    def loaded(*args, **kwargs):  # a run that gets past every check reaches the first model load
        raise RuntimeError("checks passed: a model was loaded")

    monkeypatch.setattr(grpo, "load_model", loaded)
    out = tmp_path_factory.mktemp("run") / "run"
    argv = ["stage2", "--model", str(models / policy), "--data", str(models / f"stage2_{data_format}.jsonl"),
            "--out", str(out), "--steps", "1", "--rollout_batch", "2", "--n_samples", "2", "--max_new_tokens", "3",
            "--reward_variant", "two_stage_abs", "--chat_template", wrapping, "--no_progress", "--no_tensorboard"] \
        + (["--ref_model", str(models / reference)] if reference else []) + (["--allow_format_change"] if allow else [])
    recorded = {"stage1_auto": "auto", "stage1_none": "none"}.get(policy)  # the base has no record: not compared
    other_format = recorded is not None and (recorded != wrapping or data_format not in (None, "plain"))
    belongs = reference != "other_tokenizer" and (allow or not other_format)
    if belongs:
        with pytest.raises(RuntimeError, match="checks passed"):
            train_main(argv)
    else:
        assert train_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert ("field 'tokenizer'" in err) == (reference == "other_tokenizer")
    capsys.readouterr()
