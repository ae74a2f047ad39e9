"""Gemini's `GenerateContentResponse` chunks (google-genai objects, or the API's own JSON).

The preset of google-genai's `Client` names its models' requests, sync and `aio`, and the
chats it hands out, which send through the wrapped models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from refresh_middleware._kinds._dialect import (
    DONE,
    METADATA,
    OUTPUT,
    SEQUENCES,
    Dialect,
    Fields,
    Inside,
    Preset,
    ShapeKind,
    carries,
)

# Fields of a part that carry no output: the thinking flag and the thought signature (the
# SDK's names and the wire's). Everything else that is set, known or new, is output.
_QUIET_PART_FIELDS: Final = frozenset({"thought", "thought_signature", "thoughtSignature"})
_REPORTS: Final = ("usage_metadata", "usageMetadata", "prompt_feedback", "promptFeedback")


def _candidates_kind(fields: Fields, inside: Inside) -> ShapeKind | None:
    """A response chunk: OUTPUT with output in a part, DONE when all finished, or METADATA.

    DONE needs every candidate to have a finish reason and no part to carry output; a chunk
    with only usage, safety ratings or an empty part is METADATA.
    """
    candidates = fields.get("candidates")
    if type(candidates) not in SEQUENCES:
        # A response without candidates reports usage or why the prompt was blocked.
        return METADATA if candidates is None and carries(fields, _REPORTS) else None
    finished = bool(candidates)
    for candidate in candidates:
        candidate_fields = inside(candidate)
        for part in inside(candidate_fields.get("content")).get("parts") or ():
            if _part_carries_output(inside(part)):
                return OUTPUT
        finished = finished and _has_finished(candidate_fields)
    return DONE if finished else METADATA


def _part_carries_output(part: Fields) -> bool:
    if not isinstance(part, Mapping):
        return True  # fields that cannot be listed might be anything: output, to be safe
    listed = cast("Mapping[str, object]", part)
    return any(value for key, value in listed.items() if key not in _QUIET_PART_FIELDS)


def _has_finished(candidate: Fields) -> bool:
    reason = candidate.get("finish_reason") or candidate.get("finishReason")
    reason = getattr(reason, "value", reason)  # the SDK's FinishReason is an enum
    return bool(reason) and reason != "FINISH_REASON_UNSPECIFIED"


_SIDES: Final = ("", "aio.")  # the sync client, and its async side

DIALECT: Final = Dialect(
    name="Gemini",
    shapes={"candidates": _candidates_kind},
    reads=frozenset({"content", "parts", "finish_reason", "finishReason", *_REPORTS}),
    presets=(
        Preset(
            module="google.genai",
            qualname="Client",
            calls=tuple(
                f"{side}models.{name}"
                for side in _SIDES
                for name in ("generate_content", "embed_content", "count_tokens")
            ),
            streams=tuple(f"{side}models.generate_content_stream" for side in _SIDES),
            # `chats` builds its chats on `self.models`: the proxy's, whose requests refresh.
            hands_out=tuple(f"{side}chats" for side in _SIDES),
        ),
    ),
)
