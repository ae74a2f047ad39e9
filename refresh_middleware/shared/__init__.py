"""One credential for a fleet: every process and host refreshes it once, and in turn.

Many processes (web workers, task queues, pods on many nodes) often share one OAuth
credential, and identity providers that rotate refresh tokens revoke the whole family when one
is used twice. A `SharedCredential` keeps the credential in a `Store` (`FileStore` on one
machine, `RedisStore` or `PostgresStore` across hosts) and makes the fleet refresh it once per
expiry: the first process takes the store's lock and fetches, the others adopt what it wrote.

`MemoryStore` serves one process; `OAuth2RefreshGrant` is a ready `fetch`; the credential's
doors (`SharedCredential.httpx_auth`, `.anthropic_provider`, `.openai_api_key`) put it behind
every client. ``python -m refresh_middleware.shared token|seed|status`` is the same credential
for tools that ask a command for a key.
"""

from refresh_middleware._shared._credential import Fetch as Fetch
from refresh_middleware._shared._credential import SharedCredential as SharedCredential
from refresh_middleware._shared._errors import CorruptRecordError as CorruptRecordError
from refresh_middleware._shared._errors import FetchTimeoutError as FetchTimeoutError
from refresh_middleware._shared._errors import LockTimeoutError as LockTimeoutError
from refresh_middleware._shared._errors import (
    ReauthenticationRequiredError as ReauthenticationRequiredError,
)
from refresh_middleware._shared._errors import SharedCredentialError as SharedCredentialError
from refresh_middleware._shared._errors import StoreUnavailableError as StoreUnavailableError
from refresh_middleware._shared._file import FileStore as FileStore
from refresh_middleware._shared._memory import MemoryStore as MemoryStore
from refresh_middleware._shared._oauth import OAuth2RefreshGrant as OAuth2RefreshGrant
from refresh_middleware._shared._oauth import TokenEndpointError as TokenEndpointError
from refresh_middleware._shared._postgres import PostgresStore as PostgresStore
from refresh_middleware._shared._records import Codec as Codec
from refresh_middleware._shared._records import Credential as Credential
from refresh_middleware._shared._records import Record as Record
from refresh_middleware._shared._records import is_invalid_grant as is_invalid_grant
from refresh_middleware._shared._redis import RedisStore as RedisStore
from refresh_middleware._shared._store import Lease as Lease
from refresh_middleware._shared._store import Store as Store
from refresh_middleware._shared._store import StoreSession as StoreSession

__all__ = [
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
]
