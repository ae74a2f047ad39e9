"""The instance proxy is the provider for every other purpose, and never stacks."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import pytest
from conftest import AsyncProvider, Script, SyncProvider, Unauthorized

from refresh_middleware import refresh_on_401

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
    provider = refresh_on_401(AsyncProvider(Script()), refresh=lambda stale: stale)

    assert inspect.iscoroutinefunction(provider.chat)
    assert inspect.isasyncgenfunction(provider.chat_stream)
    assert ("(request: 'str') -> 'Any'", "chat") == (
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
