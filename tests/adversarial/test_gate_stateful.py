"""`StreamGate` stepped by a Hypothesis state machine against a small model of the gate table.

Each rule feeds the gate one event (an output item, a usage item, an unauthorized or other error
item, a done item, an unauthorized or other exception, a `BaseException`) and checks the action
and the forwarded item against the model; the invariants hold after every step. A stream that
stopped (forward-and-stop or raise) is followed by a fresh gate, so one run covers many streams.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from refresh_middleware.classify import GateAction, StreamGate

FORWARD = GateAction.FORWARD
FORWARD_AND_STOP = GateAction.FORWARD_AND_STOP
RETRY = GateAction.RETRY
RAISE = GateAction.RAISE
FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens")
# How much was tried, for the figures page: machines run, streams, events and actions.
TRIED: collections.Counter[str] = collections.Counter()


class Unauthorized(Exception):
    """A 401, as SDK errors carry it."""

    status_code = 401


class CancelledWith401(BaseException):
    """A `BaseException` that looks unauthorized in every other way: it must still pass."""

    status_code = 401


def unauthorized_exception(shape: str) -> Exception:
    """A fresh unauthorized exception of one of the shapes providers raise."""
    if shape == "status":
        return Unauthorized("expired")
    if shape == "message":
        return RuntimeError("status=401 Unauthorized")
    if shape == "chained":
        wrapper = RuntimeError("stream failed")
        wrapper.__cause__ = Unauthorized("expired")
        return wrapper
    return ExceptionGroup("nursery", [Unauthorized("expired")])  # trio wraps errors so


def base_exception(shape: str) -> BaseException:
    """A fresh `BaseException` that is not an `Exception`, however unauthorized it looks."""
    if shape == "keyboard":
        return KeyboardInterrupt("HTTP 401 Unauthorized")
    if shape == "cancelled":
        return CancelledWith401("401")
    if shape == "exit":
        return GeneratorExit("401")
    return BaseExceptionGroup("g", [Unauthorized("expired"), KeyboardInterrupt()])


def unauthorized_item(shape: str, serial: int) -> dict[str, Any]:
    """A fresh in-stream error item reporting rejected credentials."""
    if shape == "anthropic":
        return {"type": "error", "error": {"type": "authentication_error"}, "serial": serial}
    if shape == "status":
        return {"type": "error", "status_code": 401, "serial": serial}
    return {"type": "error", "message": "status=401 Unauthorized", "serial": serial}


def plus(usage: dict[str, int], extra: dict[str, int]) -> dict[str, int]:
    """`usage` with `extra` added to the fields it already reports."""
    return {key: number + extra.get(key, 0) for key, number in usage.items()}


@dataclasses.dataclass
class Model:
    """The gate table of the design, written out for one stream."""

    max_retries: int
    committed: bool = False
    retries: int = 0
    attempt_usage: dict[str, int] = dataclasses.field(default_factory=dict)
    abandoned: list[dict[str, int]] = dataclasses.field(default_factory=list)

    @property
    def carried(self) -> dict[str, int]:
        """Per field, the sum over abandoned attempts of each attempt's largest report."""
        total: dict[str, int] = {}
        for usage in self.abandoned:
            for key, number in usage.items():
                total[key] = total.get(key, 0) + number
        return total

    def retry(self) -> GateAction:
        self.retries += 1
        self.abandoned.append(self.attempt_usage)
        self.attempt_usage = {}
        return RETRY

    def item(self, kind: str, *, unauthorized: bool = False) -> GateAction:
        if self.committed:
            return FORWARD_AND_STOP if kind == "done" else FORWARD
        if kind == "error" and unauthorized and self.retries < self.max_retries:
            return self.retry()
        if kind == "output":
            self.committed = True
        return FORWARD_AND_STOP if kind == "done" else FORWARD

    def exception(self, *, unauthorized: bool) -> GateAction:
        if not self.committed and unauthorized and self.retries < self.max_retries:
            return self.retry()
        return RAISE


class GateMachine(RuleBasedStateMachine):
    """Feeds a `StreamGate` and its `Model` the same events and compares their answers."""

    def __init__(self) -> None:
        super().__init__()
        TRIED["machines"] += 1
        self.serials = itertools.count()
        self.model = Model(max_retries=1)
        self.gate = StreamGate()
        self.stopped = False
        self.retry_actions = 0
        self.forwarded: list[int] = []
        self.retry_after_commit = 0

    def _start(self, max_retries: int) -> None:
        TRIED["streams"] += 1
        self.model = Model(max_retries=max_retries)
        self.gate = StreamGate(max_retries=max_retries)
        self.stopped = False
        self.retry_actions = 0
        self.forwarded = []

    @initialize(max_retries=st.integers(0, 3))
    def first_stream(self, max_retries: int) -> None:
        self._start(max_retries)

    @precondition(lambda self: self.stopped)
    @rule(max_retries=st.integers(0, 3))
    def next_stream(self, max_retries: int) -> None:
        self._start(max_retries)

    # -- feeding ------------------------------------------------------------------------------

    def _feed(self, item: dict[str, Any], kind: str, *, unauthorized: bool = False) -> None:
        was_committed = self.model.committed
        expected_action = self.model.item(kind, unauthorized=unauthorized)
        carried = self.model.carried
        if kind == "metadata" and expected_action is FORWARD and not was_committed:
            usage = item.get("usage") or {}
            for key, number in usage.items():
                self.model.attempt_usage[key] = max(number, self.model.attempt_usage.get(key, 0))
        if expected_action is RETRY:
            expected_item = item
        elif "usage" in item:
            expected_item = {**item, "usage": plus(item["usage"], carried)}
        else:
            expected_item = item
        action, forwarded = self.gate.on_item(item)
        assert (expected_action, expected_item) == (action, forwarded)
        self._after(action, was_committed)
        if action in (FORWARD, FORWARD_AND_STOP):
            self.forwarded.append(forwarded["serial"])  # type: ignore[index]

    def _throw(self, error: BaseException, *, unauthorized: bool) -> None:
        was_committed = self.model.committed
        expected_action = self.model.exception(unauthorized=unauthorized)
        action = self.gate.on_exception(error)
        assert expected_action == action
        self._after(action, was_committed)

    def _after(self, action: GateAction, was_committed: bool) -> None:
        TRIED[action.name] += 1
        if action is RETRY:
            self.retry_actions += 1
            self.retry_after_commit += was_committed
        if action in (FORWARD_AND_STOP, RAISE):
            self.stopped = True

    @precondition(lambda self: not self.stopped)
    @rule()
    def output(self) -> None:
        serial = next(self.serials)
        self._feed({"type": "text_delta", "text": f"t{serial}", "serial": serial}, "output")

    @precondition(lambda self: not self.stopped)
    @rule(usage=st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 10**6), max_size=3))
    def metadata(self, usage: dict[str, int]) -> None:
        serial = next(self.serials)
        item: dict[str, Any] = {"type": "message_delta", "serial": serial}
        if usage:
            item["usage"] = usage
        self._feed(item, "metadata")

    @precondition(lambda self: not self.stopped)
    @rule(shape=st.sampled_from(["anthropic", "status", "message"]))
    def unauthorized_error_item(self, shape: str) -> None:
        self._feed(unauthorized_item(shape, next(self.serials)), "error", unauthorized=True)

    @precondition(lambda self: not self.stopped)
    @rule()
    def other_error_item(self) -> None:
        item = {
            "type": "error",
            "error": {"type": "overloaded_error"},
            "serial": next(self.serials),
        }
        self._feed(item, "error")

    @precondition(lambda self: not self.stopped)
    @rule(usage=st.none() | st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 99)))
    def done(self, usage: dict[str, int] | None) -> None:
        item: dict[str, Any] = {"type": "message_stop", "serial": next(self.serials)}
        if usage is not None:
            item["usage"] = usage
        self._feed(item, "done")

    @precondition(lambda self: not self.stopped)
    @rule(shape=st.sampled_from(["status", "message", "chained", "group"]))
    def raise_unauthorized(self, shape: str) -> None:
        self._throw(unauthorized_exception(shape), unauthorized=True)

    @precondition(lambda self: not self.stopped)
    @rule(error=st.sampled_from([ConnectionError("network error"), RuntimeError("rate limited")]))
    def raise_other(self, error: Exception) -> None:
        self._throw(error, unauthorized=False)

    @precondition(lambda self: not self.stopped)
    @rule(shape=st.sampled_from(["keyboard", "cancelled", "exit", "group"]))
    def raise_base_exception(self, shape: str) -> None:
        self._throw(base_exception(shape), unauthorized=False)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def no_item_is_forwarded_twice(self) -> None:
        """Every forwarded item came from a distinct fed item."""
        assert len(self.forwarded) == len(set(self.forwarded))

    @invariant()
    def at_most_max_retries(self) -> None:
        """The gate asked for no more retries than allowed, and counts what it asked for."""
        assert (True, self.retry_actions) == (
            self.retry_actions <= self.model.max_retries,
            self.gate.retries,
        )

    @invariant()
    def never_a_retry_after_commit(self) -> None:
        """No RETRY was ever answered to an event that came after output was forwarded."""
        assert 0 == self.retry_after_commit

    @invariant()
    def committed_as_the_model_says(self) -> None:
        """The gate is committed exactly when the model has forwarded output."""
        assert self.model.committed == self.gate.committed


def test_stream_gate_matches_the_gate_table_model() -> None:
    """Any sequence of events fed to a StreamGate gets the actions and items the table says."""
    run_state_machine_as_test(
        GateMachine, settings=settings(max_examples=400, stateful_step_count=40, deadline=None)
    )
