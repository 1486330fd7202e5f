"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, for tests.

Scripted replies (status, content) are served first, then a default responder answers. Every
request body is recorded, so tests can count API calls. An error message may contain ``{auth}``
(the request's Authorization header) or ``{key}`` (the key in it): the server echoes the credential
back, as careless servers and proxies do, so tests can prove it is never stored. ``fail_with``
makes every request fail with that status (and the echoed message ``fail_message``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str, model: str = "gpt-4o", prompt_tokens: int = 120, completion_tokens: int = 80) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class OpenAIServer:
    def __init__(self, default: Callable[[dict], str], fail_with: int | None = None,
                 fail_message: str = "invalid credentials {auth} (key {key})"):
        self.default = default
        self.fail_with, self.fail_message = fail_with, fail_message
        self.script: list[tuple[int, str]] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    scripted = server.script.pop(0) if server.script else None
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                auth = self.headers.get("Authorization") or ""
                echo = {"auth": auth, "key": auth.removeprefix("Bearer ").strip()}
                if server.fail_with and not scripted:
                    scripted = (server.fail_with, server.fail_message)
                if scripted and scripted[0] != 200:
                    return self._send(scripted[0], {"error": {"message": scripted[1].format(**echo),
                                                              "type": "server_error", "key_seen": echo["key"]}},
                                      {"retry-after-ms": "5", "x-echo-authorization": auth})
                content = scripted[1] if scripted else server.default(body)
                self._send(200, completion(content, body.get("model", "gpt-4o")))

            def _send(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "OpenAIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
