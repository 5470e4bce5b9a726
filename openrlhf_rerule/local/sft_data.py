"""Stage 1 rows as token ids, and the check of what --max_len cuts from them: shared by the SFT loop (sft.py) and
the checks made before any model loads (preflight.py), so that both see the same encoding."""

from __future__ import annotations

from openrlhf_rerule.cli_convention import UserError

from .rollout import format_prompt


# A response may lose at most this share of its tokens (EOS included) to --max_len unless --allow_truncation:
# beyond it the row trains on a few opening words while the whole prompt is still fed. The RULE authors'
# LLaMA-Factory Stage 1 used cutoff_len 640 for MUSE and 512 for RWKU (RS/scripts/full/run_rt_epoch_*).
MAX_RESPONSE_LOSS = 0.5


def encode_examples(rows: list[dict], tokenizer, max_len: int, chat_template: str = "auto",
                    input_template: str = "") -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids ending in EOS) per row, the target truncated so the pair fits max_len."""
    return [(prompt, target[:max(1, max_len - len(prompt))])
            for prompt, target in encode_full(rows, tokenizer, chat_template, input_template)]


def encode_full(rows, tokenizer, chat_template: str = "auto", input_template: str = ""):
    for row in rows:
        if "text" in row:
            ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
            yield ids[:1], ids[1:] + [tokenizer.eos_token_id]
        else:
            target = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
            prompt = format_prompt(tokenizer, row["prompt"], chat_template, input_template)
            yield prompt, target + [tokenizer.eos_token_id]


def check_truncation(cfg, rows: list[dict]) -> None:
    """Say how many rows --max_len cuts and by how much; refuse (UserError) when a response loses more than
    MAX_RESPONSE_LOSS of its tokens, unless --allow_truncation. Reads only the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    lost = []  # (1-based line, share of the response lost, response tokens, prompt tokens)
    for line, (prompt, target) in enumerate(encode_full(rows, tokenizer, cfg.chat_template, cfg.input_template), 1):
        kept = max(1, cfg.max_len - len(prompt))
        if kept < len(target):
            lost.append((line, 1 - kept / len(target), len(target), len(prompt)))
    if not lost:
        print(f"--max_len {cfg.max_len}: no row is cut")
        return
    worst = max(lost, key=lambda x: x[1])
    print(f"--max_len {cfg.max_len}: {len(lost)} of {len(rows)} rows are cut; their responses lose "
          f"{sum(x[1] for x in lost) / len(lost):.0%} of their tokens on average, at most {worst[1]:.0%} "
          f"({cfg.data}, line {worst[0]}: prompt {worst[3]} tokens, response {worst[2]})")
    over = [x for x in lost if x[1] > MAX_RESPONSE_LOSS]
    if over and not cfg.allow_truncation:
        need = max(x[2] + x[3] for x in over)
        raise UserError(f"{cfg.data}, line {over[0][0]}, field 'response': {len(over)} responses would lose more "
                        f"than {MAX_RESPONSE_LOSS:.0%} of their tokens to --max_len {cfg.max_len} (the longest row "
                        f"needs {need}); raise --max_len, or pass --allow_truncation to train on the cut rows")
