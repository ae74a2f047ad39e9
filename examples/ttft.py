"""Time to first token through `refresh_on_401` against the bare provider, on loopback.

Run it with ``python examples/ttft.py [-n 300]``; the benchmark can import `measure`. Two
pairs are timed, alternating bare and wrapped so drift hits both alike:

- ``openai``: an `openai.AsyncOpenAI` stream to the loopback server, from the call until the
  first chunk with text (what a user waits for), valid token, no refresh;
- ``double``: a `ScriptedProvider` stream with no I/O at all, which isolates the wrapper's own
  cost per stream (proxy, gate, opening and closing).

This is a benchmark, never a timed test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import trio

if __package__ in {None, ""}:  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.providers import OpenAIProvider, TokenSource, renew_openai
from refresh_middleware import refresh_on_401
from refresh_middleware.testing import RefreshCounter, ScriptedProvider, open_loopback_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def _first_token_seconds(open_stream: Callable[[], Any]) -> float:
    """Seconds from calling `open_stream` until its first item with text; the rest is drained."""
    started = time.perf_counter()
    first: float | None = None
    async with aclosing(open_stream()) as stream:
        async for item in stream:
            if first is None and _has_text(item):
                first = time.perf_counter() - started
    if first is None:
        msg = "the stream had no text"
        raise RuntimeError(msg)
    return first


def _has_text(item: object) -> bool:
    if isinstance(item, str):
        return True
    return any(choice.delta.content for choice in getattr(item, "choices", ()))


async def _pair(
    n: int, bare: Callable[[], Awaitable[float]], wrapped: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    bare_times: list[float] = []
    wrapped_times: list[float] = []
    for _ in range(max(5, n // 10)):  # warm up connections and caches
        await bare()
        await wrapped()
    for _ in range(n):
        bare_times.append(await bare())
        wrapped_times.append(await wrapped())
    return bare_times, wrapped_times


def _figures(name: str, unit: float, bare: list[float], wrapped: list[float]) -> dict[str, float]:
    def quantile(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * unit

    median_bare = statistics.median(bare) * unit
    median_wrapped = statistics.median(wrapped) * unit
    return {
        f"{name}_bare_median": median_bare,
        f"{name}_wrapped_median": median_wrapped,
        f"{name}_bare_p90": quantile(bare, 90),
        f"{name}_wrapped_p90": quantile(wrapped, 90),
        f"{name}_overhead_median": median_wrapped - median_bare,
    }


async def measure(n: int = 300) -> dict[str, float]:
    """Time to first token, bare and wrapped, over `n` streams each.

    Returns:
        ``openai_*`` figures in milliseconds and ``double_*`` figures in microseconds:
        ``*_bare_median``, ``*_wrapped_median``, ``*_bare_p90``, ``*_wrapped_p90`` and
        ``*_overhead_median`` (wrapped minus bare).
    """
    async with open_loopback_server(chunks=4) as server:
        tokens = TokenSource(server.token_url)
        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=await tokens.fetch(), max_retries=0
        )
        bare = OpenAIProvider(client, tokens)
        wrapped = refresh_on_401(OpenAIProvider(client, tokens), refresh=renew_openai)
        try:
            network = await _pair(
                n,
                lambda: _first_token_seconds(lambda: bare.chat_stream("hi")),
                lambda: _first_token_seconds(lambda: wrapped.chat_stream("hi")),
            )
        finally:
            await client.close()

    double = ScriptedProvider()
    wrapped_double = refresh_on_401(ScriptedProvider(), refresh=RefreshCounter())
    rounds = max(5, n // 10) + n
    for provider in (double, wrapped_double):
        for _ in range(rounds):
            provider.queue_stream("Hel", "lo")
    local = await _pair(
        n,
        lambda: _first_token_seconds(double.chat_stream),
        lambda: _first_token_seconds(wrapped_double.chat_stream),
    )
    return {**_figures("openai", 1e3, *network), **_figures("double", 1e6, *local)}


def cli(argv: list[str] | None = None) -> int:
    """``python examples/ttft.py [-n N]``: print the figures as a small table."""
    parser = argparse.ArgumentParser(description="time to first token, bare vs wrapped")
    parser.add_argument("-n", type=int, default=300, help="streams per variant (300)")
    n = parser.parse_args(argv).n
    with warnings.catch_warnings():
        # The openai SDK leaves its own SSE generators to the collector.
        warnings.filterwarnings("ignore", r"Async generator", ResourceWarning)
        figures = trio.run(measure, n)
    print(f"time to first token over {n} streams each (median / p90)")
    for name, unit in (("openai", "ms"), ("double", "us")):
        print(
            f"  {name:<7} bare {figures[f'{name}_bare_median']:8.3f} / "
            f"{figures[f'{name}_bare_p90']:8.3f} {unit}   "
            f"wrapped {figures[f'{name}_wrapped_median']:8.3f} / "
            f"{figures[f'{name}_wrapped_p90']:8.3f} {unit}   "
            f"overhead {figures[f'{name}_overhead_median']:+8.3f} {unit}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
