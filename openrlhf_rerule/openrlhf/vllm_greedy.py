"""Greedy continuations from vLLM in this process: the vLLM side of `rerule data real_model --check_vllm`."""

import os


def vllm_greedy(folder, prompts: list[list[int]], max_new_tokens: int, dtype: str) -> list[list[int]]:
    """Greedy new token ids for each prompt (token ids), from vLLM (its CPU build on CPU machines)."""
    # What vLLM-CPU needs on a shared CPU machine (tests/e2e/e2e_stack.py MACHINE_ENV), and the engine in this
    # process (no spawned engine core: a script calling this needs no `if __name__ == "__main__":` guard).
    for key, value in (("VLLM_CPU_KVCACHE_SPACE", "1"), ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
                       ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), dtype=dtype, enforce_eager=True, max_model_len=512, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    results = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
    return [list(r.outputs[0].token_ids) for r in results]
