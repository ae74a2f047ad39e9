"""A no-op async call through the proxy: what the wrapper adds when nothing goes wrong.

The provider's `chat` returns its argument at once, so the wrapper's own cost is all there is
to see. The floor is the least any wrapper can add: one forwarding coroutine that would catch
a 401 and retry (`Forwarding`). A wrapper that does not know the method's signature pays more:
it takes and passes `*args, **kwargs`, and on a `wrapt` proxy each method lookup goes through
the proxy's attribute hook (`GenericForwarding`, the least a generic proxy can add). Bare, the
floors and ours run in one process, interleaved, best of several rounds, so a noisy neighbour
on a shared machine slows them alike.
"""

from __future__ import annotations

from typing import Any

import wrapt
from doubles import Unauthorized, refresh_never
from measure import Config, Table, added_ns, best_of, ns, timed_async, verdict

from refresh_middleware import refresh_on_401

TARGET_ADDED_NS = 1_000


class NoopProvider:
    async def chat(self, request: object) -> object:
        return request


@refresh_on_401(refresh=refresh_never)
class DecoratedNoopProvider(NoopProvider):
    pass


class Forwarding:
    """The floor: one coroutine between the caller and the provider, retrying on a 401."""

    def __init__(self, provider: NoopProvider) -> None:
        self.provider = provider

    async def chat(self, request: object) -> object:
        try:
            return await self.provider.chat(request)
        except Unauthorized:
            return await self.provider.chat(request)


class GenericForwarding(wrapt.BaseObjectProxy):  # type: ignore[misc]
    """The floor of a generic proxy: forwards any arguments, retrying on a 401."""

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.__wrapped__.chat(*args, **kwargs)
        except Unauthorized:
            return await self.__wrapped__.chat(*args, **kwargs)


def calls(provider: Any, count: int) -> Any:
    async def run() -> None:
        for _ in range(count):
            await provider.chat(None)

    return timed_async(run, count)


def run(config: Config) -> list[Table]:
    """Bare, the floor and ours, per no-op call, interleaved."""
    table = Table(
        f"A no-op async call: what the wrapper adds (trio, {config.side_calls:,} calls a round, "
        f"best of {config.side_rounds}, interleaved in one process)",
        ("Provider", "per call", "added over bare", "target", "verdict"),
    )
    print(f"\n== {table.title}", flush=True)
    subjects = {
        "bare: the provider's coroutine": NoopProvider(),
        "floor: one forwarding coroutine": Forwarding(NoopProvider()),
        "floor: a generic forwarding proxy (wrapt, *args, **kwargs)": GenericForwarding(
            NoopProvider()
        ),
        "refresh_on_401, instance proxy": refresh_on_401(NoopProvider(), refresh=refresh_never),
        "refresh_on_401, class decoration": DecoratedNoopProvider(),
    }
    best = best_of(
        {name: calls(provider, config.side_calls) for name, provider in subjects.items()},
        config.side_rounds,
    )
    bare = best["bare: the provider's coroutine"]
    for name, figure in best.items():
        judged = name.startswith("refresh_on_401")
        table.add(
            name,
            ns(figure),
            "" if figure == bare else added_ns(figure - bare),
            f"≤ +{ns(TARGET_ADDED_NS)}" if judged else "",
            verdict(figure - bare <= TARGET_ADDED_NS) if judged else "",
        )
    return [table]
