"""The stream gate (`StreamGate`) and its usage accounting, stepped directly."""

from __future__ import annotations

import dataclasses
import types

import anthropic
import pytest
from anthropic.types import RawMessageDeltaEvent, RawMessageStartEvent
from conftest import ANTHROPIC_MESSAGE
from hypothesis import given
from hypothesis import strategies as st
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from refresh_middleware.classify import (
    DEFAULT_USAGE,
    GateAction,
    ItemKind,
    StreamGate,
    kind_of,
)

FORWARD = GateAction.FORWARD
FORWARD_AND_STOP = GateAction.FORWARD_AND_STOP
RETRY = GateAction.RETRY
RAISE = GateAction.RAISE


def output():
    """A fresh output item."""
    return {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}


def metadata(**usage):
    """A fresh metadata item reporting `usage`."""
    return {"type": "message_delta", "usage": usage}


def unauthorized_item():
    """A fresh in-stream error item reporting expired credentials."""
    return {"type": "error", "error": {"type": "authentication_error", "message": "expired"}}


def other_error_item():
    """A fresh in-stream error item that a refresh cannot fix."""
    return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def done():
    """A fresh end-of-stream item."""
    return {"type": "message_stop"}


def unauthorized_exception():
    """A fresh 401 exception."""
    return RuntimeError("status=401 Unauthorized")


def other_exception():
    """A fresh exception that a refresh cannot fix."""
    return ConnectionError("network error")


def committed_gate(**options):
    """A gate that has already forwarded output."""
    gate = StreamGate(**options)
    gate.on_item(output())
    return gate


def retried_gate(*usage_items, **options):
    """A gate whose first attempt reported `usage_items` and then failed with a 401."""
    gate = StreamGate(**options)
    for item in usage_items:
        gate.on_item(item)
    assert RETRY == gate.on_exception(unauthorized_exception())
    return gate


# --------------------------------------------------------------------------------------------------
# The gate table, row by row


def test_output_before_commit_is_forwarded_and_commits():
    """OUTPUT before commit: forward the same item, and commit."""
    gate, item = StreamGate(), output()
    action, forwarded = gate.on_item(item)
    assert (FORWARD, item, True) == (action, forwarded, gate.committed)


def test_output_after_commit_is_forwarded():
    """OUTPUT after commit: forward."""
    gate, item = committed_gate(), output()
    assert (FORWARD, item) == gate.on_item(item)


def test_metadata_before_commit_is_forwarded_without_commit():
    """METADATA before commit: forward, and stay uncommitted."""
    gate, item = StreamGate(), metadata(input_tokens=3)
    action, forwarded = gate.on_item(item)
    assert (FORWARD, item, False) == (action, forwarded, gate.committed)


def test_metadata_after_commit_is_forwarded():
    """METADATA after commit: forward."""
    gate, item = committed_gate(), metadata(output_tokens=3)
    assert (FORWARD, item) == gate.on_item(item)


def test_unauthorized_error_item_before_commit_is_retried():
    """Unauthorized ERROR item before commit: retry, and the item is not for forwarding."""
    gate = StreamGate()
    action, _ = gate.on_item(unauthorized_item())
    assert (RETRY, 1, False) == (action, gate.retries, gate.committed)


def test_unauthorized_error_item_after_commit_is_forwarded():
    """Unauthorized ERROR item after commit: forward, no retry."""
    gate, item = committed_gate(), unauthorized_item()
    action, forwarded = gate.on_item(item)
    assert (FORWARD, item, 0) == (action, forwarded, gate.retries)


def test_other_error_item_before_commit_is_forwarded():
    """Non-unauthorized ERROR item before commit: forward, no retry, no commit."""
    gate, item = StreamGate(), other_error_item()
    action, forwarded = gate.on_item(item)
    assert (FORWARD, item, 0, False) == (action, forwarded, gate.retries, gate.committed)


def test_other_error_item_after_commit_is_forwarded():
    """Non-unauthorized ERROR item after commit: forward."""
    gate, item = committed_gate(), other_error_item()
    assert (FORWARD, item) == gate.on_item(item)


def test_unauthorized_exception_before_commit_is_retried():
    """Unauthorized exception before commit: retry."""
    gate = StreamGate()
    assert (RETRY, 1) == (gate.on_exception(unauthorized_exception()), gate.retries)


def test_unauthorized_exception_after_commit_is_raised():
    """Unauthorized exception after commit: raise, no retry."""
    gate = committed_gate()
    assert (RAISE, 0) == (gate.on_exception(unauthorized_exception()), gate.retries)


@pytest.mark.parametrize("committed", [False, True])
def test_other_exception_is_raised(committed):
    """Non-unauthorized exception, before or after commit: raise."""
    gate = committed_gate() if committed else StreamGate()
    assert (RAISE, 0) == (gate.on_exception(other_exception()), gate.retries)


def test_done_before_commit_is_forwarded_and_stops():
    """DONE before commit: forward and stop."""
    gate, item = StreamGate(), done()
    assert (FORWARD_AND_STOP, item) == gate.on_item(item)


def test_done_after_commit_is_forwarded_and_stops():
    """DONE after commit: forward and stop."""
    gate, item = committed_gate(), done()
    assert (FORWARD_AND_STOP, item) == gate.on_item(item)


def test_a_retry_leaves_the_gate_uncommitted():
    """After a retry the next attempt starts uncommitted: its first output commits."""
    gate = retried_gate()
    committed_before = gate.committed
    gate.on_item(output())
    assert (False, True) == (committed_before, gate.committed)


# --------------------------------------------------------------------------------------------------
# Retry budget


def test_second_unauthorized_error_item_is_forwarded():
    """Only one retry per call: the second unauthorized error item is forwarded."""
    gate, item = retried_gate(), unauthorized_item()
    action, forwarded = gate.on_item(item)
    assert (FORWARD, item, 1) == (action, forwarded, gate.retries)


def test_second_unauthorized_exception_is_raised():
    """Only one retry per call: the second unauthorized exception is raised."""
    gate = retried_gate()
    assert (RAISE, 1) == (gate.on_exception(unauthorized_exception()), gate.retries)


def test_zero_max_retries_never_retries():
    """`max_retries=0` raises a 401 at once."""
    gate = StreamGate(max_retries=0)
    assert (RAISE, 0) == (gate.on_exception(unauthorized_exception()), gate.retries)


def test_max_retries_allows_that_many_retries():
    """`max_retries=2` retries twice, then raises."""
    gate = StreamGate(max_retries=2)
    actions = [gate.on_exception(unauthorized_exception()) for _ in range(3)]
    assert [RETRY, RETRY, RAISE] == actions


class FakeCancelled(BaseException):
    """Stands in for `trio.Cancelled`: a BaseException that must pass through."""


@pytest.mark.parametrize(
    "error",
    [
        KeyboardInterrupt("401 Unauthorized"),
        FakeCancelled("status=401 Unauthorized"),
        BaseExceptionGroup("g", [FakeCancelled(), RuntimeError("HTTP 401")]),
    ],
)
def test_base_exceptions_are_never_retried(error):
    """A BaseException (cancellation, interrupt) is raised even when it looks like a 401."""
    gate = StreamGate()
    assert (RAISE, 0) == (gate.on_exception(error), gate.retries)


def test_exception_group_of_a_401_is_retried():
    """A 401 wrapped in an exception group (as trio delivers it) is retried."""
    gate = StreamGate()
    assert RETRY == gate.on_exception(ExceptionGroup("g", [unauthorized_exception()]))


# --------------------------------------------------------------------------------------------------
# Custom predicates


def test_custom_is_unauthorized_accepts():
    """A custom predicate decides: an error it accepts is retried."""
    gate = StreamGate(is_unauthorized=lambda error: isinstance(error, ConnectionError))
    assert RETRY == gate.on_exception(other_exception())


def test_custom_is_unauthorized_rejects():
    """A custom predicate decides: a 401 it rejects is raised."""
    gate = StreamGate(is_unauthorized=lambda error: False)
    assert RAISE == gate.on_exception(unauthorized_exception())


def test_custom_kind_of_is_used():
    """A custom classifier decides: output it calls metadata does not commit."""
    gate = StreamGate(kind_of=lambda item: ItemKind.METADATA)
    gate.on_item("Hello")
    assert False is gate.committed


def test_custom_kind_of_error_items_are_retried():
    """A custom classifier decides: an item it calls an error is judged by the predicate."""
    gate = StreamGate(kind_of=lambda item: ItemKind.ERROR)
    action, _ = gate.on_item("HTTP 401")
    assert RETRY == action


def test_custom_kind_of_decides_where_a_committed_stream_ends():
    """With its own classifier, the gate's end test (`ends`) asks that one, not the default's."""
    gate = StreamGate(kind_of=lambda item: ItemKind.DONE if item == "fin" else ItemKind.OUTPUT)
    assert (True, False) == (gate.ends("fin"), gate.ends({"type": "message_stop"}))


# --------------------------------------------------------------------------------------------------
# Usage carried across attempts


def test_abandoned_usage_is_added_to_the_next_attempt():
    """Usage of the abandoned attempt is added into the next attempt's usage item."""
    gate = retried_gate(metadata(input_tokens=10, output_tokens=1))
    _, forwarded = gate.on_item(metadata(input_tokens=12, output_tokens=5))
    assert metadata(input_tokens=22, output_tokens=6) == forwarded


def test_abandoned_usage_counts_the_largest_value_of_each_field():
    """Usage items are cumulative snapshots: an attempt costs the largest value of each field."""
    gate = retried_gate(
        metadata(input_tokens=10, output_tokens=1),
        metadata(input_tokens=8, output_tokens=4),
    )
    _, forwarded = gate.on_item(metadata(input_tokens=0, output_tokens=0))
    assert metadata(input_tokens=10, output_tokens=4) == forwarded


def test_usage_is_carried_after_an_error_item_retry():
    """An error-item retry carries usage as an exception retry does."""
    gate = StreamGate()
    gate.on_item(metadata(input_tokens=10))
    gate.on_item(unauthorized_item())
    _, forwarded = gate.on_item(metadata(input_tokens=10))
    assert metadata(input_tokens=20) == forwarded


def test_usage_of_several_abandoned_attempts_adds_up():
    """With more retries allowed, every abandoned attempt's usage is added."""
    gate = StreamGate(max_retries=2)
    for tokens in (4, 3):
        gate.on_item(metadata(input_tokens=tokens))
        gate.on_exception(unauthorized_exception())
    _, forwarded = gate.on_item(metadata(input_tokens=5))
    assert metadata(input_tokens=12) == forwarded


def test_carried_usage_reaches_usage_items_after_commit():
    """Carried usage is added to usage items that come after the new attempt commits."""
    gate = retried_gate(metadata(output_tokens=2))
    gate.on_item(output())
    _, forwarded = gate.on_item(metadata(output_tokens=7))
    assert metadata(output_tokens=9) == forwarded


def test_carried_usage_reaches_the_done_item():
    """A done item that reports usage gets the carried usage too."""
    gate = retried_gate(metadata(output_tokens=2))
    _, forwarded = gate.on_item({"type": "done", "usage": {"output_tokens": 7}})
    assert {"type": "done", "usage": {"output_tokens": 9}} == forwarded


def test_carried_usage_only_touches_fields_the_item_reports():
    """Fields the new item does not report are not invented."""
    gate = retried_gate(metadata(input_tokens=10))
    _, forwarded = gate.on_item(metadata(cache_read_input_tokens=4))
    assert metadata(cache_read_input_tokens=4) == forwarded


def test_item_without_usage_passes_untouched_while_carrying():
    """With usage carried, an item that reports none is forwarded as the same object."""
    gate, item = retried_gate(metadata(input_tokens=10)), output()
    _, forwarded = gate.on_item(item)
    assert item is forwarded


def test_usage_item_is_the_same_object_without_carry():
    """With nothing carried, a usage item is forwarded as the same object."""
    gate, item = StreamGate(), metadata(input_tokens=10)
    _, forwarded = gate.on_item(item)
    assert item is forwarded


def test_retry_without_usage_carries_nothing():
    """An abandoned attempt that reported no usage leaves the next usage items as they are."""
    gate, item = retried_gate(), metadata(input_tokens=10)
    _, forwarded = gate.on_item(item)
    assert item is forwarded


def test_original_item_is_not_modified():
    """Carrying usage copies the item; the provider's object is left as it was."""
    gate, item = retried_gate(metadata(input_tokens=10)), metadata(input_tokens=1)
    gate.on_item(item)
    assert metadata(input_tokens=1) == item


def test_usage_in_message_usage_is_carried():
    """Usage in `message.usage` (anthropic's message_start shape) is carried; the rest is kept."""
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 10}}}
    gate = retried_gate(start)
    _, forwarded = gate.on_item(start)
    expected = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 20}}}
    assert expected == forwarded


def test_item_that_is_usage_is_carried():
    """An item of type `usage` is itself the usage."""
    gate = retried_gate({"type": "usage", "input_tokens": 10})
    _, forwarded = gate.on_item({"type": "usage", "input_tokens": 3})
    assert {"type": "usage", "input_tokens": 13} == forwarded


@dataclasses.dataclass(frozen=True)
class TokenCount:
    input_tokens: int
    output_tokens: int
    model: str = "m"


@dataclasses.dataclass(frozen=True)
class UsageEvent:
    usage: TokenCount
    type: str = "usage_event"


@dataclasses.dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


def test_dataclass_usage_is_carried():
    """Usage held in a (frozen) dataclass field is carried by replacing the dataclass."""
    gate = retried_gate(UsageEvent(TokenCount(10, 1)))
    _, forwarded = gate.on_item(UsageEvent(TokenCount(11, 2)))
    assert UsageEvent(TokenCount(21, 3)) == forwarded


def test_dataclass_named_usage_is_carried():
    """A typed `Usage` item (a dataclass) is itself the usage."""
    gate = retried_gate(Usage(10, 1))
    _, forwarded = gate.on_item(Usage(11, 2))
    assert Usage(21, 3) == forwarded


def test_plain_object_usage_is_carried():
    """Usage held in a plain object's attributes is carried on a copy."""
    gate = retried_gate(
        types.SimpleNamespace(type="message_delta", usage=types.SimpleNamespace(output_tokens=2))
    )
    item = types.SimpleNamespace(type="message_delta", usage=types.SimpleNamespace(output_tokens=5))
    _, forwarded = gate.on_item(item)
    expected = (5, 7)
    assert expected == (item.usage.output_tokens, forwarded.usage.output_tokens)


def anthropic_start():
    """Anthropic's typed message_start event, usage in `message.usage`."""
    return RawMessageStartEvent.model_validate(
        {"type": "message_start", "message": ANTHROPIC_MESSAGE}
    )


def test_anthropic_message_start_usage_is_carried():
    """Anthropic's typed message_start gets the abandoned attempt's usage (pydantic copy)."""
    gate = retried_gate(anthropic_start())
    _, forwarded = gate.on_item(anthropic_start())
    usage = forwarded.message.usage
    assert (20, 2, "msg_1") == (usage.input_tokens, usage.output_tokens, forwarded.message.id)


def test_anthropic_message_delta_usage_is_carried():
    """Anthropic's typed message_delta gets the fields it reports, and leaves None fields None."""
    gate = retried_gate(anthropic_start())
    delta = RawMessageDeltaEvent.model_validate(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        }
    )
    _, forwarded = gate.on_item(delta)
    assert (8, None) == (forwarded.usage.output_tokens, forwarded.usage.input_tokens)


def test_anthropic_usage_model_is_carried():
    """Anthropic's `Usage` model as an item is itself the usage."""
    gate = retried_gate(anthropic.types.Usage(input_tokens=10, output_tokens=1))
    _, forwarded = gate.on_item(anthropic.types.Usage(input_tokens=4, output_tokens=2))
    assert (14, 3) == (forwarded.input_tokens, forwarded.output_tokens)


def test_openai_completion_usage_is_carried():
    """OpenAI's `CompletionUsage` in a chunk gets the abandoned attempt's usage."""
    gate = retried_gate(
        {
            "type": "usage",
            "usage": CompletionUsage(prompt_tokens=5, completion_tokens=0, total_tokens=5),
        }
    )
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "choices": [],
            "created": 0,
            "model": "gpt",
            "object": "chat.completion.chunk",
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    )
    _, forwarded = gate.on_item(chunk)
    usage = forwarded.usage
    assert (10, 3, 13) == (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


# --------------------------------------------------------------------------------------------------
# DEFAULT_USAGE on its own


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"usage": {"input_tokens": 3, "model": "m", "ok": True, "_private": 1, 7: 9}},
            {"input_tokens": 3},
        ),
        ({"usage": {"cost": 0.5}}, {"cost": 0.5}),
        ({"usage": {"model": "m"}}, None),
        ({"usage": None}, None),
        ({"usage": "lots"}, None),
        ({"message": {"id": "m"}}, None),
        ({"message": "HTTP 401"}, None),
        ({"type": "USAGE", "tokens": 2}, {"tokens": 2}),
        ({"type": "text", "tokens": 2}, None),
        ("Hello", None),
        (None, None),
    ],
)
def test_default_usage_reads_numeric_fields(item, expected):
    """Only numeric, public, string-keyed fields of a recognised usage place count as usage."""
    assert expected == DEFAULT_USAGE.read(item)


def test_default_usage_add_leaves_items_without_usage_alone():
    """Adding usage to an item that reports none returns the same object."""
    item = output()
    assert item is DEFAULT_USAGE.add(item, {"input_tokens": 3})


# --------------------------------------------------------------------------------------------------
# Properties over random scripts

EVENTS = (
    "output",
    "metadata",
    "unauthorized_item",
    "other_item",
    "unauthorized_exception",
    "other_exception",
    "done",
)
STOPS = (RETRY, RAISE, FORWARD_AND_STOP)


@dataclasses.dataclass
class Step:
    attempt: int
    fed: object
    action: GateAction
    forwarded: object


def make(event, tokens):
    """A fresh value for one scripted event."""
    if event == "metadata":
        return metadata(output_tokens=tokens)
    return {
        "output": output,
        "unauthorized_item": unauthorized_item,
        "other_item": other_error_item,
        "unauthorized_exception": unauthorized_exception,
        "other_exception": other_exception,
        "done": done,
    }[event]()


def drive(gate, script):
    """Feed `script` (one list of events per attempt) to `gate` as a stream driver would."""
    steps: list[Step] = []
    for attempt, events in enumerate(script):
        action = None
        for event, tokens in events:
            value = make(event, tokens)
            if isinstance(value, BaseException):
                action, forwarded = gate.on_exception(value), None
            else:
                action, forwarded = gate.on_item(value)
            steps.append(Step(attempt, value, action, forwarded))
            if action in STOPS:
                break
        if action is not RETRY:
            break
    return steps


# Each attempt opens with metadata (usage) and error items that do not commit, and 401s are
# drawn more often than other events, so that retries and carried usage are common; the rest
# of the attempt is any sequence of events. The driver ends when the script runs out.
events = st.tuples(
    st.sampled_from((*EVENTS, "unauthorized_item", "unauthorized_exception")),
    st.integers(1, 1000),
)
attempts = st.tuples(
    st.lists(st.tuples(st.sampled_from(["metadata", "other_item"]), st.integers(1, 1000))),
    st.lists(events, max_size=8),
).map(lambda parts: parts[0] + parts[1])
scripts = st.lists(attempts, min_size=2, max_size=4)


def forwarded_steps(steps):
    return [step for step in steps if step.action in (FORWARD, FORWARD_AND_STOP)]


@given(scripts)
def test_no_item_is_forwarded_twice(script):
    """Every forwarded item is a distinct object, fed once."""
    forwarded = forwarded_steps(drive(StreamGate(), script))
    fed_ids = [id(step.fed) for step in forwarded]
    out_ids = [id(step.forwarded) for step in forwarded]
    assert (len(forwarded), len(forwarded)) == (len(set(fed_ids)), len(set(out_ids)))


@given(scripts)
def test_at_most_one_retry(script):
    """A default gate asks for at most one retry, and counts it."""
    gate = StreamGate()
    retries = [step for step in drive(gate, script) if step.action is RETRY]
    assert (True, len(retries)) == (len(retries) <= 1, gate.retries)


@given(scripts, st.integers(0, 3))
def test_at_most_max_retries(script, max_retries):
    """A gate asks for at most `max_retries` retries."""
    gate = StreamGate(max_retries=max_retries)
    retries = [step for step in drive(gate, script) if step.action is RETRY]
    assert True is (len(retries) <= max_retries)


@given(scripts)
def test_nothing_forwarded_before_a_retry_is_output(script):
    """When a retry comes, no output has been forwarded yet, in any attempt."""
    steps = drive(StreamGate(), script)
    last_retry = max((i for i, step in enumerate(steps) if step.action is RETRY), default=0)
    kinds = {kind_of(step.fed) for step in forwarded_steps(steps[:last_retry])}
    assert ItemKind.OUTPUT not in kinds


@given(scripts)
def test_no_retry_after_commit(script):
    """Once output was forwarded, the gate never asks for a retry again."""
    steps = drive(StreamGate(), script)
    committed_at = next(
        (
            i
            for i, step in enumerate(steps)
            if step.action in (FORWARD, FORWARD_AND_STOP) and kind_of(step.fed) is ItemKind.OUTPUT
        ),
        len(steps),
    )
    assert [] == [step for step in steps[committed_at:] if step.action is RETRY]


@given(scripts, st.integers(0, 3))
def test_usage_totals_are_preserved(script, max_retries):
    """The last usage the consumer sees covers every abandoned attempt plus the final one."""
    steps = drive(StreamGate(max_retries=max_retries), script)
    final_attempt = steps[-1].attempt if steps else 0
    abandoned = sum(
        max(
            (
                step.fed["usage"]["output_tokens"]
                for step in steps
                if step.attempt == attempt and kind_of(step.fed) is ItemKind.METADATA
            ),
            default=0,
        )
        for attempt in range(final_attempt)
    )
    final_usage = [
        (step.fed["usage"]["output_tokens"], step.forwarded["usage"]["output_tokens"])
        for step in forwarded_steps(steps)
        if step.attempt == final_attempt and kind_of(step.fed) is ItemKind.METADATA
    ]
    if final_usage:
        own, seen = final_usage[-1]
        assert own + abandoned == seen


class ExplodingUsage:
    """A usage accounting that cannot read or copy anything."""

    def read(self, item):
        raise TypeError("cannot read")

    def add(self, item, extra):
        raise TypeError("cannot copy")  # pragma: no cover - read fails first


class UncopyableUsage:
    """Reads usage, but cannot add into the item's shape."""

    def read(self, item):
        return {"input_tokens": 1}

    def add(self, item, extra):
        raise TypeError("cannot copy")


def test_usage_accounting_that_raises_never_breaks_the_stream():
    """A usage shape the accounting cannot read or copy is forwarded as it came."""
    for usage in (ExplodingUsage(), UncopyableUsage()):
        gate = StreamGate(usage=usage)
        start = {"type": "message_start", "usage": {"input_tokens": 1}}
        gate.on_item(start)
        gate.on_item({"type": "error", "message": "HTTP 401"})
        assert (GateAction.FORWARD, start) == gate.on_item(start)
