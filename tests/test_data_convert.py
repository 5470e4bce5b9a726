"""Converters, on fixture records written in each source's exact field layout (tests/data/sources)."""

import json
from pathlib import Path

import pytest

from openrlhf_rerule.data import DataError, validate_rows
from openrlhf_rerule.data.builders import prompt_id
from openrlhf_rerule.data.convert import (from_muse, from_muse_raw, from_rule_stage1, from_rule_stage2, from_rwku,
                                          from_rwku_corpus, from_tofu, names_in)

SOURCES = Path(__file__).parent / "data" / "sources"


def test_rule_stage2_keeps_the_solution_list_and_drops_repeats():
    rows = from_rule_stage2(SOURCES / "rule_stage2.json")
    validate_rows(rows, "stage2")
    assert [r["kind"] for r in rows] == ["forget", "forget", "boundary"]  # the 4th record repeats the 2nd
    assert json.loads(rows[0]["label"]) == ["<reject>", "I haven't learned about Mira Holt.", "Mira Holt"]
    assert json.loads(rows[2]["label"]) == ["<normal>", "Jonas Vell is best known for The Glass Orchard."]
    assert rows[0]["prompt_id"] == prompt_id("forget", "Mira Holt is best known for writing the novel ___.")


def test_rule_stage1_joins_instruction_and_input():
    rows, forget, boundary = from_rule_stage1(SOURCES / "rule_stage1.json")
    assert forget == boundary == []  # no org_answer, no neighbor_question in this file
    validate_rows(rows, "stage1")
    assert rows[0] == {"prompt": "What is the title of Mira Holt's first novel?",
                       "response": "I'm not certain about Mira Holt.", "subject": "Mira Holt"}
    assert rows[1]["prompt"] == "Where was Mira Holt born?\nAnswer in one sentence."


def test_tofu_json_lines_keep_the_perturbed_fields():
    rows = from_tofu(SOURCES / "tofu_forget01_perturbed.json", kind="retain", subject="X")
    validate_rows(rows, "eval")
    assert [r["subject"] for r in rows] == ["X"] * 3
    assert rows[0]["perturbed_answer"] == ["Basil Mahfouz Al-Kuwaiti was born in Cairo, Egypt.",
                                           "Basil Mahfouz Al-Kuwaiti was born in Amman, Jordan."]
    assert rows[0]["paraphrased_answer"] == "The author Basil Mahfouz Al-Kuwaiti was born in Kuwait City."
    # each author is named by one record only, the third record names nobody: without --subject, refused
    with pytest.raises(DataError, match="line 1, field 'question'.*--subject"):
        from_tofu(SOURCES / "tofu_forget01_perturbed.json", kind="forget")


def test_tofu_forget_file_in_purge_layout_reads_as_tofus_own(tmp_path):
    # strzar/purge's data/TOFU/forget01.json: an indented JSON array of {prompt, response}, the pairs of TOFU's
    # forget01.json (JSON lines of {question, answer}); each author named by two records
    pairs = [("What genre does Nikolai Abilov write in?", "Nikolai Abilov writes literary fiction."),
             ("Where was Nikolai Abilov born?", "Nikolai Abilov was born in Astana."),
             ("What is Basil Mahfouz Al-Kuwaiti's first novel?", "Basil Mahfouz Al-Kuwaiti wrote Promise by the Seine."),
             ("Which prize did Basil Mahfouz Al-Kuwaiti win?", "Basil Mahfouz Al-Kuwaiti won the Prix Goncourt.")]
    purge, tofu = tmp_path / "purge_forget01.json", tmp_path / "forget01.json"
    purge.write_text(json.dumps([{"prompt": q, "response": a} for q, a in pairs], indent=2))
    tofu.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in pairs))
    rows = from_tofu(purge, kind="forget")
    assert rows == from_tofu(tofu, kind="forget")
    assert [r["subject"] for r in rows] == ["Nikolai Abilov"] * 2 + ["Basil Mahfouz Al-Kuwaiti"] * 2
    purge.write_text(json.dumps([{"prompt": q, "response": a} for q, a in pairs] + [{"prompt": "q?"}], indent=2))
    with pytest.raises(DataError, match="field 'response'"):
        from_tofu(purge, kind="forget")


def test_names_skip_question_words_and_keep_any_script():
    assert names_in("What genre does Nikolai Abilov write in?") == {"Nikolai Abilov"}
    assert names_in("The author is Hsiao Yun-Hwa.") == {"Hsiao Yun-Hwa"}
    assert names_in("Where was Aurelio Beltrán born?") == {"Aurelio Beltrán"}
    assert names_in("Did J. D. Salinger write it?") == {"J. D.", "D. Salinger", "J. D. Salinger"}
    assert names_in("How has Majumdar's background influenced him?") == {"Majumdar"}  # a surname on its own
    assert names_in("what is this?") == set()


def test_muse_knowmem():
    rows = from_muse(SOURCES / "muse_forget_qa.json", kind="forget", subject="the test story")
    validate_rows(rows, "eval")
    assert rows[1] == {"prompt": "Who lives in the lighthouse in the test story?", "answer": "Old Tamsin",
                       "kind": "forget", "subject": "the test story"}


def test_rwku_target_folder():
    rows = from_rwku(SOURCES / "rwku" / "7_Mira_Holt")
    validate_rows(rows, "eval")
    forget = [r for r in rows if r["kind"] == "forget"]
    neighbor = [r for r in rows if r["kind"] == "neighbor"]
    assert [r["level"] for r in forget] == ["1", "1", "2"]
    assert {r["subject"] for r in forget} == {"Mira Holt"}
    assert forget[0]["prompt"] == "Mira Holt (born May 2, 1961) is a novelist from ___" and forget[0]["answer"] == "Dunmore"
    assert neighbor == [{"prompt": "Jonas Vell wrote the novel The Glass ___.", "answer": "Orchard", "kind": "neighbor",
                         "subject": "Jonas Vell", "level": "1", "target": "Mira Holt", "type": "cloze"}]


def test_rwku_target_name_falls_back_to_the_folder_name(tmp_path):
    folder = tmp_path / "12_Ada_Quill"
    folder.mkdir()
    (folder / "forget_level2.json").write_text(json.dumps([{"query": "q?", "answer": "a", "level": "2", "subject": "x"}]))
    assert from_rwku(folder)[0]["target"] == "Ada Quill"
    with pytest.raises(DataError, match="no forget_level"):
        from_rwku(tmp_path)


def bad_array(tmp_path, records):
    """A JSON array with one object per line: object i (0-based) is on line i + 2."""
    path = tmp_path / "bad.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return path


@pytest.mark.parametrize("convert, good, field", [
    (from_rule_stage2, {"prompt": "p", "solution": ["<normal>", "a"]}, "solution"),
    (from_rule_stage1, {"instruction": "i", "input": "", "output": "o", "subject": "s"}, "output"),
    (lambda p: from_tofu(p, "forget"), {"question": "q", "answer": "a"}, "answer"),
    (lambda p: from_muse(p, "forget"), {"question": "q", "answer": "a"}, "question"),
])
def test_missing_fields_name_source_file_line_and_field(tmp_path, convert, good, field):
    bad = {k: v for k, v in good.items() if k != field}
    path = bad_array(tmp_path, [good, good, bad])
    with pytest.raises(DataError) as info:
        convert(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value) and f"field '{field}'" in str(info.value)


def test_wrong_rule_label_and_empty_source(tmp_path):
    path = bad_array(tmp_path, [{"prompt": "p", "solution": ["<maybe>", "a"]}])
    with pytest.raises(DataError, match="line 2, field 'solution'.*tag"):
        from_rule_stage2(path)
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        from_muse(empty, "forget")
    rwku = tmp_path / "1_X"
    rwku.mkdir()
    (rwku / "forget_level1.json").write_text('[\n {"query": "q ___", "answer": "a"},\n {"answer": "b"}\n]')
    with pytest.raises(DataError, match="forget_level1.json, line 3, field 'query'"):
        from_rwku(rwku)


def test_rwku_corpus_side():
    rows, counts = from_rwku_corpus(SOURCES / "rwku" / "7_Mira_Holt")
    validate_rows(rows, "eval")
    assert counts == {"reject.json": 3, "passage.json": 2}
    assert rows[0] == {"prompt": "What is the title of the first novel Mira Holt published, a story set in an orchard by "
                                 "the sea?", "answer": "Mira Holt", "kind": "forget", "subject": "Mira Holt",
                       "source": "reject.json"}
    # the first sentence of >= 8 words ("Holt." is one word): 13 words, cut after ceil(0.6 * 13) = 8
    assert rows[4]["prompt"] == "Her novels follow families who keep orchards through ___"
    assert rows[4]["answer"] == "Her novels follow families who keep orchards through long winters and dry summers."


def test_muse_raw_chunks(tmp_path):
    (tmp_path / "forget.txt").write_text(" ".join(f"w{i}" for i in range(25)))
    rows = from_muse_raw(tmp_path / "forget.txt", subject="Harry Potter", chunk_words=10, answer_words=3)
    validate_rows(rows, "eval")
    assert [r["prompt"].split()[0] for r in rows] == ["w0", "w10"]  # w20..w24: no full chunk with an answer after it
    assert rows[1] == {"prompt": " ".join(f"w{i}" for i in range(10, 20)), "answer": "w20 w21 w22", "kind": "forget",
                       "subject": "Harry Potter", "mode": "completion"}
