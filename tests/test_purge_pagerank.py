"""PURGE's PageRank-weighted reward (purge_pagerank) as the authors' src/rewards/pagerank.py (github strzar/purge
24d1a3f) defines it: the weights on graphs small enough to solve by hand, the reward on hand-picked texts, and
`rerule data purge weights` / `stage2 --weights` with their error paths. Every expected value is worked out here
from their code's definition, not read back from ours."""

import json
import math

import numpy as np
import pytest

from openrlhf_rerule.cli import main as rerule
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.local.metrics import read_log
from openrlhf_rerule.local.tiny import save_tiny_model
from openrlhf_rerule.rewards import LabelError, make_scorer, purge_label
from openrlhf_rerule.rewards.purge import purge_weights
from openrlhf_rerule.rewards.purge_pagerank import forget_set, pagerank_weights, similarity_edges
from openrlhf_rerule.rewards.variants import check_label_fits

ALPHA = 0.85  # networkx's default damping, which pagerank.py:111 keeps


def path_weights(dangling: bool) -> dict:
    """Personalized PageRank on the path A - B - C from A (plus D with no edge when `dangling`), solved by hand.
    x_D = 0 (nothing links to D and the teleport goes to A; D's own mass goes back to A, networkx's default for
    dangling nodes). x_C = a x_B / 2, x_B = a (x_A + x_C), so x_B = a / (1 - a^2 / 2) x_A; the scores' scale
    cancels in the min-max normalisation: max is B, min is D (0) or C."""
    b = ALPHA / (1 - ALPHA ** 2 / 2)  # x_B / x_A
    c = ALPHA / 2 * b                 # x_C / x_A
    low = 0.0 if dangling else c
    weights = {"A": (1 - low) / (b - low), "B": 1.0, "C": (c - low) / (b - low)}
    return {**weights, "D": 0.0} if dangling else weights


def test_three_terms_the_quantile_counts_the_diagonal():
    """cos(A, B) = 2/sqrt(5) = 0.894, cos(B, C) = 1/sqrt(5) = 0.447, cos(A, C) = 0. Over the whole 3 x 3 matrix
    (diagonal -1): sorted -1 -1 -1 0 0 .447 .447 .894 .894, the 0.75 quantile is element 6 = .447, so A-B and B-C
    are edges. Without the diagonal the quantile would be .447 + .75 (.894 - .447) = .782: A-B only."""
    embeddings = np.array([[1, 0], [2, 1], [0, 1]], dtype=np.float32)
    assert similarity_edges(embeddings).tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    result = pagerank_weights("A", ["B", "C"], embeddings)
    assert result["terms"] == ["A", "B", "C"] and result["edges"] == 2
    expected = path_weights(dangling=False)  # A 0.568, B 1, C 0: the target is not the heaviest term
    assert result["weights"] == pytest.approx([expected[t] for t in "ABC"], abs=1e-5)  # networkx stops at tol 1e-6


def test_four_terms_an_isolated_term_weighs_nothing():
    """A = e1, B = e1 + e2, C = e2, D = e3: cos .707 for A-B and B-C, 0 elsewhere. Sorted 16 entries: four -1,
    eight 0, four .707; the 0.75 quantile is 0 + .25 (.707 - 0) = .177, so A-B and B-C are edges, D is alone."""
    embeddings = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    result = pagerank_weights("A", ["B", "C", "D"], embeddings)
    expected = path_weights(dangling=True)  # A 0.751, B 1, C 0.425, D 0
    assert result["edges"] == 2
    assert result["weights"] == pytest.approx([expected[t] for t in "ABCD"], abs=1e-5)
    assert result["weights"][3] == 0.0 and result["weights"][1] == 1.0  # min and max are exact


def test_the_forget_set_puts_the_target_first_and_keeps_other_repeats():
    # base.py:53-59: exact copies of the target dropped, the target prepended; other repeats stay (then one node)
    assert forget_set("Ann Lee", ["Lee", "Ann Lee", "ann lee", "Lee"]) == ["Ann Lee", "Lee", "ann lee", "Lee"]
    embeddings = np.array([[1, 0], [0, 1], [1, 1], [0, 1]], dtype=np.float32)
    result = pagerank_weights("Ann Lee", ["Lee", "ann lee", "Lee"], embeddings)
    assert result["terms"][1] == result["terms"][3] == "Lee" and result["weights"][1] == result["weights"][3]
    with pytest.raises(ValueError, match="3 embeddings for 4 terms"):
        pagerank_weights("Ann Lee", ["Lee", "ann lee", "Lee"], embeddings[:3])


WEIGHTED = purge_label("Stephen King", ["Stephen King", "Carrie", "Derry", "King"], [1.0, 0.4, 0.35, 0.1])


@pytest.mark.parametrize("text, reward", [
    ("Nothing to say about that.", 1.0),                         # no term
    ("Carrie was a debut.", 1.0 - 0.4),                          # one term
    ("carrie, Carrie and CARRIE.", 1.0 - 0.4),                   # a term found counts once, any case
    ("Carrie's town is Derry-like.", 1.0 - (0.4 + 0.35)),        # two terms, summed in list order; ' and - bound
    ("The Kingdom of Derryfield.", 1.0),                         # inside a longer word: no \b
    ("King_Derry", 1.0),                                         # _ is a word character
    ("Stephen King wrote it.", 0.0),                             # 1.0 + 0.1 (King alone too): clamped at 0
    ("The king of Derry.", 1.0 - (0.1 + 0.35)),
    ("Stephen  King", 1.0 - 0.1),                                # two spaces: only King
])
def test_the_reward_is_one_minus_the_weights_of_the_terms_found(text, reward):
    result = make_scorer("purge_pagerank")(text, WEIGHTED)
    assert result.reward == reward  # the same float: their sum starts at 0.0 and adds in the list's order
    assert (result.mentioned is None) == (reward == 1.0)


def test_a_repeated_term_counts_twice_and_other_variants_ignore_the_weights():
    label = purge_label("T", ["T", "X", "X"], [1.0, 0.3, 0.3])  # their loop visits X twice (pagerank.py:194-198)
    assert make_scorer("purge_pagerank")("an X here", label).reward == 1.0 - (0.3 + 0.3)
    assert make_scorer("purge_binary")("an X here", label).reward == 0.0
    assert make_scorer("purge_exp_decay")("X and X", label).reward == math.e ** -2


@pytest.mark.parametrize("label, words", [
    (purge_label("T", ["T", "X"]), "needs a label with weights"),
    (json.dumps(["<purge>", "T", "T", "X", "<pagerank>", 1.0]), "one weight in [0, 1] per term (2 terms, 1 values)"),
    (json.dumps(["<purge>", "T", "T", "X", "<pagerank>", 1.0, 1.5]), "one weight in [0, 1]"),
    (json.dumps(["<purge>", "T", "T", "X", "<pagerank>", 1.0, "0.5"]), "one weight in [0, 1]"),
    (json.dumps(["<purge>", "T", "T", "X", "<pagerank>", 1.0, True]), "one weight in [0, 1]"),
    (json.dumps(["<purge>", "T", "<pagerank>"]), "at least one term"),
])
def test_labels_purge_pagerank_cannot_score_are_refused(label, words):
    with pytest.raises(LabelError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_label_fits("purge_pagerank", label)


def test_weights_round_trip_through_the_label_exactly():
    weights = [1.0, 0.1 + 0.2, 1 / 3, 0.0]
    terms, back = purge_weights(purge_label("A", ["A", "B", "C", "D"], weights))
    assert terms == ("A", "B", "C", "D") and list(back) == weights


# ---- rerule data purge weights / stage2 --weights -----------------------------------------------------------------
@pytest.fixture(scope="module")
def target(tmp_path_factory):
    root = tmp_path_factory.mktemp("pr")
    (root / "fts.json").write_text(json.dumps(["Mira Holt", "Salt Orchard", "Dunmore", "Greyline Press"]))
    (root / "reject_phi.json").write_text(json.dumps([{"subject": "Mira Holt", "instruction": q} for q in (
        "Where is Mira Holt from, and", "What did Mira Holt write about")]))
    model = save_tiny_model(["mira holt wrote the salt orchard in dunmore for greyline press"], root / "model",
                            hidden_size=16, num_layers=1, num_heads=2)
    return root, str(model)


def run(argv, capsys):
    code = rerule(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_weights_then_stage2_carry_the_weights_in_every_label(target, capsys, one_torch_thread):
    root, model = target
    code, out, err = run(["data", "purge", "weights", "--entities", str(root / "fts.json"), "--target", "Mira Holt",
                          "--model", model, "--out", str(root / "w.json")], capsys)
    assert code == 0, err
    weights = json.loads((root / "w.json").read_text())
    assert weights["terms"] == ["Mira Holt", "Salt Orchard", "Dunmore", "Greyline Press"]
    assert min(weights["weights"]) == 0.0 and max(weights["weights"]) == 1.0  # min-max normalised
    code, out, err = run(["data", "purge", "stage2", "--questions", str(root / "reject_phi.json"), "--entities",
                          str(root / "fts.json"), "--weights", str(root / "w.json"), "--out", str(root / "s.jsonl")],
                         capsys)
    assert code == 0, err
    rows = read_jsonl(root / "s.jsonl")
    assert len(rows) == 2 and {r["label"] for r in rows} == {purge_label("Mira Holt", weights["terms"],
                                                                         weights["weights"])}
    check_label_fits("purge_pagerank", rows[0]["label"])
    # the embedded backend trains on it; rewards are 1 - sums of the file's weights, so within [0, 1]
    code, out, err = run(["train", "stage2", "--model", model, "--data", str(root / "s.jsonl"), "--out",
                          str(root / "run"), "--reward_variant", "purge_pagerank", "--steps", "1", "--rollout_batch",
                          "2", "--n_samples", "2", "--max_new_tokens", "4", "--cpu_threads", "1", "--progress",
                          "false", "--tensorboard", "false"], capsys)
    assert code == 0, err
    (step,) = read_log(root / "run" / "metrics.jsonl")
    assert 0.0 <= step["rollout/reward_forget"] <= 1.0 and "rollout/mention_rate_forget" in step
    # a file without weights is refused under purge_pagerank before the model loads
    assert run(["data", "purge", "stage2", "--questions", str(root / "reject_phi.json"), "--entities",
                str(root / "fts.json"), "--out", str(root / "plain.jsonl")], capsys)[0] == 0
    code, _, err = run(["train", "stage2", "--model", model, "--data", str(root / "plain.jsonl"), "--out",
                        str(root / "run2"), "--reward_variant", "purge_pagerank"], capsys)
    assert code == 2 and "needs a label with weights" in err and not (root / "run2").exists()


@pytest.mark.parametrize("argv, words", [
    (["--target", " "], "pass --target NAME"),
    (["--entities", "{missing}"], "missing"),
    (["--entities", "{only_target}"], "the forget set is only 'Mira Holt'"),
    (["--model", "{root}/nowhere"], "no such directory"),
    (["--quantile", "1.5"], "--quantile"),
    (["--out", "{root}"], "is a directory"),
])
def test_bad_weights_input_is_one_line_before_any_model_loads(target, argv, words, capsys, monkeypatch):
    root, model = target
    (root / "only_target.json").write_text(json.dumps(["Mira Holt"]))
    monkeypatch.setattr("openrlhf_rerule.data.purge_weights.term_embeddings",
                        lambda *a, **k: pytest.fail("the model was loaded"))
    base = {"--entities": str(root / "fts.json"), "--target": "Mira Holt", "--model": model,
            "--out": str(root / "bad.json")}
    base.update(dict(zip(argv[::2], (a.format(root=root, missing=root / "missing.json",
                                              only_target=root / "only_target.json") for a in argv[1::2]))))
    try:
        code = rerule(["data", "purge", "weights", *[x for kv in base.items() for x in kv]])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_stage2_refuses_weights_of_another_list(target, capsys):
    root, _ = target
    (root / "other.json").write_text(json.dumps({"target": "Mira Holt", "terms": ["Mira Holt", "Elsewhere"],
                                                 "weights": [1.0, 0.0]}))
    (root / "broken.json").write_text(json.dumps({"target": "Mira Holt", "terms": ["Mira Holt"], "weights": []}))
    for name, words in (("other.json", "another term list"), ("broken.json", "not a weights file")):
        code, out, err = run(["data", "purge", "stage2", "--questions", str(root / "reject_phi.json"), "--entities",
                              str(root / "fts.json"), "--weights", str(root / name), "--out", str(root / "x.jsonl")],
                             capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (root / "x.jsonl").exists()
