"""The public surface of refresh_middleware.shared: exactly these names, sorted."""

from __future__ import annotations

import refresh_middleware.shared


def test_shared_exports_exactly_its_public_names_sorted():
    """__all__ lists the promised names in sorted order, and each one imports."""
    names = refresh_middleware.shared.__all__
    assert (
        [
            "Codec",
            "CorruptRecordError",
            "Credential",
            "Fetch",
            "FetchTimeoutError",
            "FileStore",
            "Lease",
            "LockTimeoutError",
            "MemoryStore",
            "OAuth2RefreshGrant",
            "PostgresStore",
            "ReauthenticationRequiredError",
            "Record",
            "RedisStore",
            "SharedCredential",
            "SharedCredentialError",
            "Store",
            "StoreSession",
            "StoreUnavailableError",
            "TokenEndpointError",
            "is_invalid_grant",
        ],
        True,
    ) == (names, all(hasattr(refresh_middleware.shared, name) for name in names))
