"""Model time per iteration against a real model server: `python benchmarks/bench_model.py` prints `key: value` lines.

The server is llama.cpp's own (through the `xllamacpp` wheel, as the real-server tests start it) serving the
test model (`python scripts/fetch_test_model.py`); both come with `pip install -e '.[test]'`.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from bench_engine import TYPICAL_BLOCKS

from autotrade.data.prepared import load_prepared, prepare_data
from autotrade.errors import ReplyError
from autotrade.propose.client import ModelClient, ModelSettings
from autotrade.propose.prompts import load_prompt_files, messages
from autotrade.propose.reply import parse_reply, reply_complete, split_reasoning
from autotrade.research.config import RunSettings
from autotrade.research.loop import render_proposal
from autotrade.untrusted import clean_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from llama_server import THREADS, find_gguf, skip_reason, start_server  # noqa: E402

N_CTX = 4096  # one slot: room for a ~2,000-token proposal prompt and a reply that runs on to the context limit
SEED = 0
MAX_TOKENS: int | None = None  # the server's default, as before early stop: until EOS or the context fills
# Off for both arms: with one slot the second request on a prompt would otherwise skip reading it, and a run's
# prompts differ after their shared opening anyway.
EXTRA_BODY = {"seed": SEED, "cache_prompt": False}
TARGET_RATIO = 0.25  # issue 12: early stop's median model time at most a quarter of today's


@dataclass(frozen=True)
class Reply:
    """One arm's answer to one prompt: its text and what it cost."""

    text: str
    finish_reason: str | None
    latency_s: float
    completion_tokens: int
    prompt_tokens: int
    early_stop: str | None  # why the client stopped reading; None when the reply ran to its end
    prompt_read_s: float | None = None  # llama.cpp's own `timings`, in a whole (non-streamed) answer only


def ask_today(settings: ModelSettings, model: str, chat: list[dict[str, str]]) -> Reply:
    """The request as it was before early stop: one non-streamed completion, read to its end."""
    client = openai.OpenAI(base_url=settings.base_url, api_key="EMPTY", timeout=settings.timeout_s, max_retries=0)
    options = ModelClient(settings).request_options(model)  # the same arguments the product sends
    started = time.monotonic()
    response = client.chat.completions.create(model=model, messages=chat, **options)
    latency = time.monotonic() - started
    choice = response.choices[0]
    usage = response.usage
    timings = (response.model_extra or {}).get("timings") or {}
    return Reply(
        # As the product reads any whole answer: reasoning apart, no terminal control characters.
        text=clean_text(split_reasoning(choice.message.content)[0]),
        finish_reason=choice.finish_reason,
        latency_s=latency,
        completion_tokens=usage.completion_tokens if usage else 0,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        early_stop=None,
        prompt_read_s=timings["prompt_ms"] / 1e3 if "prompt_ms" in timings else None,
    )


def ask_early_stop(settings: ModelSettings, model: str, chat: list[dict[str, str]]) -> Reply:
    """The request as the product sends it now: streamed, read until the reply is complete."""
    completion = ModelClient(settings).complete(chat)
    return Reply(
        text=completion.content,
        finish_reason=completion.finish_reason,
        latency_s=completion.latency_s,
        completion_tokens=completion.completion_tokens,  # chars / 4 when stopped early: the server never counts them
        prompt_tokens=completion.prompt_tokens,
        early_stop=completion.early_stop,
    )


ARMS: dict[str, Callable[[ModelSettings, str, list[dict[str, str]]], Reply]] = {
    "today": ask_today,
    "early_stop": ask_early_stop,
}


def complete_at(text: str) -> int | None:
    """Characters of `text` after which the client would have stopped reading (whole lines); None if never."""
    end = text.find("\n")
    while end != -1:
        if reply_complete(text[: end + 1]):
            return end + 1
        end = text.find("\n", end + 1)
    return None


def parses(reply: Reply, parent_block: str) -> bool:
    """Whether the product would get a block out of the reply."""
    try:
        parse_reply(reply.text, parent_block, reply.finish_reason)
    except ReplyError:
        return False
    return True


def ratio(early: list[float], today: list[float]) -> float | str:
    """median(early) / median(today), or n/a over no prompts."""
    return round(statistics.median(early) / statistics.median(today), 3) if today else "n/a"


def tally(values: list[Any]) -> str:
    """`value xN` for each distinct value, most common first."""
    return ", ".join(f"{value} x{count}" for value, count in Counter(values).most_common())


def bench_early_stop(prompts: dict[str, tuple[str, str]], workdir: Path) -> dict[str, float | str]:
    """Both arms on each real proposal prompt (`prompts`: parent name -> (prompt, parent block)), alternating,
    against one llama.cpp server: latencies, tokens, why replies stopped, whether they parse, and the ratio."""
    gguf = find_gguf()
    assert gguf is not None
    replies: dict[str, dict[str, Reply]] = {arm: {} for arm in ARMS}
    started = time.monotonic()
    with start_server(gguf, workdir / "server.log", n_parallel=1, n_ctx=N_CTX) as server:
        settings = ModelSettings(
            base_url=server.base_url,
            api_key="",
            model=server.model_id,
            max_tokens=MAX_TOKENS,
            temperature=0.0,
            extra_body=EXTRA_BODY,
        )
        # Untimed: the first request after loading pays for warming the weights, which neither arm should.
        ModelClient(settings).complete([{"role": "user", "content": "Reply with the single word: ready"}])
        for name, (prompt, _) in prompts.items():
            for arm, ask in ARMS.items():
                reply = replies[arm][name] = ask(settings, server.model_id, messages(prompt))
                # Progress on stderr (a request can take minutes), with the reply's opening to show what it wrote.
                print(f"# {name} {arm}: {reply.latency_s:.1f} s, {reply.text[:80]!r}", file=sys.stderr, flush=True)
    total = time.monotonic() - started

    today, early = replies["today"], replies["early_stop"]
    results: dict[str, float | str] = {
        "model_server": f"llama.cpp (xllamacpp {importlib.metadata.version('xllamacpp')}), {server.model_id}, "
        f"1 slot of {server.n_ctx_per_slot} tokens, {THREADS} thread",
        "model_sampling": f"temperature 0, seed {SEED}, max_tokens {MAX_TOKENS or 'unset'}, prompt cache off",
        "model_prompts": len(prompts),
        "model_prompt_tokens_median": statistics.median(r.prompt_tokens for r in today.values()),
    }
    read = [r.prompt_read_s for r in today.values() if r.prompt_read_s is not None]
    if read:
        # Every request reads its prompt before the first token, so no early stop gets below this ratio.
        results |= {
            "model_today_prompt_read_median_s": round(statistics.median(read), 2),
            "model_ratio_floor": round(
                statistics.median(read) / statistics.median(r.latency_s for r in today.values()), 3
            ),
        }
    for arm, by_name in replies.items():
        results |= {
            f"model_{arm}_latency_median_s": round(statistics.median(r.latency_s for r in by_name.values()), 2),
            f"model_{arm}_completion_tokens_median": statistics.median(r.completion_tokens for r in by_name.values()),
            f"model_{arm}_chars_median": statistics.median(len(r.text) for r in by_name.values()),
            f"model_{arm}_finish_reasons": tally([r.finish_reason for r in by_name.values()]),
            f"model_{arm}_parsed": f"{sum(parses(r, prompts[n][1]) for n, r in by_name.items())}/{len(by_name)}",
        }
    stopped = [name for name, reply in early.items() if reply.early_stop]
    results |= {
        "model_early_stop_stopped": f"{len(stopped)}/{len(early)}",
        "model_early_stop_reasons": tally([reply.early_stop or "none (read to the end)" for reply in early.values()]),
        # Greedy decoding: each early-stopped reply must be the opening of the reply read to its end.
        "model_early_stop_prefix_of_today": f"{sum(today[n].text.startswith(r.text) for n, r in early.items())}"
        f"/{len(early)}",
        "model_today_complete_within": tally(
            [f"{at} chars" if (at := complete_at(r.text)) else "never complete" for r in today.values()]
        ),
    }
    for name in prompts:
        results[f"model_{name}_s"] = (
            f"today {today[name].latency_s:.1f} ({today[name].completion_tokens} tokens), "
            f"early_stop {early[name].latency_s:.1f} ({early[name].early_stop or 'not stopped'})"
        )
    all_ratio = ratio([r.latency_s for r in early.values()], [r.latency_s for r in today.values()])
    results |= {
        "model_ratio_all": all_ratio,
        "model_ratio_stopped": ratio([early[n].latency_s for n in stopped], [today[n].latency_s for n in stopped]),
        "model_target_ratio": TARGET_RATIO,
        "model_meets_target_all": "yes" if isinstance(all_ratio, float) and all_ratio <= TARGET_RATIO else "no",
        "model_total_s": round(total, 1),
    }
    return results


def main() -> None:
    """Render one real proposal prompt per parent strategy and run the benchmark; one `key: value` line per result."""
    reason = skip_reason()
    if reason:
        sys.exit(reason)
    settings = RunSettings()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prepare_data(offline=True, data_dir=workdir / "data")
        frame = load_prepared(workdir / "data").research_frame()
        files = load_prompt_files(workdir)  # no prompts/ there: the packaged program.md and template
        prompts = {
            name: (render_proposal(files, settings, frame, [], [], 1, 0, block), block)
            for name, block in TYPICAL_BLOCKS.items()
        }
        for key, value in bench_early_stop(prompts, workdir).items():
            print(f"{key}: {value}", flush=True)


if __name__ == "__main__":
    main()
