"""A real OpenAI-compatible HTTP server on 127.0.0.1, programmable per request.

Serves POST /v1/chat/completions over HTTP/1.1 keep-alive (stdlib ``http.server``, one
thread per connection), so the real ``openai`` client talks to it exactly as to a provider.
Each request is recorded (:class:`Call`) and answered by an :class:`Action`: taken from a
per-key script (``server.script(key, ...)``), else from ``server.handler(call)``, else the
default answer ``{"<key>": personas}``. The key is the opaque customer/product key of the
prompt (the one the answer format names). Used by tests/test_llm.py and
bench/llm_throughput.py; nothing here talks to the network beyond the loopback.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """200 with a chat completion; ``content=None`` means the default answer."""

    content: str | None = None
    latency: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"


@dataclass
class Status:
    """An HTTP error with optional headers (e.g. Retry-After) and an OpenAI error body."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "error"
    latency: float = 0.0


@dataclass
class Reset:
    """Close the connection with a TCP reset instead of answering."""

    latency: float = 0.0


@dataclass
class Hang:
    """Answer nothing for ``seconds`` (longer than the client's timeout), then close."""

    seconds: float = 5.0


@dataclass
class Echo:
    """Answer with the untrusted product names of the prompt, verbatim (an injection echo)."""

    latency: float = 0.0


Action = Answer | Status | Reset | Hang | Echo


@dataclass
class Call:
    """One request as the server saw it."""

    n: int
    key: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    started: float
    status: int | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def user_prompt(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")


_FORMAT_KEY = re.compile(r'in this format: \{"([^"]+)"')
_BLOCK = re.compile(r"<(purchases|product)>\n(.*?)\n</\1>", re.DOTALL)


def prompt_key(body: dict[str, Any]) -> str | None:
    """The answer key a request asks for: from the schema, else from the prompt's format line."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    required = schema.get("required") or []
    if required:
        return str(required[0])
    for message in body.get("messages", []):
        if message.get("role") == "user":
            match = _FORMAT_KEY.search(message.get("content") or "")
            if match:
                return match.group(1)
    return None


def untrusted_names(prompt: str) -> list[str]:
    """The product names quoted in a prompt's <purchases>/<product> block, decoded."""
    match = _BLOCK.search(prompt)
    if not match:
        return []
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(line)[0] for line in match.group(2).split("\n")]


class _QuietServer(ThreadingHTTPServer):
    """Records handler errors instead of printing them: a client that drops its connection
    (after a 403, a timeout, a reset) is what several tests provoke, and a traceback on the
    test process's stderr would leak into the one-line errors the jobs are checked for."""

    errors: list[BaseException | None]

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(sys.exc_info()[1])


class FakeOpenAI:
    """The programmable server. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        personas: Sequence[str] = ("Home Decor Aficionado",),
        supports_schema: bool = True,
        handler: Callable[[Call], Action | None] | None = None,
    ) -> None:
        self.latency = latency
        self.personas = list(personas)
        self.supports_schema = supports_schema
        self.handler = handler
        self.calls: list[Call] = []
        self._scripts: dict[str, deque[Action]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- programming -----------------------------------------------------------------------

    def script(self, key: str, *actions: Action) -> None:
        """Answer the next requests for ``key`` with these actions, in order."""
        with self._lock:
            self._scripts[key].extend(actions)

    def calls_for(self, key: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.key == key]

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                server._handle(self)

        httpd = _QuietServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        httpd.errors = []
        httpd.daemon_threads = True
        httpd.request_queue_size = 256
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    def _next_action(self, call: Call) -> Action:
        with self._lock:
            queue = self._scripts.get(call.key or "")
            if queue:
                return queue.popleft()
        if self.handler is not None:
            action = self.handler(call)
            if action is not None:
                return action
        return Answer()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length)
        if req.path.rstrip("/") != "/v1/chat/completions":
            self._send(req, 404, {"error": {"message": f"no route {req.path}"}})
            return
        body = json.loads(raw or b"{}")
        with self._lock:
            call = Call(
                n=len(self.calls) + 1,
                key=prompt_key(body),
                body=body,
                headers={k.lower(): v for k, v in req.headers.items()},
                started=time.monotonic(),
            )
            self.calls.append(call)
        fmt = body.get("response_format") or {}
        if not self.supports_schema and fmt.get("type") == "json_schema":
            call.status = 400
            self._send(
                req,
                400,
                _error("response_format json_schema is not supported", "invalid_request_error"),
            )
            return
        action = self._next_action(call)
        self._sleep(getattr(action, "latency", 0.0) or self.latency)
        if isinstance(action, Reset):
            call.status = -1
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            req.connection.close()
            req.close_connection = True
            return
        if isinstance(action, Hang):
            call.status = -2
            self._sleep(action.seconds)
            req.close_connection = True
            return
        if isinstance(action, Status):
            call.status = action.code
            self._send(req, action.code, _error(action.message, "server_error"), action.headers)
            return
        if isinstance(action, Echo):
            content = "\n".join(untrusted_names(call.user_prompt))
            answer = Answer(content=content)
        else:
            answer = action
        content = answer.content
        if content is None:
            content = json.dumps({call.key or "answer": self.personas})
        prompt_chars = sum(len(m.get("content") or "") for m in call.messages)
        prompt_tokens = answer.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = math.ceil(prompt_chars / 4)
        completion_tokens = answer.completion_tokens
        if completion_tokens is None:
            completion_tokens = math.ceil(len(content) / 4)
        call.status = 200
        self._send(
            req,
            200,
            {
                "id": f"chatcmpl-{call.n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "test-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": answer.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        code: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            req.send_response(code)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                req.send_header(name, value)
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            req.close_connection = True


_SET_SIZE = (r"Propose (\d+) customer personas", r"Give the (\d+) most", r"Choose the final (\d+)")


def persona_set_answer(call: Call) -> Answer:
    """A handler for catalog generation: as many personas as the step asks for, named
    "<step> persona <call no>.<i>" so that every answer (and every merge prompt) differs."""
    prompt = call.user_prompt
    size = next(int(m.group(1)) for p in _SET_SIZE if (m := re.search(p, prompt)))
    step = "final" if "final" in prompt else "merge" if "candidate persona sets" in prompt else "p"
    personas = [
        {"name": f"{step} persona {call.n}.{i}", "definition": f"buys thing {i}"}
        for i in range(size)
    ]
    return Answer(content=json.dumps({"personas": personas}))


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@contextmanager
def running(**kwargs: Any) -> Iterator[FakeOpenAI]:
    """A started server for a ``with`` block."""
    server = FakeOpenAI(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
