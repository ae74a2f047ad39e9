"""The stream drivers over random scripts, checked against a small model of the gate table.

Hypothesis writes, for each of two attempts, the events a provider's stream will produce: text
(output), usage (metadata), 401 error items, other error items, 401 exceptions, other exceptions,
done. A scripted provider (async generator or sync generator, instance or class mode, refresh
that succeeds or fails) plays them; `chat_stream` is drained to its end, and what the consumer
saw is compared with what the table of DESIGN.md says it should see.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from typing import Any

import trio
from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import UnauthorizedError

EXAMPLES = settings(max_examples=300, deadline=None)
FIELDS = ("input_tokens", "output_tokens")


class Unauthorized(UnauthorizedError):
    """A 401 raised by the provider, numbered by the script."""

    def __init__(self, serial: int) -> None:
        super().__init__("HTTP 401 Unauthorized")
        self.serial = serial


class ServerError(Exception):
    """An error no refresh can fix, numbered by the script."""

    status_code = 500

    def __init__(self, serial: int) -> None:
        super().__init__("internal server error")
        self.serial = serial


@dataclasses.dataclass(frozen=True)
class Event:
    """One scripted event of a stream."""

    kind: str
    serial: int
    usage: tuple[int, int] = (0, 0)


def materialise(event: Event) -> Any:
    """The fresh item (or exception) a provider produces for `event`."""
    serial = event.serial
    usage = dict(zip(FIELDS, event.usage, strict=True))
    makers = {
        "text": lambda: {"type": "text_delta", "text": f"t{serial}", "serial": serial},
        "usage": lambda: {"type": "message_delta", "usage": usage, "serial": serial},
        "err401": lambda: {"type": "error", "message": "status=401 Unauthorized", "serial": serial},
        "err_other": lambda: {"type": "error", "error": {"type": "overloaded"}, "serial": serial},
        "exc401": lambda: Unauthorized(serial),
        "exc_other": lambda: ServerError(serial),
        "done": lambda: {"type": "message_stop", "serial": serial},
    }
    return makers[event.kind]()


@dataclasses.dataclass
class Script:
    """Two attempts' events, whether refreshing fails, and what happened to the provider."""

    attempts: list[list[Event]]
    refresh_fails: bool
    pending: deque[list[Event]] = dataclasses.field(default_factory=deque)
    opens: int = 0
    closes: int = 0
    refreshes: int = 0

    def __post_init__(self) -> None:
        self.pending = deque(self.attempts)

    def next_attempt(self) -> list[Event]:
        self.opens += 1
        return self.pending.popleft() if self.pending else []

    def refresh(self) -> None:
        self.refreshes += 1
        if self.refresh_fails:
            raise RuntimeError("auth server down")


def _item(event: Event) -> Any:
    value = materialise(event)
    if isinstance(value, BaseException):
        raise value
    return value


class AsyncScripted:
    def __init__(self, script: Script, key: int = 0) -> None:
        self.script = script
        self.key = key

    async def chat_stream(self, request: str) -> Any:
        events = self.script.next_attempt()
        try:
            for event in events:
                await trio.lowlevel.checkpoint()
                yield _item(event)
        finally:
            self.script.closes += 1


class SyncScripted:
    def __init__(self, script: Script, key: int = 0) -> None:
        self.script = script
        self.key = key

    def chat_stream(self, request: str) -> Any:
        events = self.script.next_attempt()
        try:
            for event in events:
                yield _item(event)
        finally:
            self.script.closes += 1


def _rebuild(stale: Any) -> Any:
    stale.script.refresh()
    return type(stale)(stale.script, stale.key + 1)


async def _rebuild_async(stale: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return _rebuild(stale)


def _reload(stale: Any) -> None:
    stale.script.refresh()
    stale.key += 1


async def _reload_async(stale: Any) -> None:
    await trio.lowlevel.checkpoint()
    _reload(stale)


DECORATED = {
    ("async", "sync refresh"): refresh_on_401(refresh=_reload)(
        type("DecoratedAsync", (AsyncScripted,), {})
    ),
    ("async", "async refresh"): refresh_on_401(refresh=_reload_async)(
        type("DecoratedAsyncRefreshAsync", (AsyncScripted,), {})
    ),
    ("sync", "sync refresh"): refresh_on_401(refresh=_reload)(
        type("DecoratedSync", (SyncScripted,), {})
    ),
}


def build(flavour: str, mode: str, refresh: str, script: Script) -> Any:
    """A provider on `script` in the given flavour, mode and refresh kind."""
    if mode == "class":
        return DECORATED[flavour, refresh](script)
    base = AsyncScripted if flavour == "async" else SyncScripted
    return refresh_on_401(
        base(script), refresh=_rebuild_async if refresh == "async refresh" else _rebuild
    )


@dataclasses.dataclass
class Seen:
    """What the consumer saw, and what the provider went through."""

    items: list[Any]
    error: int | str | None
    opens: int
    closes: int
    refreshes: int


def _error_of(error: Exception | None) -> int | str | None:
    return None if error is None else getattr(error, "serial", repr(error))


def drain(flavour: str, mode: str, refresh: str, script: Script) -> Seen:
    """Drive `chat_stream` to its end, as a consumer would, and record what was seen."""
    provider = build(flavour, mode, refresh, script)
    items: list[Any] = []
    error: Exception | None = None
    if flavour == "sync":
        with contextlib.closing(provider.chat_stream("x")) as stream:
            try:
                for item in stream:
                    items.append(item)  # noqa: PERF402 - keep what came before an error
            except Exception as raised:
                error = raised
    else:

        async def consume() -> Exception | None:
            async with contextlib.aclosing(provider.chat_stream("x")) as stream:
                try:
                    async for item in stream:
                        items.append(item)  # noqa: PERF401 - keep what came before an error
                except Exception as raised:
                    return raised
            return None

        error = trio.run(consume)
    note(f"{flavour} {mode}: opened {script.opens}, refreshed {script.refreshes}")
    return Seen(items, _error_of(error), script.opens, script.closes, script.refreshes)


# --------------------------------------------------------------------------------------------------
# the model


class Model:
    """The gate table of DESIGN.md, played over a script: what the consumer should see."""

    def __init__(self, script: Script) -> None:
        self.refresh_fails = script.refresh_fails
        self.items: list[Any] = []
        self.committed = self.retried = False
        self.carried: dict[str, int] = {}
        self.attempt_usage: dict[str, int] = {}
        self.refreshes = 0
        self.error: int | None = None

    def step(self, event: Event) -> str:
        """Play one event: "next" to read on, "retry", or "stop"; sets `error` when raising."""
        if event.kind in ("err401", "exc401") and not self.committed and not self.retried:
            self.refreshes += 1
            if self.refresh_fails:  # the original error item is forwarded, or the 401 raised
                return self.forward(event) if event.kind == "err401" else self.fail(event)
            self.retried = True
            for key, number in self.attempt_usage.items():
                self.carried[key] = self.carried.get(key, 0) + number
            self.attempt_usage = {}
            return "retry"
        if event.kind in ("exc401", "exc_other"):
            return self.fail(event)
        item = _item(event)
        if event.kind == "text":
            self.committed = True
        if event.kind == "usage":
            for key in FIELDS:
                if not self.committed:
                    self.attempt_usage[key] = max(
                        item["usage"][key], self.attempt_usage.get(key, 0)
                    )
                item["usage"][key] += self.carried.get(key, 0)
        self.items.append(item)
        return "stop" if event.kind == "done" else "next"

    def forward(self, event: Event) -> str:
        self.items.append(_item(event))
        return "stop"

    def fail(self, event: Event) -> str:
        self.error = event.serial
        return "stop"


def expected(script: Script) -> Seen:
    """What the gate table says the consumer sees for `script` (opens == closes by design)."""
    model = Model(script)
    opens = 0
    for events in script.attempts:
        opens += 1
        outcome = "next"
        for event in events:
            outcome = model.step(event)
            if outcome != "next":
                break
        if outcome != "retry":
            break
    return Seen(model.items, model.error, opens, opens, model.refreshes)


# --------------------------------------------------------------------------------------------------
# strategies

KINDS = ("text", "usage", "err401", "err_other", "exc401", "exc_other", "done")
raw_events = st.tuples(
    # 401s and usage are drawn more often, so that retries and carried usage are common.
    st.sampled_from((*KINDS, "err401", "exc401", "usage")),
    st.tuples(st.integers(0, 500), st.integers(0, 500)),
)
# Each attempt opens with usage and other error items (which do not commit), then half the time
# a 401, then anything: retries, refused retries and carried usage are all common.
usages = st.tuples(st.integers(0, 500), st.integers(0, 500))
raw_attempts = st.tuples(
    st.lists(st.tuples(st.sampled_from(["usage", "err_other"]), usages), max_size=3),
    st.lists(st.tuples(st.sampled_from(["err401", "exc401"]), usages), max_size=1),
    st.lists(raw_events, max_size=6),
).map(lambda parts: parts[0] + parts[1] + parts[2])


def _number(raw: list[list[tuple[str, tuple[int, int]]]], refresh_fails: bool) -> Script:
    serial = 0
    attempts = []
    for events in raw:
        attempt = []
        for kind, usage in events:
            attempt.append(Event(kind, serial, usage))
            serial += 1
        attempts.append(attempt)
    return Script(attempts, refresh_fails)


scripts = st.builds(
    _number,
    st.lists(raw_attempts, min_size=2, max_size=2),
    st.sampled_from([False, False, True]),  # refreshes fail in a third of the scripts
)
setups = st.sampled_from(
    [
        ("async", "instance", "sync refresh"),
        ("async", "instance", "async refresh"),
        ("async", "class", "sync refresh"),
        ("async", "class", "async refresh"),
        ("sync", "instance", "sync refresh"),
        ("sync", "class", "sync refresh"),
    ]
)


def _fresh(script: Script) -> Script:
    return Script(script.attempts, script.refresh_fails)


# --------------------------------------------------------------------------------------------------
# properties


@EXAMPLES
@given(setups, scripts)
def test_consumer_sees_what_the_gate_table_says(setup, script):
    """The consumer's items, and the error that ends the stream, are the model's."""
    want = expected(_fresh(script))
    seen = drain(*setup, script)
    assert (want.items, want.error) == (seen.items, seen.error)


@EXAMPLES
@given(setups, scripts)
def test_no_item_is_forwarded_twice(setup, script):
    """No scripted item reaches the consumer twice."""
    serials = [item["serial"] for item in drain(*setup, script).items]
    assert sorted(set(serials)) == sorted(serials)


@EXAMPLES
@given(setups, scripts)
def test_at_most_one_retry(setup, script):
    """A stream is opened at most twice and refreshes at most once, as the model says."""
    want = expected(_fresh(script))
    seen = drain(*setup, script)
    assert (True, want.opens, want.refreshes) == (seen.opens <= 2, seen.opens, seen.refreshes)


@EXAMPLES
@given(setups, scripts)
def test_every_opened_inner_stream_is_closed(setup, script):
    """Every inner stream opened (retried, finished, raised) has run its `finally`."""
    seen = drain(*setup, script)
    assert seen.opens == seen.closes


@EXAMPLES
@given(setups, scripts)
def test_usage_totals_are_preserved(setup, script):
    """Usage items of the retry report their own usage plus the abandoned attempt's maximum."""
    items = drain(*setup, script).items
    first = {event.serial for event in script.attempts[0]}
    usage = [{**item["usage"], "serial": item["serial"]} for item in items if "usage" in item]
    abandoned = {
        key: max((each[key] for each in usage if each["serial"] in first), default=0)
        for key in FIELDS
    }
    own = {
        event.serial: dict(zip(FIELDS, event.usage, strict=True)) for event in script.attempts[1]
    }
    retried = [each for each in usage if each["serial"] in own]
    assert [
        {key: own[each["serial"]][key] + abandoned[key] for key in FIELDS} for each in retried
    ] == [{key: each[key] for key in FIELDS} for each in retried]
