"""The errors of the shared credential: each names the store and the key, never a secret."""

from __future__ import annotations

from refresh_middleware._events import RefreshError

__all__ = [
    "CorruptRecordError",
    "FetchTimeoutError",
    "LockTimeoutError",
    "ReauthenticationRequiredError",
    "SharedCredentialError",
    "StoreUnavailableError",
]


class SharedCredentialError(RefreshError):
    """Base of the errors of `refresh_middleware.shared`.

    Attributes:
        store: What the store is, as `repr` shows it (paths and hosts, never a password).
        key: The key of the credential in the store.

    """

    def __init__(self, message: str, *, store: str, key: str) -> None:
        super().__init__(f"{store}, key {key!r}: {message}")
        self.store = store
        self.key = key


class StoreUnavailableError(SharedCredentialError):
    """The store could not be reached or used before a grant: nothing was sent to the provider.

    Refreshing without the store would let every process refresh on its own, which is exactly
    what revokes a rotating refresh token: the error is raised instead, within the store's
    timeout (the fleet fails closed). A store that fails *after* a grant raises nothing: the
    write is tried again while the lock is held, and if the store never takes it, the process
    keeps the new credential and logs an error saying so.
    """


class LockTimeoutError(SharedCredentialError, TimeoutError):
    """The store's lock for the key was not obtained within `lock_timeout` seconds."""


class CorruptRecordError(SharedCredentialError):
    """The stored record cannot be read: not written by this library, or a codec that differs.

    It is left as it is, for a person to look at: overwriting it could throw away the only copy
    of a rotated refresh token. Delete it to start over with the initial grant.
    """


class ReauthenticationRequiredError(SharedCredentialError):
    """The identity provider refused the refresh token, and no newer one is stored.

    `fetch` failed with `invalid_grant`, and no other process has stored a newer record since:
    the token family was revoked (or expired), and a person has to sign in again.
    """


class FetchTimeoutError(SharedCredentialError, TimeoutError):
    """A coroutine `fetch` did not return within `fetch_timeout` seconds; the lock was released.

    A plain-function `fetch` runs in a thread that cannot be stopped: it is waited for, with
    the lock kept, and its answer stored, so it never raises this.
    """
