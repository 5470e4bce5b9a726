"""Token-level plumbing shared by both stages: prompt formatting, HF sampling, batch packing and per-token
log-probs. Every batch has one layout, [left-padded prompt | right-padded response], so rollouts, SFT
examples and replayed groups all go through the same `response_logprobs`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import GenerationConfig


def autocast(device: torch.device):
    """bf16 autocast on GPUs that support it; plain fp32 elsewhere (CPU runs stay bit-reproducible)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def format_prompt(tokenizer, prompt: str, chat_template: str = "auto", input_template: str = "") -> list[int]:
    """The prompt's token ids, ending where the answer starts. auto: the user turn in the tokenizer's chat template
    when it has one; none: the raw prompt text, as PURGE's authors train and sample (TRL's GRPOTrainer with plain
    string prompts, github strzar/purge src/purge.py), or `input_template.format(prompt)` when given (OpenRLHF's
    --data.input_template, which it too applies only without the chat template). No special tokens are added
    either way, as TRL tokenizes."""
    if chat_template == "auto" and tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = input_template.format(prompt) if input_template else prompt
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Batch:
    """Sequences [B, P + T]: prompts left-padded to P, responses right-padded to T."""
    input_ids: torch.Tensor       # long [B, P+T]
    attention_mask: torch.Tensor  # long [B, P+T]
    action_mask: torch.Tensor     # bool [B, T]: response tokens that count (up to and including EOS)

    @property
    def response_len(self) -> int:
        return self.action_mask.shape[1]

    def rows(self, idx: slice) -> "Batch":
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.action_mask[idx])


def pack(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]] | torch.Tensor,
         action_mask: torch.Tensor | None, pad_id: int, device: torch.device) -> Batch:
    """Build a Batch from per-row prompt ids and response ids. `responses` may be a padded [B, T] tensor
    with its `action_mask`, or ragged lists (then every listed token counts)."""
    if action_mask is None:
        width = max(len(r) for r in responses)
        resp = torch.full((len(responses), width), pad_id, dtype=torch.long)
        action_mask = torch.zeros((len(responses), width), dtype=torch.bool)
        for i, r in enumerate(responses):
            resp[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
            action_mask[i, :len(r)] = True
    else:
        resp = torch.as_tensor(responses, dtype=torch.long)
        action_mask = action_mask.bool()
    plen = max(len(p) for p in prompts)
    prompt = torch.full((len(prompts), plen), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), plen), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            prompt[i, plen - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            prompt_mask[i, plen - len(p):] = 1
    resp = torch.where(action_mask, resp.cpu(), torch.full_like(resp.cpu(), pad_id))
    return Batch(input_ids=torch.cat([prompt, resp], 1).to(device),
                 attention_mask=torch.cat([prompt_mask, action_mask.long().cpu()], 1).to(device),
                 action_mask=action_mask.to(device))


def response_logprobs(model, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """log pi(token) for every response position, float32 [B, T]. Position ids follow the attention mask,
    as in HF generation, so left padding does not shift a sequence's positions."""
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with autocast(batch.input_ids.device):
        # Only the logits that predict response tokens: saves the [B, P, V] part of the LM head.
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids,
                       logits_to_keep=batch.response_len + 1).logits[:, :-1]
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = batch.input_ids[:, -batch.response_len:]
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int, temperature: float,
           top_p: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """n responses per prompt, prompt-major (the n samples of prompt 0 first). Returns response ids
    [G*n, T] (pad after EOS) and the action mask (tokens up to and including the first EOS).
    temperature 0 means greedy (n must then be 1 to be meaningful)."""
    empty = [[] for _ in prompts]
    batch = pack(prompts, empty, torch.zeros((len(prompts), 0), dtype=torch.bool), tokenizer.pad_token_id, device)
    greedy = temperature <= 0
    gen_cfg = GenerationConfig(
        do_sample=not greedy, temperature=None if greedy else temperature, top_p=None if greedy else top_p,
        top_k=None, max_new_tokens=max_new_tokens, num_return_sequences=n,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    with autocast(device):
        out = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             generation_config=gen_cfg)
    responses = out[:, batch.input_ids.shape[1]:]
    is_eos = responses == tokenizer.eos_token_id
    # Keep tokens up to and including the first EOS; everything after it is padding.
    after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
    mask = ~after_eos
    return responses.cpu(), mask.cpu()


def decode_responses(tokenizer, responses: torch.Tensor, mask: torch.Tensor) -> list[str]:
    out = []
    for ids, m in zip(responses.tolist(), mask.tolist()):
        ids = [t for t, keep in zip(ids, m) if keep and t != tokenizer.eos_token_id]
        out.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return out
