"""Side-by-side benchmark of refresh_middleware against a bare call, tenacity and stamina.

Run ``python bench/bench.py`` for the full run (a few minutes), ``python bench/bench.py --smoke``
for a run of seconds that still goes through every section (CI runs it so the script cannot rot;
its figures are not meant to be read), and add ``--plot PATH`` to draw the herd's wall time
against the number of callers. ``nox -s bench`` runs the full benchmark.

Timing discipline: every figure is the best of several repeats of many iterations, timed with
`time.perf_counter_ns` with the garbage collector off; variants are interleaved within each
repeat so a noisy neighbour hurts them all alike; the cost of the bare timing loop is measured
the same way and subtracted from every per-call and per-item figure.

This is a script, never a test: timing on shared CI machines is too noisy to fail a build on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stamina
import tenacity
import trio
import wrapt

import refresh_middleware
from refresh_middleware import is_unauthorized_error, refresh_on_401

# --------------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class Config:
    """How hard each section works; `--smoke` shrinks everything to seconds."""

    call_iterations: int = 100_000
    slow_call_iterations: int = 10_000  # tenacity and stamina: 100x slower per call
    stream_items: int = 2_000
    stream_rounds: int = 20
    repeats: int = 9
    herd_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    herd_repeats: int = 3
    threads: int = 64
    memory_count: int = 10_000
    ttft_samples: int = 200


SMOKE = Config(
    call_iterations=2_000,
    slow_call_iterations=200,
    stream_items=200,
    stream_rounds=2,
    repeats=2,
    herd_sizes=(100, 1_000),
    herd_repeats=1,
    threads=8,
    memory_count=200,
    ttft_samples=5,
)

# --------------------------------------------------------------------------------------------------
# results


@dataclasses.dataclass
class Row:
    """One line of the table: a figure, what it is compared with, and the verdict."""

    measure: str
    result: str
    baseline: str = ""
    versus: str = ""
    target: str = ""
    verdict: str = ""


ROWS: list[Row] = []


def add(
    measure: str,
    result: str,
    baseline: str = "",
    versus: str = "",
    target: str = "",
    passed: bool | None = None,
) -> None:
    verdict = "" if passed is None else ("PASS" if passed else "MISS")
    ROWS.append(Row(measure, result, baseline, versus, target, verdict))
    print(f"  {measure}: {result}" + (f"  [{verdict}]" if verdict else ""), flush=True)


def section(title: str) -> None:
    ROWS.append(Row(f"**{title}**", ""))
    print(f"\n== {title}", flush=True)


def ns(value: float) -> str:
    return f"{value:,.0f} ns" if abs(value) >= 10 else f"{value:.1f} ns"


def seconds(value_ns: float) -> str:
    return f"{value_ns / 1e9:.3f} s" if value_ns >= 1e9 else f"{value_ns / 1e6:.1f} ms"


def table() -> str:
    head = ("Measure", "Result", "Baseline", "Ratio / difference", "Target", "Verdict")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        cells = dataclasses.astuple(row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# timing


class Quiet:
    """No garbage collection while a figure is taken: a collection is noise, not overhead."""

    def __enter__(self) -> None:
        gc.collect()
        gc.disable()

    def __exit__(self, *_: object) -> None:
        gc.enable()


def best_per_iteration(
    variants: dict[str, Callable[[int], int]], iterations: dict[str, int], repeats: int
) -> dict[str, float]:
    """Best-of-`repeats` nanoseconds per iteration of each variant, repeats interleaved.

    Each variant is `run(n) -> elapsed ns` for a loop of `n` iterations.
    """
    best = dict.fromkeys(variants, float("inf"))
    for name, run in variants.items():  # warm up: caches, specialisation, lazy imports
        run(max(iterations[name] // 10, 1))
    for _ in range(repeats):
        for name, run in variants.items():
            with Quiet():
                elapsed = run(iterations[name])
            best[name] = min(best[name], elapsed / iterations[name])
    return best


def drive(coroutine: Any) -> Any:
    """Run a coroutine that never suspends, without an event loop (it must not need one)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the timed coroutine suspended")


# --------------------------------------------------------------------------------------------------
# providers


class Unauthorized(Exception):  # noqa: N818 - named for what it means
    """A 401, as a provider SDK would raise it."""

    status_code = 401


def _unauthorized_exception(error: BaseException) -> bool:
    return is_unauthorized_error(error)


def refresh_none(provider: object) -> None:
    """A refresh that never runs in the call benchmarks (no 401 happens)."""


class AsyncProvider:
    async def chat(self, request: object) -> object:
        return None

    async def chat_stream(self, count: int) -> Any:
        for _ in range(count):
            yield "token"


class SyncProvider:
    def chat(self, request: object) -> object:
        return None

    def chat_stream(self, count: int) -> Any:
        for _ in range(count):
            yield "token"


@refresh_on_401(refresh=refresh_none)
class DecoratedAsyncProvider(AsyncProvider):
    pass


@refresh_on_401(refresh=refresh_none)
class DecoratedSyncProvider(SyncProvider):
    pass


class TenacityAsyncProvider:
    @tenacity.retry(
        stop=tenacity.stop_after_attempt(2),
        retry=tenacity.retry_if_exception(is_unauthorized_error),
    )
    async def chat(self, request: object) -> object:
        return None


class TenacitySyncProvider:
    @tenacity.retry(
        stop=tenacity.stop_after_attempt(2),
        retry=tenacity.retry_if_exception(is_unauthorized_error),
    )
    def chat(self, request: object) -> object:
        return None


class StaminaAsyncProvider:
    @stamina.retry(on=Unauthorized, attempts=2)
    async def chat(self, request: object) -> object:
        return None


class StaminaSyncProvider:
    @stamina.retry(on=Unauthorized, attempts=2)
    def chat(self, request: object) -> object:
        return None


# --------------------------------------------------------------------------------------------------
# calls


def async_call_loop(provider: Any) -> Callable[[int], int]:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await provider.chat(None)
        return time.perf_counter_ns() - start

    return lambda n: drive(loop(n))


def async_empty_loop() -> Callable[[int], int]:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    return lambda n: drive(loop(n))


def sync_call_loop(provider: Any) -> Callable[[int], int]:
    def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            provider.chat(None)
        return time.perf_counter_ns() - start

    return loop


def sync_empty_loop() -> Callable[[int], int]:
    def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    return loop


def bench_calls(config: Config) -> None:
    """Per-call cost of a call that succeeds (the fast path every call takes)."""
    for flavour in ("async", "sync"):
        section(f"Non-401 call, {flavour} method (per call, best of {config.repeats})")
        if flavour == "async":
            plain, decorated = AsyncProvider, DecoratedAsyncProvider
            with_tenacity, with_stamina = TenacityAsyncProvider, StaminaAsyncProvider
            loop, empty = async_call_loop, async_empty_loop
        else:
            plain, decorated = SyncProvider, DecoratedSyncProvider
            with_tenacity, with_stamina = TenacitySyncProvider, StaminaSyncProvider
            loop, empty = sync_call_loop, sync_empty_loop
        variants = {
            "loop": empty(),
            "bare": loop(plain()),
            "instance proxy": loop(refresh_on_401(plain(), refresh=lambda stale: stale)),
            "class decoration": loop(decorated()),
            "tenacity @retry": loop(with_tenacity()),
            "stamina @retry": loop(with_stamina()),
        }
        fast, slow = config.call_iterations, config.slow_call_iterations
        iterations = {name: slow if "@retry" in name else fast for name in variants}
        best = best_per_iteration(variants, iterations, config.repeats)
        loop_ns = best["loop"]
        bare = best["bare"] - loop_ns
        add(
            f"bare {flavour} no-op method",
            ns(bare),
            target=f"(timing loop {ns(loop_ns)} subtracted)",
        )
        ours = {}
        for name in ("instance proxy", "class decoration"):
            net = best[name] - loop_ns
            ours[name] = overhead = net - bare
            add(
                f"refresh_on_401, {name}",
                ns(net),
                ns(bare),
                f"+{ns(overhead)} ({net / bare:.1f}x)",
                "≤ +300 ns" if flavour == "async" else "",
                overhead <= 300 if flavour == "async" else None,
            )
        worst = max(ours.values())
        for name in ("tenacity @retry", "stamina @retry"):
            net = best[name] - loop_ns
            overhead = net - bare
            ratio = overhead / worst if worst > 0 else float("inf")
            is_tenacity = name.startswith("tenacity")
            add(
                name,
                ns(net),
                ns(bare),
                f"+{ns(overhead)}; {ratio:.0f}x our overhead",
                "ours ≥ 50x less" if is_tenacity else "",
                ratio >= 50 if is_tenacity else None,
            )


# --------------------------------------------------------------------------------------------------
# streams


def async_stream_loop(provider: Any, items: int, rounds: int) -> Callable[[int], int]:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n // items):
            async for _item in provider.chat_stream(items):
                pass
        return time.perf_counter_ns() - start

    return lambda n: drive(loop(n))


def async_empty_stream_loop() -> Callable[[int], int]:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    return lambda n: drive(loop(n))


def sync_stream_loop(provider: Any, items: int, rounds: int) -> Callable[[int], int]:
    def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n // items):
            for _item in provider.chat_stream(items):
                pass
        return time.perf_counter_ns() - start

    return loop


def bench_streams(config: Config) -> None:
    """Per-item cost of a stream that succeeds: every item goes through the gate."""
    items, rounds = config.stream_items, config.stream_rounds
    for flavour in ("async", "sync"):
        section(
            f"Stream, {flavour} generator (per item, {items} items a stream, best of "
            f"{config.repeats})"
        )
        if flavour == "async":
            plain, decorated, loop = AsyncProvider, DecoratedAsyncProvider, async_stream_loop
            empty = async_empty_stream_loop()
        else:
            plain, decorated, loop = SyncProvider, DecoratedSyncProvider, sync_stream_loop
            empty = sync_empty_loop()
        variants = {
            "loop": empty,
            "bare": loop(plain(), items, rounds),
            "instance proxy": loop(refresh_on_401(plain(), refresh=lambda s: s), items, rounds),
            "class decoration": loop(decorated(), items, rounds),
        }
        best = best_per_iteration(variants, dict.fromkeys(variants, items * rounds), config.repeats)
        bare = best["bare"] - best["loop"]
        add(f"bare {flavour} generator", ns(bare))
        for name in ("instance proxy", "class decoration"):
            net = best[name] - best["loop"]
            overhead = net - bare
            add(
                f"gated stream, {name}",
                ns(net),
                ns(bare),
                f"+{ns(overhead)} ({net / bare:.1f}x)",
                "≤ +150 ns",
                overhead <= 150,
            )


# --------------------------------------------------------------------------------------------------
# the herd


class Credentials:
    """The credential a provider must present; a refresh moves it on."""

    def __init__(self) -> None:
        self.valid = 1
        self.refreshes = 0


class HerdProvider:
    """An async provider whose call yields to the loop once, as a network call would."""

    def __init__(self, token: int, credentials: Credentials, checkpoint: Callable[[], Any]) -> None:
        self.token = token
        self.credentials = credentials
        self.checkpoint = checkpoint

    async def chat(self, request: object) -> object:
        await self.checkpoint()
        if self.token != self.credentials.valid:
            raise Unauthorized("HTTP 401 Unauthorized: token_expired")
        return request


def herd_refresh(credentials: Credentials) -> Callable[[HerdProvider], Any]:
    async def refresh(stale: HerdProvider) -> HerdProvider:
        await stale.checkpoint()  # a refresh is I/O too: the herd piles up behind it
        credentials.refreshes += 1
        credentials.valid += 1
        return HerdProvider(credentials.valid, credentials, stale.checkpoint)

    return refresh


async def _asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


def herd_setup(checkpoint: Callable[[], Any], *, wrapped: bool) -> tuple[Any, Credentials]:
    credentials = Credentials()
    if not wrapped:
        return HerdProvider(credentials.valid, credentials, checkpoint), credentials
    stale = HerdProvider(credentials.valid, credentials, checkpoint)
    credentials.valid += 1  # expired before the herd arrives
    return refresh_on_401(stale, refresh=herd_refresh(credentials)), credentials


async def herd_trio(callers: int, *, wrapped: bool) -> tuple[int, int]:
    provider, credentials = herd_setup(trio.lowlevel.checkpoint, wrapped=wrapped)
    calls = 1 if wrapped else 2

    async def caller() -> None:
        for _ in range(calls):
            await provider.chat(None)

    start = time.perf_counter_ns()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return time.perf_counter_ns() - start, credentials.refreshes


async def herd_asyncio(callers: int, *, wrapped: bool) -> tuple[int, int]:
    provider, credentials = herd_setup(_asyncio_checkpoint, wrapped=wrapped)
    calls = 1 if wrapped else 2

    async def caller() -> None:
        for _ in range(calls):
            await provider.chat(None)

    start = time.perf_counter_ns()
    async with asyncio.TaskGroup() as group:
        for _ in range(callers):
            group.create_task(caller())
    return time.perf_counter_ns() - start, credentials.refreshes


HERD: dict[str, list[tuple[int, float, float]]] = {}


def run_herd(library: str, callers: int, *, wrapped: bool) -> tuple[int, int]:
    with Quiet():
        if library == "trio":
            return trio.run(lambda: herd_trio(callers, wrapped=wrapped))
        return asyncio.run(herd_asyncio(callers, wrapped=wrapped))


def bench_herd(config: Config) -> None:
    """Many callers on an expired credential: one refresh, and little time beyond the retry."""
    section(
        f"Herd on an expired credential (wall time, best of {config.herd_repeats}; baseline: "
        "the same callers making two plain calls)"
    )
    targets = {10_000: 1.5, 100_000: 2.0}
    for library in ("trio", "asyncio"):
        HERD[library] = []
        for callers in config.herd_sizes:
            best_plain = best_wrapped = float("inf")
            refresh_counts = set()
            for _ in range(config.herd_repeats):
                plain, _ = run_herd(library, callers, wrapped=False)
                wrapped, refreshes = run_herd(library, callers, wrapped=True)
                best_plain, best_wrapped = min(best_plain, plain), min(best_wrapped, wrapped)
                refresh_counts.add(refreshes)
            HERD[library].append((callers, best_plain, best_wrapped))
            ratio = best_wrapped / best_plain
            limit = targets.get(callers)
            one = refresh_counts == {1}
            add(
                f"{library}, {callers:,} callers",
                f"{seconds(best_wrapped)}, refreshes {sorted(refresh_counts)}",
                seconds(best_plain),
                f"{ratio:.2f}x",
                f"1 refresh, ≤ {limit}x" if limit else "1 refresh",
                one and (limit is None or ratio <= limit),
            )
    bench_threads(config)


class ThreadProvider:
    """A sync provider whose call blocks briefly, as a network call would."""

    def __init__(self, token: int, credentials: Credentials) -> None:
        self.token = token
        self.credentials = credentials

    def chat(self, request: object) -> object:
        time.sleep(0.001)
        if self.token != self.credentials.valid:
            raise Unauthorized("HTTP 401 Unauthorized: token_expired")
        return request


def run_threads(count: int, *, wrapped: bool) -> tuple[int, int]:
    credentials = Credentials()
    provider: Any = ThreadProvider(credentials.valid, credentials)
    calls = 2
    if wrapped:
        credentials.valid += 1
        calls = 1

        def refresh(stale: ThreadProvider) -> ThreadProvider:
            time.sleep(0.005)
            credentials.refreshes += 1
            credentials.valid += 1
            return ThreadProvider(credentials.valid, credentials)

        provider = refresh_on_401(provider, refresh=refresh)
    barrier = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def caller() -> None:
        barrier.wait()
        try:
            for _ in range(calls):
                provider.chat(None)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=caller) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter_ns()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter_ns() - start
    if errors:
        raise errors[0]
    return elapsed, credentials.refreshes


def bench_threads(config: Config) -> None:
    best_plain = best_wrapped = float("inf")
    refresh_counts = set()
    for _ in range(max(config.herd_repeats, 3)):
        plain, _ = run_threads(config.threads, wrapped=False)
        wrapped, refreshes = run_threads(config.threads, wrapped=True)
        best_plain, best_wrapped = min(best_plain, plain), min(best_wrapped, wrapped)
        refresh_counts.add(refreshes)
    add(
        f"threads, {config.threads} callers, sync provider (1 ms call, 5 ms refresh)",
        f"{seconds(best_wrapped)}, refreshes {sorted(refresh_counts)}",
        seconds(best_plain),
        f"{best_wrapped / best_plain:.2f}x",
        "1 refresh",
        refresh_counts == {1},
    )


# --------------------------------------------------------------------------------------------------
# memory


def allocated(make: Callable[[], Any], count: int) -> tuple[float, list[Any]]:
    """Bytes allocated per object by `make()`, averaged over `count`; the objects are kept."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(count)]
        gc.collect()  # cyclic garbage of the set-up is not what the objects keep alive
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    list_bytes = sys.getsizeof(kept)
    return (after - before - list_bytes) / count, kept


def bench_memory(config: Config) -> None:
    """What wrapping costs in memory: per provider, per in-flight stream."""
    count = config.memory_count
    section(f"Memory (tracemalloc, averaged over {count:,})")
    providers = [AsyncProvider() for _ in range(count)]
    it = iter(providers)
    proxy_bytes, kept = allocated(lambda: refresh_on_401(next(it), refresh=refresh_none), count)
    add(
        "instance proxy (proxy + its flight)",
        f"{proxy_bytes:,.0f} B",
        target="≤ 1 KiB",
        passed=proxy_bytes <= 1024,
    )
    del kept, providers

    # A decorated instance costs what the plain one costs until its first call creates its
    # flight; that first call is included here (it is what every used instance carries).
    async def first_call(provider: Any) -> Any:
        await provider.chat(None)
        return provider

    bare_bytes, kept = allocated(lambda: drive(first_call(AsyncProvider())), count)
    del kept
    decorated_bytes, kept = allocated(lambda: drive(first_call(DecoratedAsyncProvider())), count)
    del kept
    extra = decorated_bytes - bare_bytes
    add(
        "class-mode instance after its first call (incl. its flight)",
        f"{decorated_bytes:,.0f} B",
        f"{bare_bytes:,.0f} B",
        f"+{extra:,.0f} B",
        "≤ 1 KiB over bare",
        extra <= 1024,
    )

    plain, proxy = AsyncProvider(), refresh_on_401(AsyncProvider(), refresh=refresh_none)

    def in_flight(provider: Any) -> Callable[[], Any]:
        def make() -> Any:
            stream = provider.chat_stream(3)
            drive(stream.__anext__())  # one item out: open, and in flight
            return stream

        return make

    for name, provider in (("bare", plain), ("gated", proxy)):
        stream_bytes, kept = allocated(in_flight(provider), count)
        for stream in kept:
            with contextlib.suppress(RuntimeError):
                drive(stream.aclose())
        del kept
        if name == "bare":
            bare_stream = stream_bytes
        else:
            add(
                "in-flight stream, async generator",
                f"{stream_bytes:,.0f} B",
                f"{bare_stream:,.0f} B",
                f"+{stream_bytes - bare_stream:,.0f} B",
            )


# --------------------------------------------------------------------------------------------------
# time to first token


class OpenAIProvider:
    """A provider over the openai SDK, as a host would write one."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def chat_stream(self, prompt: str) -> Any:
        stream = await self.client.chat.completions.create(
            model="loopback-1", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with stream:
            async for chunk in stream:
                yield chunk


async def ttft_trio(samples: int) -> tuple[float, float]:
    from contextlib import aclosing  # noqa: PLC0415

    import openai  # noqa: PLC0415 - only this section needs it

    from refresh_middleware.testing._server import open_loopback_server  # noqa: PLC0415

    async with open_loopback_server(chunks=4) as server:
        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        )
        bare = OpenAIProvider(client)
        wrapped = refresh_on_401(OpenAIProvider(client), refresh=lambda stale: stale)
        timings: dict[str, list[int]] = {"bare": [], "wrapped": []}

        async def first_token(provider: Any) -> int:
            start = time.perf_counter_ns()
            async with aclosing(provider.chat_stream("hi")) as stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        elapsed = time.perf_counter_ns() - start
                        break
                async for _ in stream:  # finish the stream: keep connections reusable
                    pass
            return elapsed

        for _ in range(max(samples // 10, 2)):  # warm up: connections, imports
            await first_token(bare)
            await first_token(wrapped)
        for index in range(samples):
            order = (("bare", bare), ("wrapped", wrapped))
            for name, provider in order if index % 2 else order[::-1]:
                timings[name].append(await first_token(provider))
        await client.close()
    return statistics.median(timings["bare"]), statistics.median(timings["wrapped"])


def bench_ttft(config: Config) -> None:
    section(
        f"Time to first token, loopback server, openai AsyncOpenAI streaming under trio "
        f"(median of {config.ttft_samples})"
    )
    bare, wrapped = trio.run(ttft_trio, config.ttft_samples)
    difference = (wrapped - bare) / bare
    add(
        "wrapped stream",
        f"{wrapped / 1e6:.3f} ms",
        f"{bare / 1e6:.3f} ms",
        f"{difference:+.2%} ({(wrapped - bare) / 1e3:+.1f} µs)",
        "within 2%",
        difference <= 0.02,
    )


# --------------------------------------------------------------------------------------------------
# machine, plot, main


def wrapt_extension() -> tuple[bool, str]:
    try:
        import wrapt._wrappers  # noqa: PLC0415
    except ImportError:
        return False, wrapt.BaseObjectProxy.__module__
    module = wrapt.BaseObjectProxy.__module__
    return module == "_wrappers", module


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> list[str]:
    active, module = wrapt_extension()
    return [
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"cpus (nproc): {os.cpu_count()}; cpu: {cpu_model()}",
        f"python: {platform.python_implementation()} {platform.python_version()} ({sys.platform})",
        (
            f"refresh_middleware {getattr(refresh_middleware, '__version__', '(source)')}, "
            f"wrapt {wrapt.__version__} (C extension {'active' if active else 'NOT active'}: "
            f"BaseObjectProxy from {module!r}), trio {trio.__version__}, "
            f"tenacity {_version('tenacity')}, stamina {_version('stamina')}"
        ),
    ]


def _version(name: str) -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version(name)


def plot(path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only --plot needs it

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {"trio": "tab:blue", "asyncio": "tab:orange"}
    for library, points in HERD.items():
        callers = [p[0] for p in points]
        axes.plot(
            callers,
            [p[2] / 1e9 for p in points],
            "o-",
            color=styles[library],
            label=f"{library}: one 401 call each, refreshed once, retried",
        )
        axes.plot(
            callers,
            [p[1] / 1e9 for p in points],
            "s--",
            color=styles[library],
            alpha=0.6,
            label=f"{library}: two plain calls each (baseline)",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("concurrent callers on an expired credential")
    axes.set_ylabel("wall time (s)")
    axes.set_title("The herd: wall time against callers")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"\nplot written to {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a run of seconds (CI)")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="draw the herd plot (PNG)")
    parser.add_argument(
        "--only",
        nargs="*",
        metavar="SECTION",
        choices=["calls", "streams", "herd", "memory", "ttft"],
        help="run only these sections",
    )
    args = parser.parse_args()
    config = SMOKE if args.smoke else Config()
    header = machine()
    print("\n".join(header))
    active, _ = wrapt_extension()
    if not active:
        print("WARNING: wrapt's C extension is not active: proxy figures will be far too slow")
    sections = {
        "calls": bench_calls,
        "streams": bench_streams,
        "herd": bench_herd,
        "memory": bench_memory,
        "ttft": bench_ttft,
    }
    for name, run in sections.items():
        if args.only is None or name in args.only:
            run(config)
    print()
    print("\n".join(header))
    print(f"command: python bench/bench.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print(table())
    misses = [row.measure for row in ROWS if row.verdict == "MISS"]
    print(f"\n{len(misses)} target(s) missed" + (": " + "; ".join(misses) if misses else ""))
    if args.plot is not None and HERD:
        plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
