"""The train / evaluation protocol of `rerule data`.

- The data routes documented in docs/data.md (every code block marked `<!-- route: NAME -->`) are run as written,
  on small fixtures in the released layouts (an RWKU target folder, MUSE-Books, TOFU), with the boundary endpoint
  a local stub; no training row they write may equal or be near an evaluation probe of the fixture.
- The overlap checker on hand-worked pairs, `--eval` refusals and `--allow_eval_overlap` in the sidecar,
  whole-batch writing, and the MUSE prompt formats against strings written out by hand.
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.data.builders import build_stage1, build_stage2, whole_batches
from openrlhf_rerule.data.convert import from_rwku
from openrlhf_rerule.data.overlap import Prompt, find_overlaps, normalise, read_prompts
from openrlhf_rerule.data.templates import apply_prompt_format, format_prompt

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(__file__).parent / "data" / "sources"
DOCS = ROOT / "docs" / "data.md"


# ---- the documented routes ---------------------------------------------------------------------------------

def documented_routes(page: Path = DOCS) -> dict[str, list[list[str]]]:
    """route name -> its commands (argv lists), from the fenced block after each `<!-- route: NAME -->`."""
    routes, lines = {}, page.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"<!-- route: (\S+) -->", line.strip())
        if not match:
            continue
        assert lines[i + 1].startswith("```"), f"{page.name}: route {match.group(1)} is not followed by a code block"
        end = lines.index("```", i + 2)
        script = "\n".join(lines[i + 2:end]).replace("\\\n", " ")
        routes[match.group(1)] = [argv for argv in (shlex.split(cmd, comments=True) for cmd in script.splitlines())
                                  if argv]
    return routes


def write_release(root: Path) -> dict[str, list[Path]]:
    """Fixtures in the released layouts under `root`; returns, per benchmark, its evaluation-only prompt files."""
    rwku = root / "RWKU" / "Target" / "1_Stephen_King"
    shutil.copytree(SOURCES / "rwku" / "7_Mira_Holt", rwku)
    muse = root / "MUSE" / "books"
    qa = {"forget_qa": [("What colour is the door of the lighthouse keeper's cottage in the harbour story?", "Blue"),
                        ("Who keeps the lighthouse on the northern cliff in the harbour story?", "Old Tamsin")],
          "retain_qa": [("Which ship brought the new doctor to the island in the harbour story?", "The Heron")],
          "forget_qa_icl": [("What is the name of the harbour town in the story?", "Port Wenna")],
          "retain_qa_icl": [("What does the ferryman carry across the bay every morning?", "Bread")]}
    for name, pairs in qa.items():
        path = muse / "knowmem" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{"question": q, "answer": a} for q, a in pairs]))
    sentences = ["The harbour woke before the gulls did, and the ferryman loaded bread for the island.",
                 "Old Tamsin climbed the stairs of the lighthouse on the northern cliff every evening at six.",
                 "The door of the keeper's cottage was painted blue, the colour of the sea in June."]
    (muse / "raw").mkdir()
    (muse / "raw" / "forget.txt").write_text(" ".join(sentences * 30))
    tofu = root / "TOFU"
    tofu.mkdir()
    shutil.copy(SOURCES / "tofu_two_authors" / "forget01_perturbed.json", tofu / "forget01_perturbed.json")
    # TOFU's layout: 20 questions per author (the retain evaluation set: one author's block)
    shutil.copy(SOURCES / "tofu_two_authors" / "retain_perturbed.json", tofu / "retain_perturbed.json")
    for name, question in (("real_authors_perturbed", "Who wrote the novel 'Pride and Prejudice'?"),
                           ("world_facts_perturbed", "What is the capital city of France?")):
        (tofu / f"{name}.json").write_text(json.dumps({"question": question, "answer": "x", "paraphrased_answer": "x",
                                                       "perturbed_answer": ["y"]}) + "\n")
    return {"rwku-own": sorted(rwku.glob("forget_level*.json")) + sorted(rwku.glob("neighbor_level*.json")),
            "muse-own": [muse / "knowmem" / "forget_qa.json", muse / "knowmem" / "retain_qa.json"],
            "tofu-own": [tofu / f"{n}.json" for n in ("retain_perturbed", "real_authors_perturbed",
                                                      "world_facts_perturbed")]}


def entity_swap_endpoint(chat_stub, monkeypatch):
    """A boundary endpoint that swaps the forget subject for "Jonas Vell" (or asks about him when the prompt does
    not name the subject), as `rerule data boundary` expects."""
    counter = []

    def reply(body):
        content = body["messages"][0]["content"]
        subject = re.search(r'is about "([^"]*)"', content).group(1)
        question = re.search(r"Original question: (.*?)\n\nReply with", content, re.S).group(1)
        counter.append(1)
        swapped = (question.replace(subject, "Jonas Vell") if subject and subject in question
                   else f"In which year did Jonas Vell publish his story number {len(counter)}?")
        return json.dumps({"entity": "Jonas Vell", "question": swapped, "answer": "In 1990."})

    monkeypatch.setenv("RERULE_BOUNDARY_BASE_URL", chat_stub(reply).url)
    monkeypatch.setenv("RERULE_BOUNDARY_API_KEY", "test")
    monkeypatch.delenv("RERULE_BOUNDARY_MODEL", raising=False)


def run_data_commands(commands, capsys) -> list[Path]:
    """Runs the `rerule data` commands of a route; returns the training files they wrote (every --out of stage1,
    stage2, convert rule, and the train/ side of convert rwku)."""
    written = []
    for argv in commands:
        assert argv[0] == "rerule", argv
        if argv[1] != "data" or argv[2] == "tiny_model":  # no training data from these
            continue
        code = rerule(argv[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{shlex.join(argv)}\n{captured.err}"
        if argv[2] in ("stage1", "stage2") or argv[2:4] == ["convert", "rule"]:
            written.append(Path(argv[argv.index("--out") + 1]))
        if argv[2:4] == ["convert", "rwku"]:
            train_side = Path(argv[argv.index("--out_dir") + 1]) / "train" / "forget.jsonl"
            if train_side.is_file():  # (the Stage 1 / Stage 2 files are checked in any case)
                written.append(train_side)
    return written


@pytest.mark.parametrize("route", ["rwku-own", "muse-own", "tofu-own"])
def test_documented_routes_never_train_on_an_evaluation_probe(route, tmp_path, monkeypatch, chat_stub, capsys):
    routes = documented_routes()
    assert route in routes, f"docs/data.md has no block marked <!-- route: {route} -->"
    probes_of = write_release(tmp_path)
    monkeypatch.chdir(tmp_path)
    entity_swap_endpoint(chat_stub, monkeypatch)
    written = run_data_commands(routes[route], capsys)
    kinds = {p.name for p in written}
    assert {"stage1.jsonl", "stage2.jsonl"} <= kinds, kinds  # the route builds both stages
    probes = [p for path in probes_of[route] for p in read_prompts(path)]
    assert probes
    for path in written:
        train = read_prompts(path)
        assert train
        assert find_overlaps(train, probes) == [], path


def test_the_old_rwku_route_is_caught(tmp_path):
    """The previous first-hour path (forget = RWKU's forget probes, boundary = its neighbour probes) trains on
    every probe; the checker must see that (the docs test above would fail on it)."""
    probes = from_rwku(SOURCES / "rwku" / "7_Mira_Holt")
    forget = [r for r in probes if r["kind"] == "forget"]
    stage1 = build_stage1(forget)
    stage2 = build_stage2(forget, [r for r in probes if r["kind"] == "neighbor"])
    probe_prompts = [Prompt("probes", i, r["prompt"]) for i, r in enumerate(probes, 1)]
    for rows in (stage1, stage2):
        hits = find_overlaps([Prompt("train", i, r["prompt"]) for i, r in enumerate(rows, 1)], probe_prompts)
        assert {h.probe.text for h in hits if h.kind == "exact"} >= {r["prompt"] for r in forget}


def test_rwku_first_hour(tmp_path, monkeypatch, chat_stub, capsys):
    """The first-hour block, as documented, to the end: data, a tiny model, Stage 1, Stage 2 (the training commands
    get small sizes appended: the last value of a flag wins)."""
    commands = documented_routes()["rwku-own"]
    write_release(tmp_path)
    monkeypatch.chdir(tmp_path)
    entity_swap_endpoint(chat_stub, monkeypatch)
    run_data_commands(commands, capsys)
    stage2 = read_jsonl("data/rwku/stage2.jsonl", "stage2")
    assert len(stage2) == 37 * 32
    assert {r["kind"] for r in stage2} == {"forget", "boundary"}
    small = {"tiny_model": ["--hidden_size", "16", "--num_layers", "1", "--num_heads", "2"],
             "stage1": ["--epochs", "1", "--no_progress", "--no_tensorboard", "--cpu_threads", "1"],
             "stage2": ["--rollout_batch", "2", "--n_samples", "2", "--max_new_tokens", "4", "--steps", "1",
                        "--no_progress", "--no_tensorboard", "--cpu_threads", "1"]}
    for argv in commands:
        if argv[1] == "data" and argv[2] == "tiny_model":
            assert rerule(argv[1:] + small["tiny_model"]) == 0
        elif argv[1] == "train":
            assert rerule(argv[1:] + small[argv[2]]) == 0, argv
    assert Path("runs/rwku_rule/final/config.json").is_file()


# ---- the overlap checker -------------------------------------------------------------------------------------

def test_normalise():
    assert normalise("  What is Stephen\tKing's  FIRST sci-fi novel? ") == "what is stephen kings first sci fi novel"
    assert normalise("Mira Holt was born in ___.") == "mira holt was born in"


def hits_of(train: str, probe: str):
    return [(h.kind, round(h.score, 4)) for h in find_overlaps([Prompt("t", 1, train)], [Prompt("e", 1, probe)])]


def test_overlap_exact_after_normalisation():
    assert hits_of("who is  the author of 'Carrie'?", "Who is the author of Carrie") == [("exact", 1.0)]
    assert hits_of("Who wrote Carrie?", "Who wrote Misery?") == []  # short texts: equality only


def test_overlap_near_by_word_8grams():
    # probe: 10 words -> 3 8-grams; all three inside the longer training prompt -> 3 / 3
    probe = "What is the title of Stephen King's first published novel?"
    assert hits_of(probe[:-1] + ", a novel about a writer who inherits a hotel?", probe) == [("near", 1.0)]
    # a 15-word probe has 8 8-grams; a 15-word training prompt that keeps its first 11 words shares the 4 8-grams
    # starting at words 1-4: 4 / 8 = 0.5, at the threshold
    probe = "Which town on the coast of Maine did the author live in as a child?"
    words = normalise(probe).split()
    assert len(words) == 15
    train = " ".join(words[:11] + ["during", "summers", "long", "ago"])
    assert hits_of(train, probe) == [("near", 0.5)]
    # one word earlier: 3 of 8 = 0.375, below the threshold
    train = " ".join(words[:10] + ["during", "summers", "long", "ago", "then"])
    assert hits_of(train, probe) == []


def test_overlap_reads_the_released_layouts(tmp_path):
    (tmp_path / "s2.json").write_text(json.dumps([{"prompt": "p one", "solution": ["<normal>", "a"]}]))
    (tmp_path / "s1.json").write_text(json.dumps([{"instruction": "q two", "input": "more", "output": "r"}]))
    (tmp_path / "level.json").write_text(json.dumps([{"query": "q three", "answer": "a"}]))
    (tmp_path / "knowmem.json").write_text(json.dumps([{"question": "q four", "answer": "a"}]))
    (tmp_path / "privleak.json").write_text(json.dumps(["text five"]))
    texts = [p.text for name in ("s2", "s1", "level", "knowmem", "privleak") for p in read_prompts(tmp_path / f"{name}.json")]
    assert texts == ["p one", "q two\nmore", "q three", "q four", "text five"]


# ---- --eval, --allow_eval_overlap, the sidecar ---------------------------------------------------------------

@pytest.fixture
def leaky(tmp_path):
    rows = [{"prompt": "Where did Mira Holt grow up as a child before moving away?", "answer": "Dunmore",
             "kind": "forget", "subject": "Mira Holt"},
            {"prompt": "Which prize did Mira Holt win?", "answer": "The Lark Prize", "kind": "forget",
             "subject": "Mira Holt"}]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "boundary.jsonl").write_text(json.dumps({"prompt": "Which prize did Jonas Vell win?", "answer": "None",
                                                         "kind": "boundary", "subject": "Jonas Vell"}) + "\n")
    (tmp_path / "probes.json").write_text(json.dumps([{"query": "Who is Mira Holt?", "answer": "a"},
                                                      {"query": "which prize did mira holt win", "answer": "b"}],
                                                     indent=1))
    return tmp_path


@pytest.mark.parametrize("command", ["stage1", "stage2"])
def test_eval_overlap_is_dropped_by_default_or_kept_and_marked(leaky, capsys, command):
    d = leaky
    argv = ["data", command, "--forget", str(d / "forget.jsonl"), "--out", str(d / "out.jsonl"),
            "--eval", str(d / "probes.json")]
    if command == "stage2":
        argv += ["--boundary", str(d / "boundary.jsonl")]
    assert rerule(argv) == 0
    err = capsys.readouterr().err
    # the forget file's line 2 equals (after casefolding and dropping "?") the probes' item 2, on line 6
    assert f"{d / 'forget.jsonl'}, line 2: training prompt equals" in err and "dropped 1 of" in err
    assert f"{d / 'probes.json'}, item 2 (line 6)" in err
    prompts = [json.loads(line)["prompt"] for line in (d / "out.jsonl").read_text().splitlines()]
    assert "Which prize did Mira Holt win?" not in prompts
    assert "Where did Mira Holt grow up as a child before moving away?" in prompts
    meta = json.loads((d / "out.jsonl.meta.json").read_text())
    assert meta["rows_dropped"] == 1 and meta["rows_overlapping"] == 1 and meta["allow_eval_overlap"] is False
    assert rerule(argv + ["--allow_eval_overlap"]) == 0
    rows = [json.loads(line) for line in (d / "out.jsonl").read_text().splitlines()]
    marked = [r["prompt"] for r in rows if r["eval_overlap"]]
    assert marked == ["Which prize did Mira Holt win?"] and all("eval_overlap" in r for r in rows)
    assert rows[[r["prompt"] for r in rows].index(marked[0])]["eval_overlap"] == f"{d / 'probes.json'}, item 2 (line 6)"
    meta = json.loads((d / "out.jsonl.meta.json").read_text())
    assert meta["allow_eval_overlap"] is True and meta["overlaps_exact"] == 1 and meta["overlaps_near"] == 0
    assert meta["rows_dropped"] == 0 and meta["rows_overlapping"] == 1
    assert meta["eval_files"] == [str(d / "probes.json")] and meta["command"] == command


def test_every_row_an_evaluation_probe_is_one_clear_error(leaky, capsys):
    d = leaky
    (d / "probes_all.json").write_text(json.dumps([{"query": "Where did Mira Holt grow up as a child before moving "
                                                             "away?"}, {"query": "Which prize did Mira Holt win?"}]))
    argv = ["data", "stage1", "--forget", str(d / "forget.jsonl"), "--out", str(d / "o.jsonl"), "--no_cloze",
            "--eval", str(d / "probes_all.json")]
    assert rerule(argv) == 2
    err = capsys.readouterr().err
    assert "every one of the 2 training rows" in err and err.count("\n") == 1 and not (d / "o.jsonl").exists()


# ---- whole batches -------------------------------------------------------------------------------------------

def test_whole_batches_use_every_row_before_repeating():
    rows = [{"prompt": f"p{i}", "label": "l", "prompt_id": f"id{i}", "kind": "forget"} for i in range(5)]
    out = whole_batches(rows, steps=3, rollout_batch=4, seed=1)
    assert len(out) == 12
    assert sorted(r["prompt_id"] for r in out[:5]) == [f"id{i}" for i in range(5)] and "repeat" not in out[0]
    assert sorted(r["prompt_id"] for r in out[5:10]) == [f"id{i}" for i in range(5)]
    assert all(r["repeat"] == 1 for r in out[5:10]) and all(r["repeat"] == 2 for r in out[10:])
    assert whole_batches(rows, 3, 4, seed=1) == out  # seeded
    short = whole_batches(rows, 1, 3, seed=1)
    assert len(short) == 3 and len({r["prompt_id"] for r in short}) == 3 and not any("repeat" in r for r in short)


def test_stage2_writes_exactly_steps_times_batch_and_warns_otherwise(leaky, capsys):
    d = leaky
    base = ["data", "stage2", "--forget", str(d / "forget.jsonl"), "--boundary", str(d / "boundary.jsonl")]
    assert rerule(base + ["--out", str(d / "a.jsonl")]) == 0
    assert "3 prompts are not a multiple of 32" in capsys.readouterr().err
    assert rerule(base + ["--out", str(d / "b.jsonl"), "--steps", "4", "--rollout_batch", "2"]) == 0
    rows = read_jsonl(d / "b.jsonl", "stage2")  # the validator accepts the marked repeats
    assert len(rows) == 8 and len({r["prompt_id"] for r in rows}) == 3
    assert {r["prompt_id"] for r in rows[:3]} == {r["prompt_id"] for r in rows}
    assert [r["repeat"] for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2]  # every row has the field (datasets' reader)
    assert json.loads((d / "b.jsonl.meta.json").read_text())["steps"] == 4


def test_an_unmarked_repeat_is_still_a_duplicate(tmp_path):
    row = {"prompt": "p", "label": json.dumps(["<normal>", "a"]), "prompt_id": "x", "kind": "boundary"}
    (tmp_path / "s.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(dict(row, repeat=1)) + "\n"
                                      + json.dumps(row) + "\n")
    with pytest.raises(Exception, match="line 3, field 'prompt_id': duplicate of line 1"):
        read_jsonl(tmp_path / "s.jsonl", "stage2")


# ---- prompt formats ------------------------------------------------------------------------------------------

ICL = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
RETAIN_ICL = [{"question": "R1?", "answer": "B1"}]


def test_rule_muse_prompt_strings():
    assert format_prompt("Who?", "qa", "Question: Q1?\nAnswer: A1\n\n", "<s>") == \
        "<s>Question: Q1?\nAnswer: A1\n\nQuestion: Who?\nAnswer: "
    assert format_prompt("It was a dark night", "completion", "ignored", "<s>") == \
        "<s>Completion: It was a dark night\nAnswer: "
    rows = [{"prompt": "Who?", "label": json.dumps(["<reject>", "no"])},
            {"prompt": "Where?", "label": json.dumps(["<normal>", "here"])}]
    tag = lambda row: json.loads(row["label"])[0]  # noqa: E731
    one = apply_prompt_format(rows, "rule_muse", ICL, bos="<s>", label_of=tag)
    assert [r["prompt"] for r in one] == [
        "<s>Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Who?\nAnswer: ",
        "<s>Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Where?\nAnswer: "]
    leak = apply_prompt_format(rows, "rule_muse_label_leak", ICL, RETAIN_ICL, bos="<s>", label_of=tag)
    assert [r["prompt"] for r in leak] == [
        "<s>Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Who?\nAnswer: ",
        "<s>Question: R1?\nAnswer: B1\n\nQuestion: Where?\nAnswer: "]
    assert apply_prompt_format(rows, "plain") is rows


def test_prompt_format_flags(leaky, capsys):
    d = leaky
    (d / "icl.json").write_text(json.dumps(ICL))
    base = ["data", "stage1", "--forget", str(d / "forget.jsonl"), "--out", str(d / "s1.jsonl"), "--no_cloze"]
    assert rerule(base + ["--prompt_format", "rule_muse"]) == 2
    assert "--icl" in capsys.readouterr().err
    assert rerule(base + ["--prompt_format", "rule_muse", "--icl", str(d / "icl.json")]) == 0
    rows = read_jsonl(d / "s1.jsonl", "stage1")
    assert rows[0]["prompt"] == ("<s>Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\n"
                                 "Question: Where did Mira Holt grow up as a child before moving away?\nAnswer: ")


def test_one_prompt_format_for_training_and_evaluation(monkeypatch):
    """The MUSE evaluation builds its prompts with the same functions as the training data: KnowMem's 10-shot prompt
    is the rule_muse training prompt (BOS aside: the evaluation tokenizes with special tokens), and under
    `rerule eval muse --prompt_format rule_muse` VerbMem's is the completion row's, cut at the first newline."""
    from openrlhf_rerule.eval import muse

    trained = apply_prompt_format([{"prompt": "Who?"}], "rule_muse", ICL, bos="", label_of=lambda row: "<reject>")
    assert muse.knowmem_prompt("Who?", ICL) == trained[0]["prompt"]
    assert muse.verbmem_prompt("It was late", "rule_muse") == "Completion: It was late\nAnswer: "
    assert muse.verbmem_prompt("It was late", "muse") == "It was late"

    class Tokenizer:
        def __call__(self, text, add_special_tokens):
            return {"input_ids": text.split()}

        def decode(self, ids, skip_special_tokens):
            return " ".join(ids)

    seen = []
    monkeypatch.setattr(muse, "generate", lambda lm, prompts, *a, **k: seen.extend(prompts) or ["the end\nmore"])
    lm = type("LM", (), {"tokenizer": Tokenizer()})()
    _, items = muse._verbmem(lm, [{"prompt": "It was late", "gt": "the end"}], 8, "rule_muse")
    assert seen == ["Completion: It was late\nAnswer: "] and items[0]["output"] == "the end"
    assert items[0]["rougeL_f1"] == pytest.approx(1.0)
