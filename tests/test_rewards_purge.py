"""PURGE's binary reward. Expected values are worked out by hand from the authors' rule (github strzar/purge,
src/rewards/binary.py: re.escape each term, join with |, wrap in \\b(?:...)\\b, re.IGNORECASE, search the
completion): 1.0 when no term is found, else 0.0."""

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from openrlhf_rerule.rewards import (LabelError, check_label_fits, label_tag, make_scorer, parse_label,
                                     parse_purge_label, purge_label, purge_reward)

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "purge_agreement.py"


def reward(completion, terms, **options):
    return purge_reward(completion, purge_label("T", terms), **options).reward


@pytest.mark.parametrize("completion, expected", [
    ("The King.", 0.0),                   # whole word
    ("the king spoke", 0.0),              # case ignored
    ("The Kingdom of Fife.", 1.0),        # "King" inside a longer word: \b fails before "d"
    ("Kings and queens", 1.0),            # plural is another word (no stemming)
    ("The King's crown", 0.0),            # apostrophe is not a word character: \b after "g"
    ("king-size bed", 0.0),               # hyphen is not a word character
    ("King_Charles", 1.0),                # underscore is a word character
    ("King2", 1.0),                       # so is a digit
    ("Viking ships", 1.0),                # inside a word on the left
    ("", 1.0),
])
def test_word_boundaries_and_case(completion, expected):
    assert reward(completion, ["King"]) == expected


@pytest.mark.parametrize("completion, expected", [
    ("He wrote like Stephen King did.", 0.0),
    ("STEPHEN KING", 0.0),
    ("Stephen  King", 1.0),               # two spaces: the escaped single space does not match
    ("Stephen\nKing", 1.0),               # a newline is not a space either
    ("Stephen Kingsley", 1.0),
    ("Stephen was a king.", 1.0),         # both words, not the phrase
])
def test_multi_word_terms_match_as_one_phrase(completion, expected):
    assert reward(completion, ["Stephen King"]) == expected


@pytest.mark.parametrize("term, completion, word, edge", [
    # \b needs a word character on one side; after "+" / ")" / "." a space or full stop gives none, so the
    # authors' rule misses these terms in ordinary text and finds them only when a letter follows.
    ("C++", "I like C++.", 0, 1),
    ("C++", "I like C++x", 1, 0),
    ("(band)", "the (band) played", 0, 1),
    ("Girls Inc.", "She founded Girls Inc. in 2001", 0, 1),
    ("Girls Inc.", "Girls Inc.x", 1, 0),
    ("Dr. No", "Dr. No is a film", 1, 1),          # the dot is escaped, the term ends in a letter
    ("Dr. No", "Dr No is a film", 0, 0),           # no dot, no match
    ("Dr. No", "Dra No", 0, 0),                    # "." is literal, not "any character"
    ("Dr. No", "Dr. Nobody", 0, 0),
    ("a+b", "aab", 0, 0),                          # "+" is literal, not "one or more"
    ("11/22/63", "the novel 11/22/63 is", 1, 1),
    ("11/22/63", "11/22/634", 0, 0),
])
def test_regex_metacharacters_are_literal(term, completion, word, edge):
    assert reward(completion, [term]) == 1.0 - word
    assert reward(completion, [term], boundary="edge") == 1.0 - edge


@pytest.mark.parametrize("completion, expected", [
    ("BEYONCÉ sang", 0.0),                # Unicode case folding of É
    ("beyoncé", 0.0),
    ("Beyonce", 1.0),                     # no accent folding
    ("Beyoncés", 1.0),                    # é is a word character: no boundary before "s"
])
def test_unicode_names(completion, expected):
    assert reward(completion, ["Beyoncé"]) == expected


def test_unicode_case_rules_of_python_re():
    # re.IGNORECASE compares single characters: "ß" and "SS" are different lengths, so no match
    assert reward("STRASSE", ["Straße"]) == 1.0
    assert reward("STRAßE", ["Straße"]) == 0.0
    assert reward("Sofía Vergara", ["SOFÍA VERGARA"]) == 0.0


def test_common_word_in_the_list_hits_ordinary_text():
    # The released Stephen King list contains "It": case-insensitive matching makes every "it" a hit.
    terms = ["Stephen King", "Carrie", "It"]
    assert reward("I think it was raining.", terms) == 0.0
    assert reward("Its rain and items.", terms) == 1.0
    assert reward("I think it was raining.", terms, case_sensitive=True) == 1.0
    assert reward("It was raining.", terms, case_sensitive=True) == 0.0


def test_boundary_none_is_substring_matching():
    assert reward("The Kingdom", ["King"], boundary="none") == 0.0
    assert reward("The Kingdom", ["King"], boundary="edge") == 1.0


def test_order_and_duplicates_do_not_matter():
    # The authors load the list into a set; whether some alternative matches does not depend on the order,
    # even when one term is a prefix of another ("King" / "Kingdom Hospital").
    for terms in (["King", "Kingdom Hospital"], ["Kingdom Hospital", "King"], ["King", "King"]):
        assert reward("Kingdom Hospital aired", terms) == (0.0 if "Kingdom Hospital" in terms else 1.0)
        assert reward("the King", terms) == 0.0


def test_result_carries_the_matched_text_and_a_refusal_diagnostic():
    r = purge_reward("I don't know much about CARRIE.", purge_label("Stephen King", ["Stephen King", "Carrie"]))
    assert (r.reward, r.mentioned, r.refused) == (0.0, "CARRIE", True)
    r = purge_reward("The weather is fine.", purge_label("Stephen King", ["Stephen King"]))
    assert (r.reward, r.mentioned, r.refused) == (1.0, None, False)


def test_label_format_and_its_refusals():
    label = purge_label("Stephen King", ["Stephen King", "It"])
    assert json.loads(label) == ["<purge>", "Stephen King", "Stephen King", "It"]
    assert parse_purge_label(label) == ("Stephen King", ("Stephen King", "It"))
    assert label_tag(label) == "<purge>" and label_tag('["<normal>", "a"]') == "<normal>"
    for bad in ('["<purge>", "T"]',                 # no term: the authors' regex would be \b(?:)\b
                '["<purge>", "T", ""]', '["<purge>", "T", "  "]',
                '["<purge>", "", "x"]', '["<purge>", "T", 3]', '["<reject>", "no", "T"]', "not json", "{}"):
        with pytest.raises(LabelError):
            parse_purge_label(bad)


def test_rule_and_purge_labels_are_told_apart():
    purge = purge_label("T", ["x"])
    with pytest.raises(LabelError, match="purge_binary"):
        parse_label(purge)
    with pytest.raises(LabelError, match="purge_binary"):
        check_label_fits("two_stage_abs", purge)
    with pytest.raises(LabelError):
        check_label_fits("purge_binary", '["<reject>", "I do not know.", "T"]')
    check_label_fits("purge_binary", purge)
    check_label_fits("two_stage_abs_target", '["<reject>", "I do not know.", "T"]')
    with pytest.raises(LabelError, match="target name"):
        check_label_fits("two_stage_abs_target", '["<reject>", "I do not know."]')


def test_make_scorer_passes_the_purge_options():
    label = purge_label("T", ["C++"])
    assert make_scorer("purge_binary")("I like C++.", label).reward == 1.0
    assert make_scorer("purge_binary", purge_boundary="edge")("I like C++.", label).reward == 0.0
    with pytest.raises(ValueError):
        make_scorer("purge")


# The authors' graded reward (strzar/purge 24d1a3f src/rewards/exponential_decay.py:14-28): m = the number of
# findall matches of binary.py's pattern, reward = math.e ** (-(m / 1.0)). Worked out by hand:
@pytest.mark.parametrize("completion, mentions", [
    ("Nothing to say about that.", 0),
    ("She lives in Oakford.", 1),
    ("Oakford, oakford and OAKFORD.", 3),                  # repeats count, case ignored
    ("Oakfordshire is not Oakford.", 1),                   # \b: inside a longer word is no mention
    ("Alice Stone of Oakford wrote about Stone Bay.", 3),  # "Alice Stone" once (not "Stone" inside it), Oakford, Stone
])
def test_exponential_decay_counts_every_mention(completion, mentions):
    label = purge_label("Alice Stone", ["Stone", "Oakford", "Alice Stone"])
    result = make_scorer("purge_exp_decay")(completion, label)
    assert result.reward == math.e ** (-mentions)  # exactly their float: the same expression
    assert (result.mentioned is None) == (mentions == 0)
    assert make_scorer("purge_binary")(completion, label).reward == (1.0 if mentions == 0 else 0.0)


def test_exponential_decay_overlapping_terms_count_once_whatever_the_list_order():
    """Their alternation order is a Python set's (PYTHONHASHSEED): "Stephen" before "Stephen King" counts the name
    twice ("Stephen", then "King"), the other order once. Ours tries the longest first, in every order."""
    import re

    text = "Stephen King lives in Maine."
    for order in (["Stephen", "King", "Stephen King"], ["Stephen King", "King", "Stephen"]):
        assert make_scorer("purge_exp_decay")(text, purge_label("Stephen King", order)).reward == math.e ** -1
    theirs = lambda terms: len(re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\b", re.I).findall(text))
    assert theirs(["Stephen", "King", "Stephen King"]) == 2 and theirs(["Stephen King", "Stephen", "King"]) == 1


@pytest.mark.skipif(not os.environ.get("RERULE_PURGE_AUTHORS_DIR"),
                    reason="set RERULE_PURGE_AUTHORS_DIR to a copy of github strzar/purge to compare with binary.py")
def test_agreement_with_the_authors_binary_py_on_their_released_lists():
    """Their own BinaryReward and ours on every released fts.json and ~125k completions
    (benchmarks/purge_agreement.py)."""
    spec = importlib.util.spec_from_file_location("purge_agreement", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.compare(Path(os.environ["RERULE_PURGE_AUTHORS_DIR"]))
    assert result["lists"] > 0 and result["completions"] > 0
    assert result["disagreements"] == [] and result["agree"] == result["completions"]
    # the graded reward: equal wherever their count does not depend on their set's order (overlapping terms)
    assert result["decay_disagreements"] == 0
