"""What any provider's items look like: the names hand-written providers and most SDKs share."""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect

DIALECT: Final = Dialect(
    name="any provider",
    done=frozenset({"done", "stop", "stream_end", "end", "completed"}),
    metadata=frozenset({"usage", "ping", "heartbeat", "keepalive", "metadata"}),
    name_fields=("type", "kind"),
    # Server-sent events name themselves in `event`; an object's `event` attribute may be
    # anything (an SSE client's event object, say), so only mappings are named by it.
    wire_name_fields=("event",),
)
