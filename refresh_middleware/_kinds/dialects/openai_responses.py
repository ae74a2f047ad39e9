"""The OpenAI Responses API's stream events (`response.created`, ..., `response.completed`)."""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, EmptyPiece

_ITEM: Final = EmptyPiece(
    holders=("item",),
    kind_fields=("type",),
    kinds=frozenset({"message", "reasoning"}),
    filled_by=("content", "summary"),
)
_PART: Final = EmptyPiece(
    holders=("part",),
    kind_fields=("type",),
    kinds=frozenset({"output_text", "refusal", "reasoning_text", "summary_text"}),
    filled_by=("text", "refusal", "annotations"),
)

DIALECT: Final = Dialect(
    name="OpenAI Responses",
    # `response.incomplete` is the last event when a limit or a filter cut the answer short.
    done=frozenset({"response_completed", "response_incomplete"}),
    metadata=frozenset({"response_created", "response_in_progress", "response_queued"}),
    # The last event of a response that failed.
    error=frozenset({"response_failed"}),
    look_inside={
        "response_output_item_added": _ITEM,
        "response_content_part_added": _PART,
        "response_reasoning_summary_part_added": _PART,
    },
    reads=_ITEM.reads | _PART.reads,
)
