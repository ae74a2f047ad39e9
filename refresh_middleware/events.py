"""Events sent to the `on_event` hook of `refresh_on_401`, and the library's own errors.

Every event names the provider by its class (never its repr, which may hold credentials), and
error texts in events are redacted: the credential of an `Authorization` header of any scheme
(the scheme word stays), URL passwords, `sk-` keys, JWTs and the values of token, key, secret
and password fields or query parameters are removed.
"""

from ._events import CallRetried as CallRetried
from ._events import Event as Event
from ._events import NotReplayableError as NotReplayableError
from ._events import ReentrantRefreshError as ReentrantRefreshError
from ._events import RefreshCooldownError as RefreshCooldownError
from ._events import RefreshError as RefreshError
from ._events import RefreshFailed as RefreshFailed
from ._events import RefreshStarted as RefreshStarted
from ._events import RefreshSucceeded as RefreshSucceeded
from ._events import RefreshTimedOut as RefreshTimedOut
from ._events import RefreshTimeoutError as RefreshTimeoutError
from ._events import RetrySkipped as RetrySkipped
from ._events import UnrelatedReplacement as UnrelatedReplacement
from ._events import redact as redact

__all__ = [
    "CallRetried",
    "Event",
    "NotReplayableError",
    "ReentrantRefreshError",
    "RefreshCooldownError",
    "RefreshError",
    "RefreshFailed",
    "RefreshStarted",
    "RefreshSucceeded",
    "RefreshTimedOut",
    "RefreshTimeoutError",
    "RetrySkipped",
    "UnrelatedReplacement",
    "redact",
]
