"""Wrapping what users hold: nested methods, shapes read per call, what a provider hands out."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import types
import weakref
from typing import Any

import pytest
import trio
from conftest import DONE, Script, ScriptedStream, SyncProvider, Unauthorized, checkpoint, text

from refresh_middleware import refresh_on_401
from refresh_middleware.classify import DEFAULT_USAGE

# --------------------------------------------------------------------------------------------------
# an SDK-like client: resources nested under the client, `create` a plain function


class Completions:
    """`client.chat.completions`: `create` is a plain function returning a coroutine."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, *, stream: bool = False) -> Any:
        return self._create(stream=stream)

    async def _create(self, *, stream: bool) -> Any:
        client = self.client
        await checkpoint()
        client.requests.append(client.key)
        if client.key != client.valid[0]:
            raise Unauthorized
        if not stream:
            return {"type": "completion", "text": "hello"}
        return Chunks(client.batches.pop(0))

    def stream(self) -> Manager:
        """A manager, as `client.responses.stream()` or `messages.stream()`."""
        return Manager(self)


class Chunks(ScriptedStream):
    """The SDK's stream object."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Manager:
    def __init__(self, completions: Completions) -> None:
        self.completions = completions

    async def __aenter__(self) -> Chunks:
        return await self.completions.create(stream=True)

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class Chat:
    def __init__(self, client: Client) -> None:
        self.completions = Completions(client)


class Client:
    """An SDK client: `client.chat.completions.create(...)`."""

    def __init__(self, valid: list[int], key: int = 0, batches: list[list[Any]] | None = None):
        self.valid = valid
        self.key = key
        self.requests: list[int] = []
        self.batches = batches if batches is not None else []
        self.chat = Chat(self)

    def with_key(self, key: int) -> Client:
        fresh = Client(self.valid, key, self.batches)
        fresh.requests = self.requests
        return fresh


def client_wrapped(valid: list[int], batches: list[list[Any]] | None = None) -> Any:
    async def renew(stale: Client) -> Client:
        await checkpoint()
        return stale.with_key(valid[0])

    return refresh_on_401(
        Client(valid, 0, batches),
        refresh=renew,
        calls=(),
        streams=("chat.completions.create", "chat.completions.stream"),
    )


async def test_a_dotted_name_reaches_a_nested_plain_method_and_refreshes() -> None:
    """`chat.completions.create` (a plain function returning a coroutine) is intercepted on
    the client: a 401 at the await is refreshed with an async refresh and retried."""
    client = client_wrapped([1])

    reply = await client.chat.completions.create()

    assert ({"type": "completion", "text": "hello"}, [0, 1]) == (reply, client.requests)


async def test_one_stream_name_serves_a_call_and_a_stream() -> None:
    """The shape is read per call: create() is a call, create(stream=True) a gated stream."""
    client = client_wrapped([1], [[text("a"), DONE]])

    reply = await client.chat.completions.create()
    stream = await client.chat.completions.create(stream=True)
    async with stream:
        items = [item async for item in stream]

    assert ("hello", [text("a"), DONE]) == (reply["text"], items)


async def test_a_nested_manager_is_gated_and_retried_at_enter() -> None:
    """A plain method returning a manager: the 401 at enter is refreshed and retried."""
    client = client_wrapped([1], [[text("a"), DONE]])

    async with client.chat.completions.stream() as stream:
        items = [item async for item in stream]

    assert ([text("a"), DONE], [0, 1]) == (items, client.requests)


async def test_a_resource_held_before_a_swap_uses_the_fresh_client() -> None:
    """A resource object taken from the wrapped client looks methods up on the current
    client at each call, so a replacement is used at once."""
    valid = [1]
    client = client_wrapped(valid)
    completions = client.chat.completions
    await completions.create()
    valid[0] = 2

    await completions.create()

    assert [0, 1, 1, 2] == client.requests


def test_nested_objects_stay_what_they_are() -> None:
    """isinstance, attributes and introspection of nested objects are the SDK's."""
    client = client_wrapped([1])
    completions = client.chat.completions

    assert (True, True, True) == (
        isinstance(client, Client),
        isinstance(completions, Completions),
        isinstance(client.chat, Chat),
    )
    assert (False, repr(client.__wrapped__.chat.completions)) == (
        inspect.iscoroutinefunction(completions.create),
        repr(completions),
    )


def test_a_method_and_a_dotted_name_through_it_cannot_both_be_intercepted() -> None:
    """'chat' and 'chat.create' overlap (both callable): refused, naming both."""

    class Overlapping:
        def chat(self) -> None: ...

    Overlapping.chat.create = lambda: None  # type: ignore[attr-defined]

    with pytest.raises(TypeError, match=r"'chat' and 'chat\.create' overlap"):
        refresh_on_401(Overlapping(), refresh=lambda s: s, calls=("chat", "chat.create"))


def test_dotted_names_are_for_instances() -> None:
    """A decorated class cannot reach a nested object of its instances."""
    with pytest.raises(TypeError, match="dotted name"):
        refresh_on_401(refresh=lambda s: None, calls="chat.completions.create")(Client)


def test_a_misspelt_dotted_stream_name_next_to_a_correct_one_is_refused_with_the_closest() -> None:
    """`streams=(correct, misspelt)`: refused at wrap time, naming the option and a near name."""
    with pytest.raises(
        TypeError,
        match=r"names 'chat\.completions\.strem'.*did you mean 'chat\.completions\.stream'\?",
    ):
        refresh_on_401(
            Client([0]),
            refresh=lambda stale: stale,
            calls=(),
            streams=("chat.completions.create", "chat.completions.strem"),
        )


def test_a_misspelt_step_of_a_dotted_name_is_respelt_in_place() -> None:
    """A typo in the middle of a dotted name is suggested with the rest of the name kept."""
    with pytest.raises(TypeError, match=r"did you mean 'chat\.completions\.create'\?"):
        refresh_on_401(Client([0]), refresh=lambda stale: stale, streams="chat.completion.create")


def test_a_misspelt_call_name_of_a_decorated_class_is_refused_with_the_closest() -> None:
    """Class mode too: a given name the class lacks is an error naming the closest method."""
    with pytest.raises(TypeError, match=r"calls= names 'chta'.*did you mean 'chat'\?"):
        refresh_on_401(refresh=lambda provider: None, calls=("chta", "chat"))(
            type("Decorated", (SyncProvider,), {})
        )


def test_a_given_name_with_nothing_close_asks_to_check_the_spelling() -> None:
    """No near name: the error says so instead of guessing."""
    with pytest.raises(TypeError, match=r"calls= names 'zzz', .* check the spelling"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda stale: stale, calls=("chat", "zzz"))


def test_default_names_the_provider_lacks_are_still_skipped() -> None:
    """Names not given by the user (the defaults) may be missing: `embed` is skipped."""
    provider = refresh_on_401(SyncProvider(Script()), refresh=lambda stale: stale, streams=())

    assert ["chat"] == list(provider._self_core.methods)


# --------------------------------------------------------------------------------------------------
# hands_out and the arguments of a retry


class Model:
    """A framework model that hands itself out, as pydantic-ai's and LangChain's do."""

    def __init__(self, key: int, valid: list[int]) -> None:
        self.key = key
        self.valid = valid

    async def request(self, prompt: str) -> str:
        await checkpoint()
        if self.key != self.valid[0]:
            raise Unauthorized
        return f"{prompt} with key {self.key}"

    def serving(self, wrap: Any) -> Any:
        return wrap(self)

    def __or__(self, other: Any) -> Any:
        return (self, other)


async def test_methods_that_hand_the_provider_out_hand_out_the_proxy() -> None:
    """Listed in hands_out, a method runs with the proxy as self: what it hands out (and what
    that calls) refreshes; without it, the raw model escapes."""
    valid = [1]

    def fresh(stale: Model) -> Model:
        return Model(valid[0], valid)

    model = refresh_on_401(
        Model(0, valid), refresh=fresh, calls="request", hands_out=("serving", "__or__")
    )
    bare = refresh_on_401(Model(0, valid), refresh=fresh, calls="request")

    served = model.serving(lambda inner: inner)
    piped, _ = model | "parser"

    assert (served is model, piped is model) == (True, True)
    assert "hi with key 1" == await served.request("hi")
    with pytest.raises(Unauthorized):
        await bare.serving(lambda inner: inner).request("hi")


def test_hands_out_is_for_instances() -> None:
    """A decorated class's methods run on the instance already: hands_out is refused there."""
    with pytest.raises(TypeError, match="hands_out is for a wrapped instance"):
        refresh_on_401(refresh=lambda p: None, calls="request", hands_out="serving")(Model)


def test_the_retry_can_take_fresh_arguments() -> None:
    """retry_arguments rebuilds the retry's arguments from the fresh provider, so a stale key
    passed per call is never sent twice."""
    sent: list[str] = []

    class PerCallKey:
        def __init__(self, key: str) -> None:
            self.key = key

        def chat(self, prompt: str, *, api_key: str) -> str:
            sent.append(api_key)
            if api_key != "fresh":
                raise Unauthorized
            return prompt

    def fresh_key(provider: PerCallKey, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return args, {**kwargs, "api_key": provider.key}

    provider = refresh_on_401(
        PerCallKey("stale"), refresh=lambda stale: PerCallKey("fresh"), retry_arguments=fresh_key
    )

    assert ("hi", ["stale", "fresh"]) == (provider.chat("hi", api_key="stale"), sent)


# --------------------------------------------------------------------------------------------------
# no nesting, no leaks


def test_a_refresh_that_wraps_does_not_nest_proxies() -> None:
    """A factory that returns wrapped providers: after 10,000 refreshes the proxy still wraps a
    plain provider, so a call costs what it did."""
    script = Script(valid_from=0)
    script.chats.extend(["ok"] * 10_001)

    def factory(stale: SyncProvider) -> Any:
        return refresh_on_401(SyncProvider(script, stale.key + 1), refresh=factory)

    provider = factory(SyncProvider(script, -1))
    core = provider._self_core
    for generation in range(10_000):
        script.valid_from = generation + 1
        provider.chat("x")

    assert (10_000, SyncProvider) == (core.flight.current.generation, type(provider.__wrapped__))
    assert "ok" == provider.chat("x")


def test_an_instance_is_collected_after_a_failed_refresh() -> None:
    """The failure a flight keeps to share does not keep the instance alive (its traceback's
    frames are cleared)."""

    def broken(provider: Any) -> None:
        raise OSError("token endpoint down")

    decorated = refresh_on_401(refresh=broken)(type("Decorated", (SyncProvider,), {}))
    provider = decorated(Script(valid_from=1))
    with pytest.raises(Unauthorized):
        provider.chat("x")
    ref = weakref.ref(provider)

    del provider
    gc.collect()

    assert None is ref()


def test_provider_classes_made_at_run_time_are_collected_after_wrapping() -> None:
    """A class made at run time and dropped, whose instances were wrapped, is collected."""

    def make() -> weakref.ref[type]:
        class Dynamic(SyncProvider):
            def chat(self, request: str) -> Any:
                return super().chat(request)  # a __class__ cell: the method refers to its class

        script = Script()
        script.chats.append("ok")
        assert "ok" == refresh_on_401(Dynamic(script), refresh=lambda s: s).chat("x")
        return weakref.ref(Dynamic)

    ref = make()
    gc.collect()

    assert None is ref()


# --------------------------------------------------------------------------------------------------
# options


@dataclasses.dataclass
class DataclassRefresh:
    """An unhashable refresh callable (a dataclass with eq and no hash)."""

    suffix: int = 1

    def __call__(self, stale: SyncProvider) -> SyncProvider:
        return SyncProvider(stale.script, stale.key + self.suffix)


@dataclasses.dataclass
class DataclassUsage:
    """An unhashable usage accounting."""

    def read(self, item: Any) -> Any:
        return DEFAULT_USAGE.read(item)

    def add(self, item: Any, extra: Any) -> Any:
        return DEFAULT_USAGE.add(item, extra)


def test_unhashable_option_values_work() -> None:
    """A dataclass refresh and a dataclass usage accounting are fine options."""
    script = Script(valid_from=1)
    script.chats.append("ok")

    provider = refresh_on_401(
        SyncProvider(script), refresh=DataclassRefresh(), usage=DataclassUsage()
    )

    assert "ok" == provider.chat("x")


@pytest.mark.parametrize(
    ("option", "value"),
    [("calls", None), ("calls", 123), ("streams", 5), ("streams", [1]), ("hands_out", 3)],
)
def test_nonsense_method_names_are_refused_naming_the_option(option: str, value: Any) -> None:
    """calls=None, calls=123, streams=5 ... are a TypeError that names the option."""
    with pytest.raises(TypeError, match=f"^{option} must be a method name"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, **{option: value})


def test_an_unknown_option_is_refused_by_name() -> None:
    """A misspelt option is a TypeError naming it, as Python says of keyword arguments."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'stream'"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, stream="chat_stream")


@pytest.mark.parametrize("value", ["not callable", 3])
def test_retry_arguments_must_be_callable(value: Any) -> None:
    """retry_arguments takes a callable or None."""
    with pytest.raises(TypeError, match="retry_arguments must be callable or None"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, retry_arguments=value)


async def test_trio_reads_the_wrapped_clients_stream_once() -> None:
    """A gated stream of the client under trio: no chunk forwarded twice across a retry."""
    client = client_wrapped([1], [[{"type": "message_start"}, Unauthorized()], [text("a"), DONE]])
    client.__wrapped__.key = 1  # the first request passes, the stream then says 401

    stream = await client.chat.completions.create(stream=True)
    async with stream:
        items = [item async for item in stream]

    assert [{"type": "message_start"}, text("a"), DONE] == items


# --------------------------------------------------------------------------------------------------
# plain call methods, and where methods are found


class PlainCalls:
    """`chat` is a plain function returning a coroutine, as the SDKs' `create` is."""

    def __init__(self, key: int, valid: list[int], expires_at: float = float("inf")) -> None:
        self.key = key
        self.valid = valid
        self.expires_at = expires_at
        self.sent: list[int] = valid  # the keys sent, shared through the list's tail

    def chat(self, prompt: str) -> Any:
        return self._chat(prompt)

    async def _chat(self, prompt: str) -> str:
        await checkpoint()
        if self.key != self.valid[0]:
            raise Unauthorized
        return f"{prompt} {self.key}"


async def test_a_plain_call_returning_a_coroutine_is_awaited_and_retried() -> None:
    """A call method that is a plain function returning a coroutine: the 401 raised at the
    await is refreshed (with an async refresh) and retried."""
    valid = [1]

    async def renew(stale: PlainCalls) -> PlainCalls:
        return PlainCalls(valid[0], valid)

    provider = refresh_on_401(PlainCalls(0, valid), refresh=renew)

    assert (False, "hi 1") == (
        inspect.iscoroutinefunction(provider.chat),
        await provider.chat("hi"),
    )


async def test_a_plain_call_about_to_expire_refreshes_when_awaited(
    autojump_clock: Any,
) -> None:
    """In the mandatory window, a plain call that returned a coroutine is started again,
    refreshed, when awaited: the stale coroutine never ran (no warning, nothing sent)."""
    valid = [0]

    async def renew(stale: PlainCalls) -> PlainCalls:
        valid[0] = 1
        return PlainCalls(1, valid, expires_at=trio.current_time() + 600)

    provider = refresh_on_401(
        PlainCalls(0, valid, expires_at=trio.current_time() + 10),
        refresh=renew,
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    )

    assert "hi 1" == await provider.chat("hi")


def test_callables_of_builtin_types_are_intercepted_per_access() -> None:
    """A provider whose class cannot hold a cache (a builtin type) and whose method is an
    instance attribute still works; its proxy class is made anew for each proxy."""
    script = Script(valid_from=1)
    script.chats.append("ok")
    fresh = SyncProvider(script, 1)

    def wrapped() -> Any:
        namespace = types.SimpleNamespace(chat=SyncProvider(script).chat)
        return refresh_on_401(namespace, refresh=lambda old: types.SimpleNamespace(chat=fresh.chat))

    provider, other = wrapped(), wrapped()

    assert "ok" == provider.chat("x")
    assert (True, False) == (hasattr(type(provider), "chat"), type(provider) is type(other))


def test_a_step_of_a_dotted_name_is_seen_on_the_proxy_class_too() -> None:
    """Looked up on the proxy's class, a dotted name's first step is there, as on a class."""
    client = client_wrapped([1])

    assert hasattr(type(client), "chat")


def test_a_decorated_generator_method_can_be_called_through_the_class() -> None:
    """`Decorated.chat_stream(instance, ...)` works as the undecorated one does."""
    script = Script()
    script.streams.extend([[Unauthorized()], [text("a"), DONE]])

    def renew(provider: SyncProvider) -> None:
        provider.key += 1

    decorated = refresh_on_401(refresh=renew)(type("Decorated", (SyncProvider,), {}))
    instance = decorated(script)

    assert [text("a"), DONE] == list(decorated.chat_stream(instance, "x"))


def test_hands_out_names_the_provider_lacks_are_skipped() -> None:
    """As with calls and streams, a hands_out name the provider does not have is skipped."""
    provider = refresh_on_401(
        SyncProvider(Script()), refresh=lambda p: p, hands_out=("bind", "missing")
    )

    assert "bind" not in vars(type(provider))
