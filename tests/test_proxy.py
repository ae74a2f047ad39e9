"""The instance proxy is the provider for every other purpose, and never stacks."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import pickle
import threading
import traceback
from typing import Any

import pytest
from conftest import AsyncProvider, Script, SyncProvider, Unauthorized

from refresh_middleware import refresh_on_401
from refresh_middleware.events import Event, UnrelatedReplacement

SUCCESS = {"type": "message", "content": "ok"}


def rebuild(stale: SyncProvider) -> SyncProvider:
    """A module-level refresh, so proxies using it can be pickled."""
    return SyncProvider(stale.script, stale.key + 1)


class Chatty(SyncProvider):
    """A provider with extras: an attribute, another method, a repr of its own."""

    model = "m-1"

    def other(self) -> str:
        return f"other from key {self.key}"

    def __repr__(self) -> str:
        return f"Chatty(key={self.key})"


def test_the_proxy_passes_isinstance_and_repr() -> None:
    """isinstance and repr behave as for the provider; type() shows the proxy."""
    provider = refresh_on_401(Chatty(Script()), refresh=rebuild)

    assert (True, "Chatty(key=0)") == (isinstance(provider, Chatty), repr(provider))
    assert "RefreshingProxy[Chatty]" == type(provider).__name__


def test_attribute_reads_writes_and_other_methods_reach_the_provider() -> None:
    """Reads, writes and other methods go to the current provider."""
    inner = Chatty(Script())
    provider = refresh_on_401(inner, refresh=rebuild)

    provider.model = "m-2"

    assert ("m-2", "m-2", "other from key 0") == (provider.model, inner.model, provider.other())


def test_intercepted_methods_keep_their_introspection() -> None:
    """Signatures, names and coroutine-ness of intercepted methods are the provider's."""

    class Provider(AsyncProvider):
        async def chat(self, request: str, *, model: str = "m") -> Any:
            return await super().chat(request, model=model)

    provider = refresh_on_401(Provider(Script()), refresh=lambda stale: stale)

    assert inspect.iscoroutinefunction(provider.chat)
    assert inspect.isasyncgenfunction(provider.chat_stream)
    assert ("(request: 'str', *, model: 'str' = 'm') -> 'Any'", "chat") == (
        str(inspect.signature(provider.chat)),
        provider.chat.__name__,
    )


def test_a_refresh_swaps_the_provider_behind_the_proxy() -> None:
    """After a refresh the proxy reads from the replacement, as does every intercepted method."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    provider = refresh_on_401(Chatty(script), refresh=lambda stale: Chatty(script, 1))
    chat_taken_before = provider.chat

    assert SUCCESS == chat_taken_before("x")
    assert (1, "other from key 1") == (provider.key, provider.other())


def test_attributes_set_through_the_proxy_are_gone_after_a_swap() -> None:
    """An attribute written through the proxy lands on the provider that is replaced later."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    provider = refresh_on_401(Chatty(script), refresh=lambda stale: Chatty(script, 1))
    provider.model = "written"

    provider.chat("x")

    assert "m-1" == provider.model


def test_wrapping_twice_does_not_stack_two_refreshers() -> None:
    """Wrapping a proxy again wraps its provider: the newest refresh is the only one."""
    script = Script(valid_from=1)
    script.chats.extend([SUCCESS])
    calls: list[str] = []

    def first(stale: SyncProvider) -> SyncProvider:
        calls.append("first")  # pragma: no cover - replaced before any 401
        return SyncProvider(script, 1)  # pragma: no cover

    def second(stale: SyncProvider) -> SyncProvider:
        calls.append("second")
        return SyncProvider(script, 1)

    inner = SyncProvider(script)
    twice = refresh_on_401(refresh_on_401(inner, refresh=first), refresh=second)

    assert (SUCCESS, ["second"]) == (twice.chat("x"), calls)
    assert inner is not twice.__wrapped__


def test_instances_of_a_decorated_class_are_not_wrapped_again() -> None:
    """Wrapping an instance of a decorated class would refresh twice: a clear TypeError."""
    decorated = refresh_on_401(refresh=lambda stale: None)(type("P", (SyncProvider,), {}))

    with pytest.raises(TypeError, match="decorated with refresh_on_401 already"):
        refresh_on_401(decorated(Script()), refresh=rebuild)


def test_copy_gives_an_independent_proxy() -> None:
    """copy and deepcopy give proxies over copies of the provider, with their own state."""
    provider = refresh_on_401(Chatty(Script()), refresh=rebuild)

    shallow = copy.copy(provider)
    deep = copy.deepcopy(provider)

    assert (Chatty, Chatty) == (type(shallow.__wrapped__), type(deep.__wrapped__))
    assert provider.__wrapped__ is not shallow.__wrapped__
    assert provider.__wrapped__.script is shallow.__wrapped__.script
    assert provider.__wrapped__.script is not deep.__wrapped__.script
    assert provider._self_core[1] is not shallow._self_core[1]


def test_pickle_round_trips_with_a_module_level_refresh() -> None:
    """A proxy whose refresh is a module-level function pickles and still refreshes."""
    script = Script(valid_from=1)
    provider = refresh_on_401(Chatty(script), refresh=rebuild)

    restored = pickle.loads(pickle.dumps(provider))  # noqa: S301 - our own bytes
    restored.__wrapped__.script.chats.append(SUCCESS)

    assert (SUCCESS, 1) == (restored.chat("x"), restored.key)


def test_pickle_refuses_a_lambda_refresh_clearly() -> None:
    """A proxy whose refresh cannot be pickled says which option is the problem."""
    provider = refresh_on_401(Chatty(Script()), refresh=lambda stale: stale)

    with pytest.raises(TypeError, match="use a module-level function"):
        pickle.dumps(provider)
    with pytest.raises(TypeError, match="use a module-level function"):
        provider.__reduce__()


def test_callables_that_are_not_class_functions_are_intercepted_per_access() -> None:
    """A callable set on the instance is intercepted too."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    class Holder:
        def __init__(self, key: int) -> None:
            self.key = key
            self.chat = lambda request: script.next_chat(self.key)

    provider = refresh_on_401(Holder(0), refresh=lambda stale: Holder(1))

    assert (SUCCESS, 1) == (provider.chat("x"), provider.key)
    assert type(provider).chat is inspect.getattr_static(type(provider), "chat")


def test_proxy_classes_are_shared_between_proxies() -> None:
    """Two proxies over the same provider class and names share one generated class."""
    first = refresh_on_401(Chatty(Script()), refresh=rebuild)
    second = refresh_on_401(Chatty(Script()), refresh=lambda stale: stale)

    assert type(first) is type(second)


async def test_a_proxy_raises_the_provider_errors_of_other_methods() -> None:
    """Methods that are not intercepted are not retried: a 401 there passes through."""

    class Provider(AsyncProvider):
        async def models(self) -> Any:
            raise Unauthorized

    provider = refresh_on_401(Provider(Script()), refresh=lambda stale: stale)

    with pytest.raises(Unauthorized):
        await provider.models()


@dataclasses.dataclass
class _SecretRefresher:
    """A refresh callable holding a client secret, unpicklable for its lock."""

    client_secret: str
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def __call__(self, stale: SyncProvider) -> SyncProvider:
        return stale


def test_pickle_error_names_the_refresh_option_and_type_never_its_repr() -> None:
    """An unpicklable refresh is named by option and type; its repr (with a secret) is not."""
    secret = "cs-0123456789-very-secret"  # noqa: S105 - a planted secret
    provider = refresh_on_401(Chatty(Script()), refresh=_SecretRefresher(secret))

    with pytest.raises(TypeError) as caught:
        pickle.dumps(provider)

    told = "".join(traceback.format_exception(caught.value))
    assert (True, True, False) == (
        "refresh= option" in told,
        "test_proxy._SecretRefresher" in told,
        secret in told,
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("expires_at", lambda provider: None),
        ("clock", lambda: 0.0),
        ("retry_arguments", lambda provider, args, kwargs: (args, kwargs)),
        ("is_unauthorized", lambda value: False),
    ],
)
def test_pickle_error_names_each_unpicklable_option(option: str, value: Any) -> None:
    """expires_at=, clock=, retry_arguments= (and the predicate) are named when they fail."""
    extra: dict[str, Any] = {"statuses": {403}} if option == "is_unauthorized" else {}
    provider = refresh_on_401(Chatty(Script()), refresh=rebuild, **{option: value}, **extra)

    with pytest.raises(TypeError, match=rf"its {option}= option, of type function,"):
        pickle.dumps(provider)


class Stranger:
    """Unrelated to SyncProvider or AsyncProvider, yet with a `chat` of its own."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.key = 99

    def chat(self, request: str) -> Any:
        return self.script.next_chat(self.key)


class AsyncStranger(Stranger):
    """An unrelated async provider."""

    async def chat(self, request: str) -> Any:  # type: ignore[override]
        return self.script.next_chat(self.key)


def test_an_unrelated_replacement_is_warned_once_per_proxy_through_the_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refresh that swaps in an unrelated class is said once, as an event and a WARNING."""
    script = Script(valid_from=1)
    script.chats.extend([SUCCESS, SUCCESS])
    events: list[Event] = []
    provider = refresh_on_401(
        SyncProvider(script),
        refresh=lambda stale: (
            SyncProvider(script, 1) if isinstance(stale, Stranger) else Stranger(script)
        ),
        on_event=events.append,
        calls="chat",
        streams=(),
    )

    with caplog.at_level(logging.WARNING, logger="refresh_middleware"):
        provider.chat("x")
        provider.__wrapped__.key = 0  # expired again: a second unrelated swap, back
        provider.chat("x")

    warned = [event for event in events if isinstance(event, UnrelatedReplacement)]
    assert ([UnrelatedReplacement("SyncProvider", "Stranger")], 1) == (
        warned,
        sum("unrelated" in record.getMessage() for record in caplog.records),
    )


async def test_an_async_refresh_with_an_unrelated_replacement_is_warned_too() -> None:
    """The warning holds for a coroutine-function refresh, which stays one for the engine."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    events: list[Event] = []

    async def refresh(stale: AsyncProvider) -> AsyncStranger:
        return AsyncStranger(script)

    provider = refresh_on_401(
        AsyncProvider(script), refresh=refresh, on_event=events.append, calls="chat", streams=()
    )

    assert SUCCESS == await provider.chat("x")
    assert ["UnrelatedReplacement"] == [
        type(event).__name__ for event in events if isinstance(event, UnrelatedReplacement)
    ]


@pytest.mark.parametrize(
    "replacement",
    [
        pytest.param(lambda script: SyncProvider(script, 1), id="same class"),
        pytest.param(lambda script: Chatty(script, 1), id="subclass"),
        pytest.param(
            lambda script: refresh_on_401(SyncProvider(script, 1), refresh=rebuild), id="proxy"
        ),
    ],
)
def test_a_related_replacement_is_not_warned(replacement: Any) -> None:
    """The same class, a subclass, or one of our proxies around either: no warning."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    events: list[Event] = []
    provider = refresh_on_401(
        SyncProvider(script), refresh=lambda stale: replacement(script), on_event=events.append
    )

    provider.chat("x")

    assert [] == [event for event in events if isinstance(event, UnrelatedReplacement)]


def test_a_replacement_without_the_methods_is_refused_not_warned() -> None:
    """What the engine refuses (no `chat_stream` on it) gets its TypeError, not the warning."""
    script = Script(valid_from=1)
    events: list[Event] = []
    provider = refresh_on_401(
        SyncProvider(script),
        refresh=lambda stale: Stranger(script),
        on_event=events.append,
        calls="chat",
        streams="chat_stream",
    )

    with pytest.raises(Unauthorized):
        provider.chat("x")

    assert [] == [event for event in events if isinstance(event, UnrelatedReplacement)]


class Named:
    """A provider that answers with its name, directly and through a dotted name."""

    def __init__(self, name: str, refused: bool = False) -> None:
        self.name = name
        self.refused = refused
        self.completions = self

    def chat(self) -> str:
        if self.refused:
            raise Unauthorized
        return self.name

    def create(self) -> str:
        return self.chat()


def test_intercepted_methods_follow_an_assigned_wrapped_provider() -> None:
    """After `proxy.__wrapped__ = other`, chat() and dotted names call `other`."""
    provider = refresh_on_401(
        Named("old"), refresh=lambda stale: stale, calls=("chat", "completions.create")
    )

    provider.__wrapped__ = Named("new")

    assert ("new", "new", "new") == (provider.name, provider.chat(), provider.completions.create())


def test_a_refresh_after_an_assignment_refreshes_the_assigned_provider() -> None:
    """A 401 after `proxy.__wrapped__ = other` refreshes `other`, not the provider it replaced."""
    stales: list[str] = []

    def renew(stale: Named) -> Named:
        stales.append(stale.name)
        return Named(f"{stale.name}, renewed")

    provider = refresh_on_401(Named("old"), refresh=renew)
    provider.__wrapped__ = Named("new", refused=True)

    assert ("new, renewed", ["new"]) == (provider.chat(), stales)


class AsyncNamed(Named):
    async def chat(self) -> str:  # type: ignore[override]
        if self.refused:
            raise Unauthorized
        return self.name


async def test_async_methods_follow_an_assigned_wrapped_provider() -> None:
    """A coroutine method's quick attempt calls the provider assigned to `proxy.__wrapped__`."""
    provider = refresh_on_401(AsyncNamed("old"), refresh=lambda stale: stale)

    provider.__wrapped__ = AsyncNamed("new")

    assert "new" == await provider.chat()


async def test_an_async_refresh_after_an_assignment_refreshes_the_assigned_provider() -> None:
    """A coroutine method's 401 after `proxy.__wrapped__ = other` refreshes `other`."""
    stales: list[str] = []

    def renew(stale: AsyncNamed) -> AsyncNamed:
        stales.append(stale.name)
        return AsyncNamed(f"{stale.name}, renewed")

    provider = refresh_on_401(AsyncNamed("old"), refresh=renew)
    provider.__wrapped__ = AsyncNamed("new", refused=True)

    assert ("new, renewed", ["new"]) == (await provider.chat(), stales)
