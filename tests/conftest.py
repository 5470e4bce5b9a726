"""Shared test fixtures."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ChatStub:
    """A local OpenAI-compatible /chat/completions (and /completions) server on 127.0.0.1 (never any other address).

    `reply(body)` returns the assistant's content, or an int HTTP status to fail with. Every request is recorded
    in `calls` as {"path", "auth", "body"}."""

    def __init__(self, reply):
        self.reply, self.calls, lock = reply, [], threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    stub.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    answer = stub.reply(body)
                if isinstance(answer, int):
                    self.send_response(answer)
                    self.end_headers()
                    return
                choice = {"text": answer} if self.path.endswith("/v1/completions") else {
                    "message": {"role": "assistant", "content": answer}}
                payload = json.dumps({"choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def chat_stub():
    """chat_stub(reply) starts a ChatStub; every stub started in a test is shut down after it."""
    started = []

    def start(reply):
        started.append(ChatStub(reply))
        return started[-1]

    yield start
    for stub in started:
        stub.httpd.shutdown()
        stub.httpd.server_close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: thread start-up costs more than it saves, and the CI cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
