"""One credential for a fleet: every process and host refreshes it once, and in turn.

Many processes (web workers, task queues, pods on many nodes) often share one OAuth
credential, and identity providers that rotate refresh tokens revoke the whole family when one
is used twice. A `SharedCredential` keeps the credential in a `Store` (`FileStore` on one
machine, `RedisStore` across hosts) and makes the fleet refresh it once per expiry: the first
process takes the store's lock and fetches, the others adopt what it wrote.
"""

from ._shared._credential import Fetch as Fetch
from ._shared._credential import SharedCredential as SharedCredential
from ._shared._errors import CorruptRecordError as CorruptRecordError
from ._shared._errors import FetchTimeoutError as FetchTimeoutError
from ._shared._errors import LockTimeoutError as LockTimeoutError
from ._shared._errors import ReauthenticationRequiredError as ReauthenticationRequiredError
from ._shared._errors import SharedCredentialError as SharedCredentialError
from ._shared._errors import StoreUnavailableError as StoreUnavailableError
from ._shared._file import FileStore as FileStore
from ._shared._memory import MemoryStore as MemoryStore
from ._shared._oauth import OAuth2RefreshGrant as OAuth2RefreshGrant
from ._shared._oauth import TokenEndpointError as TokenEndpointError
from ._shared._records import Codec as Codec
from ._shared._records import Credential as Credential
from ._shared._records import Record as Record
from ._shared._records import is_invalid_grant as is_invalid_grant
from ._shared._redis import RedisStore as RedisStore
from ._shared._store import Lease as Lease
from ._shared._store import Store as Store
from ._shared._store import StoreSession as StoreSession

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
