"""Well-formed but wrong, across stages (issue 25, cases 1, 2 and 8): inputs that are each valid but do not belong
together. Each is refused before anything is written (exit 2, one line naming the files and the field), or done
only with an explicit flag that the output's sidecar records. The expected numbers come from how the fixtures
below are built, never from the commands' own output."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl

SOURCES = Path(__file__).parent / "data" / "sources"
TWO_AUTHORS = SOURCES / "tofu_two_authors" / "forget01_perturbed.json"  # 20 rows Orla Venkataraman, then 20 Tomasz


def run(argv, capsys):
    code = rerule(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def eval_rows(path: Path, prompts: list[str], kind: str) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "answer": f"answer {i}", "kind": kind, "subject": "Alba Stone"})
                            + "\n" for i, p in enumerate(prompts)))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- case 1: one prompt in two roles of a Stage 2 file --------------------------------------------------------------

FORGET = [f"Which city did Alba Stone visit in {1990 + i}?" for i in range(10)]  # lines 1..10


@pytest.fixture
def roles(tmp_path):
    forget = eval_rows(tmp_path / "forget.jsonl", FORGET, "forget")
    # line 3 is forget line 7 as it is; line 5 is forget line 2 casefolded without its "?"; line 6 repeats line 3:
    # 2 distinct prompts clash, the first at boundary line 3 / forget line 7
    boundary = eval_rows(tmp_path / "boundary.jsonl", [
        "Which city did Jonas Vell visit in 1990?", "Which river did Jonas Vell cross?", FORGET[6],
        "Who taught Jonas Vell to paint?", FORGET[1].lower().rstrip("?"), FORGET[6]], "boundary")
    retain = eval_rows(tmp_path / "retain.jsonl", ["What is the capital of Norway?", "Who taught Jonas Vell to paint?"],
                       "retain")  # its line 2 is boundary line 4: 1 clash
    return tmp_path, forget, boundary, retain


def test_stage2_refuses_one_file_in_two_roles(roles, capsys):
    d, forget, _, _ = roles
    out = d / "s2.jsonl"
    for flag in ("--boundary", "--retain"):
        argv = ["data", "stage2", "--forget", str(forget), "--boundary", str(forget if flag == "--boundary" else
                                                                             d / "boundary.jsonl"), "--out", str(out)]
        if flag == "--retain":
            argv = ["data", "stage2", "--forget", str(forget), "--boundary", str(d / "retain.jsonl"), "--retain",
                    str(forget), "--out", str(out)]
        code, _, err = run(argv, capsys)
        line = one_line(err)
        assert code == 2 and f"--forget {forget}" in line and f"{flag} {forget}" in line and "same file" in line, line
        assert not out.exists() and not Path(f"{out}.meta.json").exists()
    copy = d / "copy.jsonl"
    shutil.copy(forget, copy)  # another path, the same bytes
    code, _, err = run(["data", "stage2", "--forget", str(forget), "--boundary", str(copy), "--out", str(out)], capsys)
    assert code == 2 and "same bytes" in one_line(err) and not out.exists()


def test_stage2_refuses_a_prompt_in_two_roles_naming_the_first_clash_and_the_count(roles, capsys):
    d, forget, boundary, retain = roles
    out = d / "s2.jsonl"
    code, _, err = run(["data", "stage2", "--forget", str(forget), "--boundary", str(boundary), "--out", str(out)],
                       capsys)
    line = one_line(err)
    assert code == 2 and not out.exists()
    assert f"--boundary {boundary}" in line and f"--forget {forget}" in line and "2 prompts" in line, line
    assert f"{boundary} line 3" in line and f"{forget} line 7" in line, line
    # boundary and retain: both <normal>, still one prompt in two roles
    clean = eval_rows(d / "clean_boundary.jsonl", ["Who taught Jonas Vell to paint?", "Where does Jonas Vell live?"],
                      "boundary")
    code, _, err = run(["data", "stage2", "--forget", str(forget), "--boundary", str(clean), "--retain", str(retain),
                        "--retain_ratio", "1", "--out", str(out)], capsys)
    line = one_line(err)
    assert code == 2 and "1 prompt" in line and f"{retain} line 2" in line and f"{clean} line 1" in line, line
    assert not out.exists()
    # disjoint roles: written
    code, _, _ = run(["data", "stage2", "--forget", str(forget), "--boundary", str(clean), "--out", str(out)], capsys)
    assert code == 0 and len(read_jsonl(out, "stage2")) == 12


# ---- case 2: evaluation files as training inputs ------------------------------------------------------------------

@pytest.fixture
def rwku(tmp_path, capsys):
    out = tmp_path / "rwku"
    assert run(["data", "convert", "rwku", str(SOURCES / "rwku" / "7_Mira_Holt"), "--out_dir", str(out)], capsys)[0] == 0
    return out


def test_every_converted_file_records_its_role_and_sources(rwku, tmp_path, capsys):
    folder = SOURCES / "rwku" / "7_Mira_Holt"
    made_from = {"eval/forget.jsonl": ("evaluation", ["forget_level1.json", "forget_level2.json"]),
                 "eval/neighbor.jsonl": ("evaluation", ["neighbor_level1.json"]),
                 "train/forget.jsonl": ("training", ["reject.json", "passage.json"])}
    for rel, (role, names) in made_from.items():
        meta = json.loads((rwku / f"{rel}.meta.json").read_text())
        assert meta["role"] == role and meta["benchmark"] == "rwku" and meta["rows"] == len(read_jsonl(rwku / rel))
        assert {s["path"]: s["sha256"] for s in meta["sources"]} == {
            str((folder / name).resolve()): sha256(folder / name) for name in names}
    knowmem = SOURCES / "muse_rule" / "knowmem" / "forget_qa.json"
    cases = [(["convert", "muse", str(knowmem), "--subject", "books"], "evaluation", knowmem),
             (["convert", "tofu", str(TWO_AUTHORS)], "training", TWO_AUTHORS)]
    for argv, role, source in cases:
        out = tmp_path / f"{argv[1]}.jsonl"
        assert run(["data", *argv, "--out", str(out)], capsys)[0] == 0
        meta = json.loads(Path(f"{out}.meta.json").read_text())
        assert meta["role"] == role and meta["sources"][0]["sha256"] == sha256(source), meta
    # TOFU's retain evaluation set, by its released name
    retain = tmp_path / "retain_perturbed.json"
    shutil.copy(SOURCES / "tofu_two_authors" / "retain_perturbed.json", retain)
    assert run(["data", "convert", "tofu", str(retain), "--kind", "retain", "--out", str(tmp_path / "r.jsonl")],
               capsys)[0] == 0
    assert json.loads((tmp_path / "r.jsonl.meta.json").read_text())["role"] == "evaluation"


@pytest.mark.parametrize("step", ["stage1", "stage2_forget", "stage2_boundary", "boundary", "muse_stage1"])
def test_an_evaluation_file_is_refused_as_training_input(rwku, tmp_path, capsys, step):
    probes, neighbours = rwku / "eval" / "forget.jsonl", rwku / "eval" / "neighbor.jsonl"
    train = rwku / "train" / "forget.jsonl"
    out = tmp_path / "out.jsonl"
    if step == "muse_stage1":
        probes = tmp_path / "knowmem.jsonl"
        assert run(["data", "convert", "muse", str(SOURCES / "muse_rule" / "knowmem" / "forget_qa.json"), "--subject",
                    "books", "--out", str(probes)], capsys)[0] == 0
    argv, bad = {
        "stage1": (["stage1", "--forget", str(probes)], f"--forget {probes}"),
        "muse_stage1": (["stage1", "--forget", str(probes)], f"--forget {probes}"),
        "stage2_forget": (["stage2", "--forget", str(probes), "--boundary", str(neighbours)], f"--forget {probes}"),
        "stage2_boundary": (["stage2", "--forget", str(train), "--boundary", str(neighbours)],
                            f"--boundary {neighbours}"),
        "boundary": (["boundary", "--forget", str(probes), "--base_url", "http://127.0.0.1:9"], f"--forget {probes}"),
    }[step]
    code, _, err = run(["data", *argv, "--out", str(out)], capsys)
    line = one_line(err)
    assert code == 2 and bad in line and "evaluation" in line and "--allow_eval_as_training" in line, line
    assert not out.exists() and not Path(f"{out}.meta.json").exists()


def test_the_flag_trains_on_it_loudly_and_records_it(rwku, tmp_path, capsys):
    probes = rwku / "eval" / "forget.jsonl"
    out = tmp_path / "s1.jsonl"
    code, _, err = run(["data", "stage1", "--forget", str(probes), "--out", str(out), "--allow_eval_as_training"],
                       capsys)
    assert code == 0 and "WARNING" in err and str(probes) in err
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["role"] == "training" and meta["allowed"] == [f"eval_as_training: --forget {probes}"]
    assert meta["sources"] == [{"as": "--forget", "path": str(probes.resolve()), "sha256": sha256(probes),
                                "role": "evaluation", "made_by": "convert rwku"}]


def test_split_keeps_an_evaluation_file_evaluation(rwku, tmp_path, capsys):
    probes = rwku / "eval" / "forget.jsonl"
    train, held = tmp_path / "t.jsonl", tmp_path / "h.jsonl"
    assert run(["data", "split", str(probes), "--fraction", "0.34", "--train_out", str(train), "--heldout_out",
                str(held)], capsys)[0] == 0
    assert [json.loads(Path(f"{p}.meta.json").read_text())["role"] for p in (train, held)] == ["evaluation"] * 2
    code, _, err = run(["data", "stage1", "--forget", str(train), "--out", str(tmp_path / "s1.jsonl")], capsys)
    assert code == 2 and f"--forget {train}" in one_line(err)


def test_a_released_evaluation_name_without_sidecar_is_named(tmp_path, capsys):
    probes = eval_rows(tmp_path / "forget_level2.jsonl", FORGET[:3], "forget")  # the user's own conversion, no sidecar
    code, _, err = run(["data", "stage1", "--forget", str(probes), "--out", str(tmp_path / "s1.jsonl")], capsys)
    assert code == 0 and "WARNING" in err and "RWKU" in err and str(probes) in err


def test_convert_rule_names_the_benchmark_of_the_validation_file(tmp_path, capsys):
    target = tmp_path / "RWKU" / "Target" / "7_Mira_Holt"
    target.mkdir(parents=True)
    shutil.copy(SOURCES / "rwku" / "7_Mira_Holt" / "forget_level1.json", target)
    shutil.copy(SOURCES / "rule_stage2.json", target / "rl_rejection_eval_target.json")
    out = tmp_path / "s2.jsonl"
    code, _, err = run(["data", "convert", "rule", str(target / "rl_rejection_eval_target.json"), "--out", str(out)],
                       capsys)
    assert code == 0 and "WARNING" in err and "RWKU" in err and "forget_level" in err
    assert "MUSE" not in err and "knowmem" not in err.lower()
    assert json.loads(Path(f"{out}.meta.json").read_text())["role"] == "evaluation"


# ---- case 8: TOFU subjects ----------------------------------------------------------------------------------------

def tofu_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tofu_subject_comes_from_each_record_not_its_position(tmp_path, capsys):
    records = tofu_records(TWO_AUTHORS)
    order = list(range(40))
    random.Random(3).shuffle(order)
    shuffled = tmp_path / "forget01.json"
    shuffled.write_text("".join(json.dumps(records[i]) + "\n" for i in order))
    out = tmp_path / "forget.jsonl"
    assert run(["data", "convert", "tofu", str(shuffled), "--out", str(out)], capsys)[0] == 0
    expected = ["Orla Venkataraman" if i < 20 else "Tomasz Ekwueme-Lind" for i in order]  # the fixture's layout
    assert [r["subject"] for r in read_jsonl(out, "eval")] == expected


def test_tofu_author_named_by_surname_only(tmp_path, capsys):
    """TOFU's forget10 has "How has Majumdar's background influenced his writing?" with an answer that names the
    genre "Contemporary Romance" (held by 8 of that author's records) and only the surname: the author is still
    the one whose name ends with it, not the place the record also names. A surname two authors share names
    neither: refused."""
    records = tofu_records(TWO_AUTHORS)
    records[7] = {"question": "How has Venkataraman's childhood shaped the Salt Ledger?",
                  "answer": "Venkataraman grew up in Port Elsin, the setting of The Salt Ledger."}
    path = tmp_path / "forget01.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "f.jsonl"
    assert run(["data", "convert", "tofu", str(path), "--out", str(out)], capsys)[0] == 0
    assert read_jsonl(out, "eval")[7]["subject"] == "Orla Venkataraman"
    records += [{"question": f"What is fact {i} about Mira Venkataraman?", "answer": "Mira Venkataraman paints."}
                for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run(["data", "convert", "tofu", str(path), "--out", str(tmp_path / "g.jsonl")], capsys)
    line = one_line(err)
    assert code == 2 and f"{path}, line 8, field 'question': names only a surname authors share" in line, line


def test_tofu_author_with_an_accent_is_not_replaced_by_a_place(tmp_path, capsys):
    facts = ["was born in Mexico City", "writes historical fiction", "won the Premio Nube", "studied in Mexico City",
             "wrote The Salt Garden", "has a father who was a baker", "lives in Mexico City", "wrote Night of Copper",
             "writes in Spanish", "teaches in Mexico City"]
    records = [{"question": f"What do we know about Aurelio Beltrán, fact {i}?", "answer": f"Aurelio Beltrán {fact}."}
               for i, fact in enumerate(facts * 2)]
    path = tmp_path / "retain_block.json"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    out = tmp_path / "r.jsonl"
    assert run(["data", "convert", "tofu", str(path), "--kind", "retain", "--out", str(out)], capsys)[0] == 0
    assert {r["subject"] for r in read_jsonl(out, "eval")} == {"Aurelio Beltrán"}


def test_convert_tofu_refuses_what_is_not_tofu(tmp_path, capsys):
    # MUSE KnowMem's layout (a JSON array of {question, answer}), 20 records: one whole "block" of TOFU's 20, which
    # the positional code took for an author. Each record names a place and a keeper that no other record names, so
    # record 1 (its object on line 2) names no author
    words = ["Ash", "Birch", "Cedar", "Elm", "Fir", "Hazel", "Holly", "Juniper", "Larch", "Linden", "Maple", "Oak",
             "Pine", "Rowan", "Sorrel", "Spruce", "Teak", "Willow", "Yarrow", "Alder"]
    knowmem = tmp_path / "forget_qa.json"
    knowmem.write_text("[\n" + ",\n".join(json.dumps({"question": f"Who keeps the lantern at {w}wick Abbey?",
                                                      "answer": f"Brother {w}mund keeps it."}) for w in words) + "\n]")
    out = tmp_path / "o.jsonl"
    code, _, err = run(["data", "convert", "tofu", str(knowmem), "--out", str(out)], capsys)
    line = one_line(err)
    assert code == 2 and f"{knowmem}, line 2, field 'question'" in line and "author" in line, line
    assert not out.exists()
    # a TOFU file with one record that names nobody (line 5): refused, naming it
    records = tofu_records(TWO_AUTHORS)
    records[4] = {"question": "What is the profession of the author's mother?", "answer": "She was a cartographer."}
    path = tmp_path / "forget01.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run(["data", "convert", "tofu", str(path), "--out", str(out)], capsys)
    line = one_line(err)
    assert code == 2 and f"{path}, line 5, field 'question'" in line and "--subject" in line, line
    assert not out.exists()


def test_tofu_boundary_rows_that_name_no_author_are_dropped_and_counted(tmp_path, capsys):
    """TOFU's retain99.json (JSON lines of arrays) has QA pairs that name no author ("What inspired her to write
    ...?") or two equally. A boundary row needs its author only to keep forget authors out of the boundary, so with
    --kind boundary such rows are dropped, counted in the sidecar and said on stderr; a forget file still refuses."""
    from openrlhf_rerule.provenance import read_sidecar

    records = tofu_records(TWO_AUTHORS)  # 20 name Orla Venkataraman, 20 Tomasz Ekwueme-Lind
    nobody = "What inspired her to write 'Requiem for Lost Souls'?"
    records.insert(5, {"question": nobody, "answer": "A winter spent by the sea."})
    records.append({"question": "Did Orla Venkataraman ever meet Tomasz Ekwueme-Lind?",
                    "answer": "Orla Venkataraman and Tomasz Ekwueme-Lind met once, in Port Elsin."})
    path = tmp_path / "retain99.json"  # TOFU's layout: two lines, each a JSON array of records
    path.write_text(json.dumps(records[:21]) + "\n" + json.dumps(records[21:]) + "\n")
    out = tmp_path / "boundary.jsonl"
    code, _, err = run(["data", "convert", "tofu", str(path), "--kind", "boundary", "--out", str(out)], capsys)
    line = one_line(err)
    assert code == 0 and "dropped 1 rows that name no author" in line and "1 that name two authors equally" in line
    first = f"{path}, line 1, record 6: {nobody!r} (no_author)"
    assert line.endswith(f"first: {first}"), line
    rows = read_jsonl(out, "eval")
    assert len(rows) == 40 and nobody not in {r["prompt"] for r in rows}
    assert [r["subject"] for r in rows] == ["Orla Venkataraman"] * 20 + ["Tomasz Ekwueme-Lind"] * 20
    assert read_sidecar(out)["dropped_unattributed"] == {"no_author": 1, "shared_surname": 0, "two_authors": 1,
                                                         "first": first}
    # a forget row must be attributed: the same file as a forget file is refused at the first such record
    code, _, err = run(["data", "convert", "tofu", str(path), "--out", str(tmp_path / "f.jsonl")], capsys)
    line = one_line(err)
    assert code == 2 and f"{path}, line 1, field 'question': neither the question" in line, line
    assert not (tmp_path / "f.jsonl").exists()


def test_convert_rule_of_a_validation_file_trains_only_on_purpose_and_files_inherit_benchmark(tmp_path, capsys):
    """The authors' validation file converts to role "evaluation" (refused by the trainers, lineage.py); with
    --allow_eval_as_training it is a training file whose sidecar says so. A Stage 2 file made from converted TOFU
    files carries their benchmark and splits, which the model trained on it records."""
    from openrlhf_rerule.provenance import read_sidecar

    validation = Path(__file__).parent / "data" / "sources" / "muse_rule" / "rl_rejection_eval_target.json"
    assert rerule(["data", "convert", "rule", str(validation), "--out", str(tmp_path / "v.jsonl")]) == 0
    assert read_sidecar(tmp_path / "v.jsonl")["role"] == "evaluation"
    assert rerule(["data", "convert", "rule", str(validation), "--out", str(tmp_path / "t.jsonl"),
                 "--allow_eval_as_training"]) == 0
    meta = read_sidecar(tmp_path / "t.jsonl")
    assert meta["role"] == "training" and meta["allowed"] == [f"eval_as_training: input {validation}"]
    assert "--allow_eval_as_training" in capsys.readouterr().err
    tofu = Path(__file__).parent / "data" / "sources" / "tofu_two_authors"
    for name, kind in (("forget01_perturbed", "forget"), ("retain99", "boundary")):
        assert rerule(["data", "convert", "tofu", str(tofu / f"{name}.json"), "--kind", kind, "--out",
                     str(tmp_path / f"{kind}.jsonl")] + (["--exclude", str(tofu / "retain_perturbed.json")]
                                                         if kind == "boundary" else [])) == 0
    assert rerule(["data", "stage2", "--forget", str(tmp_path / "forget.jsonl"), "--boundary", str(tmp_path / "boundary.jsonl"),
                 "--out", str(tmp_path / "s2.jsonl")]) == 0
    meta = read_sidecar(tmp_path / "s2.jsonl")
    assert meta["benchmark"] == "tofu" and meta["split"] == ["forget01_perturbed", "retain99"]
