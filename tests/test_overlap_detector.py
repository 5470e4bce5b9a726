"""The overlap check on the quirks of the real releases (issue 24), with invented text: short stock questions that
open many unrelated ones (TOFU's "What is the full name of the author?"), probes under 8 words inside a longer
question (RWKU's "Who discovered Justin Bieber in 2008?"), and prompts in RULE's MUSE few-shot format (compared by
their question, not their template). Expected hits are worked out by hand in the comments."""

from openrlhf_rerule.data.overlap import Prompt, find_overlaps, names_something, question_of
from openrlhf_rerule.data.templates import few_shot_block, format_prompt


def hits_of(train: str, probe: str):
    return [(h.kind, round(h.score, 4)) for h in find_overlaps([Prompt("t", 1, train)], [Prompt("e", 1, probe)])]


def test_a_stock_question_that_names_nothing_is_not_a_copy_of_a_longer_one():
    stock = "What is the full name of the author?"  # 8 words, one 8-gram, no name, no digit
    assert not names_something(stock)
    # contained in a 16-word question: 1 shared 8-gram of the longer text's 9 -> 0.11, below 0.5
    assert hits_of("What is the full name of the author born in Veldora on 3 May 1950?", stock) == []
    assert hits_of("what is the FULL name of the author", stock) == [("exact", 1.0)]
    # a near-equal still counts: 9 words vs 8 share the 1 8-gram of the 2 -> 1 / 2 = 0.5
    assert hits_of("What is the full name of the author please?", stock) == [("near", 0.5)]


def test_a_probe_under_8_words_is_found_inside_a_longer_question():
    probe = "Who discovered Mira Holt in 2008?"  # 6 words: n = 6, one 6-gram, contained -> 1.0
    assert names_something(probe)
    assert hits_of("Who discovered Mira Holt in 2008 and signed her to a label?", probe) == [("near", 1.0)]
    assert hits_of("The agent who discovered Mira Holt in 2008 was ___.", probe) == [("near", 1.0)]
    assert hits_of("Who discovered Jonas Vell in 2008 and signed him?", probe) == []  # another name: not contained
    assert hits_of("Mira Holt", "Mira Holt wrote The Lark.") == []  # under 3 words: equality only


def test_few_shot_prompts_are_compared_by_their_question():
    shots = [{"question": "Which town did the painter Ola Brenn live in as a child?", "answer": "Dunmore"},
             {"question": "Who wrote The Lark?", "answer": "Mira Holt"}]
    block = few_shot_block(shots)
    prompt = format_prompt("Which prize did Mira Holt win?", "qa", block, "<s>")
    assert question_of(prompt) == "Which prize did Mira Holt win?"
    assert question_of(format_prompt("Mira walked to the harbour.", "completion", "", "<s>")) == \
        "Mira walked to the harbour."
    assert question_of("A plain question?") == "A plain question?"
    # the asked question equals the 6-word probe after normalisation
    assert hits_of(prompt, "which prize did Mira Holt win") == [("exact", 1.0)]
    # a few-shot example is template, not the question: the 12-word example probe is not matched
    assert hits_of(prompt, shots[0]["question"]) == []
