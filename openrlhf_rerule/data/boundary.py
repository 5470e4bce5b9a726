"""Boundary prompts for Stage 2: questions in the style of the forget prompts about a neighbouring entity
(paper, Appendix A.2), with a gold answer.

- Online: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM's server, llama.cpp, ...). The base
  URL, model and key come from arguments or RERULE_BOUNDARY_BASE_URL / RERULE_BOUNDARY_MODEL /
  RERULE_BOUNDARY_API_KEY (falling back to OPENAI_BASE_URL / OPENAI_API_KEY). Requests run `batch_size` at a
  time in threads, retry with exponential backoff on network errors, 429 and 5xx, and every reply is cached
  in a jsonl file keyed by (model, prompt), so a rerun costs nothing. The prompt is ``prompts/boundary.txt``.
- Offline: swap the forget subject for a neighbouring entity whose answer to the swapped question is known
  (a row with exactly that prompt among the neighbour QA), e.g. the synthetic world's boundary people.
  Swapped questions with no known answer are dropped (and counted): a boundary row needs a gold answer.
"""

import json
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openrlhf_rerule.chat_endpoint import ChatEndpoint, ReplyCache

PROMPT_FILE = Path(__file__).with_name("prompts") / "boundary.txt"


class BoundaryClient:
    def __init__(self, base_url=None, model=None, api_key=None, cache_path=None, batch_size=8, max_retries=5,
                 backoff=1.0, timeout=60.0, temperature=0.7, prompt_file=PROMPT_FILE):
        self.base_url = (base_url or os.environ.get("RERULE_BOUNDARY_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or "https://api.openai.com/v1").rstrip("/")
        self.model = model or os.environ.get("RERULE_BOUNDARY_MODEL") or "gpt-4o-mini"
        self.api_key = api_key or os.environ.get("RERULE_BOUNDARY_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.batch_size = batch_size
        self.template = Path(prompt_file).read_text(encoding="utf-8")
        self.endpoint = ChatEndpoint(self.base_url, self.model, self.api_key, temperature=temperature,
                                     max_retries=max_retries, backoff=backoff, timeout=timeout)
        # Keyed by the model name alone (not the URL): the same model behind another server reuses the replies.
        self.cache = ReplyCache(cache_path, self.model) if cache_path else None

    @property
    def requests_sent(self) -> int:
        return self.endpoint.requests_sent

    def complete(self, prompt: str) -> str:
        """One chat completion, from the cache when it has been paid for before."""
        return self.cache.answer(prompt, self.endpoint.complete) if self.cache else self.endpoint.complete(prompt)

    def synthesize(self, forget_rows: list[dict]) -> tuple[list[dict], int]:
        """Boundary eval rows for forget rows; returns (rows, number of unusable replies)."""
        prompts = [self.template.format(subject=r.get("subject", ""), question=r["prompt"]) for r in forget_rows]
        replies = []
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            for start in range(0, len(prompts), self.batch_size):
                replies += list(pool.map(self.complete, prompts[start:start + self.batch_size]))
        rows, unusable = [], 0
        for source, reply in zip(forget_rows, replies):
            try:
                parsed = json.loads(re.sub(r"^```(?:json)?\s*|\s*```$", "", reply.strip()))
                question, answer, entity = parsed["question"], parsed["answer"], parsed.get("entity", "")
            except (json.JSONDecodeError, KeyError, TypeError):
                unusable += 1
                continue
            subject = source.get("subject", "")
            if not (isinstance(question, str) and isinstance(answer, str) and question.strip() and answer.strip()) or (
                    subject and subject.lower() in question.lower()):
                unusable += 1
                continue
            rows.append({"prompt": question, "answer": answer, "kind": "boundary", "subject": str(entity),
                         "source_prompt": source["prompt"]})
        return rows, unusable


def swap_offline(forget_rows: list[dict], neighbour_rows: list[dict], seed: int = 0) -> tuple[list[dict], int]:
    """Replace each forget row's subject by a neighbouring entity whose answer to the swapped prompt is known.

    Neighbours are the subjects of `neighbour_rows`; one whose name shares a word with the forget subject
    (a surname) is preferred, as the most confusable. Returns (boundary rows, number of forget rows dropped)."""
    known = {r["prompt"].lower(): r for r in neighbour_rows}
    neighbours = sorted({r["subject"] for r in neighbour_rows if r.get("subject")})
    rng = random.Random(seed)
    rows, dropped = [], 0
    for source in forget_rows:
        subject = source.get("subject", "")
        if not subject or subject not in source["prompt"]:
            dropped += 1
            continue
        candidates = [n for n in neighbours if n != subject and known.get(source["prompt"].replace(subject, n).lower())]
        if not candidates:
            dropped += 1
            continue
        close = [n for n in candidates if set(n.split()) & set(subject.split())]
        entity = rng.choice(close or candidates)
        match = known[source["prompt"].replace(subject, entity).lower()]
        rows.append({"prompt": match["prompt"], "answer": match["answer"], "kind": "boundary", "subject": entity,
                     "source_prompt": source["prompt"]})
    return rows, dropped
