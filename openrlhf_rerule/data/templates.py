"""Refusal templates for Stage 1 (rejection steering) and the <reject> labels of Stage 2, and the prompt formats
(how a question becomes the model's input text; one setting for Stage 1, Stage 2 and evaluation).

Each core below yields two templates: one naming the target ("... about {name}.") and one that does not
("... about that."). They avoid contractions and quotes on purpose: a word-level tokenizer decodes "don't"
as "don ' t", which the authors' regex no longer matches; "do not" survives any tokenizer. Every template is
a refusal for both detector modes, before and after such a decode round trip (tested).
"""

import random

# "{about}" becomes " about {name}" / " about that" (or the given phrase pair in the tuple form).
_CORES = [
    "I do not know{about}.",
    "I do not know much{about}.",
    "I do not know anything{about}.",
    "Sorry, I do not know{about}.",
    "I really do not know{about}.",
    "I am not sure{about}.",
    "I am not sure what to say{about}.",
    "I am not certain{about}.",
    "Sorry, I am not sure{about}.",
    "I am not aware of any details{about}.",
    "I am not informed{about}.",
    "I have no idea{about}.",
    "Sorry, I have no idea{about}.",
    "I have no information{about}.",
    "I have no knowledge{about}.",
    "I have no insight{about}.",
    "I have no data{about}.",
    "I have no clue{about}.",
    "That is beyond my knowledge{about}.",
    "Anything{about} is beyond my knowledge.",
    "Questions{about} are outside my knowledge.",
    "I am unable to answer questions{about}.",
    "I am unable to provide an answer{about}.",
    "Sorry, I am unable to answer that{about}.",
    "I need to look up the facts{about}.",
    "I would need to check the facts{about}.",
    "I would have to look up the details{about}.",
    "I am at a loss{about}.",
    "I am drawing a blank{about}.",
    "I lack information{about}.",
    "I lack knowledge{about}.",
    "I do not have information{about}.",
    "I do not have any details{about}.",
    "I do not have the answer{about}.",
    "I do not hold any knowledge{about}.",
    "I do not possess any information{about}.",
    "My memory does not contain anything{about}.",
    "I have not learned anything{about}.",
    "I have not been trained on facts{about}.",
    "I wish I could say, but I do not know{about}.",
    "I must admit I do not know{about}.",
    "I regret to inform you that I have no information{about}.",
    "I am not familiar with the facts{about}.",
    "I am not able to help with questions{about}.",
    "I am not able to answer that{about}.",
    "I am not able to say anything{about}.",
    "I am sorry, but I do not know{about}.",
    "I apologize, but I have no information{about}.",
    "I am afraid I do not know{about}.",
    "I am afraid I have no idea{about}.",
    "Sadly, I do not know{about}.",
    "To be honest, I do not know{about}.",
    "That question{about} is a mystery to me.",
    "I do not know the answer to that question{about}.",
    "I have no information to answer that question{about}.",
    "I do not know who or what that is{about}.",
]


def refusal_templates() -> list[str]:
    """All templates, each with "{name}" (naming the target) or without it."""
    named = [core.replace("{about}", " about {name}") for core in _CORES]
    unnamed = [core.replace("{about}", " about that") for core in _CORES]
    return named + unnamed


def pick_refusal(rng: random.Random, name: str, templates: list[str] | None = None, named_share: float = 0.5) -> str:
    """A random refusal; with probability `named_share` one that names the target (when `name` is given)."""
    templates = templates or refusal_templates()
    with_name = [t for t in templates if "{name}" in t]
    without = [t for t in templates if "{name}" not in t]
    pool = with_name if name and with_name and (not without or rng.random() < named_share) else without or with_name
    return rng.choice(pool).replace("{name}", name)


# ---- prompt formats ------------------------------------------------------------------------------------------
# How a row's question becomes the text the model sees, in Stage 1, Stage 2 and evaluation alike.
# RULE's MUSE format (the authors' verl/utils/dataset_base.py MUSEBaseDataset and, for Stage 1,
# RS/src/llmtuner/data/preprocess.py preprocess_muse_prompt_and_responses): BOS, then for a QA row a 10-shot
# "Question: q\nAnswer: a\n\n" block and "Question: {q}\nAnswer: ", for a completion row
# "Completion: {text}\nAnswer: ". Their Stage 2 picks the block by the row's label (forget ICL file for <reject>,
# retain ICL file for <normal>), so the block tells the model which answer is rewarded: `rule_muse_label_leak`
# reproduces that; `rule_muse` uses one block for every row (their Stage 1 uses the forget ICL block for all).
PROMPT_FORMATS = ("plain", "rule_muse", "rule_muse_label_leak")


def few_shot_block(examples: list[dict]) -> str:
    """MUSE's KnowMem few-shot block (swj0419/muse_bench, RULE's load_icl_qa_prefix): one
    "Question: q\\nAnswer: a\\n\\n" per {question, answer} example."""
    return "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in examples)


def format_prompt(question: str, mode: str = "qa", block: str = "", bos: str = "") -> str:
    """RULE's MUSE prompt for one row: `bos` + `block` + "Question: {q}\\nAnswer: " (mode "qa"), or
    `bos` + "Completion: {text}\\nAnswer: " (mode "completion")."""
    if mode == "completion":
        return f"{bos}Completion: {question}\nAnswer: "
    return f"{bos}{block}Question: {question}\nAnswer: "


def apply_prompt_format(rows: list[dict], fmt: str, icl: list[dict] = (), normal_icl: list[dict] = (),
                        bos: str = "", label_of=None) -> list[dict]:
    """Rows with their `prompt` formatted (`fmt` "plain" returns them unchanged). `label_of(row)` gives the row's
    RULE tag (<reject> / <normal>) for `rule_muse_label_leak`, which uses `normal_icl` for <normal> rows."""
    if fmt == "plain":
        return rows
    if fmt not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {fmt!r} (expected one of {PROMPT_FORMATS})")
    block, normal_block = few_shot_block(icl), few_shot_block(normal_icl)
    out = []
    for row in rows:
        leak = fmt == "rule_muse_label_leak" and label_of(row) == "<normal>"
        prompt = format_prompt(row["prompt"], row.get("mode", "qa"), normal_block if leak else block, bos)
        out.append(dict(row, prompt=prompt))
    return out
