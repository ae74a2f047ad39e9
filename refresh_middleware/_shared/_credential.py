"""`SharedCredential`: one refresh per expiry for every task, thread, process and host.

The protocol of DESIGN.md, written once:

1. In the process, a `Flight` lets one caller go to the store; the others wait for its record.
2. That caller reads the stored record without the lock: a record newer than the stale one
   (another process refreshed) is adopted at once.
3. Otherwise it takes the store's lock for the key (a bounded wait; a try-lock in the advisory
   window before expiry, where someone else being on it is as good), reads again (adopt when
   newer), and only then calls `fetch` with the record read under the lock: its refresh token
   is the latest. `fetch` is bounded by a timeout shorter than the lock's lease, and the lease
   is kept alive while it runs.
4. It writes generation + 1 with a compare-and-set on the generation it read, so a holder that
   outlived its lease cannot overwrite a newer record (it adopts that record instead), and
   releases the lock only if it still owns it.

The sync forms run the async protocol on a private event loop in a worker thread: the logic is
written once, and a sync host (threads, Celery) waits only in its own thread.

Why it is over 600 lines: the protocol's steps are methods of one class sharing its state (the
flight, the record held, the timeouts), and every door onto the credential (the sync forms,
`seed`, the httpx2 Auth and the SDK hooks) is a short method beside them, so each is read
next to the state it uses.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, cast

from refresh_middleware._backend import bounded, run_on_private_loop
from refresh_middleware._events import (
    ADVISORY,
    Adopted,
    Granted,
    LockWaited,
    describe,
    logger,
    observe,
)
from refresh_middleware._flight import (
    Flight,
    adoption,
    call_in_thread_async,
    call_in_thread_sync,
    trigger,
)

from ._errors import (
    CorruptRecordError,
    FetchTimeoutError,
    LockTimeoutError,
    ReauthenticationRequiredError,
    StoreUnavailableError,
)
from ._records import Codec, Credential, decode, encode, is_invalid_grant, newer, newest
from ._store import shielded, sleep

if TYPE_CHECKING:
    from ._google import GoogleCredentials
    from ._hooks import (
        AnthropicTokenProvider,
        OpenAIKey,
        SharedCredentialAuth,
        SyncAnthropicTokenProvider,
        SyncOpenAIKey,
    )
    from ._store import Lease, Store, StoreSession

__all__ = ["Fetch", "SharedCredential"]

Fetch = Callable[[Credential | None], Credential | Awaitable[Credential]]
"""`fetch(current)`: a new credential from the identity provider, sync or async.

`current` is the record read under the lock (its refresh token is the one to send), or None
when nothing is stored yet: the initial grant."""

FETCH_TIMEOUT: Final = 10.0
"""Default seconds `fetch` may take; below every lease, so a live holder never outlives it."""

REFUSED: Final = "refresh_middleware.refused"
"""The mark, in a stored record's `extra`, of a refresh token the identity provider refused:
every process that reads it asks for a new sign-in instead of sending the token again."""

LOCK_MARGIN: Final = 2.0
"""Seconds of lock wait beyond what a live (or dead) holder can keep the lock."""

FIRST_POLL: Final = 0.005
"""Seconds between the first attempts at a busy lock; doubled up to `LAST_POLL`. Between two
attempts a waiter reads the record, so it adopts what the holder wrote without queueing for
the lock only to read it (one waiter after another, a round trip each, on a slow link)."""

LAST_POLL: Final = 0.05

WRITE_ATTEMPTS: Final = 3
"""Compare-and-set attempts when the record changes under the lock without getting newer."""

FIRST_WRITE_RETRY: Final = 0.05
"""Seconds before writing a granted record again into a store that failed; doubled up to
`LAST_WRITE_RETRY`."""

LAST_WRITE_RETRY: Final = 0.5


class Timeouts(NamedTuple):
    """How long a renewal may wait for the lock, and how long `fetch` may take."""

    lock: float
    fetch: float

    @classmethod
    def for_store(cls, store: Store, lock: float | None, fetch: float | None) -> Timeouts:
        """Check the options against the store's lease; fill in the defaults.

        A `fetch` that may outlast the lease could let a second holder fetch with the same
        refresh token, so it must end first. The lock wait covers a holder that fetches for
        as long as it may, or one that died and whose lease must run out.
        """
        lease = store.lease
        if fetch is None:
            fetch = FETCH_TIMEOUT if lease is None else min(FETCH_TIMEOUT, lease * 2 / 3)
        fetch = _seconds(fetch, "fetch_timeout")
        if lease is not None and fetch >= lease:
            msg = f"fetch_timeout must be shorter than the store's lease ({lease:g} s)"
            raise ValueError(msg)
        if lock is None:
            lock = max(fetch, lease or 0.0) + LOCK_MARGIN
        return cls(_seconds(lock, "lock_timeout"), fetch)


def _seconds(value: object, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        msg = f"{option} must be a positive number of seconds, got {value!r}"
        raise ValueError(msg)
    return float(value)


class SharedCredential:
    """One OAuth credential shared by every process and host that uses `store`.

    Args:
        store: Where the fleet keeps the record and the lock (`FileStore`, `RedisStore`).
        key: The credential's name in the store, such as ``"anthropic/acct-42"``.
        fetch: `fetch(current)` returns a new `Credential` from the identity provider: a plain
            function or a coroutine function (awaited in the caller's event loop). `current`
            is the record read under the lock, whose refresh token is the one to send, or None
            when nothing is stored yet (the initial grant, made by one process of the fleet).
        codec: Encodes records before they are stored and decodes them after (encryption at
            rest); None stores JSON.
        lock_timeout: Seconds to wait for the store's lock before `LockTimeoutError`; by
            default long enough for a holder to fetch, or for a dead holder's lease to run out.
        fetch_timeout: Seconds `fetch` may take before `FetchTimeoutError` (default 10, and
            always shorter than the store's lease).

    Raises:
        ValueError: `key` is empty, or a timeout is not a positive number (or `fetch_timeout`
            is not shorter than the store's lease).
        TypeError: `fetch` is not callable.

    A `SharedCredential` may be made before an event loop runs, and used from any loop,
    thread and process (each process makes its own).

    """

    __slots__ = ("_flight", "_latest", "_made", "codec", "fetch", "key", "store", "timeouts")

    def __init__(  # noqa: PLR0913 - the public options, each named at the call (keyword-only)
        self,
        store: Store,
        *,
        key: str,
        fetch: Fetch,
        codec: Codec | None = None,
        lock_timeout: float | None = None,
        fetch_timeout: float | None = None,
    ) -> None:
        if not _is_key(key):
            msg = f"key must be a non-empty string, got {key!r}"
            raise ValueError(msg)
        if not callable(fetch):
            msg = f"fetch must be callable, got {type(fetch).__name__}"
            raise TypeError(msg)
        self.store: Final = store
        self.key: Final = key
        self.fetch: Final = fetch
        self.codec: Final = codec
        self.timeouts: Final = Timeouts.for_store(store, lock_timeout, fetch_timeout)
        # The newest record this process knows; its generation is the flight's own count.
        self._flight: Flight[Credential | None] = Flight(None)
        # The newest record this process was granted, even one the store did not take or whose
        # caller left before the flight heard of it: its refresh token is the live one.
        self._latest: Credential | None = None
        # The newest generation this process fetched (or seeded) itself (`_handed`).
        self._made = 0

    def __repr__(self) -> str:
        """The store and the key, which is what a log line needs."""
        return f"SharedCredential({self.store!r}, key={self.key!r})"

    # -- the public face ------------------------------------------------------------------------

    async def current(self) -> Credential:
        """The credential to build a provider with.

        The newest record this process knows, while it has not expired; otherwise the stored
        record, read from the store. When nothing is stored yet, one process of the fleet takes
        the lock and runs the initial `fetch(None)`; the others adopt what it wrote.

        Raises:
            StoreUnavailableError: The store cannot be reached.
            LockTimeoutError: Nothing was stored and the lock was not obtained in time.
            CorruptRecordError: The stored record cannot be read.
            FetchTimeoutError: The initial fetch took too long.

        """
        known = self._flight.current
        latest = newest(known.value, self._latest)
        if latest is not None and not _expired(latest):
            return latest
        outcome = await self._flight.refresh_async(known.generation, self._look)
        if outcome.error is not None:
            raise outcome.error
        return cast("Credential", outcome.value)

    async def renew(self, stale: Credential) -> Credential:
        """A record newer than `stale`, fetched only when nobody else has fetched one yet.

        `stale` is a credential that `current` or `renew` returned, now refused (a 401) or
        about to expire. Other tasks, threads, processes and hosts renewing the same record
        share one fetch. In the advisory window before expiry (the `trigger` that
        `refresh_on_401` sets is "advisory"), a renewal that finds another process fetching
        does not wait for it: it returns the record as it is, still valid.

        Raises:
            StoreUnavailableError: The store cannot be reached; nothing was fetched.
            LockTimeoutError: The lock was not obtained within `lock_timeout`.
            CorruptRecordError: The stored record cannot be read.
            ReauthenticationRequiredError: The identity provider refused the refresh token
                (`invalid_grant`) and no process has stored a newer record.
            FetchTimeoutError: `fetch` took longer than `fetch_timeout`.

        Whatever `fetch` raises otherwise is raised as it is.

        """
        if not _is_credential(stale):
            msg = f"renew takes the Credential to replace, got {type(stale).__name__}"
            raise TypeError(msg)
        advisory = trigger.get() == ADVISORY
        made_before = self._made
        while True:
            known = self._flight.current
            latest = newest(known.value, self._latest)
            if newer(latest, stale):
                return self._handed(cast("Credential", latest), made_before)
            mine = _Mine()
            run = functools.partial(self._renew, stale, mine, advisory=advisory)
            outcome = await self._flight.refresh_async(known.generation, run)
            if outcome.error is not None:
                raise outcome.error
            fresh = cast("Credential", outcome.value)
            # Only an advisory renewal gives way with the record it had: a caller that needs a
            # newer one goes again rather than take it from another caller's give-way.
            if mine.ran or advisory or newer(fresh, stale):
                return self._handed(fresh, made_before)

    def current_sync(self) -> Credential:
        """`current` for synchronous code: waits in this thread only.

        The async protocol runs on a private event loop in a worker thread (so `fetch` may
        be a plain function or a coroutine function that makes its own clients).
        """
        return _blocking(self.current)

    def renew_sync(self, stale: Credential) -> Credential:
        """`renew` for synchronous code (a sync provider's `refresh`): waits in this thread."""
        return _blocking(functools.partial(self.renew, stale))

    # -- the protocol ---------------------------------------------------------------------------

    def _handed(self, record: Credential, made_before: int) -> Credential:
        """`record`, which `renew` hands over; `refresh_on_401` is told when it was adopted.

        Adopted: not fetched by this process while this renewal ran (`made_before` is the
        newest generation it had fetched when the renewal began). Such a record may be older
        than the failure being renewed: stored before the provider revoked its access tokens,
        or early by a host whose clock runs ahead. Should it be refused at once, the
        decorator's next refresh renews it with a real fetch instead of cooling down
        (`Flight.refused`).
        """
        said = adoption.get()
        if said is not None and not made_before < record.generation <= self._made:
            said.adopted = True
        return record

    async def _look(self) -> Credential:
        """The stored record, or a grant when there is none (the flight's run).

        A store that lost its record (a Redis restarted without persistence, a deleted file)
        while this process holds one is refreshed from that record: its refresh token is
        live, and the initial grant (`fetch(None)`) is only for a fleet that holds nothing.
        """
        known = self._known()
        async with self.store.open(self.key) as session:
            stored = await self._read(session) or await self._locked(session, known, advisory=False)
        return self._usable(newest(stored, known))

    def _known(self) -> Credential | None:
        """The newest record this process holds."""
        return newest(self._flight.current.value, self._latest)

    async def _renew(self, stale: Credential, mine: _Mine, *, advisory: bool) -> Credential:
        """A newer record than `stale`, from the store or from `fetch` (the flight's run)."""
        mine.ran = True
        known = self._known()
        async with self.store.open(self.key) as session:
            stored = await self._read(session)
            best = newest(stored, known)
            if newer(best, stale):
                logger.debug("refresh_middleware: %r adopted a newer record", self)
                return self._adopted(self._usable(best))
            fresh = await self._locked(session, stale, advisory=advisory)
        return self._usable(newest(fresh, known))

    def _usable(self, record: Credential | None) -> Credential:
        """`record`, unless another process marked its refresh token refused."""
        if record is not None and record.extra.get(REFUSED) is True:
            msg = (
                "another process found the stored refresh token refused (invalid_grant); "
                "sign in again to store a new credential"
            )
            raise ReauthenticationRequiredError(msg, store=repr(self.store), key=self.key)
        return cast("Credential", record)

    async def _locked(
        self, session: StoreSession, stale: Credential | None, *, advisory: bool
    ) -> Credential:
        """Under the store's lock: read again, then fetch and write, unless someone did."""
        if advisory:
            lease = await session.lock(0.0)
            if lease is None:  # someone else is on it, and the stale record is still valid
                return cast("Credential", newest(await self._read(session), stale))
        else:
            waited = await self._wait_for_lock(session, stale)
            if isinstance(waited, Credential):
                return waited
            lease = waited
        try:
            stored = await self._read(session)
            if newer(stored, stale):
                return self._adopted(cast("Credential", stored))
            return await self._fetch_and_write(session, lease, stored, stale)
        finally:
            await session.unlock(lease)

    async def _wait_for_lock(
        self, session: StoreSession, stale: Credential | None
    ) -> Lease | Credential:
        """The lock, or the record its holder wrote meanwhile (read while waiting)."""
        began = time.monotonic()
        deadline = began + self.timeouts.lock
        pause = FIRST_POLL
        while True:
            lease = await session.lock(0.0)
            if lease is not None:
                self._waited(began, "acquired")
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                self._waited(began, "timeout")
                msg = f"the lock was not obtained within {self.timeouts.lock:g} s"
                raise LockTimeoutError(msg, store=repr(self.store), key=self.key)
            await sleep(min(pause, left))
            pause = min(pause * 2, LAST_POLL)
            stored = await self._read(session)
            if newer(stored, stale):
                self._waited(began, "adopted")
                return self._adopted(cast("Credential", stored))

    def _waited(self, began: float, outcome: Literal["acquired", "adopted", "timeout"]) -> None:
        observe(LockWaited(type(self.store).__name__, time.monotonic() - began, outcome))

    def _adopted(self, record: Credential) -> Credential:
        """`record`, written by another process (or holder), reported as adopted."""
        observe(Adopted(type(self.store).__name__, record.generation))
        return record

    async def _fetch_and_write(
        self,
        session: StoreSession,
        lease: Lease,
        stored: Credential | None,
        stale: Credential | None,
    ) -> Credential:
        # A store that lost its record (a Redis without persistence, restarted) is older than
        # what this process holds: then the stale record has the latest refresh token.
        base = newest(stored, stale)
        self._usable(base)  # a refused refresh token is never sent again
        # Once the refresh token is sent, the provider may have rotated it: the grant and the
        # write that keeps its answer finish even if the caller leaves (each bounds itself).
        return await shielded(functools.partial(self._grant, session, lease, stored, base))

    async def _grant(
        self,
        session: StoreSession,
        lease: Lease,
        stored: Credential | None,
        base: Credential | None,
    ) -> Credential:
        started = time.monotonic()
        async with session.keep(lease):
            try:
                fresh = await self._call_fetch(base)
            except Exception as error:
                if not is_invalid_grant(error):
                    raise
                again = await self._read(session)
                if newer(again, base):  # another holder rotated it meanwhile: adopt that
                    return self._adopted(cast("Credential", again))
                await self._share_refusal(session, lease, again, base)
                msg = (
                    "the identity provider refused the stored refresh token (invalid_grant); "
                    "sign in again to store a new credential"
                )
                raise ReauthenticationRequiredError(
                    msg, store=repr(self.store), key=self.key
                ) from error
            written = await self._write(session, lease, stored, base, _carried(fresh, base))
        took = time.monotonic() - started
        logger.info(
            "refresh_middleware: %r fetched generation %d in %.3f s", self, written.generation, took
        )
        observe(Granted(type(self.store).__name__, written.generation, took))
        return written

    async def _share_refusal(
        self,
        session: StoreSession,
        lease: Lease,
        stored: Credential | None,
        refused: Credential | None,
    ) -> None:
        """Mark the refused record in the store, so one incident is one `invalid_grant`.

        The mark stays until a new credential is stored (a new sign-in). Best effort: a store
        that cannot take it leaves the others to find the refusal themselves.
        """
        if refused is None:  # the initial grant was refused: there is no token to protect
            return
        expected = 0 if stored is None else stored.generation
        marked = dataclasses.replace(
            refused,
            extra={**refused.extra, REFUSED: True},
            generation=max(expected, refused.generation) + 1,
        )
        try:
            await session.write(lease, expected, encode(marked, marked.generation, self.codec))
        except StoreUnavailableError as error:
            logger.warning(
                "refresh_middleware: %r could not share the refusal: %s", self, describe(error)
            )

    async def _call_fetch(self, current: Credential | None) -> Credential:
        fetch = self.fetch
        if inspect.iscoroutinefunction(fetch) or inspect.iscoroutinefunction(
            getattr(fetch, "__call__", None)  # noqa: B004 - a callable object's async __call__
        ):
            run = cast("Callable[[], Awaitable[object]]", functools.partial(fetch, current))
            result: object = await bounded(run, self.timeouts.fetch, self._slow)
        else:
            result = await self._call_in_thread(functools.partial(fetch, current))
            if inspect.isawaitable(result):
                result = await bounded(
                    functools.partial(_awaited, result), self.timeouts.fetch, self._slow
                )
        if not isinstance(result, Credential):
            msg = f"fetch must return a Credential, got {type(result).__name__}"
            raise TypeError(msg)
        return result

    async def _call_in_thread(self, fetch: Callable[[], object]) -> object:
        """A plain `fetch` in a worker thread, waited for to its end, however long it takes.

        A thread cannot be stopped: abandoned at the timeout, it would still send the refresh
        token, after the lock was released and maybe after the next holder sent the same one.
        So the lock is kept (its lease renewed) until the thread ends, and its answer stored.
        """
        started = time.monotonic()
        result = await call_in_thread_async(fetch)
        took = time.monotonic() - started
        if took > self.timeouts.fetch:
            logger.warning(
                "refresh_middleware: %r: fetch took %.1f s, longer than fetch_timeout (%g s); "
                "the lock was kept until it returned (give its HTTP client a timeout)",
                self,
                took,
                self.timeouts.fetch,
            )
        return result

    async def _write(
        self,
        session: StoreSession,
        lease: Lease,
        stored: Credential | None,
        base: Credential | None,
        fresh: Credential,
    ) -> Credential:
        """Store `fresh` as the generation after `stored` (and after `base`), compare-and-set.

        A write that loses to a newer record adopts it: that holder's refresh token is the
        live one. A record that changed without getting newer (deleted by hand) is written
        over, a bounded number of times. A store that fails is written again while the lock
        is surely held; if it still fails, this process keeps the record (and says so).
        """
        for _ in range(WRITE_ATTEMPTS):
            expected = 0 if stored is None else stored.generation
            generation = max(expected, 0 if base is None else base.generation) + 1
            written = dataclasses.replace(fresh, generation=generation)
            try:
                taken = await self._put(session, lease, expected, written)
            except StoreUnavailableError as error:
                self._unsaved(written, error)
                return self._hold(written)
            if taken:
                return self._hold(written)
            try:
                stored = await self._read(session)
            except StoreUnavailableError as error:
                self._unsaved(written, error)
                return self._hold(written)
            if stored == written:  # an earlier attempt was stored, and its reply lost
                return self._hold(written)
            if newer(stored, base):
                logger.warning(
                    "refresh_middleware: %r: a newer record was written while this process "
                    "fetched (its lease ran out); adopting it",
                    self,
                )
                return self._hold(self._adopted(cast("Credential", stored)), made=False)
        msg = "the record keeps changing under the lock: is something else writing this key?"
        raise CorruptRecordError(msg, store=repr(self.store), key=self.key)

    def _unsaved(self, written: Credential, error: StoreUnavailableError) -> None:
        logger.error(
            "refresh_middleware: %r: the identity provider granted generation %d, but the "
            "store could not take it (%s); this process keeps it, and the other processes "
            "will refresh with a spent refresh token unless it is stored again (sign in again "
            "if they report invalid_grant)",
            self,
            written.generation,
            describe(error),
        )

    def _hold(self, record: Credential, *, made: bool = True) -> Credential:
        """Keep `record` as this process's newest, whoever hears of it (the caller may be gone).

        `made`: this process fetched (or seeded) it, rather than adopted another's.
        """
        self._latest = newest(self._latest, record)
        if made:
            self._made = max(self._made, record.generation)
        return record

    async def _put(
        self, session: StoreSession, lease: Lease, expected: int, written: Credential
    ) -> bool:
        """`session.write`, tried again while the store is unavailable and the lock still ours.

        A lease is renewed every third of it, so two thirds of it are left when a write
        fails; a lock without a lease is held as long as this process, and the write is
        tried for as long as a fetch may take.
        """
        lease_left = self.store.lease
        window = self.timeouts.fetch if lease_left is None else lease_left * 2 / 3
        deadline = time.monotonic() + window
        pause = FIRST_WRITE_RETRY
        record = encode(written, written.generation, self.codec)
        while True:
            try:
                return await session.write(lease, expected, record)
            except StoreUnavailableError as error:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                logger.warning(
                    "refresh_middleware: %r could not write generation %d (%s); trying again",
                    self,
                    written.generation,
                    describe(error),
                )
                await sleep(min(pause, left))
                pause = min(pause * 2, LAST_WRITE_RETRY)

    async def _read(self, session: StoreSession) -> Credential | None:
        record = await session.read()
        if record is None:
            return None
        try:
            return decode(record, self.codec)
        except ValueError as error:
            msg = f"the stored record cannot be read: {error}; delete it to start over"
            raise CorruptRecordError(msg, store=repr(self.store), key=self.key) from None

    def _slow(self) -> FetchTimeoutError:
        msg = f"fetch did not return within {self.timeouts.fetch:g} s"
        return FetchTimeoutError(msg, store=repr(self.store), key=self.key)

    # -- the first credential, and the doors (thin faces over current and renew) ---------------

    async def seed(self, credential: Credential, *, replace: bool = False) -> Credential:
        """Store the first credential of the key: the tokens of a person's sign-in.

        Without `replace`, a key that holds a record already keeps it (it may carry a refresh
        token rotated since, which overwriting would lose), and that record is returned. With
        `replace=True` (after a re-authentication) the record is overwritten. Either way it
        happens under the store's lock, as generation + 1.

        Raises:
            TypeError: `credential` is not a `Credential`.
            StoreUnavailableError: The store cannot be reached.
            LockTimeoutError: The lock was not obtained within `lock_timeout`.
            CorruptRecordError: The stored record cannot be read (delete it to start over).

        """
        if not _is_credential(credential):
            msg = f"seed takes a Credential, got {type(credential).__name__}"
            raise TypeError(msg)
        while True:
            mine = _Mine()
            run = functools.partial(self._seed, credential, mine, replace=replace)
            outcome = await self._flight.refresh_async(self._flight.current.generation, run)
            if outcome.error is not None:
                raise outcome.error
            if mine.ran:  # not a record another caller's refresh handed over meanwhile
                return cast("Credential", outcome.value)

    def seed_sync(self, credential: Credential, *, replace: bool = False) -> Credential:
        """`seed` for synchronous code: waits in this thread only."""
        return _blocking(functools.partial(self.seed, credential, replace=replace))

    async def _seed(self, credential: Credential, mine: _Mine, *, replace: bool) -> Credential:
        mine.ran = True
        async with self.store.open(self.key) as session:
            lease = await session.lock(self.timeouts.lock)
            if lease is None:
                msg = f"the lock was not obtained within {self.timeouts.lock:g} s"
                raise LockTimeoutError(msg, store=repr(self.store), key=self.key)
            try:
                stored = await self._read(session)
                # A record whose refresh token was refused is what a seed comes to replace.
                if stored is not None and not replace and not stored.extra.get(REFUSED):
                    return stored
                written = await self._write(session, lease, stored, stored, credential)
            finally:
                await session.unlock(lease)
        logger.info("refresh_middleware: %r seeded generation %d", self, written.generation)
        return written

    def httpx_auth(
        self, *, header: str = "Authorization", scheme: str | None = "Bearer"
    ) -> SharedCredentialAuth:
        """An `httpx2.Auth` that sends this credential and renews it once on a 401 response.

        Every request gets ``header: scheme token`` (just the token when `scheme` is None,
        as for ``header="x-api-key"``), renewed first in the windows before expiry. A 401
        response renews the credential the request used (once for the whole fleet) and sends
        the request again, once, when its body can be replayed; otherwise the 401 is returned
        as it is (the next request gets the renewed credential). Works for sync and async
        httpx2 clients, so for every door of an SDK client built on one::

            openai.AsyncOpenAI(api_key="-", http_client=httpx2.AsyncClient(auth=auth))

        Raises:
            ImportError: httpx2 is not installed (the ``http`` extra).

        """
        from ._hooks import SharedCredentialAuth  # noqa: PLC0415 - httpx2 users only

        return SharedCredentialAuth(self, header=header, scheme=scheme)

    def anthropic_provider(self) -> AnthropicTokenProvider:
        """The async ``credentials=`` provider of the anthropic SDK, on this credential.

        ``AsyncAnthropic(credentials=credential.anthropic_provider())``: the SDK asks it for
        the token, and after a 401 asks with ``force_refresh=True``, which renews the
        credential it handed out (once for the fleet). Make one per client.
        """
        from ._hooks import AnthropicTokenProvider  # noqa: PLC0415 - anthropic users only

        return AnthropicTokenProvider(self)

    def anthropic_provider_sync(self) -> SyncAnthropicTokenProvider:
        """`anthropic_provider` for the sync ``Anthropic`` client."""
        from ._hooks import SyncAnthropicTokenProvider  # noqa: PLC0415

        return SyncAnthropicTokenProvider(self)

    def openai_api_key(self) -> OpenAIKey:
        """The async callable ``api_key`` of the openai SDK, on this credential.

        ``AsyncOpenAI(api_key=credential.openai_api_key())``: awaited before every request,
        renewed ahead of expiry. openai never retries a 401 for it: add `httpx_auth()` (or
        `refresh_on_401`) for that.
        """
        from ._hooks import OpenAIKey  # noqa: PLC0415 - openai users only

        return OpenAIKey(self)

    def openai_api_key_sync(self) -> SyncOpenAIKey:
        """`openai_api_key` for the sync ``OpenAI`` client."""
        from ._hooks import SyncOpenAIKey  # noqa: PLC0415

        return SyncOpenAIKey(self)

    def google_credentials(self) -> GoogleCredentials:
        """google-auth ``Credentials`` on this credential, for google-genai and Vertex AI.

        ``genai.Client(vertexai=True, credentials=credential.google_credentials(),
        project=..., location=...)``: google-genai calls its ``refresh`` (sync; in a worker
        thread for the async client) when the token is missing or near expiry, and takes the
        current credential, renewed ahead through the fleet's lock. Called again while the
        token is still good by its expiry (a transport's retry after a 401), it renews that
        token, once for the fleet. google-genai does not retry a 401 itself: pair it with
        `refresh_on_401` for that. Make one per client.

        Raises:
            ImportError: google-auth is not installed (the ``google`` extra).

        """
        from ._google import GoogleCredentials  # noqa: PLC0415 - google users only

        return GoogleCredentials(self)


def _carried(fresh: Credential, base: Credential | None) -> Credential:
    """`fresh`, with the refresh token of `base` when the grant brought none.

    Providers that do not rotate answer a refresh grant without a `refresh_token` (RFC 6749,
    6): the one sent stays valid, and dropping it would log the fleet out at its next refresh.
    """
    if fresh.refresh_token is not None or base is None or base.refresh_token is None:
        return fresh
    return dataclasses.replace(fresh, refresh_token=base.refresh_token)


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


@dataclasses.dataclass(slots=True)
class _Mine:
    """Set by a renewal's own run: its result is final, newer or not."""

    ran: bool = False


def _is_key(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_credential(value: object) -> bool:
    return isinstance(value, Credential)


def _expired(credential: Credential) -> bool:
    expires_at = credential.expires_at
    return expires_at is not None and time.time() >= expires_at


def _blocking(run: Callable[[], Awaitable[Credential]]) -> Credential:
    """Run `run()` on a private asyncio loop in a worker thread, and wait for it here.

    A worker thread, because this thread may already run an event loop (a sync provider called
    from async code), where a second loop cannot start. The protocol bounds itself (lock wait,
    fetch timeout, store timeouts), so the wait here needs no bound of its own.
    """
    return call_in_thread_sync(lambda: run_on_private_loop(run), threading.TIMEOUT_MAX)
