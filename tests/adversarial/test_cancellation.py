"""Cancellation of a caller at every await point of a call and of a stream, under trio.

An instrumented provider sleeps (on the `autojump_clock`) in `chat`, in `refresh`, when a
stream opens, before each item and while its stream closes. A dry run counts the scheduling
steps of the caller's task; then, for every k, the caller's cancel scope is cancelled right
after its k-th step, so the cancellation lands on each await point in turn, the library's own
(lock, shielded close) as well as the provider's. Two other callers share the refresh. Every run
must end (no hang), leave no inner stream open, let the other callers finish (no lost waiter),
close every abandoned stream to the end of its cleanup, and warn about nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import warnings
from typing import Any

import pytest
import trio
import trio.testing

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import UnauthorizedError as Unauthorized

# How many cancellation points each scenario covered, for the figures page.
COVERED: dict[str, int] = {}
OTHERS = 2
EXPECTED_ITEMS = [
    {"type": "text_delta", "text": "a"},
    {"type": "text_delta", "text": "b"},
    {"type": "message_stop"},
]
START = {"type": "message_start", "usage": {"input_tokens": 3}}
# A caller succeeded when it got the answer: for a stream that met the 401, after the metadata
# its first attempt forwarded; for one opened after the refresh, without it.
SUCCESSES = ("hello: ok", EXPECTED_ITEMS, [START, *EXPECTED_ITEMS])


@dataclasses.dataclass
class Probe:
    """What happened to the instrumented providers of one run."""

    stream_401: str = "exception"
    valid_from: int = 1
    refreshes_started: int = 0
    refreshes_finished: int = 0
    opens: int = 0
    closes: int = 0
    closed_by_consumer: int = 0
    cleanups_finished_after_close: int = 0


class Instrumented:
    """A provider with an await point in every place a real one has one."""

    def __init__(self, probe: Probe, key: int = 0) -> None:
        self.probe = probe
        self.key = key

    async def chat(self, request: str) -> str:
        key = self.key
        await trio.sleep(1)  # the request's round trip
        if key < self.probe.valid_from:
            raise Unauthorized("HTTP 401 Unauthorized")
        return f"{request}: ok"

    async def chat_stream(self, request: str) -> Any:
        probe, key = self.probe, self.key
        probe.opens += 1
        closing = False
        try:
            await trio.sleep(1)  # opening: connect and send the request
            if key < probe.valid_from:
                await trio.sleep(1)
                yield dict(START)
                await trio.sleep(1)
                if probe.stream_401 == "item":
                    yield {"type": "error", "error": {"type": "authentication_error"}}
                raise Unauthorized("HTTP 401 Unauthorized")
            for item in EXPECTED_ITEMS:
                await trio.sleep(1)  # each item's arrival
                yield dict(item)
        except GeneratorExit:
            closing = True
            raise
        finally:
            probe.closes += 1
            probe.closed_by_consumer += closing
            await trio.sleep(1)  # closing the connection
            probe.cleanups_finished_after_close += closing


class Manager:
    """An `anthropic`-style stream manager: the request goes out on enter, a 401 raises there."""

    def __init__(self, probe: Probe, key: int) -> None:
        self.probe = probe
        self.key = key
        self.stream: Any = None

    async def __aenter__(self) -> Any:
        await trio.sleep(1)  # connect and send the request
        if self.key < self.probe.valid_from:
            raise Unauthorized("HTTP 401 Unauthorized")
        self.probe.opens += 1
        self.stream = self.items()
        return self.stream

    async def items(self) -> Any:
        for item in EXPECTED_ITEMS:
            await trio.sleep(1)
            yield dict(item)

    async def __aexit__(self, *exc_info: object) -> None:
        probe = self.probe
        probe.closes += 1
        probe.closed_by_consumer += 1
        await self.stream.aclose()
        await trio.sleep(1)  # closing the connection
        probe.cleanups_finished_after_close += 1


class ManagerShaped(Instrumented):
    """A provider whose `chat_stream` returns a `Manager` (the plain-function shape)."""

    def chat_stream(self, request: str) -> Any:  # type: ignore[override]
        return Manager(self.probe, self.key)


async def _refresh_in_place(stale: Instrumented) -> None:
    stale.probe.refreshes_started += 1
    await trio.sleep(1)  # the auth server's round trip
    stale.probe.refreshes_finished += 1
    stale.key += 1


async def _rebuild(stale: Instrumented) -> Instrumented:
    stale.probe.refreshes_started += 1
    await trio.sleep(1)
    stale.probe.refreshes_finished += 1
    return Instrumented(stale.probe, stale.key + 1)


DECORATED = {
    base: refresh_on_401(refresh=_refresh_in_place)(type("Decorated", (base,), {}))
    for base in (Instrumented, ManagerShaped)
}


def provider(mode: str, probe: Probe, shape: str) -> Any:
    base = ManagerShaped if shape == "manager" else Instrumented
    if mode == "class":
        return DECORATED[base](probe)
    return refresh_on_401(base(probe), refresh=_rebuild)


class CancelAfterStep(trio.abc.Instrument):
    """Cancels `scope` right after the `k`-th scheduling step of `task` (never when k is 0)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps = 0
        self.task: trio.lowlevel.Task | None = None
        self.scope = trio.CancelScope()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1
            if self.steps == self.k:
                self.scope.cancel()


@dataclasses.dataclass
class Run:
    """How one run went."""

    victim: str
    others: list[Any]
    steps: int
    probe: Probe
    warnings: list[str]


async def _call(target: Any) -> Any:
    return await target.chat("hello")


async def _stream(target: Any) -> Any:
    items = []
    async with contextlib.aclosing(target.chat_stream("hello")) as stream:
        async for item in stream:
            items.append(item)  # noqa: PERF401 - a consumer acting on each item
    return items


async def _managed_stream(target: Any) -> Any:
    items = []
    async with target.chat_stream("hello") as stream:
        async for item in stream:
            items.append(item)  # noqa: PERF401 - a consumer acting on each item
    return items


async def scenario(k: int, mode: str, role: str, use: Any, stream_401: str = "exception") -> Run:
    """One run: the victim and OTHERS callers on one expired provider; cancel after step k."""
    probe = Probe(stream_401=stream_401)
    target = provider(mode, probe, "manager" if use is _managed_stream else "generator")
    canceller = CancelAfterStep(k)
    others: list[Any] = []
    victim: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        async def run_victim() -> None:
            canceller.task = trio.lowlevel.current_task()
            if role == "waiter":
                await trio.sleep(0.5)  # the others reach the refresh first
            with canceller.scope:
                result = await use(target)
                victim.append("ok" if result in SUCCESSES else repr(result))
            if canceller.scope.cancelled_caught:
                victim.append("cancelled")

        async def run_other() -> None:
            if role == "refresher":
                await trio.sleep(0.5)  # the victim reaches the refresh first
            others.append(await use(target))

        trio.lowlevel.add_instrument(canceller)
        try:
            with trio.fail_after(600):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_victim)
                    for _ in range(OTHERS):
                        nursery.start_soon(run_other)
        finally:
            trio.lowlevel.remove_instrument(canceller)
        gc.collect()
    return Run(
        victim[0] if victim else "nothing",
        others,
        canceller.steps,
        probe,
        [str(warning.message) for warning in caught],
    )


def problems(run: Run, *, streams: bool) -> list[str]:
    """What went wrong in `run`, in words; empty when nothing did."""
    found = []
    probe = run.probe
    if run.victim not in ("ok", "cancelled"):
        found.append(f"victim: {run.victim}")
    if OTHERS != len([other for other in run.others if other in SUCCESSES]):
        found.append(f"others: {run.others}")
    if probe.refreshes_finished != 1:
        found.append(f"{probe.refreshes_finished} refreshes finished")
    if streams and probe.opens != probe.closes:
        found.append(f"{probe.opens} opens, {probe.closes} closes")
    if probe.closed_by_consumer != probe.cleanups_finished_after_close:
        found.append("a close was cut short")
    if run.warnings:
        found.append(f"warnings: {run.warnings}")
    return found


async def every_point(name: str, *args: Any, streams: bool) -> dict[int, list[str]]:
    """Cancel at each step of a dry run in turn; the problems found, by step."""
    dry = await scenario(0, *args)
    assert [] == problems(dry, streams=streams)
    found = {}
    cancelled = 0
    for k in range(1, dry.steps + 1):
        run = await scenario(k, *args)
        cancelled += run.victim == "cancelled"
        if problems(run, streams=streams):
            found[k] = problems(run, streams=streams)
    COVERED[name] = cancelled  # steps after the victim's last await find nothing to cancel
    return found


@pytest.mark.parametrize("role", ["refresher", "waiter"])
@pytest.mark.parametrize("mode", ["instance", "class"])
async def test_a_call_cancelled_at_any_await_point_strands_nothing(
    mode: str, role: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling one caller of a 401 -> refresh -> retry call anywhere leaves the rest intact."""
    name = f"call, {mode} mode, victim is the {role}"
    assert {} == await every_point(name, mode, role, _call, streams=False)


@pytest.mark.parametrize("stream_401", ["exception", "item"])
@pytest.mark.parametrize("role", ["refresher", "waiter"])
@pytest.mark.parametrize("mode", ["instance", "class"])
async def test_a_stream_cancelled_at_any_await_point_strands_nothing(
    mode: str, role: str, stream_401: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling one consumer of a retried stream anywhere leaks nothing and strands no one."""
    name = f"stream (401 {stream_401}), {mode} mode, victim is the {role}"
    found = await every_point(name, mode, role, _stream, stream_401, streams=True)
    assert {} == found


@pytest.mark.parametrize("role", ["refresher", "waiter"])
@pytest.mark.parametrize("mode", ["instance", "class"])
async def test_a_managed_stream_cancelled_at_any_await_point_strands_nothing(
    mode: str, role: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling one user of a stream manager whose enter got a 401 leaks no entered manager."""
    name = f"stream manager (401 at enter), {mode} mode, victim is the {role}"
    assert {} == await every_point(name, mode, role, _managed_stream, streams=True)
