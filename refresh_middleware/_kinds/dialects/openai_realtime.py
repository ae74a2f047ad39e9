"""The OpenAI Realtime API's server events that carry no output."""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect

DIALECT: Final = Dialect(name="OpenAI Realtime", metadata=frozenset({"rate_limits_updated"}))
