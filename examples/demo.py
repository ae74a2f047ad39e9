"""Sixteen streaming chats in a loop while their OAuth token keeps expiring: none fails.

Run it with ``python examples/demo.py [--seconds N]``. It starts the loopback LLM server of
`refresh_middleware.testing` in-process, with tokens that live a few seconds, and streams
chats through an `openai.AsyncOpenAI` provider wrapped with `refresh_on_401`, under trio.
Every few seconds the token expires under the running chats; the wrapper fetches one new
token for all of them and retries the requests that were refused. At the end a table says what
the server saw and checks every chat's text against the text the server sends: the exit code
is 1 when any chat failed or any chunk arrived twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from collections import Counter
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import openai
import trio

if __package__ in {None, ""}:  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.providers import OpenAIProvider, TokenSource, renew_openai
from refresh_middleware import refresh_on_401
from refresh_middleware.testing import LoopbackStats, open_loopback_server

if TYPE_CHECKING:
    from collections.abc import Callable

CHUNKS = 8
CHUNK_DELAY = 0.03


@dataclasses.dataclass
class Tally:
    """What the chats saw, counted on the client side."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    duplicated_chunks: int = 0
    refreshes: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass(frozen=True)
class Summary:
    """The demo's outcome: the client's tally and the server's counters."""

    seconds: float
    tally: Tally
    stats: LoopbackStats

    @property
    def retries(self) -> int:
        """Requests sent again after a 401: chat requests beyond one per chat."""
        return self.stats.chat_completions_requests - self.tally.started

    @property
    def ok(self) -> bool:
        """True when every chat got its whole text once, and every 401 was retried once."""
        tally = self.tally
        return (
            tally.completed > 0
            and tally.failed == tally.duplicated_chunks == 0
            and self.retries == self.stats.unauthorized
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, how many, remark) for the summary table."""
        stats, tally = self.stats, self.tally
        return [
            (
                "requests seen by the server",
                str(stats.chat_completions_requests + stats.token_requests),
                "chat + token",
            ),
            ("  chat requests", str(stats.chat_completions_requests), ""),
            ("  token requests", str(stats.token_requests), "1 at start + 1 per refresh"),
            ("401s served", str(stats.unauthorized), "expired tokens refused"),
            ("refreshes", str(tally.refreshes), "calls of the refresh callable"),
            ("retries", str(self.retries), "must equal the 401s served"),
            (
                "chats completed",
                str(tally.completed),
                f"{tally.completed / self.seconds:.0f} per second",
            ),
            ("failed chats", str(tally.failed), "must be 0"),
            ("duplicated chunks", str(tally.duplicated_chunks), "must be 0"),
        ]


def expected_text(chunks: int = CHUNKS) -> str:
    """The text the loopback server streams for every chat."""
    return "".join(f"chunk-{index} " for index in range(chunks))


async def chat_once(provider: OpenAIProvider, tally: Tally, expected: str) -> None:
    """Stream one chat and check its text against what the server sent."""
    tally.started += 1
    texts: list[str] = []
    try:
        async with aclosing(provider.chat_stream("Tell me something.")) as chunks:
            async for chunk in chunks:
                texts.extend(c.delta.content for c in chunk.choices if c.delta.content)
    except Exception as error:  # noqa: BLE001 - the demo counts failures instead of stopping
        tally.failed += 1
        tally.errors[type(error).__name__] += 1
        return
    tally.duplicated_chunks += len(texts) - len(set(texts))
    if "".join(texts) == expected:
        tally.completed += 1
    else:
        tally.failed += 1
        tally.errors["wrong text"] += 1


async def run(
    seconds: float,
    *,
    concurrency: int = 16,
    token_ttl: float = 3.0,
    progress: Callable[[float, Tally, LoopbackStats], None] | None = None,
) -> Summary:
    """Run the chats for `seconds` against a fresh loopback server; report every second."""
    tally = Tally()
    expected = expected_text()

    async def counted_refresh(stale: OpenAIProvider) -> OpenAIProvider:
        tally.refreshes += 1
        return await renew_openai(stale)

    async with open_loopback_server(
        token_ttl=token_ttl, chunks=CHUNKS, chunk_delay=CHUNK_DELAY
    ) as server:
        tokens = TokenSource(server.token_url)
        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=await tokens.fetch(), max_retries=0
        )
        provider = refresh_on_401(OpenAIProvider(client, tokens), refresh=counted_refresh)
        started = trio.current_time()
        deadline = started + seconds

        async def worker(offset: float) -> None:
            await trio.sleep(offset)  # spread the chats over time
            while trio.current_time() < deadline:
                await chat_once(provider, tally, expected)

        async def reporter() -> None:
            while True:
                await trio.sleep(1)
                if progress is not None:
                    progress(trio.current_time() - started, tally, server.stats)

        try:
            async with trio.open_nursery() as nursery:
                reporting = nursery.cancel_scope
                nursery.start_soon(reporter)
                async with trio.open_nursery() as workers:
                    for index in range(concurrency):
                        workers.start_soon(worker, index * CHUNKS * CHUNK_DELAY / concurrency)
                reporting.cancel()
        finally:
            await provider.aclose()
        return Summary(trio.current_time() - started, tally, server.stats)


# --------------------------------------------------------------------------------------------------
# output


def _line(elapsed: float, tally: Tally, stats: LoopbackStats) -> str:
    return (
        f"{elapsed:5.1f}s  chats {tally.completed:5d}  failed {tally.failed}  "
        f"401s {stats.unauthorized:4d}  refreshes {tally.refreshes:3d}  "
        f"tokens {stats.tokens_issued:3d}"
    )


def print_summary(summary: Summary, out: TextIO) -> None:
    """The summary table, with rich when it is installed and `out` is a terminal."""
    verdict = "OK" if summary.ok else "FAILED"
    errors = ", ".join(f"{name} x{count}" for name, count in summary.tally.errors.items())
    console = _rich_console(out)
    if console is not None:
        from rich.table import Table  # noqa: PLC0415 - optional

        table = Table(title=f"refresh_on_401 demo, {summary.seconds:.1f} s: {verdict}")
        for column in ("what", "count", "note"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for row in summary.rows():
            table.add_row(*row)
        console.print(table)
        if errors:
            console.print(f"errors: {errors}")
        return
    print(f"refresh_on_401 demo, {summary.seconds:.1f} s: {verdict}", file=out)
    for what, count, remark in summary.rows():
        print(f"  {what:<30} {count:>7}  {remark}".rstrip(), file=out)
    if errors:
        print(f"  errors: {errors}", file=out)


def _rich_console(out: TextIO) -> Any:
    try:
        from rich.console import Console  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return Console(file=out, highlight=False) if out.isatty() else None


def main(
    seconds: float = 12.0,
    *,
    concurrency: int = 16,
    token_ttl: float = 3.0,
    out: TextIO | None = None,
) -> int:
    """Run the demo, print progress and the summary to `out`; 0 when every chat was right."""
    out = sys.stdout if out is None else out
    console = _rich_console(out)
    print(
        f"{concurrency} streaming chats for {seconds:g} s; tokens live {token_ttl:g} s",
        file=out,
    )
    with warnings.catch_warnings():
        # The openai SDK leaves its own SSE generators to the collector; ours are closed.
        warnings.filterwarnings(
            "ignore", r"Async generator '(openai|httpx2|httpcore2)\.", ResourceWarning
        )
        if console is not None:
            from rich.live import Live  # noqa: PLC0415 - optional

            with Live("starting...", console=console, refresh_per_second=4) as live:
                summary = trio.run(
                    lambda: run(
                        seconds,
                        concurrency=concurrency,
                        token_ttl=token_ttl,
                        progress=lambda *state: live.update(_line(*state)),
                    )
                )
        else:
            summary = trio.run(
                lambda: run(
                    seconds,
                    concurrency=concurrency,
                    token_ttl=token_ttl,
                    progress=lambda *state: print(_line(*state), file=out, flush=True),
                )
            )
    print_summary(summary, out)
    return 0 if summary.ok else 1


def cli(argv: list[str] | None = None) -> int:
    """``python examples/demo.py [--seconds N] [--concurrency N] [--ttl S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=12.0, help="how long to run (12)")
    parser.add_argument("--concurrency", type=int, default=16, help="chats at a time (16)")
    parser.add_argument("--ttl", type=float, default=3.0, help="token lifetime, seconds (3)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    code = main(args.seconds, concurrency=args.concurrency, token_ttl=args.ttl)
    print(f"done in {time.perf_counter() - started:.1f} s, exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(cli())
