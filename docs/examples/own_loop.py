"""How-to: drive `StreamGate` from your own retry loop, without the decorator."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from refresh_middleware.classify import GateAction, StreamGate


def gated(open_stream: Callable[[], Iterator[Any]], refresh: Callable[[], None]) -> Iterator[Any]:
    """Yield the items of `open_stream()`; after a 401 before any output, refresh and reopen."""
    gate = StreamGate()
    while True:
        stream = open_stream()
        try:
            for item in stream:
                action, forwarded = gate.on_item(item)
                if action is GateAction.RETRY:
                    break  # an error item the gate will not forward: reopen below
                yield forwarded
                if action is GateAction.FORWARD_AND_STOP:
                    return
            else:
                return
        except Exception as error:
            if gate.on_exception(error) is not GateAction.RETRY:
                raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        refresh()


def main() -> None:
    attempts = iter(
        [
            [
                {"type": "message_start"},
                {"type": "error", "error": {"type": "authentication_error"}},
            ],
            [{"type": "message_start"}, "Hello", ", world", {"type": "message_stop"}],
        ]
    )
    refreshes: list[str] = []
    items = list(gated(lambda: iter(next(attempts)), lambda: refreshes.append("refresh")))
    print("items:", items)
    print("refreshes:", len(refreshes))


if __name__ == "__main__":
    main()
