"""LangChain: message chunks, generation chunks and the events of `astream_events`."""

from __future__ import annotations

import contextvars
import importlib
from collections.abc import Callable
from typing import Any, Final

from refresh_middleware._kinds._dialect import (
    METADATA,
    OUTPUT,
    Dialect,
    Fields,
    Inside,
    ItemKind,
    Preset,
    Verdict,
    Watch,
    carries,
)

# Fields of an `AIMessageChunk` that carry output. `additional_kwargs` holds what older
# integrations put there (a function call, reasoning text); usage and response metadata are none.
_MESSAGE_OUTPUT: Final = (
    "content",
    "tool_call_chunks",
    "tool_calls",
    "invalid_tool_calls",
    "additional_kwargs",
)


def _message_chunk_kind(fields: Fields, _inside: Inside) -> ItemKind:
    """An `AIMessageChunk`: OUTPUT with content or a tool call, METADATA when empty.

    Empty chunks are the role-only first one, usage-only ones and the closing one.
    """
    return OUTPUT if carries(fields, _MESSAGE_OUTPUT) else METADATA


def _generation_chunk_kind(fields: Fields, inside: Inside) -> ItemKind:
    """A `ChatGenerationChunk` (what a chat model's `_astream` yields): its message's kind."""
    return inside.kind(fields.get("message"))


def _event_chunk_kind(fields: Fields, inside: Inside) -> ItemKind:
    """An `on_*_stream` event of `astream_events`: the kind of the chunk it carries."""
    return inside.kind(inside(fields.get("data")).get("chunk"))


def _run_event(words: list[str]) -> Verdict | None:
    """`astream_events` names: `on_<run>_start`, `on_<run>_stream`."""
    if words[0] == "on" and len(words) > 2:
        # A start announces a run and carries only its input; a stream event carries one chunk
        # of the run's output.
        if words[-1] == "start":
            return METADATA
        if words[-1] == "stream":
            return _event_chunk_kind
    return None


# Runnable methods that hand a chat model out: they build a binding, a sequence or a batch
# around it, or stream through it. Run with the proxy as `self`, what they build calls the
# proxy's `ainvoke`, `invoke`, `astream` and `stream`. `_astream_events_v1_v2` is what
# `astream_events` runs on in LangChain 1.x: a private name, which the preset knows so that
# users need not; names a version lacks are skipped.
_HANDS_OUT: Final = (
    "__or__",
    "__ror__",
    "pipe",
    "bind",
    "bind_tools",
    "with_config",
    "with_retry",
    "with_fallbacks",
    "with_listeners",
    "with_alisteners",
    "with_types",
    "with_structured_output",
    "batch",
    "abatch",
    "batch_as_completed",
    "abatch_as_completed",
    "transform",
    "atransform",
    "astream_events",
    "_astream_events_v1_v2",
    "astream_log",
)


def _watch_tokens(went_out: Callable[[object], None]) -> None:
    """Hand every token a LangChain model sends to its callbacks to `went_out`.

    A chat model called with a streaming handler among its callbacks (LangGraph's
    `stream_mode="messages"`, `astream_events` and `astream_log` of a chain around it) streams
    internally and sends each chunk through `on_llm_new_token` while its caller awaits one
    `ainvoke`. A configure hook adds one handler to every run's callbacks; it runs inline, in
    the task or thread of the model's call, where `went_out` finds the calls running.
    """
    callbacks: Any = importlib.import_module("langchain_core.callbacks")
    context: Any = importlib.import_module("langchain_core.tracers.context")

    def on_llm_new_token(
        _self: object, token: object, *, chunk: object = None, **_: object
    ) -> None:
        # The chunk tells an empty role-only or usage-only one (METADATA) from text.
        went_out(token if chunk is None else chunk)

    def ignored(_self: object) -> bool:
        return True

    def nothing(_self: object, *_args: object, **_kwargs: object) -> None:
        return None

    handler_class = type(
        "RefreshMiddlewareOutputWatch",
        (callbacks.BaseCallbackHandler,),
        {
            "__doc__": "Sees the tokens a LangChain model sends out beside a call.",
            # Called in the model's own task or thread, in order, at no scheduling cost.
            "run_inline": True,
            "on_llm_new_token": on_llm_new_token,
            # Without it LangChain turns every chat model start into text for `on_llm_start`.
            "on_chat_model_start": nothing,
            **{
                name: property(ignored)
                for name in (
                    "ignore_chain",
                    "ignore_agent",
                    "ignore_retriever",
                    "ignore_retry",
                    "ignore_custom_event",
                )
            },
        },
    )
    # A context variable whose default is set puts the handler in every run's callbacks, in
    # every thread and task; the handler keeps no state, so one is shared.
    watch = contextvars.ContextVar(
        "refresh_middleware_langchain_watch",
        default=handler_class(),  # noqa: B039 - stateless, shared on purpose
    )
    context.register_configure_hook(watch, True)  # noqa: FBT003 - LangChain's positional flag


DIALECT: Final = Dialect(
    name="LangChain",
    look_inside={
        "ai_message_chunk": _message_chunk_kind,
        "chat_generation_chunk": _generation_chunk_kind,
    },
    name_rule=_run_event,
    reads=frozenset({"message", "data", "chunk", *_MESSAGE_OUTPUT}),
    watches=(Watch("langchain_core", _watch_tokens),),
    presets=(
        Preset(
            module="langchain_core",
            qualname="BaseChatModel",
            calls=("ainvoke", "invoke"),
            streams=("astream", "stream"),
            hands_out=_HANDS_OUT,
        ),
    ),
)
