"""The dialects `kind_of` and `is_unauthorized_error` know: one module per SDK or framework.

Each module defines `DIALECT`, a `Dialect` record, and imports nothing of the library but that
record's module (an import contract says so). No SDK is imported: items and errors are known by
their names and fields. Adding an SDK is one module here and one line below; the order of the
lines is the order in which fields that name items count.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DIALECTS"]

DIALECTS: Final = (
    "generic",
    "anthropic",
    "openai",
    "openai_chat",
    "openai_responses",
    "openai_realtime",
    "gemini",
    "langchain",
    "pydantic_ai",
    "llamaindex",
    "litellm",
    "openai_agents",
)
