"""LiteLLM: the errors it wraps around the provider's own.

LiteLLM's streaming wrapper turns an error raised mid-stream, a 401 included, into a
`MidStreamFallbackError` (a `ServiceUnavailableError`, so its own status is 500 or 503 in the
versions that do not copy the original's) raised from the original and holding it in
`original_exception`. Its own status says nothing about why the stream failed.

An error mid-stream that has no status of its own (openai's `APIError` for an auth error event,
"token expired") is first mapped to LiteLLM's `APIConnectionError`, whose 500 is made up for
any error without a status; the Router then raises that one, caused by the fallback error.
Neither status tells why the stream failed: both are judged by what they wrap.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, Preset

DIALECT: Final = Dialect(
    name="LiteLLM",
    error_wrappers={
        "MidStreamFallbackError": ("original_exception",),
        "APIConnectionError": (),
    },
    # The Router: each method is a call, or a stream when called with `stream=True`.
    presets=(
        Preset(
            module="litellm",
            qualname="Router",
            calls=("embedding", "aembedding"),
            streams=("completion", "acompletion", "text_completion", "atext_completion"),
        ),
    ),
)
