"""Talking to the model: any OpenAI-compatible endpoint through the official `openai` client, over HTTP.

Retries are this module's own loop (the client runs with `max_retries=0`), so they are deterministic to
test and also cover faults the client cannot see: a 200 whose body is not JSON or holds no choice.
- Retried, with exponential backoff and jitter, for as long as the endpoint patience lasts (`patience_s`,
  counted from the first fault: a model server restarted overnight comes back within it): connection errors,
  requests past their deadline, 408/409/429/500/502/503/504, non-JSON bodies, completions without a choice.
  `Retry-After` / `retry-after-ms` are honoured, capped. `max_retries`, when set, also caps the tries in all
  (the first included).
- A request has a deadline: its whole answer within `timeout_s` of wall clock. The read timeout alone
  restarts with every byte, so a server that trickles its answer could hold one request for hours. A hung
  or reloading server misses deadlines too, so they are retried within the patience like the faults above;
  when the patience runs out on one, the message says to raise OPENAI_TIMEOUT for a model that is just slow.
- Not retried: 400/401/403/404 and any other 4xx, and 429 `insufficient_quota`: one clear EndpointError.
Every completion is streamed, so the client can stop reading as soon as the reply is complete by the reply format
(`reply_complete`): closing the stream closes the connection, and vLLM and llama.cpp then stop generating. A model
that rambles on after its blocks would otherwise hold each request until its token limit. Usage is asked for in the
last chunk (`stream_options`; a server that rejects it is asked without from then on) and estimated when absent.
A client for a `json` reply format sends reply_format.JSON_SCHEMA as `response_format` and stops at the closed object;
`json_probe` (the doctor's) says whether the server's constraint held.
A server or proxy that ignores `stream` and answers one JSON completion is read as such. A stream whose data is
not JSON, that holds no choice, or that carries an error is a server fault, retried like a 5xx.
The API key is never shown: ModelSettings' repr leaves it out and every message is scrubbed of it.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from autotrade.durations import format_duration
from autotrade.errors import ConfigError, EndpointError, ReplyError
from autotrade.propose.reply import reply_complete, split_reasoning
from autotrade.propose.reply_format import JSON, PROBE_PROMPT, TEXT, holds_json_reply, json_reply, response_format
from autotrade.untrusted import clean_text

if TYPE_CHECKING:
    import openai

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CHARS_PER_TOKEN = 4  # rough size of a token, to estimate usage when the server reports none
LIST_TIMEOUT_S = 30.0  # listing models is cheap; do not wait a generation timeout for it
PROPS_TIMEOUT_S = 5.0
OLLAMA_PORT = 11434
START_HINT = (
    "start your server (vLLM: `vllm serve MODEL`; llama.cpp: `llama-server -m FILE.gguf --port 8080`; "
    "Ollama: `ollama serve`) or set OPENAI_BASE_URL"
)
# OpenAI reasoning models reject `max_tokens` and a non-default temperature.
_REASONING_MODEL = re.compile(r"^(o\d+(-.*)?|gpt-5.*)$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ModelSettings:
    """Where the model lives and how to ask it; timeouts and delays in seconds."""

    base_url: str
    api_key: str = field(repr=False)
    model: str | None = None  # None: the server's only model
    timeout_s: float = 600.0  # deadline of one whole answer; 30B-class local models can think for minutes
    max_tokens: int | None = None  # None: the server's default
    temperature: float | None = None  # None: the server's default
    extra_body: dict[str, Any] | None = None  # sent only when set
    patience_s: float = 1800.0  # how long faults that may heal are retried, from the first one
    max_retries: int | None = None  # a cap on tries in all, the first included; None: patience alone decides
    retry_base_s: float = 1.0  # first backoff delay; doubles each try
    retry_max_s: float = 30.0  # longest backoff delay
    retry_after_cap_s: float = 120.0  # longest wait a server's Retry-After may impose
    reply_format: str = TEXT  # "json": the answer is constrained to reply_format.JSON_SCHEMA (`response_format`)


@dataclass(frozen=True)
class ModelInfo:
    """One model the server lists; context_length in tokens when the server says it."""

    id: str
    context_length: int | None = None


@dataclass(frozen=True)
class Completion:
    """One reply: content without reasoning, reasoning apart, usage in tokens, latency in seconds."""

    content: str
    reasoning: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool  # True when the counts are chars / 4: the server sent no usage, or the reply was stopped
    latency_s: float  # the successful request alone
    model: str
    attempts: int = 1  # HTTP requests made, retries included
    deadline_hits: int = 0  # requests abandoned at the deadline (timeout_s) before this one answered
    early_stop: str | None = None  # why reading stopped once the reply was complete (finish_reason "early_stop")
    received_chars: int = 0  # characters received, content and reasoning together, as sent (think tags included)


@dataclass(frozen=True)
class PreflightReport:
    """What the preflight found: the endpoint answers, the model exists, and the prompt fits."""

    base_url: str  # without credentials or query
    model: str
    models: tuple[ModelInfo, ...]
    context_length: int | None
    prompt_tokens: int  # estimated from the prompt's characters
    max_tokens: int | None
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class EndpointWait:
    """The endpoint failed in a way that may heal: the client tries again in `retry_in_s` seconds."""

    problem: str  # e.g. "connection refused", "HTTP 503: Loading model"
    tries: int  # tries made so far
    retry_in_s: float
    patience_left_s: float  # seconds until the client gives up, from now


class _ServerFault(Exception):
    """A 200 answer that is not a usable completion: treated like a 5xx."""


class _DeadlineHit(Exception):
    """The request was abandoned: no whole answer within its deadline."""


@dataclass
class _Answer:
    """What a server answered, streamed or whole, before it becomes a Completion; texts as received."""

    content: str = ""  # think tags still in it
    reasoning: str = ""  # the reasoning fields' text
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    early_stop: str | None = None


def is_openai_reasoning_model(model: str) -> bool:
    """True for OpenAI's o-series and gpt-5* (also behind a provider prefix such as `openai/`)."""
    return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1].lower()))


def endpoint_urls(base_url: str) -> list[str]:
    """The endpoints a base URL names: one, or several separated by commas (replicas of one model)."""
    return [part.strip() for part in base_url.split(",") if part.strip()]


def display_url(url: str) -> str:
    """The URL (each of several, comma-separated) without user:password or query string, safe to print."""
    urls = endpoint_urls(url)
    if len(urls) > 1:
        return ",".join(display_url(one) for one in urls)
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def estimate_tokens(chars: int) -> int:
    """Tokens in a text of `chars` characters, roughly (chars / 4, rounded up)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


class ModelClient:
    """One endpoint and model; `sleep`, `clock` and `rng` are injectable so tests can observe the backoff.

    `on_wait` hears of every wait before a retry (to show a countdown); it must not raise.
    """

    def __init__(
        self,
        settings: ModelSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_wait: Callable[[EndpointWait], None] | None = None,
    ) -> None:
        self.settings = settings
        self.url = display_url(settings.base_url)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_wait = on_wait
        self._client: openai.OpenAI | None = None
        self._closed = False
        self._model = settings.model
        self._stream_options = True  # False once the server has refused `stream_options`

    def __repr__(self) -> str:
        return f"ModelClient({self.url!r}, model={self._model!r})"

    def _openai(self) -> openai.OpenAI:
        # Imported here: `import openai` costs over half a second, and `autotrade --help` must stay fast.
        if self._closed:  # a request cut off by close() must not open a new connection to retry
            raise EndpointError(f"the client for {self.url} was closed")
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.settings.base_url,
                api_key=self.settings.api_key or "EMPTY",  # the client refuses an empty key
                timeout=self.settings.timeout_s,
                max_retries=0,  # our own loop below
            )
        return self._client

    # -- models ---------------------------------------------------------------------------------------

    def list_models(self, *, tries: int | None = None, fail_fast: bool = False) -> list[ModelInfo]:
        """The models the server lists, with their context length when it says it."""
        deadline_s = min(self.settings.timeout_s, LIST_TIMEOUT_S)

        def attempt() -> list[dict[str, Any]]:
            raw = self._openai().with_options(timeout=deadline_s).models.with_raw_response.list()
            payload = _json_body(raw.text, "the model list")
            entries = payload.get("data") if isinstance(payload, dict) else payload
            if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
                raise _ServerFault("the model list is not an OpenAI-style {'data': [{'id': ...}]}")
            return entries

        entries, _, _ = self._with_retries(
            f"listing models at {self.url}/models",
            attempt,
            self._list_status_error,
            deadline_s=deadline_s,
            tries=tries,
            fail_fast=fail_fast,
        )
        models = [ModelInfo(str(e["id"]), _context_length(e)) for e in entries]
        if len(entries) == 1 and isinstance(entries[0].get("meta"), dict) and "n_ctx" not in entries[0]["meta"]:
            # llama.cpp lists the training context; the served one (per slot) is in /props.
            served = self._llama_served_context()
            if served:
                models = [ModelInfo(models[0].id, served)]
        return models

    def resolve_model(self) -> str:
        """The configured model, or the server's only model; ConfigError listing the choices otherwise."""
        if self._model:
            return self._model
        ids = [m.id for m in self.list_models()]
        if len(ids) == 1:
            self._model = ids[0]
            return self._model
        if not ids:
            raise ConfigError(f"the server at {self.url} lists no models: load one, or set OPENAI_MODEL")
        raise ConfigError(f"{len(ids)} models at {self.url} ({_choices(ids)}): set OPENAI_MODEL to one of them")

    def _llama_served_context(self) -> int | None:
        """llama.cpp's per-slot context from `/props`, or None when the server has no such route."""
        root = self.settings.base_url.rstrip("/").removesuffix("/v1")
        try:
            props = self._openai().with_options(timeout=PROPS_TIMEOUT_S).get(f"{root}/props", cast_to=object)
        except Exception:  # noqa: BLE001 - best effort: the model list's figure stands
            return None
        if not isinstance(props, dict):
            return None
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else props.get("n_ctx")
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None

    # -- completions ----------------------------------------------------------------------------------

    def request_options(self, model: str) -> dict[str, Any]:
        """The optional arguments sent with each completion for this model."""
        settings = self.settings
        options: dict[str, Any] = {}
        if is_openai_reasoning_model(model):
            if settings.max_tokens is not None:
                options["max_completion_tokens"] = settings.max_tokens
        else:
            if settings.max_tokens is not None:
                options["max_tokens"] = settings.max_tokens
            if settings.temperature is not None:
                options["temperature"] = settings.temperature
        constraint = response_format(settings.reply_format)
        if constraint is not None:
            options["response_format"] = constraint
        if settings.extra_body is not None:
            options["extra_body"] = dict(settings.extra_body)
        return options

    def complete(self, messages: Sequence[dict[str, Any]], *, fail_fast: bool = False) -> Completion:
        """One chat completion, streamed and read until the reply is complete; EndpointError when none comes.

        `fail_fast`: a refused connection ends it at once (unreachable), for a caller with another endpoint to try.
        """
        import openai

        model = self.resolve_model()
        options = self.request_options(model)

        def attempt() -> tuple[_Answer, float]:
            started = time.monotonic()
            raw = self._open_stream(model, messages, options)
            if raw.headers.get("content-type", "").split(";")[0].strip() != "text/event-stream":
                # A server or proxy that ignores `stream` (or a proxy's error page): one body, checked as before.
                raw.http_response.read()
                return _whole_answer(_completion_body(raw.text)), time.monotonic() - started
            with raw.parse(to=openai.Stream[object]) as stream:  # `with`: an early stop closes the connection
                answer = _read_stream(stream, self.settings.reply_format)
            return answer, time.monotonic() - started

        (answer, latency), attempts, deadline_hits = self._with_retries(
            f"asking {model!r} at {self.url}",
            attempt,
            lambda exc: self._chat_status_error(exc, model),
            deadline_s=self.settings.timeout_s,
            fail_fast=fail_fast,
        )
        return replace(_completion(answer, messages, model, latency, attempts), deadline_hits=deadline_hits)

    def _open_stream(self, model: str, messages: Sequence[dict[str, Any]], options: dict[str, Any]) -> Any:
        """The raw streamed response; asked again without `stream_options` (and never again with) when refused."""
        import openai

        create = self._openai().chat.completions.with_raw_response.create
        if self._stream_options:
            try:
                return create(
                    model=model,
                    messages=list(messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    **options,
                )
            except openai.BadRequestError as exc:
                if "stream_options" not in _server_message(exc):
                    raise
                self._stream_options = False
        return create(model=model, messages=list(messages), stream=True, **options)

    # -- retries and errors ---------------------------------------------------------------------------

    def _with_retries(
        self,
        what: str,
        attempt: Callable[[], T],
        status_error: Callable[[Any], EndpointError],
        *,
        deadline_s: float,
        tries: int | None = None,
        fail_fast: bool = False,
    ) -> tuple[T, int, int]:
        """Run `attempt`, each try within `deadline_s`, until it succeeds or the patience (or `tries`) is spent.

        Returns (result, tries used, tries abandoned at the deadline). `fail_fast`: a refused connection ends it.
        """
        import openai

        cap = tries if tries is not None else self.settings.max_retries
        timeouts = 0
        problem = ""
        troubled_since: float | None = None  # when the first failing try began
        number = 0
        while True:
            number += 1
            retry_after = None
            started = self._clock()
            try:
                return self._before_deadline(attempt, deadline_s), number, timeouts
            except (_DeadlineHit, openai.APITimeoutError):
                # A read timeout also means the deadline passed: no byte for timeout_s since the request began.
                timeouts += 1
                problem = (
                    f"no answer within {deadline_s:g} s (the deadline of a whole answer: raise OPENAI_TIMEOUT "
                    "for a slow model)"
                )
            except openai.APIConnectionError as exc:
                problem = _connection_problem(exc)
                if fail_fast and problem in ("connection refused", "unknown host"):
                    raise self._error(f"cannot reach {self.url} ({problem}): {START_HINT}", unreachable=True) from None
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES or _quota_exhausted(exc):
                    raise status_error(exc) from None
                problem = f"HTTP {exc.status_code}: {_server_message(exc)}"
                retry_after = _retry_after_s(exc.response.headers)
            except _ServerFault as exc:
                problem = str(exc)
            if cap is not None and number >= max(1, cap):
                raise self._error(f"{what} failed {number} time(s); last: {problem}", deadline_hit=timeouts > 0)
            troubled_since = started if troubled_since is None else troubled_since
            spent = self._clock() - troubled_since
            left = self.settings.patience_s - spent
            if left <= 0:
                raise self._error(
                    f"{what} failed {number} time(s) over {format_duration(spent)} (endpoint patience "
                    f"{format_duration(self.settings.patience_s)}, --endpoint-patience / OPENAI_PATIENCE); "
                    f"last: {problem}",
                    deadline_hit=timeouts > 0,
                )
            delay = min(self._delay(number, retry_after), left)  # the last try comes as patience runs out
            if self._on_wait is not None:
                self._on_wait(
                    EndpointWait(problem=self._scrub(problem), tries=number, retry_in_s=delay, patience_left_s=left)
                )
            self._sleep(delay)

    def _before_deadline(self, attempt: Callable[[], T], deadline_s: float) -> T:
        """`attempt()`, run on a worker thread and waited for `deadline_s` seconds at most; _DeadlineHit past it."""
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append((True, attempt()))
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                outcome.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=work, name="autotrade-request", daemon=True).start()
        try:
            answered = done.wait(deadline_s)
        except BaseException:  # Ctrl-C while waiting: the request must not go on alone
            self._abandon()
            raise
        if not answered:
            self._abandon()
            raise _DeadlineHit
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Close the connection (a request in flight ends, and the server stops generating its reply); for good."""
        self._closed = True
        self._abandon()

    def _abandon(self) -> None:
        """Close the HTTP client under an abandoned request, so its connection closes (vLLM then stops generating
        the reply) and its thread ends; the next try opens a fresh client."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _delay(self, tries_done: int, retry_after: float | None) -> float:
        """Seconds before the next try: the server's Retry-After (capped), else backoff with equal jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.settings.retry_after_cap_s)
        ceiling = min(self.settings.retry_base_s * 2 ** (tries_done - 1), self.settings.retry_max_s)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _error(self, message: str, *, deadline_hit: bool = False, unreachable: bool = False) -> EndpointError:
        """An EndpointError on one line, scrubbed of the API key."""
        return EndpointError(self._scrub(message), deadline_hit=deadline_hit, unreachable=unreachable)

    def _scrub(self, text: str) -> str:
        text = " ".join(text.split())
        key = self.settings.api_key
        if key and len(key) >= 6:
            text = text.replace(key, "***")
        return text

    def _common_status_error(self, exc: Any) -> EndpointError | None:
        status = exc.status_code
        message = _server_message(exc)
        if status == 401:
            return self._error(f"401 unauthorized at {self.url}: check OPENAI_API_KEY ({message})")
        if status == 403:
            return self._error(f"403 forbidden at {self.url}: the key may not use this model or route ({message})")
        if status == 429:
            return self._error(f"429 quota exhausted at {self.url}: check the account's plan and billing ({message})")
        return None

    def _list_status_error(self, exc: Any) -> EndpointError:
        common = self._common_status_error(exc)
        if common is not None:
            return common
        if exc.status_code == 404:
            return self._error(
                f"no model list at {self.url}/models (404): OPENAI_BASE_URL should be the API root, "
                "usually ending in /v1 (e.g. http://localhost:8000/v1)"
            )
        return self._error(f"HTTP {exc.status_code} listing models at {self.url}: {_server_message(exc)}")

    def _chat_status_error(self, exc: Any, model: str) -> EndpointError:
        common = self._common_status_error(exc)
        if common is not None:
            return common
        message = _server_message(exc)
        if exc.status_code == 404:
            try:
                ids = [m.id for m in self.list_models(tries=1)]
            except EndpointError:
                ids = None
            if ids is not None and not _same_model(model, ids):
                return self._error(f"model {model!r} not found at {self.url}: the server lists: {_choices(ids)}")
            return self._error(
                f"404 at {self.url}/chat/completions ({message}): check OPENAI_BASE_URL (usually ending in /v1)"
            )
        if exc.status_code == 400:
            return self._error(f"400 bad request from {self.url} for model {model!r}: {message}")
        return self._error(f"HTTP {exc.status_code} from {self.url} for model {model!r}: {message}")


def preflight(settings: ModelSettings, prompt_chars: int, *, client: ModelClient | None = None) -> PreflightReport:
    """Check before a run that the endpoint answers, the model exists and the prompt fits its context."""
    client = client or ModelClient(settings)
    models = tuple(client.list_models(fail_fast=True))
    ids = [m.id for m in models]
    if settings.model:
        if not _same_model(settings.model, ids):
            listed = _choices(ids) if ids else "none"
            raise ConfigError(
                f"model {settings.model!r} not found at {client.url}: the server lists: {listed}; set OPENAI_MODEL"
            )
        model = settings.model
    else:
        model = client.resolve_model()
    info = next(m for m in models if _same_model(model, [m.id]))
    prompt_tokens = estimate_tokens(prompt_chars)
    warnings: list[str] = []
    context = info.context_length
    if context is not None:
        needed = prompt_tokens + (settings.max_tokens or 0)
        if needed > context:
            raise ConfigError(
                f"the prompt (~{prompt_tokens} tokens) plus max tokens ({settings.max_tokens or 0}) needs "
                f"{needed} tokens but {model!r} at {client.url} serves a context of {context}: raise the server's "
                "context (vLLM: --max-model-len; llama.cpp: -c) or lower OPENAI_MAX_TOKENS"
            )
        if settings.max_tokens is None and context - prompt_tokens < 4096:
            warnings.append(
                f"only ~{context - prompt_tokens} tokens of context are left for the reply: replies may be cut off"
            )
    elif urlsplit(settings.base_url).port == OLLAMA_PORT:
        warnings.append(
            "Ollama does not report its context size and silently cuts prompts longer than it (4096 tokens by "
            f"default; this prompt is ~{prompt_tokens}): start it with OLLAMA_CONTEXT_LENGTH=32768 ollama serve"
        )
    else:
        warnings.append(f"the server does not report its context size: cannot check that ~{prompt_tokens} tokens fit")
    return PreflightReport(
        base_url=client.url,
        model=model,
        models=models,
        context_length=context,
        prompt_tokens=prompt_tokens,
        max_tokens=settings.max_tokens,
        warnings=tuple(warnings),
    )


def json_probe(client: ModelClient) -> tuple[bool | None, str]:
    """Ask once with the JSON schema and say whether the server's constraint held: (True, what came) when the
    content is exactly the object; (None, why) when it was cut at the token limit; (False, why) otherwise.

    The client's settings must ask for the json reply format."""
    try:
        reply = client.complete([{"role": "user", "content": PROBE_PROMPT}])
    except EndpointError as exc:
        return False, f"the request with response_format json_schema failed: {exc}"
    try:
        json_reply(reply.content, exact=True)
    except ReplyError as exc:
        problem = str(exc)
    else:
        return True, f"the json_schema constraint held ({len(reply.content)} characters, finish {reply.finish_reason})"
    if reply.finish_reason == "length":
        return None, (
            f"the JSON was cut at max tokens (finish_reason length after {reply.completion_tokens} tokens): "
            "raise OPENAI_MAX_TOKENS"
        )
    if not reply.content.strip() and holds_json_reply(reply.reasoning):
        return False, (
            "the JSON object arrived in the reasoning field, not the content: the server applied the schema to the "
            "thinking (a run never reads reasoning as code: use --reply-format text, or turn thinking off)"
        )
    return False, f"the json_schema constraint did not hold: {problem}"


# -- helpers ---------------------------------------------------------------------------------------------


def _json_body(text: str, what: str) -> Any:
    """Parse a 200 body as JSON; a proxy's HTML page or a cut-off body is a server fault."""
    try:
        return json.loads(text)
    except ValueError:
        snippet = " ".join(text.split())[:80]
        raise _ServerFault(f"{what} is not JSON (starts {snippet!r})") from None


def _completion_body(text: str) -> dict[str, Any]:
    """A chat.completion object with at least one choice holding a message."""
    payload = _json_body(text, "the reply")
    if not isinstance(payload, dict):
        raise _ServerFault("the reply is not a JSON object")
    if isinstance(payload.get("error"), dict):  # some proxies send errors with status 200
        raise _ServerFault(f"the server answered an error: {payload['error'].get('message', payload['error'])}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _ServerFault("the reply holds no choices")
    if not isinstance(choices[0].get("message"), dict):
        raise _ServerFault("the reply's first choice holds no message")
    return payload


def _text(value: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content parts; always UTF-8 encodable."""
    if isinstance(value, list):
        value = "".join(part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str))
    if not isinstance(value, str):
        return ""
    # JSON can escape half of a surrogate pair (a character cut in two by the server); json.loads keeps it as a
    # lone surrogate, which no UTF-8 file (reply, record, journal) can hold. Whole pairs were already joined.
    return _LONE_SURROGATE.sub("\ufffd", value)


def _whole_answer(payload: dict[str, Any]) -> _Answer:
    """The answer in a checked chat.completion payload (a server that did not stream)."""
    choice = payload["choices"][0]
    message = choice["message"]
    return _Answer(
        content=_text(message.get("content")),
        # vLLM (older) and llama.cpp say `reasoning_content`; newer vLLM, OpenRouter and Ollama say `reasoning`.
        reasoning=_text(message.get("reasoning_content")) or _text(message.get("reasoning")),
        finish_reason=choice.get("finish_reason"),
        usage=payload["usage"] if isinstance(payload.get("usage"), dict) else {},
        model=payload.get("model"),
    )


def _read_stream(stream: Iterable[Any], reply_format: str = TEXT) -> _Answer:
    """Read chat.completion.chunk objects until the stream ends, or until more text comes after the reply is
    complete (`reply_complete`): the model has moved on from the reply format.

    Content and reasoning deltas are gathered apart: only the content can complete a reply. The stream is the
    caller's to close; stopping here leaves the rest unread."""
    import openai

    content: list[str] = []
    reasoning_content: list[str] = []
    reasoning: list[str] = []
    answer = _Answer()
    chose = False
    # Why the content is complete, once it is. Reading stops at the next text, not at once: a reply that ends there
    # is read to its end, so its finish_reason and usage come as sent.
    complete: str | None = None
    # A text reply can only complete at a line's end; a JSON one (whose newlines are escaped) at a closing brace.
    marks = ("}",) if reply_format == JSON else ("\n", "\r")
    try:
        for chunk in stream:
            if not isinstance(chunk, dict):
                raise _ServerFault("the reply stream holds a chunk that is not a JSON object")
            answer.model = chunk.get("model") or answer.model
            if isinstance(chunk.get("usage"), dict):  # the last chunk, when asked for with `stream_options`
                answer.usage = chunk["usage"]
            choices = chunk.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue
            chose = True
            choice = choices[0]
            if choice.get("finish_reason") is not None:
                answer.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            reasoning_content.append(_text(delta.get("reasoning_content")))
            reasoning.append(_text(delta.get("reasoning")))
            piece = _text(delta.get("content"))
            content.append(piece)
            if complete is not None and piece.strip():
                answer.early_stop = complete
                answer.finish_reason = "early_stop"
                break
            # Look again only where the reply can complete, not at every token.
            if complete is None and any(mark in piece for mark in marks):
                complete = reply_complete("".join(content), reply_format)
    except ValueError as exc:  # SSE data that is not JSON: a proxy's page, or a body cut mid-event
        snippet = " ".join(str(getattr(exc, "doc", "")).split())[:80]
        raise _ServerFault(f"the reply is not JSON (starts {snippet!r})") from None
    except openai.APIError as exc:
        if isinstance(exc, (openai.APIStatusError, openai.APIConnectionError)):
            raise
        raise _ServerFault(f"the server answered an error: {exc.message}") from None  # an error event mid-stream
    if not chose:
        raise _ServerFault("the reply holds no choices")
    answer.content = "".join(content)
    # Servers send one of the two fields; `reasoning_content` first, as in a whole answer.
    answer.reasoning = "".join(reasoning_content) or "".join(reasoning)
    return answer


def _completion(
    answer: _Answer, messages: Sequence[dict[str, Any]], model: str, latency: float, attempts: int
) -> Completion:
    """The Completion of an answer: reasoning apart from content, usage counted or estimated, texts cleaned."""
    content, think = split_reasoning(answer.content)
    reasoning = "\n\n".join(part for part in (answer.reasoning.strip(), think) if part)
    # A stopped stream never reaches the usage chunk; whatever usage came before it does not cover the reply.
    usage = answer.usage if answer.early_stop is None else {}
    prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    estimated = not (isinstance(prompt_tokens, int) and isinstance(completion_tokens, int))
    received = len(answer.content) + len(answer.reasoning)
    if not isinstance(prompt_tokens, int):
        prompt_tokens = estimate_tokens(sum(len(_text(m.get("content"))) for m in messages))
    if not isinstance(completion_tokens, int):
        completion_tokens = estimate_tokens(received)
    finish_reason = answer.finish_reason
    return Completion(  # the model's text is shown, stored and prompted: no terminal control sequences in it
        content=clean_text(content),
        reasoning=clean_text(reasoning),
        finish_reason=clean_text(str(finish_reason)) if finish_reason is not None else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        usage_estimated=estimated,
        latency_s=latency,
        model=clean_text(str(answer.model or model)),
        attempts=attempts,
        early_stop=answer.early_stop,
        received_chars=received,
    )


def _context_length(entry: dict[str, Any]) -> int | None:
    """A listed model's context in tokens, from whichever field the server uses."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    candidates = (
        entry.get("max_model_len"),  # vLLM: the served context
        meta.get("n_ctx"),  # llama.cpp forks: the served context
        entry.get("loaded_context_length"),  # LM Studio: the loaded context
        entry.get("context_length"),  # OpenRouter and others
        entry.get("context_window"),  # Groq and others
        entry.get("max_context_length"),  # LM Studio: the model's maximum
        meta.get("n_ctx_train"),  # llama.cpp: the training context (an upper bound)
    )
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _same_model(model: str, ids: Sequence[str]) -> bool:
    """True when the server lists the model (Ollama's `name` and `name:latest` are one model)."""
    names = {model, model.removesuffix(":latest"), f"{model}:latest"}
    return any(i in names for i in ids)


def _choices(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _server_message(exc: Any) -> str:
    """The server's error message (OpenAI-style body, else the raw text), on one short line."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        try:
            message = exc.response.text
        except Exception:  # noqa: BLE001 - a body that cannot be read says nothing more
            message = ""
    message = " ".join(str(message).split())
    return (message[:297] + "...") if len(message) > 300 else (message or "no message")


def _quota_exhausted(exc: Any) -> bool:
    """429 insufficient_quota (billing) will not clear by waiting, unlike a rate limit."""
    body = getattr(exc, "body", None)
    return exc.status_code == 429 and isinstance(body, dict) and body.get("code") == "insufficient_quota"


def _retry_after_s(headers: Any) -> float | None:
    """The server's requested wait in seconds: `retry-after-ms`, else `Retry-After` (seconds or a date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - time.time()
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def _connection_problem(exc: BaseException) -> str:
    """A short phrase for why a connection failed, from the exception's causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if type(seen).__name__ == "RemoteProtocolError":
            return "the server closed the connection without answering"
        seen = seen.__cause__ or seen.__context__
    cause = exc.__cause__ or exc.__context__
    return " ".join(str(cause or exc).split()) or type(exc).__name__
