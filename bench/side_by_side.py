"""refresh_on_401 side by side with tenacity and stamina: nanoseconds per call and per item.

Information, not a target: a no-op provider makes the wrapper's own cost visible, which a
real SDK call (about a millisecond of client CPU) would hide; the share of that real work is
what `sdk_share` judges. tenacity and stamina are set up for two attempts on a 401, the
nearest thing they do to ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import stamina
import tenacity
from doubles import Unauthorized, refresh_never
from measure import Config, Table, added_ns, best_of, ns, timed, timed_async

from refresh_middleware import is_unauthorized_error, refresh_on_401


class AsyncProvider:
    async def chat(self, request: object) -> object:
        return request

    async def chat_stream(self, items: int) -> Any:
        for _ in range(items):
            yield "token"


class SyncProvider:
    def chat(self, request: object) -> object:
        return request

    def chat_stream(self, items: int) -> Iterator[str]:
        for _ in range(items):
            yield "token"


def decorated(base: type) -> type:
    """A subclass of `base` decorated with refresh_on_401 (class mode)."""
    return refresh_on_401(refresh=refresh_never)(type(f"Decorated{base.__name__}", (base,), {}))


def retried(base: type, retry: Callable[[Any], Any]) -> type:
    """A subclass of `base` whose `chat` is under another library's retry decorator."""
    return type(f"Retried{base.__name__}", (base,), {"chat": retry(base.chat)})


TENACITY = tenacity.retry(
    stop=tenacity.stop_after_attempt(2), retry=tenacity.retry_if_exception(is_unauthorized_error)
)
STAMINA = stamina.retry(on=Unauthorized, attempts=2)


async def async_calls(provider: Any, count: int) -> None:
    for _ in range(count):
        await provider.chat(None)


def sync_calls(provider: Any, count: int) -> None:
    for _ in range(count):
        provider.chat(None)


async def async_items(provider: Any, items: int, streams: int) -> None:
    for _ in range(streams):
        async for _item in provider.chat_stream(items):
            pass


def sync_items(provider: Any, items: int, streams: int) -> None:
    for _ in range(streams):
        for _item in provider.chat_stream(items):
            pass


class Flavour(NamedTuple):
    """An async or a sync provider, and how its calls and streams are timed."""

    name: str
    base: type
    timer: Callable[[Callable[[], Any], int], Callable[[], float]]
    calls: Callable[[Any, int], Any]
    items: Callable[[Any, int, int], Any]


FLAVOURS = (
    Flavour("async", AsyncProvider, timed_async, async_calls, async_items),
    Flavour("sync", SyncProvider, timed, sync_calls, sync_items),
)


def providers(base: type) -> dict[str, Any]:
    return {
        "bare": base(),
        "refresh_on_401, instance proxy": refresh_on_401(base(), refresh=refresh_never),
        "refresh_on_401, class decoration": decorated(base)(),
        "tenacity @retry": retried(base, TENACITY)(),
        "stamina @retry": retried(base, STAMINA)(),
    }


def is_other_library(name: str) -> bool:
    return name.endswith("@retry")


def calls_of(name: str, config: Config) -> int:
    """tenacity and stamina are a hundred times slower a call: fewer calls take as long."""
    return config.side_slow_calls if is_other_library(name) else config.side_calls


def call_timer(flavour: Flavour, provider: Any, calls: int) -> Callable[[], float]:
    return flavour.timer(partial(flavour.calls, provider, calls), calls)


def item_timer(flavour: Flavour, provider: Any, config: Config) -> Callable[[], float]:
    items, streams = config.side_items, config.side_streams
    return flavour.timer(partial(flavour.items, provider, items, streams), items * streams)


def cell(figure: float | None, bare: float) -> str:
    if figure is None:
        return "n/a"
    return ns(figure) if figure == bare else f"{ns(figure)} ({added_ns(figure - bare)})"


def run(config: Config) -> list[Table]:
    """Per call and per item, async and sync, every variant interleaved."""
    table = Table(
        f"Side by side with tenacity and stamina: a no-op provider (best of {config.side_rounds};"
        " information, no target)",
        (
            "Wrapper",
            *(f"per {flavour.name} call" for flavour in FLAVOURS),
            *(f"per item, {flavour.name} stream" for flavour in FLAVOURS),
        ),
    )
    print(f"\n== {table.title}", flush=True)
    columns = [
        best_of(
            {
                name: call_timer(flavour, provider, calls_of(name, config))
                for name, provider in providers(flavour.base).items()
            },
            config.side_rounds,
        )
        for flavour in FLAVOURS
    ]
    columns += [
        best_of(
            {
                name: item_timer(flavour, provider, config)
                for name, provider in providers(flavour.base).items()
                if not is_other_library(name)  # tenacity and stamina do not wrap streams
            },
            config.side_rounds,
        )
        for flavour in FLAVOURS
    ]
    for name in columns[0]:
        table.add(name, *(cell(column.get(name), column["bare"]) for column in columns))
    return [table]
