"""The decorator's forms, class mode specifics, and clear errors for bad input."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
from conftest import AsyncProvider, Script, SyncProvider, Unauthorized

import refresh_middleware
import refresh_middleware.classify
import refresh_middleware.events
from refresh_middleware import refresh_on_401

SUCCESS = {"type": "message", "content": "ok"}


def test_public_names_are_exactly_the_promised_ones() -> None:
    """The package and classify export exactly their public surface."""
    assert ["is_unauthorized_error", "refresh_on_401"] == refresh_middleware.__all__
    assert [
        "DEFAULT_USAGE",
        "GateAction",
        "ItemKind",
        "StreamGate",
        "UsageAccounting",
        "is_unauthorized_error",
        "kind_of",
    ] == refresh_middleware.classify.__all__
    assert refresh_middleware.is_unauthorized_error is (
        refresh_middleware.classify.is_unauthorized_error
    )
    assert [
        "CallRetried",
        "Event",
        "NotReplayableError",
        "ReentrantRefreshError",
        "RefreshCooldownError",
        "RefreshError",
        "RefreshFailed",
        "RefreshStarted",
        "RefreshSucceeded",
        "RefreshTimedOut",
        "RefreshTimeoutError",
        "RetrySkipped",
        "UnrelatedReplacement",
        "redact",
    ] == refresh_middleware.events.__all__


def test_the_typed_options_are_the_options_there_are() -> None:
    """The keyword options the type checkers know are exactly those Options defines (and
    checks); the defaults live in Options alone."""
    from refresh_middleware._spec import Options, RefreshOptions

    # The positional refresh; which name options were given; what only a preset sets.
    internal = ("refresh", "typed", "derives", "helpers", "parses")
    fields = [field.name for field in dataclasses.fields(Options) if field.name not in internal]

    assert fields == list(RefreshOptions.__annotations__)


def test_the_decorator_form_wraps_an_instance() -> None:
    """refresh_on_401(refresh=...)(provider) is the same as refresh_on_401(provider, ...)."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    provider = refresh_on_401(refresh=lambda stale: SyncProvider(script, 1))(SyncProvider(script))

    assert (SUCCESS, 1) == (provider.chat("x"), provider.key)


def test_class_mode_refreshes_the_instance_in_place() -> None:
    """A decorated class keeps its identity; refresh updates the very instance."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    @refresh_on_401(refresh=lambda provider: setattr(provider, "key", 1))
    class Provider(SyncProvider):
        pass

    provider = Provider(script)

    assert (SUCCESS, 1, Provider) == (provider.chat("x"), provider.key, type(provider))


def test_class_mode_intercepts_inherited_methods_and_calls_through_the_class() -> None:
    """Methods found on a base class are intercepted; Provider.chat(instance) works too."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    Provider = refresh_on_401(refresh=lambda p: setattr(p, "key", 1))(  # noqa: N806
        type("Provider", (SyncProvider,), {})
    )

    assert SUCCESS == Provider.chat(Provider(script), "x")


def test_class_mode_decorating_twice_does_not_stack() -> None:
    """Decorating a class again replaces the first interception instead of nesting it."""
    script = Script(valid_from=1)
    script.chats.append(Unauthorized())
    calls: list[str] = []

    cls = type("Provider", (SyncProvider,), {})
    cls = refresh_on_401(refresh=lambda p: calls.append("first"))(cls)
    cls = refresh_on_401(refresh=lambda p: calls.append("second"))(cls)

    with pytest.raises(Unauthorized):
        cls(script).chat("x")
    assert ["second"] == calls


def test_class_mode_keeps_one_flight_per_instance() -> None:
    """Two instances of a decorated class refresh independently."""
    script = Script(valid_from=1)
    script.chats.extend([SUCCESS, SUCCESS])
    Provider = refresh_on_401(refresh=lambda p: setattr(p, "key", p.key + 1))(  # noqa: N806
        type("Provider", (SyncProvider,), {})
    )
    first, second = Provider(script), Provider(script)

    assert [SUCCESS, SUCCESS] == [first.chat("x"), second.chat("x")]
    assert (1, 1) == (first.key, second.key)


def test_class_mode_forgets_collected_instances() -> None:
    """The per-instance state of a decorated class goes with its instance."""
    from refresh_middleware._decorator import _flights as flights

    script = Script()
    script.chats.append(SUCCESS)
    Provider = refresh_on_401(refresh=lambda p: None)(  # noqa: N806
        type("Provider", (SyncProvider,), {})
    )
    provider = Provider(script)
    provider.chat("x")
    key = id(provider)
    assert key in flights.by_id

    del provider

    assert key not in flights.by_id


def test_class_mode_supports_slots_with_weakref() -> None:
    """A __slots__ class with __weakref__ is decorated; without it, the error says what to add."""

    class Slotted:
        __slots__ = ("__weakref__", "key")

        def __init__(self) -> None:
            self.key = 0

        def chat(self, request: str) -> Any:
            if self.key < 1:
                raise Unauthorized
            return SUCCESS

    class Bare:
        __slots__ = ("key",)

        def chat(self, request: str) -> Any:
            return SUCCESS  # pragma: no cover - never decorated

    decorated = refresh_on_401(refresh=lambda p: setattr(p, "key", 1))(Slotted)

    assert SUCCESS == decorated().chat("x")
    with pytest.raises(TypeError, match="add '__weakref__' to its __slots__"):
        refresh_on_401(refresh=lambda p: None)(Bare)


@pytest.mark.parametrize("refresh", [None, "rebuild", 42])
def test_a_refresh_that_is_not_callable_is_refused(refresh: Any) -> None:
    """refresh must be callable: anything else is a TypeError naming its type."""
    with pytest.raises(TypeError, match="refresh must be callable"):
        refresh_on_401(SyncProvider(Script()), refresh=refresh)


@pytest.mark.parametrize("option", ["is_unauthorized", "kind_of"])
def test_classifier_options_must_be_callable(option: str) -> None:
    """is_unauthorized and kind_of must be callable."""
    with pytest.raises(TypeError, match=f"{option} must be callable"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, **{option: "nope"})


def test_usage_option_needs_read_and_add() -> None:
    """A usage option without read and add is refused."""
    with pytest.raises(TypeError, match="usage must have read"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, usage=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("calls", [["chat", 3], ["not a name"]])
def test_method_names_must_be_identifiers(calls: Any) -> None:
    """calls and streams take method names."""
    with pytest.raises(TypeError, match="calls must be a method name"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, calls=calls)


def test_a_target_with_none_of_the_methods_is_refused() -> None:
    """An instance or class with nothing to intercept is a TypeError that names the options."""

    class Nothing:
        def complete(self) -> None: ...

    with pytest.raises(TypeError, match=r"Nothing has none of the methods to intercept \(chat"):
        refresh_on_401(Nothing(), refresh=lambda p: p)
    with pytest.raises(TypeError, match="pass calls= or streams="):
        refresh_on_401(refresh=lambda p: None)(Nothing)


def test_custom_method_names_are_intercepted() -> None:
    """calls= and streams= take other names, as one string or several."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    class Completer:
        def __init__(self, key: int) -> None:
            self.key = key

        def complete(self, prompt: str) -> Any:
            return script.next_chat(self.key)

    provider = refresh_on_401(Completer(0), refresh=lambda p: Completer(1), calls="complete")

    assert SUCCESS == provider.complete("x")


def test_a_provider_of_generators_only_refuses_an_async_refresh() -> None:
    """A provider whose intercepted methods are all generator functions cannot await."""

    class Generators:
        def chat_stream(self, request: str) -> Any:
            yield request  # pragma: no cover - refused before use

    async def rebuild(stale: Generators) -> Generators:
        return stale  # pragma: no cover - refused before use

    class AsyncCallable:
        async def __call__(self, stale: Generators) -> Generators:
            return stale  # pragma: no cover - refused before use

    for refresh in (rebuild, AsyncCallable()):
        with pytest.raises(TypeError, match="every intercepted method of Generators"):
            refresh_on_401(Generators(), refresh=refresh)


def test_a_plain_method_called_synchronously_says_it_cannot_await_an_async_refresh() -> None:
    """Plain methods may return awaitables, so an async refresh is accepted; a synchronous
    call that meets a 401 then says why it was not retried."""
    script = Script(valid_from=1)

    async def rebuild(stale: SyncProvider) -> SyncProvider:
        return stale  # pragma: no cover - cannot be awaited here

    provider = refresh_on_401(SyncProvider(script), refresh=rebuild)

    with pytest.raises(Unauthorized) as caught:
        provider.chat("x")

    assert "called synchronously and cannot await it" in str(caught.value.__context__)


def test_an_async_provider_accepts_an_async_refresh() -> None:
    """The async-refresh check lets async providers through."""

    async def rebuild(stale: AsyncProvider) -> AsyncProvider:
        return stale  # pragma: no cover - only decoration is checked here

    assert isinstance(refresh_on_401(AsyncProvider(Script()), refresh=rebuild), AsyncProvider)


def test_class_attributes_that_are_not_methods_are_refused() -> None:
    """A static method or other descriptor under an intercepted name is a clear TypeError."""

    class Static:
        @staticmethod
        def chat(request: str) -> None: ...

    with pytest.raises(TypeError, match=r"Static\.chat is a staticmethod, not a plain method"):
        refresh_on_401(refresh=lambda p: None)(Static)


def test_proxies_of_one_class_share_one_proxy_class_whatever_their_options() -> None:
    """One proxy class per provider class and names; options, even unhashable, pile up nothing."""

    def rebuild(stale: SyncProvider) -> SyncProvider:
        return stale  # pragma: no cover - no 401 here

    first = refresh_on_401(SyncProvider(Script()), refresh=rebuild)
    cached = len(vars(SyncProvider)["__refresh_on_401_proxies__"])
    for seconds in range(1, 300):
        refresh_on_401(SyncProvider(Script()), refresh=rebuild, refresh_timeout=seconds)
    last = refresh_on_401(SyncProvider(Script()), refresh=rebuild)

    assert type(first) is type(last)
    assert cached == len(vars(SyncProvider)["__refresh_on_401_proxies__"])


def test_the_test_kit_lists_the_server_names_it_imports_lazily() -> None:
    """refresh_middleware.testing names the server's exports without importing the server."""
    import refresh_middleware.testing
    from refresh_middleware.testing import _server

    assert set(_server.__all__) == refresh_middleware.testing._SERVER_NAMES
    assert set(_server.__all__) <= set(refresh_middleware.testing.__all__)


def test_none_as_the_target_is_a_type_error_not_a_decorator() -> None:
    """`refresh_on_401(None, refresh=...)` is a missing provider: refused, never a decorator."""
    with pytest.raises(TypeError, match="got None as the provider to wrap"):
        refresh_on_401(None, refresh=lambda stale: stale)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(SyncProvider(Script()).chat, id="bound method"),
        pytest.param(SyncProvider.chat, id="function"),
        pytest.param(functools.partial(SyncProvider.chat), id="partial"),
    ],
)
def test_wrapping_a_function_says_to_wrap_its_object_or_decorate_its_class(target: Any) -> None:
    """A function is no provider: the error says what to wrap instead, not `pass calls=`."""
    with pytest.raises(
        TypeError, match=r"got the function 'chat'.*wraps the object that has"
    ) as caught:
        refresh_on_401(target, refresh=lambda stale: stale)

    assert "decorates its class" in str(caught.value)
