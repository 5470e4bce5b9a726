"""vLLM in this process, on token ids only: greedy continuations and prompt log-probabilities for `rerule eval
--engine vllm` (eval/scoring.py) and the real model's parity check (`rerule data real_model --check_vllm`).

vLLM never sees text: prompts arrive as the token ids transformers' tokenizer made, and continuations leave as ids
that the same tokenizer decodes, so the two engines differ only in the forward pass (docs/evaluation.md#engines)."""

import json
import os
from pathlib import Path


def vllm_dtype(folder, dtype: str) -> str:
    """vLLM's name for `rerule eval --dtype`. vLLM's own "auto" turns an fp32 checkpoint into fp16/bf16, while
    transformers' "auto" keeps it: "auto" here is the checkpoint's own dtype, as transformers reads it."""
    if dtype != "auto":
        return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]
    config = json.loads((Path(folder) / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def offline_llm(folder, dtype: str, gpu_memory_utilization: float = 0.5, seed: int = 0):
    """An LLM over a local model folder, in this process (no spawned engine core: a script calling this needs no
    `if __name__ == "__main__":` guard), without vLLM's tokenizer (ids in, ids out)."""
    # What vLLM-CPU needs on a shared CPU machine (tests/e2e/e2e_stack.py MACHINE_ENV); harmless on CUDA.
    for key, value in (("VLLM_CPU_KVCACHE_SPACE", "1"), ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
                       ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    import torch
    from vllm import LLM

    on_gpu = torch.cuda.is_available()
    # CPU: eager, as the e2e runs (vLLM-CPU's compiled path is not what they measured). CUDA: vLLM's defaults
    # (CUDA graphs); a share of GPU memory that leaves room for transformers, which the moment-based MIA scores
    # and multiple-choice metrics still use (eval/scoring.py).
    extra = {"gpu_memory_utilization": gpu_memory_utilization} if on_gpu else {"enforce_eager": True}
    return LLM(model=str(folder), dtype=dtype, seed=seed, skip_tokenizer_init=True, generation_config="vllm",
               **extra)


def context_length(llm) -> int:
    """The longest prompt + continuation this LLM takes (its max_model_len: the model's context)."""
    return llm.llm_engine.model_config.max_model_len


def greedy_ids(llm, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int]) -> list[list[int]]:
    """Greedy new token ids per prompt, ending at (and including) the first of `stop_ids`, as transformers'
    generate does with eos_token_id=stop_ids: vLLM's own end-of-sequence rule is off (ignore_eos), so exactly
    these ids stop a sequence."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True,
                            stop_token_ids=list(stop_ids), detokenize=False)
    results = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=len(prompts) > 1)
    return [list(r.outputs[0].token_ids) for r in results]


def prompt_logprobs(llm, sequences: list[list[int]]) -> list[list[float]]:
    """log p(x_t | x_<t) for t = 1 .. len-1 of each id sequence, from vLLM's prompt log-probs (raw logits)."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
    results = llm.generate([{"prompt_token_ids": ids} for ids in sequences], params,
                           use_tqdm=len(sequences) > 1)
    return [[step[token].logprob for step, token in zip(r.prompt_logprobs[1:], ids[1:])]
            for r, ids in zip(results, sequences)]


def top_next_logprobs(llm, prompts: list[list[int]], k: int = 20) -> list[dict[int, float]]:
    """The k most likely next tokens after each prompt with their log-probs (raw logits; vLLM's default cap on k
    is 20)."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=k, detokenize=False)
    results = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=len(prompts) > 1)
    return [{t: lp.logprob for t, lp in r.outputs[0].logprobs[0].items()} for r in results]


def vllm_greedy(folder, prompts: list[list[int]], max_new_tokens: int, dtype: str) -> list[list[int]]:
    """Greedy new token ids for each prompt (the parity check's vLLM side): the checkpoint's eos ends a sequence."""
    config = json.loads((Path(folder) / "config.json").read_text())
    eos = config.get("eos_token_id")
    llm = offline_llm(folder, dtype)
    return greedy_ids(llm, prompts, max_new_tokens, [] if eos is None else [eos] if isinstance(eos, int) else eos)
