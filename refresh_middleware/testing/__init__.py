"""Test kit for code that uses refresh_middleware.

- `ScriptedProvider`, `SyncScriptedProvider`, `RefreshCounter`, `AsyncRefreshCounter`: a
  scriptable provider double and a counting refresh, to test your wiring in a few lines.
- `LoopbackLLMServer` and the functions that run it: a real HTTP server on 127.0.0.1 that
  issues expiring tokens and speaks the wire formats of OpenAI (chat completions and the
  Responses API), Anthropic and Gemini, to test real SDK clients. Its identity provider
  (`OAuthGrants`, counted in `OAuthStats`) rotates refresh tokens and revokes a family whose
  refresh token is used twice, as real ones do. It needs the ``server`` extra
  (``pip install -e ".[server]"`` in a clone); its names are imported on first use, so this
  module imports without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _double, _oauth
from ._double import AsyncRefreshCounter as AsyncRefreshCounter
from ._double import RefreshCounter as RefreshCounter
from ._double import ScriptedProvider as ScriptedProvider
from ._double import ScriptExhaustedError as ScriptExhaustedError
from ._double import SyncScriptedProvider as SyncScriptedProvider
from ._double import UnauthorizedError as UnauthorizedError
from ._oauth import OAuthGrants as OAuthGrants
from ._oauth import OAuthStats as OAuthStats

if TYPE_CHECKING:
    from ._server import CHUNKS_HEADER as CHUNKS_HEADER
    from ._server import Api as Api
    from ._server import LoopbackLLMServer as LoopbackLLMServer
    from ._server import LoopbackOptions as LoopbackOptions
    from ._server import LoopbackStats as LoopbackStats
    from ._server import StreamErrorMode as StreamErrorMode
    from ._server import open_loopback_server as open_loopback_server
    from ._server import run_loopback_server_in_thread as run_loopback_server_in_thread

__all__ = [
    "CHUNKS_HEADER",
    "Api",
    "AsyncRefreshCounter",
    "LoopbackLLMServer",
    "LoopbackOptions",
    "LoopbackStats",
    "OAuthGrants",
    "OAuthStats",
    "RefreshCounter",
    "ScriptExhaustedError",
    "ScriptedProvider",
    "StreamErrorMode",
    "SyncScriptedProvider",
    "UnauthorizedError",
    "open_loopback_server",
    "run_loopback_server_in_thread",
]

# The names of `_server`: what `__all__` lists beyond the modules imported above.
_SERVER_NAMES = frozenset(__all__).difference(_double.__all__, _oauth.__all__)


def __getattr__(name: str) -> Any:
    """Import the loopback server's names on first use: they need the ``server`` extra."""
    if name not in _SERVER_NAMES:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    try:
        server = importlib.import_module("._server", __name__)
    except ImportError as error:
        msg = (
            f"refresh_middleware.testing.{name} needs the loopback server's dependencies "
            "(trio, hypercorn, starlette), the server extra: pip install -e '.[server]' in a "
            "clone of refresh_middleware"
        )
        raise ImportError(msg, name=error.name) from error
    value = getattr(server, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
