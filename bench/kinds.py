"""How long `kind_of` takes on the items real streams carry: ``python bench/kinds.py``.

The gate calls `kind_of` on every streamed item, so its cost is paid per chunk. The items here
are the SDKs' own types, built the way their streams build them (the openai and anthropic
SDKs' `model_construct`, which parses nested fields as their stream decoders do), plus the
plain `str`, `int` and `dict` items of hand-written providers. Items of the optional frameworks
(LangChain, pydantic-ai, google-genai, the OpenAI Responses API) are timed when those packages
are installed, for information.

Timing: `timeit` with the garbage collector off (its default), the best of many short runs, so
a busy neighbour on a shared machine inflates no figure; the cost of the timing loop is
included, which makes every figure slightly pessimistic. Reference lines give this machine's
floor: a call of an empty function, and a classifier written for the openai SDK's chunk
classes alone. Targets are those of issue 11. This is a script, never a test: timing on shared
machines is too noisy to fail a build.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import timeit
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseTextDeltaEvent

from refresh_middleware.classify import ItemKind, kind_of

SDK_TARGET = 300  # ns: an openai chunk or an anthropic event (issue 11, item 6)
PLAIN_TARGET = 150  # ns: str, int and dict items


class Case(NamedTuple):
    """One item to time, the kind it must get, and its target in ns (None: information)."""

    label: str
    item: object
    expected: ItemKind
    target: int | None


def openai_chunk(choices: list[dict[str, Any]], **extra: object) -> ChatCompletionChunk:
    fields = {"id": "c", "created": 0, "model": "gpt", "object": "chat.completion.chunk"}
    return ChatCompletionChunk.model_construct(**fields, choices=choices, **extra)


ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [],
    "model": "claude",
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 1},
}


def required_cases() -> Iterator[Case]:
    """The items issue 11 sets targets for."""
    yield Case("str", "Hello", ItemKind.OUTPUT, PLAIN_TARGET)
    yield Case("int", 42, ItemKind.OUTPUT, PLAIN_TARGET)
    yield Case(
        "dict content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ItemKind.OUTPUT,
        PLAIN_TARGET,
    )
    # The anthropic SDK drops pings before they reach the caller; providers that forward the
    # wire events hand them on as mappings.
    yield Case("dict ping", {"type": "ping"}, ItemKind.METADATA, PLAIN_TARGET)
    yield Case(
        "openai chunk, content",
        openai_chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]),
        ItemKind.OUTPUT,
        SDK_TARGET,
    )
    yield Case(
        "openai chunk, role only (first)",
        openai_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        ItemKind.METADATA,
        SDK_TARGET,
    )
    yield Case(
        "openai chunk, usage only (last)",
        openai_chunk([], usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}),
        ItemKind.METADATA,
        SDK_TARGET,
    )
    yield Case(
        "anthropic RawMessageStartEvent",
        RawMessageStartEvent.model_construct(type="message_start", message=ANTHROPIC_MESSAGE),
        ItemKind.METADATA,
        SDK_TARGET,
    )
    yield Case(
        "anthropic RawContentBlockDeltaEvent",
        RawContentBlockDeltaEvent.model_construct(
            type="content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"}
        ),
        ItemKind.OUTPUT,
        SDK_TARGET,
    )
    yield Case(
        "anthropic RawMessageDeltaEvent",
        RawMessageDeltaEvent.model_construct(
            type="message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": 7},
        ),
        ItemKind.METADATA,
        SDK_TARGET,
    )
    yield Case(
        "anthropic RawMessageStopEvent",
        RawMessageStopEvent.model_construct(type="message_stop"),
        ItemKind.DONE,
        SDK_TARGET,
    )


def optional_cases() -> Iterator[Case]:
    """Items of the Responses API and of optional frameworks (when installed), for information."""
    with contextlib.suppress(ImportError):
        from langchain_core.messages import AIMessageChunk  # noqa: PLC0415 - optional

        yield Case("langchain AIMessageChunk, empty", AIMessageChunk(content=""), *_meta())
        yield Case("langchain AIMessageChunk, text", AIMessageChunk(content="Hi"), *_output())
    with contextlib.suppress(ImportError):
        from pydantic_ai.messages import (  # noqa: PLC0415 - optional
            PartDeltaEvent,
            PartStartEvent,
            TextPart,
            TextPartDelta,
        )

        start = PartStartEvent(index=0, part=TextPart(content=""))
        delta = PartDeltaEvent(index=0, delta=TextPartDelta(content_delta="Hi"))
        yield Case("pydantic-ai PartStartEvent, empty", start, *_meta())
        yield Case("pydantic-ai PartDeltaEvent, text", delta, *_output())
    text = ResponseTextDeltaEvent.model_construct(
        type="response.output_text.delta", delta="Hi", item_id="i", output_index=0
    )
    yield Case("openai Responses output_text.delta", text, *_output())
    with contextlib.suppress(ImportError):
        from google.genai import types  # noqa: PLC0415 - optional

        chunk = types.GenerateContentResponse.model_validate(
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
        )
        yield Case("google-genai response, text", chunk, *_output())


def _meta() -> tuple[ItemKind, None]:
    return ItemKind.METADATA, None


def _output() -> tuple[ItemKind, None]:
    return ItemKind.OUTPUT, None


def nanoseconds(classify: Callable[[Any], object], item: object, number: int, repeat: int) -> float:
    """The best per-call time of `classify(item)` over `repeat` runs of `number` calls, in ns."""
    timer = timeit.Timer("classify(item)", globals={"classify": classify, "item": item})
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def nothing(item: object) -> object:
    return item


def chunk_by_hand(chunk: Any) -> ItemKind:
    """A classifier written for the openai SDK's chunk classes alone: no other item, no checks.

    It shows this machine's floor for the chunk targets: whatever `kind_of` costs above it pays
    for reading any item of any shape safely.
    """
    fields = chunk.__dict__
    if fields["object"] == "chat.completion.chunk":
        for choice in fields["choices"]:
            delta = choice.__dict__["delta"].__dict__
            if (
                delta["content"]
                or delta["tool_calls"]
                or delta["refusal"]
                or delta["function_call"]
            ):
                return ItemKind.OUTPUT
    return ItemKind.METADATA


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=10_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=50, help="runs; the best one counts")
    options = parser.parse_args()
    timing = {"number": options.number, "repeat": options.repeat}

    print(f"kind_of per item; Python {platform.python_version()}, {platform.machine()}")
    print(f"{'item':<40} {'ns':>7} {'target':>7}  met")
    missed = []
    for case in [*required_cases(), *optional_cases()]:
        actual = kind_of(case.item)
        if actual is not case.expected:
            print(f"{case.label}: kind {actual.name}, expected {case.expected.name}")
            missed.append(case.label)
            continue
        ns = nanoseconds(kind_of, case.item, **timing)
        target = "-" if case.target is None else str(case.target)
        met = "-" if case.target is None else ("yes" if ns <= case.target else "NO")
        if met == "NO":
            missed.append(case.label)
        print(f"{case.label:<40} {ns:>7.0f} {target:>7}  {met}")
    # This machine's floor, to read the figures above against.
    print(f"{'reference: an empty function':<40} {nanoseconds(nothing, 'Hi', **timing):>7.0f}")
    for case in required_cases():
        if case.label.startswith("openai chunk"):
            ns = nanoseconds(chunk_by_hand, case.item, **timing)
            label = "reference: openai-only, " + case.label.removeprefix("openai chunk, ")
            print(f"{label:<40} {ns:>7.0f}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
