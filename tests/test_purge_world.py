"""PURGE in the synthetic world: the entity lists and Stage 2 rows of `build_world(purge=True)`, the term metrics
of `rerule demo --purge`, and its wiring (a reduced run)."""

import hashlib
import json

import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.data.purge import read_terms
from openrlhf_rerule.data.world import build_world, vocabulary
from openrlhf_rerule.experiments import purge_arms
from openrlhf_rerule.experiments.demo import STAGE1_DATA, WORLD
from openrlhf_rerule.rewards import purge_label, purge_reward

# sha256 over the demo's world 0 (every .jsonl path and its bytes, sorted), computed with the code before PURGE
# existed (commit 2bd9c72): purge=False must leave every file as it was.
WORLD0_DIGEST = "78799ce62dbfe3217143a0627247400704d664d6970ee7e7605258829df08662"


def digest(root, skip_purge=True):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        rel = str(path.relative_to(root))
        if not (skip_purge and rel.startswith("purge/")):
            h.update(rel.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_purge_only_adds_files_and_leaves_the_tokenizer_texts_alone(tmp_path):
    plain = build_world(seed=0, **WORLD, **STAGE1_DATA)
    with_purge = build_world(seed=0, **WORLD, **STAGE1_DATA, purge=True)
    plain.write(tmp_path / "plain")
    written = with_purge.write(tmp_path / "purge")
    assert digest(tmp_path / "plain", skip_purge=False) == WORLD0_DIGEST
    assert digest(tmp_path / "purge") == WORLD0_DIGEST
    assert sorted(r for r in written if r.startswith("purge/")) == sorted(
        ["purge/stage2.jsonl"] + [f"purge/entities/{p.name.replace(' ', '_')}.json" for p in with_purge.group("forget")])
    # The tiny tokenizer is built from all_texts (ids follow word counts): the same texts, the same models.
    assert with_purge.all_texts() == plain.all_texts()
    purge_rows = with_purge.files["purge/stage2.jsonl"][0]
    purge_words = vocabulary([r["prompt"] for r in purge_rows] + [t for r in purge_rows for t in json.loads(r["label"])[1:]])
    assert purge_words <= vocabulary(plain.all_texts())


def test_entity_lists_and_stage2_rows(tmp_path):
    world = build_world(seed=3, num_forget=2, num_boundary=3, num_retain=1, purge=True)
    world.write(tmp_path)
    rows = read_jsonl(tmp_path / "purge" / "stage2.jsonl", "stage2")
    assert len(rows) == 2 * 8  # 4 questions + 4 fill-in-the-blank statements per forget person
    for person in world.group("forget"):
        n = person.name
        terms = [n, person.city, person.profession, person.employer, person.book]  # name first, then the values
        assert world.entities[n] == terms
        assert read_terms(tmp_path / "purge" / "entities" / f"{n.replace(' ', '_')}.json") == terms
        mine = [r for r in rows if r["target"] == n]
        assert [r["prompt"] for r in mine] == [
            f"where was {n} born?", f"what is the job of {n}?", f"who does {n} work for?", f"what book did {n} write?",
            f"{n} was born in ___.", f"{n} works as a ___.", f"{n} works for ___.", f"{n} wrote the book ___."]
        assert {r["label"] for r in mine} == {json.dumps(["<purge>", n, *terms])}
        assert {r["kind"] for r in mine} == {"forget"} and len({r["prompt_id"] for r in mine}) == 8
    # Only the forget people have lists; their rows never carry a boundary or retain person's name.
    assert set(world.entities) == {p.name for p in world.group("forget")}


def test_data_world_command_writes_them_with_purge(tmp_path, capsys):
    assert rerule(["data", "world", "--out", str(tmp_path), "--num_forget", "2", "--num_boundary", "1",
                   "--num_retain", "1", "--purge"]) == 0
    out = capsys.readouterr().out
    assert "purge/stage2.jsonl (16 rows, role training)" in out and out.count("terms, role training)") == 2
    assert len([p for p in (tmp_path / "purge" / "entities").glob("*.json") if not p.name.endswith(".meta.json")]) == 2


def test_boundary_people_against_their_forget_twin_list():
    world = build_world(seed=0, num_forget=3, num_boundary=3, num_retain=0, purge=True)
    forget = {p.name: p for p in world.group("forget")}
    for b in world.group("boundary"):
        twin = forget[b.confused_with]
        label = purge_label(twin.name, world.entities[twin.name])
        if b.shares == "city":  # the boundary person's true answer names a forbidden term: it would score 0
            r = purge_reward(f"{b.name} was born in {b.city}.", label)
            assert (r.reward, r.mentioned) == (0.0, twin.city)
        elif b.shares == "employer":
            r = purge_reward(f"{b.name} works for {b.employer}.", label)
            assert (r.reward, r.mentioned) == (0.0, twin.employer)
        else:  # a shared surname is no hit: the name is one two-word term
            assert b.name.split()[1] == twin.name.split()[1] and b.name != twin.name
            assert purge_reward(f"{b.name} wrote the book {b.book}.", label).reward == 1.0
            assert purge_reward(f"{twin.name.split()[1]} wrote it.", label).reward == 1.0


def test_term_metrics_of_greedy_answers(tmp_path, monkeypatch):
    world = build_world(seed=1, num_forget=1, num_boundary=3, num_retain=2, purge=True)
    world.write(tmp_path)
    (p,) = world.group("forget")
    eval_rows = {s: read_jsonl(tmp_path / "eval" / f"{s}.jsonl", "eval") for s in ("forget", "boundary", "retain",
                                                                                 "heldout")}
    forget_answers = [f"i do not know about {p.name} .", f"{p.city} .", f"THE {p.book.upper()}!"] + \
        ["i do not know about that ."] * 5  # a refusal naming the person, two values (case ignored), five clean
    heldout_answers = [f"{p.name} works as a {p.profession} ." if r["kind"] == "forget" else "x" for r in
                       eval_rows["heldout"]]
    correct = {s: [i % 2 == 0 for i in range(len(rows))] for s, rows in eval_rows.items()}

    def fake_evaluate(model_dir, world_dir, device):
        return {"metrics": {}, "answers": {"forget": forget_answers, "heldout": heldout_answers,
                                           "boundary": [], "retain": []}, "correct": correct}

    monkeypatch.setattr(purge_arms, "evaluate_model", fake_evaluate)
    m = purge_arms.evaluate_with_terms("unused", tmp_path, "cpu")
    assert m["terms"] == {"forget_mention_rate": 3 / 8, "forget_value_mention_rate": 2 / 8,
                          "heldout_forget_mention_rate": 1.0, "heldout_forget_value_mention_rate": 1.0}
    # Forbidden values: those on the forget person's list; every boundary / retain question about one counts.
    forbidden = {p.city, p.profession, p.employer, p.book}
    hit, other = [], []
    for split in ("boundary", "retain"):
        for row, ok in zip(eval_rows[split], correct[split]):
            person = next(q for q in world.people if q.name == row["subject"])
            (hit if getattr(person, row["attribute"]) in forbidden else other).append(ok)
    assert hit, "world 1 has a boundary person sharing a city or employer"
    assert m["collateral"] == {"forbidden_value_accuracy": sum(hit) / len(hit), "forbidden_value_n": len(hit),
                               "other_value_accuracy": sum(other) / len(other), "other_value_n": len(other)}


@pytest.mark.slow
def test_reduced_demo_with_purge_arms(tmp_path):
    from openrlhf_rerule.experiments.demo import main
    from openrlhf_rerule.local.metrics import read_log

    # One world, two seeds, 10 steps; replay may start after step 2 once 16 groups are stored (all arms' setting).
    assert main(["--out", str(tmp_path), "--worlds", "1", "--seeds", "2", "--steps", "10", "--progress", "false",
                 "--purge", "--replay.warmup_steps", "2", "--replay.min_groups", "16"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    purge = report["purge"]
    assert purge["unit"] == "seed" and set(purge["arms"]) == {"purge", "purge_replay", "purge_replay_variance"}
    runs = tmp_path / "world0" / "stage2"
    for arm in purge["arms"]:
        for seed in (0, 1):
            rows = read_log(runs / arm / f"seed{seed}" / "metrics.jsonl")
            assert len(rows) == 10 and all("rollout/mention_rate_forget" in r for r in rows)
            assert not any("rollout/reward_boundary" in r for r in rows)  # forget prompts only
            assert all(r["rollout/mention_rate_forget"] == pytest.approx(1 - r["rollout/reward_forget"]) for r in rows)
            # From the pretrained model, which never refuses (RULE starts from Stage 1, which refuses the forget side).
            assert rows[0]["rollout/refusal_rate_forget"] <= 0.1
            if arm != "purge":
                stored = [r["replay/buffer_stored_zero_variance_frac"] for r in rows
                          if "replay/buffer_stored_zero_variance_frac" in r]
                if arm == "purge_replay_variance":
                    assert all(v == 0.0 for v in stored)  # require_variance never stores an all-equal group
                else:
                    assert stored and max(stored) > 0  # all-fail groups are stored without it
    assert read_log(runs / "rule" / "seed0" / "metrics.jsonl")[0]["rollout/refusal_rate_forget"] >= 0.8
    tr = purge["training"]
    assert tr["purge_replay"]["buffer_admitted_total"]["n"] == 2 and "buffer_admitted_total" not in tr["purge"]
    for arm in purge["arms"]:
        zv, fail, passed = (tr[arm][k]["values"] for k in ("zero_variance_frac", "all_fail_frac", "all_pass_frac"))
        assert zv == pytest.approx([f + a for f, a in zip(fail, passed)])  # binary: equal rewards = all 0 or all 1
    ev = purge["evaluation"]
    # The pretrained model names a forget person's values in nearly every answer; Stage 1 refuses instead.
    assert ev["pretrained"]["terms"]["forget_value_mention_rate"]["mean"] >= 0.9
    assert ev["stage1"]["terms"]["forget_value_mention_rate"]["mean"] <= 0.2
    assert ev["purge"]["forget"]["accuracy"]["n"] == 2 and len(purge["differences"]) == 3
    text = (tmp_path / "report.md").read_text()
    assert "## PURGE beside RULE and ReRULE" in text and "| PURGE+replay |" in text
    assert (tmp_path / "plots" / "purge_arms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pagerank_data_matches_the_data_commands(tmp_path, capsys):
    """`rerule demo --purge --purge_reward pagerank` weighs each forget person's terms with the model PURGE starts
    from: the same labels as `rerule data purge weights` + `rerule data purge stage2 --weights` make from the world's
    files, and purge_pagerank charges the weights of the terms named."""
    from openrlhf_rerule.local.tiny import save_tiny_model
    from openrlhf_rerule.rewards import make_scorer

    world = build_world(seed=1, num_forget=2, num_boundary=1, num_retain=1, purge=True)
    world.write(tmp_path / "world")
    model = save_tiny_model(world.all_texts(), tmp_path / "model", hidden_size=32, num_layers=1, num_heads=2)
    purge_arms.write_pagerank_data(tmp_path / "world", model)
    rows = read_jsonl(tmp_path / "world" / purge_arms.PAGERANK_DATA, "stage2")
    plain = read_jsonl(tmp_path / "world" / purge_arms.DATA, "stage2")
    assert [{k: v for k, v in r.items() if k != "label"} for r in rows] == [
        {k: v for k, v in r.items() if k != "label"} for r in plain]
    score = make_scorer("purge_pagerank")
    for person in world.group("forget"):
        n, entities = person.name, tmp_path / "world" / "purge" / "entities" / f"{person.name.replace(' ', '_')}.json"
        questions = tmp_path / f"{n}.jsonl"
        questions.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in plain if r["target"] == n))
        assert rerule(["data", "purge", "weights", "--entities", str(entities), "--target", n, "--model", str(model),
                       "--out", str(tmp_path / f"{n}.weights.json")]) == 0
        assert rerule(["data", "purge", "stage2", "--questions", str(questions), "--entities", str(entities),
                       "--weights", str(tmp_path / f"{n}.weights.json"), "--out", str(tmp_path / f"{n}.stage2.jsonl")]) == 0
        theirs = read_jsonl(tmp_path / f"{n}.stage2.jsonl", "stage2")
        mine = [r for r in rows if r["target"] == n]
        assert [r["label"] for r in mine] == [r["label"] for r in theirs]
        items = json.loads(mine[0]["label"])
        weights = dict(zip(items[2:items.index("<pagerank>")], items[items.index("<pagerank>") + 1:]))
        assert list(weights) == [n, person.city, person.profession, person.employer, person.book]
        assert score(f"born in {person.city}, works for {person.employer}.", mine[0]["label"]).reward == \
            pytest.approx(max(0.0, 1 - weights[person.city] - weights[person.employer]))
        assert score("nothing to say.", mine[0]["label"]).reward == 1.0


def test_purge_reward_needs_purge(tmp_path, capsys):
    from openrlhf_rerule.experiments.demo import main

    assert main(["--out", str(tmp_path / "out"), "--purge_reward", "exp_decay"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--purge_reward exp_decay without --purge" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("reward", ["exp_decay", "pagerank"])
def test_reduced_demo_with_a_graded_purge_reward(tmp_path, reward):
    """The PURGE arms train with the graded reward they are given (every reward one the definition allows for the
    prompt's label); a rerun with another reward is refused."""
    import itertools
    import math

    from openrlhf_rerule.experiments.demo import main
    from openrlhf_rerule.local.metrics import read_log

    argv = ["--out", str(tmp_path), "--worlds", "1", "--seeds", "1", "--steps", "3", "--progress", "false",
            "--purge", "--purge_reward", reward, "--replay.warmup_steps", "1", "--replay.min_groups", "4"]
    assert main(argv) == 0
    purge = json.loads((tmp_path / "report.json").read_text())["purge"]
    assert purge["reward"] == reward and {a["reward_variant"] for a in purge["arms"].values()} == {f"purge_{reward}"}
    world = tmp_path / "world0" / "world"
    labels = {r["prompt_id"]: r["label"] for r in read_jsonl(world / purge_arms.overrides(reward)["data"], "stage2")}
    for arm in purge["arms"]:
        run = tmp_path / "world0" / "stage2" / arm / "seed0"
        history = read_log(run / "reward_history.jsonl")
        assert len(read_log(run / "metrics.jsonl")) == 3 and history
        for group in history:
            if reward == "exp_decay":  # e^-m: m counts every mention (findall), so a whole number of them
                possible = [math.exp(-m) for m in range(40)]
            else:  # 1 - the weights of the distinct terms named, clamped at 0: one value per subset of the terms
                items = json.loads(labels[group["prompt_id"]])
                weights = items[items.index("<pagerank>") + 1:]
                possible = [max(0.0, 1 - sum(w for w, bit in zip(weights, mask) if bit))
                            for mask in itertools.product((0, 1), repeat=len(weights))]
            assert all(min(abs(r - p) for p in possible) < 1e-6 for r in group["rewards"]), (group, possible)
    values = {r for arm in purge["arms"] for g in read_log(tmp_path / "world0" / "stage2" / arm / "seed0" /
                                                         "reward_history.jsonl") for r in g["rewards"]}
    assert values - {0.0, 1.0}, values
    assert f"`--reward_variant purge_{reward}`" in (tmp_path / "report.md").read_text()
    other = "exp_decay" if reward == "pagerank" else "pagerank"
    assert main([*argv[:-6], "--purge_reward", other, *argv[-4:]]) == 2  # another reward: other settings, refused
