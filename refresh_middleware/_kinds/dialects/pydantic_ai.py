"""pydantic-ai: the events of `request_stream()` and of an agent run (`run_stream_events`)."""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, EmptyPiece, Preset

# PartStartEvent and PartEndEvent carry a `part`, PartDeltaEvent a `delta`.
_PART: Final = EmptyPiece(
    holders=("part", "delta"),
    kind_fields=("part_kind", "part_delta_kind"),
    kinds=frozenset({"text", "thinking"}),
    filled_by=("content", "content_delta", "signature", "signature_delta"),
)

DIALECT: Final = Dialect(
    name="pydantic-ai",
    # The last event of an agent run.
    done=frozenset({"agent_run_result"}),
    # The marker that the final result has begun: the result's own text follows it, so it is
    # no end (DONE would close the stream and cut that text off).
    metadata=frozenset({"final_result"}),
    look_inside={"part_start": _PART, "part_delta": _PART, "part_end": _PART},
    name_fields=("event_kind",),
    reads=_PART.reads,
    # Every model (`OpenAIChatModel`, `AnthropicModel`, ...) sends through `request` and
    # `request_stream`. An `Agent` holds the model as `_with_serving_wrapper()` returns it, which
    # is the model itself: run with the proxy as `self`, it returns the proxy, so an
    # `Agent(wrapped)` calls through it.
    presets=(
        Preset(
            module="pydantic_ai",
            qualname="Model",
            calls=("request",),
            streams=("request_stream",),
            hands_out=("_with_serving_wrapper",),
        ),
    ),
)
