"""A scripted loopback OpenAI-compatible HTTP server for tests (stdlib only, one thread per request).

Use it through the `openai_server` fixture (import it: `from openai_server import openai_server`, or
add that line to conftest.py) or as a context manager:

    with OpenAIServer() as server:
        server.script([Fault(500), Reply(content="```python\\n...```")])
        settings = ModelSettings(base_url=server.base_url, api_key="sk-test", model=server.model_id)
        ...
        assert len(server.chat_requests) == 2

Routes (under `/v1`, as every OpenAI-compatible server):
- `POST /v1/chat/completions` answers with the next scripted step (`Reply`, `Fault`, `Slow`, `Trickle`, `Drop`,
  `Raw`, or a callable taking the `Recorded` request and returning one of those). When the script is used up it
  answers `default` when set, else a 400 saying "loopback script exhausted" (400 is never retried, so a
  test that asks more than it scripted fails fast instead of sleeping through retries).
- `GET /v1/models` lists `server.models` (raw dicts, so a test can mimic vLLM's `max_model_len`,
  llama.cpp's `meta`, or a bare Ollama entry); `script_models([...])` queues faults for it.
- `GET /props` (llama.cpp's server properties) answers `server.props`, or 404 when it is None.
A request with `"stream": true` gets the same steps as server-sent events: a `Reply` as chat.completion.chunk
events (reasoning deltas, then content in DELTA_CHARS pieces, then the finish_reason, then usage when
`stream_options.include_usage` asks for it), `Trickle` as those events one per `interval_s`, `Raw` as its body.
Every request is recorded in `server.requests` (method, path, parsed JSON body, lower-cased headers); `sent` says
what a stream delivered and whether the client went away before its end.
`server.down_for(seconds)` mimics a model server restart: nothing listens (connection refused) until it serves
again on the same port.
Bounded: request bodies over 16 MiB get 413, and after `max_requests` requests every answer is a 400;
`Slow` and `Trickle` steps wake up when the server stops, so stopping never waits for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

MAX_BODY_BYTES = 16 * 1024 * 1024
DELTA_CHARS = 16  # characters per streamed delta: a reply arrives in many chunks, as from a real server


@dataclass(frozen=True)
class Reply:
    """A normal chat completion; `usage=None` omits the usage object, as some servers do."""

    content: str | None = ""
    reasoning_content: str | None = None  # vLLM (older), llama.cpp, DeepSeek
    reasoning: str | None = None  # vLLM (newer), OpenRouter, Ollama
    finish_reason: str | None = "stop"
    usage: tuple[int, int] | None = (100, 50)  # (prompt_tokens, completion_tokens)
    model: str | None = None  # default: the model the request named


@dataclass(frozen=True)
class Fault:
    """An HTTP error with an OpenAI-style error body (`{"error": {"message", "type", "code"}}`)."""

    status: int = 500
    message: str = "loopback fault"
    code: str | None = None
    retry_after: str | None = None  # the `Retry-After` header, e.g. "1"
    retry_after_ms: str | None = None  # the `retry-after-ms` header, e.g. "50"


@dataclass(frozen=True)
class Slow:
    """Answer `then` after `seconds`: beyond a short client timeout this is a timeout."""

    seconds: float
    then: Reply = field(default_factory=lambda: Reply(content="too late"))


@dataclass(frozen=True)
class Trickle:
    """Send the whole answer (to `then`; the model list on `/v1/models`), status line too, a byte per `interval_s`;
    to a stream request, one event per `interval_s` after the headers."""

    interval_s: float
    then: Reply = field(default_factory=lambda: Reply(content="slow " * 100))


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending any response."""


@dataclass(frozen=True)
class Raw:
    """Any status, content type and body: by default a proxy's HTML page with status 200 (not JSON)."""

    body: str = "<html><body>502 Bad Gateway</body></html>"
    status: int = 200
    content_type: str = "text/html"


# A JSON completion without any choice: a server fault the client must not take for a reply.
NO_CHOICES = Raw(body='{"id": "x", "object": "chat.completion", "choices": []}', content_type="application/json")
# The same as a stream: chunks and [DONE], but never a choice.
NO_CHOICE_STREAM = Raw(
    body='data: {"id": "x", "object": "chat.completion.chunk", "choices": []}\n\ndata: [DONE]\n\n',
    content_type="text/event-stream",
)
# A stream whose event data is a proxy's page, not JSON.
HTML_STREAM = Raw(body="data: <html><body>502 Bad Gateway</body></html>\n\n", content_type="text/event-stream")

Step = Reply | Fault | Slow | Trickle | Drop | Raw


@dataclass
class Sent:
    """What the server streamed in answer to one request; `ended` is set once it stopped sending, for any reason."""

    content_chars: int = 0  # characters of content delivered in deltas
    events: int = 0  # events written
    client_gone: bool = False  # the client closed the connection before the stream's end
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it; `body` is the parsed JSON or None."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived
    sent: Sent = field(default_factory=Sent)  # filled while a stream is sent

    @property
    def stream(self) -> bool:
        """The client asked for server-sent events."""
        return isinstance(self.body, dict) and bool(self.body.get("stream"))


def _default_models() -> list[dict[str, Any]]:
    return [{"id": "test-model", "object": "model", "owned_by": "loopback", "max_model_len": 32768}]


class OpenAIServer:
    """The server; start/stop it with `with`, or use the `openai_server` fixture."""

    def __init__(
        self,
        *,
        models: list[dict[str, Any]] | None = None,
        api_key: str | None = None,
        max_requests: int = 1000,
    ) -> None:
        self.models: list[dict[str, Any]] = _default_models() if models is None else models
        self.props: dict[str, Any] | None = None
        self.api_key = api_key  # when set, requests without `Authorization: Bearer <key>` get 401
        self.default: Step | Callable[[Recorded], Step] | None = None
        self.max_requests = max_requests
        self.requests: list[Recorded] = []
        self._chat: deque[Step | Callable[[Recorded], Step]] = deque()
        self._models_faults: deque[Step] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the test author's API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, what OPENAI_BASE_URL should be."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def model_id(self) -> str:
        """The first listed model's id."""
        return self.models[0]["id"]

    def script(self, steps: Iterable[Step | Callable[[Recorded], Step]]) -> None:
        """Queue the answers to the next chat completion requests, in order (appends to what is queued)."""
        with self._lock:
            self._chat.extend(steps)

    def script_models(self, steps: Iterable[Step]) -> None:
        """Queue answers for the next `/v1/models` requests (faults); afterwards it lists `models` again."""
        with self._lock:
            self._models_faults.extend(steps)

    @property
    def pending(self) -> int:
        """Chat steps not yet used."""
        with self._lock:
            return len(self._chat)

    @property
    def chat_requests(self) -> list[Recorded]:
        """The chat completion requests received whole so far (not those a client hung up on while sending)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions") and r.body is not None]

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Listen on 127.0.0.1 (a free port the first time, the same port again after `stop`) in a daemon thread."""
        handler = type("Handler", (_Handler,), {"owner": self})
        port = self._httpd.server_address[1] if self._httpd is not None else 0
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        # A short poll interval so that stopping takes milliseconds, not serve_forever's default 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="openai-loopback", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; waiting `Slow` steps wake up and give up."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def down_for(self, seconds: float) -> threading.Thread:
        """A restart: stop listening now (connections are refused), serve again on the same port after `seconds`."""
        stopped = threading.Event()

        def restart() -> None:
            self.stop()
            stopped.set()
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=restart, name="openai-loopback-restart", daemon=True)
        thread.start()
        stopped.wait(5)  # called from a handler, this returns before the handler answers; the port is closed by then
        return thread

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ----------------------------------------------------------------------------

    def _record(self, request: Recorded) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def _next_chat(self, request: Recorded) -> Step:
        with self._lock:
            step = self._chat.popleft() if self._chat else self.default
        if step is None:
            return Fault(400, "loopback script exhausted: the test asked for more completions than it scripted")
        return step(request) if callable(step) else step

    def _next_models(self) -> Step | None:
        with self._lock:
            return self._models_faults.popleft() if self._models_faults else None


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        # One request per connection: no idle keep-alive threads outlive the server.
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(413, "request body too large for the loopback server")
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        request = Recorded(method, path, body, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
        count = self.owner._record(request)
        if count > self.owner.max_requests:
            self._error(400, f"loopback server: more than {self.owner.max_requests} requests")
            return
        key = self.owner.api_key
        if key is not None and request.headers.get("authorization") != f"Bearer {key}":
            self._error(401, "Incorrect API key provided.", code="invalid_api_key")
            return
        if method == "POST" and path == "/v1/chat/completions":
            self._chat(request)
        elif method == "GET" and path == "/v1/models":
            fault = self.owner._next_models()
            if fault is None:
                self._json(200, {"object": "list", "data": self.owner.models})
            else:
                self._step(fault, request)
        elif method == "GET" and path == "/props" and self.owner.props is not None:
            self._json(200, self.owner.props)
        else:
            self._error(404, f"no route {method} {path} on the loopback server", code="not_found")

    def _chat(self, request: Recorded) -> None:
        if not isinstance(request.body, dict):
            self._error(400, "the request body is not a JSON object")
        else:
            self._step(self.owner._next_chat(request), request)

    def _step(self, step: Step, request: Recorded) -> None:
        if isinstance(step, Slow):
            if self.owner._stop.wait(step.seconds):
                return  # server stopping: drop the connection
            step = step.then
        if isinstance(step, Trickle) and request.stream:
            self._events(step.then, request, step.interval_s)
        elif isinstance(step, Trickle):
            self._trickle(step, request)
        elif isinstance(step, Reply) and request.stream:
            self._events(step, request, 0.0)
        elif isinstance(step, Reply):
            self._json(200, _completion(step, request))
        elif isinstance(step, Fault):
            headers = {}
            if step.retry_after is not None:
                headers["Retry-After"] = step.retry_after
            if step.retry_after_ms is not None:
                headers["retry-after-ms"] = step.retry_after_ms
            self._error(step.status, step.message, code=step.code, headers=headers)
        elif isinstance(step, Raw):
            self._send(step.status, step.body.encode(), step.content_type)
        elif isinstance(step, Drop):
            pass  # answer nothing; the connection closes when the handler returns
        else:
            raise TypeError(f"not a script step: {step!r}")

    def _trickle(self, step: Trickle, request: Recorded) -> None:
        chat = request.path.endswith("/chat/completions")
        payload = _completion(step.then, request) if chat else {"object": "list", "data": self.owner.models}
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        data = head + body
        for position in range(len(data)):
            if self.owner._stop.wait(step.interval_s):
                return  # server stopping: drop the connection
            try:
                self.wfile.write(data[position : position + 1])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (its deadline)

    def _events(self, reply: Reply, request: Recorded, interval_s: float) -> None:
        """The reply as server-sent events, one per `interval_s`; stops when the client goes away."""
        sent = request.sent
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # the body ends when the connection closes
            self.end_headers()
            self.wfile.flush()
            for chunk, content_chars in _chunks(reply, request):
                if interval_s and self.owner._stop.wait(interval_s):
                    return  # server stopping: drop the connection
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                sent.events += 1
                sent.content_chars += content_chars
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            sent.client_gone = True
        finally:
            sent.ended.set()

    def _error(self, status: int, message: str, *, code: str | None = None, headers: dict | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)

    def _json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer


def _completion(reply: Reply, request: Recorded) -> dict[str, Any]:
    """The chat.completion object for a scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning_content is not None:
        message["reasoning_content"] = reply.reasoning_content
    if reply.reasoning is not None:
        message["reasoning"] = reply.reasoning
    payload: dict[str, Any] = {
        "id": f"chatcmpl-loopback-{int(request.at * 1e6)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request.body.get("model") or "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
    }
    if reply.usage is not None:
        prompt, completion = reply.usage
        payload["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return payload


def _chunks(reply: Reply, request: Recorded) -> Iterator[tuple[dict[str, Any], int]]:
    """The chat.completion.chunk objects of a scripted reply, each with the characters of content it carries."""
    base = {
        "id": f"chatcmpl-loopback-{int(request.at * 1e6)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model or request.body.get("model") or "test-model",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": ""}), 0
    for name in ("reasoning_content", "reasoning"):
        text = getattr(reply, name) or ""
        for start in range(0, len(text), DELTA_CHARS):
            yield chunk({name: text[start : start + DELTA_CHARS]}), 0
    content = reply.content or ""
    for start in range(0, len(content), DELTA_CHARS):
        piece = content[start : start + DELTA_CHARS]
        yield chunk({"content": piece}), len(piece)
    yield chunk({}, reply.finish_reason), 0
    options = request.body.get("stream_options")
    if reply.usage is not None and isinstance(options, dict) and options.get("include_usage"):
        prompt, completion = reply.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        yield {**base, "choices": [], "usage": usage}, 0


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started loopback server listing one model, `test-model` (max_model_len 32768)."""
    with OpenAIServer() as server:
        yield server
