"""The provider APIs the loopback server speaks, one module each, behind one registry.

Adding an API is one module that declares its `Dialect` and one line here.
"""

from __future__ import annotations

from typing import Final

from . import anthropic, gemini, openai_chat, openai_responses
from ._record import Call as Call
from ._record import Dialect as Dialect
from ._record import Framing as Framing
from ._record import NotFoundError as NotFoundError

__all__ = ["DIALECTS", "Call", "Dialect", "Framing", "NotFoundError"]

DIALECTS: Final[tuple[Dialect, ...]] = (
    openai_chat.DIALECT,
    openai_responses.DIALECT,
    anthropic.DIALECT,
    gemini.DIALECT,
)
"""Every API the server answers, each on its own routes."""
