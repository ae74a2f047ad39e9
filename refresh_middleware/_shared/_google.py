"""google-auth `Credentials` on a `SharedCredential`, for google-genai (Vertex AI) and others.

google-auth's contract: a client calls ``refresh(request)`` when the credentials' own view
says the token is missing or expired (``expiry`` minus google-auth's threshold of a few
minutes), and some transports (google-auth's ``AuthorizedSession``) call it again after a 401.
Then it reads ``token`` and ``expiry`` (a naive UTC datetime). `refresh` is sync only, and
google-genai's async client calls it in a worker thread, so this door is sync: a thin adapter
over `SharedCredential.current_sync` / `renew_sync`, as the anthropic provider is over the
async pair. The ``request`` google-auth hands in is not used: the fleet's `fetch` renews.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Final

try:
    import google.auth.credentials
except ImportError as error:  # as PostgresStore does: say which extra brings it
    msg = "google_credentials() needs google-auth: pip install -e '.[google]' in a clone"
    raise ImportError(msg, name="google.auth") from error

from ._ahead import Ahead, ready_sync

if TYPE_CHECKING:
    from ._credential import SharedCredential
    from ._records import Credential

__all__ = ["GoogleCredentials"]


def _naive_utc(expires_at: float | None) -> dt.datetime | None:
    if expires_at is None:
        return None
    return dt.datetime.fromtimestamp(expires_at, dt.UTC).replace(tzinfo=None)


class GoogleCredentials(google.auth.credentials.Credentials):
    """google-auth `Credentials` whose `refresh` takes the fleet's current credential.

    Made by `SharedCredential.google_credentials`. Called while the token it holds is still
    good by its own expiry (a transport's retry after a 401), `refresh` renews that
    credential, once for the fleet; called because the token is missing or about to expire,
    it takes the current one, renewed first in the windows before expiry, as every door does.
    """

    def __init__(self, shared: SharedCredential) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # google-auth leaves it untyped
        self.shared: Final = shared
        self._ahead = Ahead()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        """The credential it stands for; never the token."""
        return f"GoogleCredentials({self.shared!r})"

    def refresh(self, request: Any) -> None:  # noqa: ARG002 - google-auth's transport, not used
        """Set `token` and `expiry` from the fleet: renewed when refused, current otherwise."""
        seen = self.token
        with self._lock:
            if self.token != seen:  # another thread refreshed while this one waited
                return
            refused = self._ahead.known
            if refused is not None and not self.expired:
                fresh = self.shared.renew_sync(refused)
                self._ahead.known = fresh
            else:
                fresh = ready_sync(self.shared, self._ahead)
            self._hold(fresh)

    def _hold(self, credential: Credential) -> None:
        self.token = credential.access_token
        self.expiry = _naive_utc(credential.expires_at)
