"""LiteLLM: the errors it wraps around the provider's own.

LiteLLM's streaming wrapper turns an error raised mid-stream, a 401 included, into a
`MidStreamFallbackError` (a `ServiceUnavailableError`, so its own status is 500 or 503 in the
versions that do not copy the original's) raised from the original and holding it in
`original_exception`. Its own status says nothing about why the stream failed.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect

DIALECT: Final = Dialect(
    name="LiteLLM",
    error_wrappers={"MidStreamFallbackError": ("original_exception",)},
)
