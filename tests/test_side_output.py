"""Output a framework sends out beside a call (through callbacks) commits the call."""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any

import pytest

from refresh_middleware import _calls, refresh_on_401
from refresh_middleware._kinds import watches_for
from refresh_middleware._kinds._dialect import Watch
from refresh_middleware._kinds.dialects import langchain


class Unauthorized(Exception):
    """A 401, as the SDKs raise it."""

    status_code = 401


class Hooked:
    """A framework's hook: `install` keeps the `went_out` the library hands it."""

    def __init__(self) -> None:
        self.installs = 0
        self.went_out: Any = None

    def install(self, went_out: Any) -> None:
        self.installs += 1
        self.went_out = went_out


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Hooked:
    """Every wrapped class is watched by one fresh hook, in a process where none was hooked."""
    hook = Hooked()
    monkeypatch.setattr(_calls, "_watched", _calls._Watched())
    monkeypatch.setattr(_calls, "watches_for", lambda _cls: (Watch("framework", hook.install),))
    return hook


class Model:
    """A framework's model: each call sends `sent` out beside it, then fails as `script` says."""

    def __init__(self, script: list[Any], sent: list[object], hook: Hooked) -> None:
        self.script, self.sent, self.hook = script, sent, hook

    def _step(self) -> str:
        for item in self.sent:
            self.hook.went_out(item)
        result = self.script.pop(0)
        if isinstance(result, Exception):
            raise result
        return str(result)

    async def chat(self) -> str:
        return self._step()

    def embed(self) -> str:
        return self._step()


def wrapped(hook: Hooked, sent: list[object], refreshes: list[object]) -> Model:
    model = Model([Unauthorized(), "again"], sent, hook)
    return refresh_on_401(model, refresh=refreshes.append)


async def test_a_401_after_output_went_out_beside_an_async_call_is_raised(hooked: Hooked) -> None:
    """Text sent through a callback commits an async call: its 401 is raised, no refresh."""
    refreshes: list[object] = []
    model = wrapped(hooked, ["chunk-0 "], refreshes)
    with pytest.raises(Unauthorized):
        await model.chat()
    assert [] == refreshes


def test_a_401_after_output_went_out_beside_a_sync_call_is_raised(hooked: Hooked) -> None:
    """Text sent through a callback commits a sync call: its 401 is raised, no refresh."""
    refreshes: list[object] = []
    model = wrapped(hooked, ["chunk-0 "], refreshes)
    with pytest.raises(Unauthorized):
        model.embed()
    assert [] == refreshes


async def test_metadata_beside_a_call_does_not_commit_it(hooked: Hooked) -> None:
    """A role-only chunk sent beside a call is no output: its 401 is refreshed and retried."""
    refreshes: list[object] = []
    model = wrapped(hooked, [{"type": "ping"}], refreshes)
    assert ("again", 1) == (await model.chat(), len(refreshes))


async def test_output_beside_an_inner_call_commits_the_outer_one(hooked: Hooked) -> None:
    """Output sent beside a wrapped call inside another commits both."""
    refreshes: list[object] = []
    inner = wrapped(hooked, ["chunk-0 "], refreshes)

    class Outer:
        async def chat(self) -> str:
            with contextlib.suppress(Unauthorized):
                await inner.chat()
            raise Unauthorized

    outer = refresh_on_401(Outer(), refresh=refreshes.append)
    with pytest.raises(Unauthorized):
        await outer.chat()
    assert [] == refreshes


async def test_output_sent_before_a_call_does_not_commit_it(hooked: Hooked) -> None:
    """Output sent while no call runs commits nothing: the next call's 401 is retried."""
    refreshes: list[object] = []
    model = wrapped(hooked, [], refreshes)
    hooked.went_out("chunk-0 ")
    assert ("again", 1) == (await model.chat(), len(refreshes))


def test_a_framework_is_hooked_once_per_process(hooked: Hooked) -> None:
    """Wrapping two objects of one framework hooks it once."""
    wrapped(hooked, [], [])
    wrapped(hooked, [], [])
    assert 1 == hooked.installs


def test_a_decorated_class_of_a_framework_is_hooked(hooked: Hooked) -> None:
    """Class mode hooks the framework of the decorated class too."""
    refresh_on_401(refresh=lambda model: None)(Model)
    assert 1 == hooked.installs


def test_watches_are_found_by_the_module_of_a_class_or_its_bases() -> None:
    """A watch covers its package and the modules below it, not a package sharing a prefix."""
    watch = Watch("framework", lambda went_out: None)
    found = []
    for module in ("framework", "framework.models", "frameworks", "other"):
        cls = type("Model", (), {"__module__": module})
        found.append(bool(watches_for(type("Sub", (cls,), {}), (watch,))))
    assert [True, True, False, False] == found


def test_langchain_models_are_watched() -> None:
    """The LangChain dialect watches every class from langchain_core (chat models' bases)."""
    base = type("BaseChatModel", (), {"__module__": "langchain_core.language_models"})
    assert ["langchain_core"] == [watch.module for watch in watches_for(base)]


def test_the_langchain_watch_hands_every_token_to_went_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LangChain's hook: one inline handler in every run, passing each token's chunk on."""
    registered: list[tuple[Any, bool]] = []
    callbacks = types.ModuleType("langchain_core.callbacks")
    callbacks.BaseCallbackHandler = type("BaseCallbackHandler", (), {})  # type: ignore[attr-defined]
    context = types.ModuleType("langchain_core.tracers.context")
    context.register_configure_hook = lambda var, inheritable: registered.append(  # type: ignore[attr-defined]
        (var, inheritable)
    )
    monkeypatch.setitem(sys.modules, "langchain_core.callbacks", callbacks)
    monkeypatch.setitem(sys.modules, "langchain_core.tracers.context", context)
    seen: list[object] = []
    langchain._watch_tokens(seen.append)
    ((var, inheritable),) = registered
    handler = var.get()
    handler.on_llm_new_token("a", chunk="chunk", run_id=1)
    handler.on_llm_new_token("b")
    assert (True, True, None, True, ["chunk", "b"]) == (
        inheritable,
        handler.run_inline,
        handler.on_chat_model_start({}, []),
        handler.ignore_chain and handler.ignore_agent and handler.ignore_retriever,
        seen,
    )
