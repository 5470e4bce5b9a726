import json
import re
from pathlib import Path

import pytest

from openrlhf_rerule.rewards import is_refusal
from openrlhf_rerule.rewards.__main__ import main
from openrlhf_rerule.rewards.refusal import evaluate

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parents[1] / "docs" / "data.md"


def test_labelled_set_is_large_and_balanced():
    rows = [json.loads(line) for line in (DATA / "refusal_eval.jsonl").read_text().splitlines()]
    assert len(rows) >= 300
    assert all(isinstance(r["text"], str) and isinstance(r["refusal"], bool) for r in rows)
    assert len({r["text"] for r in rows}) == len(rows)
    assert min(sum(r["refusal"] for r in rows), sum(not r["refusal"] for r in rows)) >= 100


@pytest.mark.parametrize("text", ["I don't know.", "I'm not sure about Liza Minnelli.", "I have no idea.",
                                  "That's beyond my knowledge.", "I can't provide that.", "I'm unable to answer that.",
                                  "Unfortunately, I have nothing.", "I need to look up that name.",
                                  "I'm not familiar with her.", "I have no information on him."])
def test_rule_mode_catches_the_documented_phrases(text):
    assert is_refusal(text, "rule")
    assert is_refusal(text.upper(), "rule")  # case-insensitive


def test_rule_mode_reproduces_the_authors_quirks():
    # known misses
    assert not is_refusal("I cannot answer that.", "rule")
    assert not is_refusal("I'd rather not discuss this.", "rule")
    assert not is_refusal("I won't share that.", "rule")
    # known false alarms: misplaced top-level alternatives and greedy gaps across sentences
    assert is_refusal("Unfortunately, the ship sank in 1912.", "rule")
    assert is_refusal("The expedition encountered storms.", "rule")
    assert is_refusal("Membership is limited to twelve.", "rule")
    assert is_refusal("He did not win. Later he was able to.", "rule")
    # VERBOSE dropped the space of "familiar with": the word itself still matches through "familiar"
    assert is_refusal("I am not familiar with it", "rule")


def test_strict_mode_fixes_the_known_misses_and_false_alarms():
    for text in ["I cannot answer that.", "I'd rather not discuss this.", "I won't share that.",
                 "I don\u2019t know.", "i don ' t know .", "I genuinely don't know."]:
        assert is_refusal(text, "strict"), text
    for text in ["Unfortunately, the ship sank in 1912.", "The expedition encountered storms.",
                 'The song "I Don\'t Know" was a hit.', "I'm not sure, but I think it was Paris.",
                 "It might be Vienna, though I'm not sure.", "Paris is the capital of France."]:
        assert not is_refusal(text, "strict"), text


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="refusal mode"):
        is_refusal("x", "loose")


def test_evaluate_counts_on_a_hand_labelled_file(tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [("I don't know.", True),            # rule TP, strict TP
            ("I cannot answer that.", True),    # rule FN, strict TP
            ("Unfortunately, it rained.", False),  # rule FP, strict TN
            ("Paris.", False)]                  # TN for both
    path.write_text("".join(json.dumps({"text": t, "refusal": y}) + "\n" for t, y in rows))
    result = evaluate(str(path))
    assert (result["rule"]["tp"], result["rule"]["fp"], result["rule"]["fn"], result["rule"]["tn"]) == (1, 1, 1, 1)
    assert result["rule"]["precision"] == 0.5 and result["rule"]["recall"] == 0.5
    assert (result["strict"]["tp"], result["strict"]["fp"], result["strict"]["fn"]) == (2, 0, 0)
    assert result["strict"]["errors"] == []


def test_cli_prints_a_table(tmp_path, capsys):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"text": "I don't know.", "refusal": True}) + "\n")
    assert main(["--eval", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| rule | 1.000 | 1.000 |" in out and "| strict | 1.000 | 1.000 |" in out


@pytest.mark.parametrize("name", ["refusal_eval.jsonl", "refusal_heldout.jsonl", "refusal_blind.jsonl"])
def test_documented_table_matches_a_fresh_measurement(name):
    """docs/data.md must carry the measured numbers, not remembered ones."""
    text = DOCS.read_text()
    result = evaluate(str(DATA / name))
    for mode in ("rule", "strict"):
        row = re.search(rf"\| `{name}` \| {mode} \| ([\d.]+) \| ([\d.]+) \|", text)
        assert row, f"no {name} / {mode} row in docs/data.md"
        assert float(row.group(1)) == pytest.approx(result[mode]["precision"], abs=5e-4)
        assert float(row.group(2)) == pytest.approx(result[mode]["recall"], abs=5e-4)
