"""One client for OpenAI-compatible endpoints (OpenAI, vLLM's server, llama.cpp, ...), used by boundary synthesis,
the naturalness judge and PURGE's corpus pipeline, and one jsonl reply cache for any prompt -> reply function.
Standard library only."""

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint refused the request, or stayed unreachable through every retry."""


APIS = ("chat", "completions")


class ChatEndpoint:
    """POST {base_url}/chat/completions with one user message (api="chat"), or {base_url}/completions with the raw
    prompt and no chat template (api="completions"); transient failures (network errors, 408/409/429, 5xx) are
    retried with exponential backoff. Calling it on a list of prompts answers each in turn."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, temperature: float = 0.0,
                 max_tokens: int | None = None, max_retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
                 top_p: float | None = None, api: str = "chat"):
        if api not in APIS:
            raise ValueError(f"unknown endpoint api {api!r} (expected one of {APIS})")
        self.base_url, self.model, self.api_key, self.api = base_url.rstrip("/"), model, api_key, api
        self.temperature, self.max_tokens, self.top_p = temperature, max_tokens, top_p
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.name = f"http:{model}@{self.base_url}"
        self.requests_sent = 0

    def complete(self, prompt: str) -> str:
        payload = {"model": self.model, "temperature": self.temperature}
        if self.api == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.top_p is not None:
            payload["top_p"] = self.top_p
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps(payload).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            path = "chat/completions" if self.api == "chat" else "completions"
            request = urllib.request.Request(f"{self.base_url}/{path}", data=body, headers=headers)
            try:
                self.requests_sent += 1
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    choice = json.loads(response.read().decode("utf-8"))["choices"][0]
                    return choice["message"]["content"] if self.api == "chat" else choice["text"]
            except urllib.error.HTTPError as e:
                if e.code not in RETRY_STATUS or attempt == self.max_retries:
                    raise EndpointError(f"endpoint {self.base_url}: HTTP {e.code}: {e.read()[:200]!r}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.max_retries:
                    raise EndpointError(f"endpoint {self.base_url} unreachable: {e}") from None
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    def __call__(self, prompts: list[str]) -> list[str]:
        return [self.complete(p) for p in prompts]


class ReplyCache:
    """Replies in a jsonl file keyed by sha256(name, prompt), appended as soon as each arrives, so a rerun or an
    interrupted run never pays twice. `name` identifies who answered (a model, a judge). Thread-safe."""

    def __init__(self, path, name: str):
        self.path, self.name = Path(path), name
        self.replies: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            for line_no, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self.replies[entry["key"]] = entry["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"{self.path}: line {line_no}: not a cache entry with fields 'key' and "
                                     "'reply' (delete the line or the file to re-query)") from None

    def key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.name}\n{prompt}".encode("utf-8")).hexdigest()

    def get(self, prompt: str) -> str | None:
        return self.replies.get(self.key(prompt))

    def answer(self, prompt: str, ask) -> str:
        """The cached reply to `prompt`, or `ask(prompt)` stored as soon as it arrives."""
        reply = self.get(prompt)
        if reply is None:
            reply = ask(prompt)
            self.put(prompt, reply)
        return reply

    def put(self, prompt: str, reply: str) -> None:
        with self._lock:
            self.replies[self.key(prompt)] = reply
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": self.key(prompt), "name": self.name, "prompt": prompt,
                                    "reply": reply}) + "\n")
