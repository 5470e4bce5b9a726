"""The one code path every benchmark uses to talk to a model: load, format a chat prompt, greedy batched
generation with left padding, and per-token log-probabilities of given continuations.

Two engines (`rerule eval --engine`): transformers does everything; vLLM does greedy generation, the plain
per-token log-probs and multiple-choice next-token log-probs where its top 20 hold every candidate
(docs/evaluation.md#engines: parity measured), while what it cannot give (Min-K%++'s moments of the whole
next-token distribution, a candidate outside the top 20) still comes from transformers, loaded only when needed."""

import inspect
from dataclasses import dataclass
from functools import cached_property

import torch
from tqdm.auto import tqdm

from .io import EvalDataError


@dataclass
class LoadedModel:
    tokenizer: object
    device: str
    batch_size: int
    model_dir: str
    dtype: str
    llm: object = None  # vLLM's LLM with --engine vllm
    _model: "torch.nn.Module | None" = None

    @property
    def model(self) -> "torch.nn.Module":
        """transformers' model; with --engine vllm loaded on first use (a metric vLLM cannot give)."""
        if self._model is None:
            from transformers import AutoModelForCausalLM

            torch_dtype = {"auto": "auto", "fp32": torch.float32, "bf16": torch.bfloat16,
                           "fp16": torch.float16}[self.dtype]
            self._model = AutoModelForCausalLM.from_pretrained(self.model_dir, local_files_only=True,
                                                               dtype=torch_dtype).to(self.device).eval()
        return self._model

    @cached_property
    def stop_ids(self) -> list[int]:
        """The ids that end a greedy sequence when a benchmark passes none: the checkpoint's generation config,
        as transformers' generate reads it (its eos_token_id: an int, a list, or none); read once per model."""
        from transformers import AutoConfig, GenerationConfig

        try:
            eos = GenerationConfig.from_pretrained(self.model_dir, local_files_only=True).eos_token_id
        except OSError:  # no generation_config.json: transformers derives one from config.json
            eos = GenerationConfig.from_model_config(AutoConfig.from_pretrained(self.model_dir)).eos_token_id
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def load_model(model_dir, device: str | None = None, batch_size: int = 8, dtype: str = "auto",
               chat_template: str = "auto", engine: str = "hf", gpu_memory_utilization: float = 0.5) -> LoadedModel:
    """Any local Hugging Face causal-LM directory; nothing is downloaded. `chat_template="none"` drops the
    tokenizer's template, so every benchmark formats prompts as it does for a model without one (raw text).
    `engine="vllm"` starts vLLM in this process (the e2e environment, or any with vllm installed)."""
    from transformers import AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if chat_template == "none":
        tokenizer.chat_template = None
    if tokenizer.pad_token_id is None:  # Llama-style tokenizers ship without one; EOS is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    lm = LoadedModel(tokenizer, device, batch_size, str(model_dir), dtype)
    if engine == "vllm":
        from openrlhf_rerule.openrlhf.vllm_offline import offline_llm, vllm_dtype

        lm.llm = offline_llm(model_dir, vllm_dtype(model_dir, dtype), gpu_memory_utilization)
    else:
        lm.model  # noqa: B018 -- load now: a model that does not load fails before any generation
    return lm


def chat_prompt(tokenizer, user_text: str, fallback: str = "{}", system: str | None = None) -> str:
    """The user turn in the model's chat template (as TOFU/RWKU do for chat models); `fallback` otherwise."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user_text})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return fallback.format(user_text)


def _fits_context(lm: LoadedModel, sequences: list[list[int]], new_tokens: int, desc: str) -> None:
    """vLLM refuses a sequence longer than the model's context, where transformers runs past it (as the benchmarks'
    references do): say so for the whole part, before anything runs, instead of failing mid-way."""
    from openrlhf_rerule.openrlhf.vllm_offline import context_length

    limit = context_length(lm.llm)
    over = [len(s) + new_tokens for s in sequences if len(s) + new_tokens > limit]
    if over:
        raise EvalDataError(f"--engine vllm: {desc}: {len(over)} of {len(sequences)} sequences exceed the model's "
                            f"context of {limit} tokens (longest {max(over)}, {new_tokens} new tokens included); "
                            "vLLM cannot run them, transformers runs past the context as the references do: "
                            "use --engine hf")


def _batches(items, batch_size, desc):
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc=desc, disable=len(starts) < 2, leave=False):
        yield start, items[start:start + batch_size]


@torch.no_grad()
def generate(lm: LoadedModel, prompts: list[str], max_new_tokens: int, add_special_tokens: bool = False,
             desc: str = "generate", stop_ids: list[int] | None = None) -> list[str]:
    """Greedy, deterministic, batched with left padding. Returns the decoded continuations (special tokens
    skipped). `add_special_tokens=False` for chat-template strings that already carry BOS. `stop_ids`: the
    token ids that end a sequence (what a reference passes explicitly); None: the checkpoint's
    generation_config decides."""
    tok = lm.tokenizer
    if lm.llm is not None:
        from openrlhf_rerule.openrlhf.vllm_offline import greedy_ids

        ids = [tok(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        _fits_context(lm, ids, max_new_tokens, desc)
        new_tokens = greedy_ids(lm.llm, ids, max_new_tokens, lm.stop_ids if stop_ids is None else stop_ids)
        if stop_ids is not None:
            new_tokens = [next((row[:i] for i, t in enumerate(row) if t in stop_ids), row) for row in new_tokens]
        return tok.batch_decode(new_tokens, skip_special_tokens=True)
    tok.padding_side = "left"
    outputs = []
    for _, batch in _batches(prompts, lm.batch_size, desc):
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(lm.device)
        stop = {} if stop_ids is None else {"eos_token_id": list(stop_ids)}
        out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None, **stop)
        new_tokens = out[:, enc["input_ids"].shape[1]:].tolist()
        if stop_ids is not None:  # cut before the first stop id, as the references do (it may be no special token)
            new_tokens = [next((row[:i] for i, t in enumerate(row) if t in stop_ids), row) for row in new_tokens]
        outputs += tok.batch_decode(new_tokens, skip_special_tokens=True)
    return outputs


def _forward(lm: LoadedModel, sequences: list[list[int]], desc: str, last_only: bool = False):
    """Yield (indices, ids, lengths, logits [B, T, V]) per right-padded batch; right padding keeps the
    position ids of real tokens correct without help. `last_only`: logits [B, V] at each row's last token only,
    computed at those positions alone where the model takes `logits_to_keep` (a 5-shot MMLU batch's [B, T, V]
    is gigabytes at a 49k-128k vocabulary)."""
    pad_id = lm.tokenizer.pad_token_id
    keeps_logits = last_only and "logits_to_keep" in inspect.signature(lm.model.forward).parameters
    for _, idx in _batches(list(range(len(sequences))), lm.batch_size, desc):
        seqs = [sequences[i] for i in idx]
        lengths = [len(s) for s in seqs]
        ids = torch.full((len(seqs), max(lengths)), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        ids, rows, last = ids.to(lm.device), torch.arange(len(seqs)), torch.tensor(lengths) - 1
        keep = {}
        if keeps_logits:
            kept = sorted(set(last.tolist()))  # one set of positions for the batch: each row picks its own below
            keep = {"logits_to_keep": torch.tensor(kept, device=lm.device)}
            last = torch.tensor([kept.index(n) for n in last.tolist()])
        logits = lm.model(input_ids=ids, attention_mask=mask.to(lm.device), **keep).logits
        yield idx, ids, lengths, logits[rows, last] if last_only else logits


@torch.no_grad()
def token_logprobs(lm: LoadedModel, sequences: list[list[int]], score_from: list[int] | None = None,
                   desc: str = "score", moments: bool = False) -> list:
    """Log-probability of every token of each id sequence given its prefix, i.e. log p(x_t | x_<t) for
    t >= max(1, score_from[i]). `moments=True` returns (logp, mu, sigma) per sequence: mean and std of
    log p under the model's own next-token distribution at each position (what Min-K%++ normalises by)."""
    score_from = score_from or [1] * len(sequences)
    if lm.llm is not None and not moments:
        from openrlhf_rerule.openrlhf.vllm_offline import prompt_logprobs

        _fits_context(lm, sequences, 1, desc)
        return [torch.tensor(lp[max(1, start) - 1:], dtype=torch.float32)
                for lp, start in zip(prompt_logprobs(lm.llm, sequences), score_from)]
    results = [None] * len(sequences)
    for idx, ids, lengths, logits in _forward(lm, sequences, desc):
        for row, i in enumerate(idx):
            # One row at a time in fp32: a [T, V] log-softmax, not [B, T, V] (V is 128k for Llama-3).
            start = max(1, score_from[i]) - 1
            logp_all = torch.log_softmax(logits[row, start:lengths[row] - 1].float(), dim=-1)
            logp = logp_all.gather(-1, ids[row, start + 1:lengths[row], None])[:, 0].cpu()
            if moments:
                mu = (logp_all.exp() * logp_all).sum(-1)
                sigma = ((logp_all.exp() * logp_all.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
                results[i] = (logp, mu.cpu(), sigma.cpu())
            else:
                results[i] = logp
    return results


@torch.no_grad()
def next_token_logprobs(lm: LoadedModel, prompts: list[str], candidate_ids: list[int],
                        add_special_tokens: bool = True, desc: str = "next token") -> torch.Tensor:
    """[N, C] log-probabilities of each candidate token right after each prompt (multiple choice)."""
    sequences = [lm.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    out = torch.empty(len(prompts), len(candidate_ids))
    todo = list(range(len(prompts)))
    if lm.llm is not None:  # vLLM's top 20 hold every candidate of a confident model; the other rows: transformers
        from openrlhf_rerule.openrlhf.vllm_offline import top_next_logprobs

        _fits_context(lm, sequences, 1, desc)
        top = top_next_logprobs(lm.llm, sequences)
        for i, found in enumerate(top):
            if all(c in found for c in candidate_ids):
                out[i] = torch.tensor([found[c] for c in candidate_ids])
        todo = [i for i, found in enumerate(top) if not all(c in found for c in candidate_ids)]
    for idx, _, _, logits in _forward(lm, [sequences[i] for i in todo], desc, last_only=True) if todo else ():
        for row, i in enumerate(idx):
            out[todo[i]] = torch.log_softmax(logits[row].float(), dim=-1)[candidate_ids].cpu()
    return out


def answer_nll(lm: LoadedModel, prompts: list[str], answers: list[str], add_special_tokens: bool = False,
               desc: str = "answer nll") -> list[float]:
    """Mean token NLL of `answer` + EOS after the (already formatted) `prompt`: TOFU's length-normalised
    loss. As TOFU, prompt + answer is tokenised as one string and the answer is what follows the
    separately tokenised prompt (so SentencePiece word boundaries are the reference's)."""
    tok = lm.tokenizer
    sequences, starts = [], []
    for prompt, answer in zip(prompts, answers):
        sequences.append(tok(prompt + answer, add_special_tokens=add_special_tokens)["input_ids"] + [tok.eos_token_id])
        starts.append(len(tok(prompt, add_special_tokens=add_special_tokens)["input_ids"]))
    return [float(-lp.mean()) for lp in token_logprobs(lm, sequences, starts, desc=desc)]


def text_logprobs(lm: LoadedModel, texts: list[str], desc: str = "text log-probs", moments: bool = False) -> list:
    """Per-token log-probs of whole texts tokenised with special tokens (BOS), as MUSE and RWKU MIA do."""
    sequences = [lm.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]
    return token_logprobs(lm, sequences, desc=desc, moments=moments)
