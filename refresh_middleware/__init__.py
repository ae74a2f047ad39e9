"""Refresh expiring LLM provider credentials on 401 and retry once, without duplicating output.

`refresh_on_401` wraps a provider instance or decorates a provider class. The classifier and
the stream gate it uses are public in `refresh_middleware.classify`.
"""

from ._decorator import refresh_on_401
from ._otel import install as _install_telemetry
from ._unauthorized import is_unauthorized_error

# OpenTelemetry metrics and spans when opentelemetry-api is installed (it is not imported here).
_install_telemetry()

__all__ = ["is_unauthorized_error", "refresh_on_401"]
