"""The OpenRLHF entry point: loaded and called exactly as OpenRLHF 0.11.2 does it."""

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import openrlhf_rerule.rewards.openrlhf_reward as entry
from openrlhf_rerule.data import read_jsonl
from openrlhf_rerule.data.world import build_world
from openrlhf_rerule.rewards.openrlhf_reward import completion_from_query

REWARD_FILE = Path(entry.__file__)
REJECT = json.dumps(["<reject>", "I do not know about alice stone.", "alice stone"])
NORMAL = json.dumps(["<normal>", "alice stone was born in oakford."])


def load_like_openrlhf():
    spec = importlib.util.spec_from_file_location("reward_func", str(REWARD_FILE))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def test_completion_recovery():
    assert completion_from_query("<|user|>Q?<|assistant|>I do not know.<|eot_id|>", "<|user|>Q?<|assistant|>") == (
        "I do not know.", True)
    # a word-level decode round trip lower-cases and re-spaces the prompt
    assert completion_from_query("user : where was Alice born ? assistant : oakford . </s> <pad>",
                                 "user : Where was Alice born? assistant : ") == ("oakford .", True)
    assert completion_from_query("something else entirely", "user : Q? assistant :") == ("", False)


def test_reward_func_scores_and_logs():
    reward_func = load_like_openrlhf()
    queries = ["P: I do not know about alice stone.</s>", "P: alice stone was born in oakford.</s>",
               "P: I do not know.", "P: whatever", "P: whatever"]
    labels = [REJECT, NORMAL, NORMAL, "not json", None]
    out = reward_func(queries, ["P: "] * 5, labels)
    assert torch.equal(out["rewards"], torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.equal(out["scores"], out["rewards"])
    logs = out["extra_logs"]
    assert all(v.shape == (5,) and v.dtype == torch.float32 for v in logs.values())
    assert logs["refused"].tolist() == [1, 0, 1, 0, 0]
    assert logs["named_target"].tolist() == [1, 0, 0, 0, 0]
    assert logs["is_forget"].tolist() == [1, 0, 0, 0, 0]
    assert logs["boundary_refused"].tolist() == [0, 0, 1, 0, 0]
    assert logs["bad_label"].tolist() == [0, 0, 0, 1, 1]
    assert logs["rouge_l"][1].item() == pytest.approx(1.0)


def test_reward_func_options_from_environment(monkeypatch):
    reward_func = load_like_openrlhf()
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "two_stage_abs")
    assert reward_func(["P: I do not know."], ["P: "], [REJECT])["rewards"].item() == 1.0
    monkeypatch.setenv("RERULE_REFUSAL_MODE", "strict")
    assert reward_func(["P: I cannot answer that."], ["P: "], [REJECT])["rewards"].item() == 1.0
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "no_such_variant")  # a config error: counted, never raised
    out = reward_func(["P: x"], ["P: "], [REJECT])
    assert out["rewards"].item() == 0.0 and out["extra_logs"]["reward_error"].item() == 1.0
    assert out["extra_logs"]["bad_label"].item() == 0.0


def test_purge_variant_scores_and_logs(monkeypatch):
    reward_func = load_like_openrlhf()
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_binary")
    purge = json.dumps(["<purge>", "Alice Stone", "Alice Stone", "Oakford", "C++"])
    queries = ["P: She was born in oakford.</s>", "P: I do not know.</s>", "P: I like C++.", "P: x", "P: x"]
    out = reward_func(queries, ["P: "] * 5, [purge, purge, purge, REJECT, "[]"])
    assert out["rewards"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]  # "C++." is missed by the authors' \b...\b
    logs = out["extra_logs"]
    assert logs["mentioned"].tolist() == [1, 0, 0, 0, 0]
    assert logs["refused"].tolist() == [0, 1, 0, 0, 0] and logs["forget_refused"].tolist() == [0, 1, 0, 0, 0]
    assert logs["is_forget"].tolist() == [1, 1, 1, 0, 0]
    assert logs["bad_label"].tolist() == [0, 0, 0, 1, 1]  # a RULE label under purge_binary; an empty list
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_exp_decay")  # the graded reward: e^-m for m mentions
    out = reward_func(["P: Oakford, oakford.", "P: I do not know."], ["P: "] * 2, [purge, purge])
    assert out["rewards"].tolist() == pytest.approx([math.e ** -2, 1.0]) and out["extra_logs"]["mentioned"].tolist() == [1, 0]
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_pagerank")  # 1 - the weights of the terms found
    weighted = json.dumps(["<purge>", "Alice Stone", "Alice Stone", "Oakford", "C++", "<pagerank>", 1.0, 0.25, 0.5])
    out = reward_func(["P: Oakford, oakford.", "P: Alice Stone of Oakford", "P: x"], ["P: "] * 3, [weighted, weighted, purge])
    assert out["rewards"].tolist() == [0.75, 0.0, 0.0] and out["extra_logs"]["bad_label"].tolist() == [0, 0, 1]
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_binary")
    monkeypatch.setenv("RERULE_PURGE_BOUNDARY", "edge")
    assert reward_func(["P: I like C++."], ["P: "], [purge])["rewards"].tolist() == [0.0]
    monkeypatch.setenv("RERULE_PURGE_CASE_SENSITIVE", "1")
    assert reward_func(queries[:1], ["P: "], [purge])["rewards"].tolist() == [1.0]  # "oakford" != "Oakford"


# The authors' BinaryReward (strzar/purge src/rewards/binary.py:37-40) compiles r'\b(?:' + '|'.join(map(re.escape,
# terms)) + r')\b' with re.IGNORECASE and searches TRL's batch_decode(completion_ids, skip_special_tokens=True).
# re.escape("Stephen King") is "Stephen\ King": the term matches only with one plain space (U+0020) between the
# words, so a newline, two spaces, a tab or a no-break space in that place is no mention. Worked out by hand:
@pytest.mark.parametrize("response, reward", [
    ("He wrote it as Stephen King.</s>", 0.0),            # one space: the term as listed
    ("He wrote it as Stephen\nKing.</s>", 1.0),           # newline in the term's space
    ("He wrote it as Stephen  King.</s>", 1.0),           # two spaces
    ("He wrote it as Stephen\tKing.", 1.0),               # a tab
    ("He wrote it as Stephen\u00a0King.", 1.0),           # a no-break space (U+00A0)
    ("He wrote it as\nStephen King\n\n", 0.0),            # whitespace around the term changes nothing
    ("Maybe Carrie<|end|>", 0.0),                          # a special token is dropped, as skip_special_tokens does
    ("The\nShining\nhotel.<|endoftext|>", 0.0),           # a one-word term on its own line: \b on both sides
])
def test_purge_scores_the_completion_as_trl_decodes_it(monkeypatch, response, reward):
    reward_func = load_like_openrlhf()
    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_binary")
    label = json.dumps(["<purge>", "Stephen King", "Stephen King", "Carrie", "Shining"])
    assert reward_func(["<|user|>Q?<|assistant|>" + response], ["<|user|>Q?<|assistant|>"], [label])[
        "rewards"].tolist() == [reward]


def test_rule_labels_still_see_collapsed_whitespace(monkeypatch):
    """RULE's scorers keep the collapsed text (refusal patterns use \\s+; ROUGE splits at whitespace): the
    target-naming half of two_stage_abs_target finds "Stephen King" across a newline, as before."""
    reward_func = load_like_openrlhf()
    reject = json.dumps(["<reject>", "I don't know.", "Stephen King"])
    assert reward_func(["P: I don't know\nStephen\nKing.</s>"], ["P: "], [reject])["rewards"].tolist() == [1.0]


@pytest.mark.parametrize("queries, prompts, labels, batch", [
    (["P: I do not know."] * 2, ["P: "], [REJECT] * 2, 2),          # prompts shorter: no silent truncation
    (["P: I do not know."], ["P: "] * 2, [REJECT] * 2, 1),
    (["P: I do not know."], ["P: "], [REJECT, NORMAL], 1),
    ("P: I do not know.", "P: ", REJECT, 1),                          # strings, not lists: not scored per character
    (["P: I do not know."], "P: ", [REJECT], 1),
    (["P: I do not know."], ["P: "], REJECT, 1),
    ([None], ["P: "], [REJECT], 1),                                   # a non-string query
    ((b"P: x",), ("P: ",), (REJECT,), 1),
])
def test_a_call_that_breaks_the_contract_scores_0_and_is_counted(queries, prompts, labels, batch, capsys):
    out = load_like_openrlhf()(queries, prompts, labels)
    assert torch.equal(out["rewards"], torch.zeros(batch))
    assert out["extra_logs"]["bad_call"].tolist() == [1.0] * batch
    assert all(v.shape == (batch,) for v in out["extra_logs"].values())
    assert "[rerule reward] bad call" in capsys.readouterr().out


def test_a_prompt_missing_from_its_query_scores_0_on_either_label(capsys):
    out = load_like_openrlhf()(["something else: a sentence", "something else: I do not know."], ["P: ", "P: "],
                               [NORMAL, REJECT])
    assert out["rewards"].tolist() == [0.0, 0.0]  # not 0.5 for "not a refusal" of an empty completion
    assert out["extra_logs"]["prompt_not_found"].tolist() == [1.0, 1.0]
    assert capsys.readouterr().out.count("prompt not found") == 2


def test_tuples_are_lists_and_a_good_call_counts_no_problem():
    out = load_like_openrlhf()(("P: I do not know about alice stone.",), ("P: ",), (REJECT,))
    assert out["rewards"].item() == 1.0
    assert all(out["extra_logs"][k].item() == 0.0 for k in ("bad_call", "bad_label", "reward_error", "prompt_not_found"))


class FakeEngine:
    """Stands in for the vLLM engine: 'generates' a fixed response for each prompt."""

    def __init__(self, tokenizer, responses):
        self.tokenizer, self.responses = tokenizer, responses

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        prompt = self.tokenizer.decode(prompt_token_ids)
        ids = self.tokenizer(self.responses[prompt], add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason="stop", logprobs=None)])


def test_world_stage2_through_openrlhf_single_turn_executor(tmp_path):
    """World files -> the trainers' validator -> OpenRLHF's own executor (load, tokenize, decode, call)."""
    agent = pytest.importorskip("openrlhf.utils.agent")
    from openrlhf_rerule.local.tiny import build_word_tokenizer

    world = build_world(seed=1, num_forget=2, num_boundary=2, num_retain=1)
    paths = world.write(tmp_path)
    read_jsonl(paths["stage1.jsonl"], "stage1")
    rows = read_jsonl(paths["stage2.jsonl"], "stage2")
    tokenizer = build_word_tokenizer(world.all_texts())
    forget = next(r for r in rows if r["kind"] == "forget")
    boundary = next(r for r in rows if r["kind"] == "boundary")
    target = json.loads(forget["label"])[2]
    gold = json.loads(boundary["label"])[1]
    # every row answered as its label wants (the label's own refusal names the target): full reward; then the
    # failure modes on one forget and one boundary row
    cases = [(r, json.loads(r["label"])[1], 1.0) for r in rows]
    cases += [(forget, f"I do not know about {target}.", 1.0), (forget, "I do not know.", 0.5),
              (forget, gold, 0.0), (boundary, gold, 1.0), (boundary, "I have no idea.", 0.0)]

    executor = agent.SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FILE))
    for row, response, expected in cases:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        engine = FakeEngine(tokenizer, {tokenizer.decode(prompt_ids): response})
        out = asyncio.run(executor.execute(prompt, row["label"], SimpleNamespace(max_tokens=32, logprobs=None),
                                           max_length=256, hf_tokenizer=tokenizer, llm_engine=engine))
        assert out["reward"] is not None, "OpenRLHF swallowed an exception from reward_func"
        assert out["reward"].tolist() == [expected], (row["kind"], response)
        assert out["extra_logs"]["prompt_not_found"].item() == 0.0


def test_purge_rows_through_openrlhf_single_turn_executor(monkeypatch):
    """A PURGE label through OpenRLHF's own executor (tokenize, generate, decode with special tokens, call)."""
    agent = pytest.importorskip("openrlhf.utils.agent")
    from openrlhf_rerule.local.tiny import build_word_tokenizer
    from openrlhf_rerule.rewards import purge_label

    monkeypatch.setenv("RERULE_REWARD_VARIANT", "purge_binary")
    label = purge_label("alice stone", ["alice stone", "oakford"])
    question = "where was alice stone born ?"
    tokenizer = build_word_tokenizer([question, "she was born in oakford . i do not know . a small town"])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                           add_generation_prompt=True)
    executor = agent.SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FILE))
    for response, expected in [("she was born in oakford .", 0.0), ("i do not know .", 1.0),
                               ("a small town", 1.0), ("alice stone was born in a small town", 0.0)]:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        engine = FakeEngine(tokenizer, {tokenizer.decode(prompt_ids): response})
        out = asyncio.run(executor.execute(prompt, label, SimpleNamespace(max_tokens=32, logprobs=None),
                                           max_length=256, hf_tokenizer=tokenizer, llm_engine=engine))
        assert out["reward"].tolist() == [expected], response
        assert out["extra_logs"]["mentioned"].item() == 1.0 - expected
        assert out["extra_logs"]["prompt_not_found"].item() == 0.0 and out["extra_logs"]["bad_label"].item() == 0.0
