"""`PostgresStore`: the processes of many hosts share a credential through an existing PostgreSQL.

Built on psycopg 3 (the ``postgres`` extra). A table holds one row per key: the record's
generation and data. The lock of a key is a *transaction-scoped* advisory lock
(``pg_try_advisory_xact_lock``, polled): it lives in a transaction of a connection of its own,
and ends with that transaction, whatever ends it: the holder's release, its connection closing
when its process dies, or the server ending a transaction left idle longer than the lease. It
never outlives its transaction, so a connection pool between the fleet and the server
(PgBouncer in transaction mode) cannot hand a held lock to someone else, as a session-level
advisory lock could. Records are written on a second connection, in autocommit: a write that
returns True is committed, and it is a compare-and-set on the generation (an ``INSERT`` that
does nothing on conflict for the first record, an ``UPDATE ... WHERE generation = expected``
after).

psycopg's async connection runs on asyncio only (under trio it finds no running loop), and the
library serves trio first: each statement runs on psycopg's blocking connection in a worker
thread (`call_in_thread_async`), the same way under trio and asyncio, bounded by `timeout`. The
statements of one connection are serialised by a lock of their own, so a statement a cancelled
caller left running in its thread ends before the connection is closed under it.

The table is created on first use, by the first statement that finds it missing; processes that
create it at the same moment all succeed (PostgreSQL reports the loser of that race as a unique
violation on its catalogue, which here means the table now exists). Those who create it
themselves (a role without CREATE on the schema) run `PostgresStore.table_statement()` once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Final, LiteralString, TypeVar

from refresh_middleware._backend import bounded
from refresh_middleware._events import describe, logger
from refresh_middleware._flight import call_in_thread_async

from ._errors import CorruptRecordError, StoreUnavailableError
from ._records import Record
from ._store import Lease, finite_seconds, sleep

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    import psycopg
    from psycopg import sql

__all__ = ["PostgresStore"]

R = TypeVar("R")

TABLE: Final = "refresh_middleware_credentials"
"""The table's default name."""

LEASE: Final = 15.0
"""Default seconds a lock outlives a holder that stopped renewing it (a hung or cut-off one)."""

FIRST_POLL: Final = 0.005
"""Seconds between the first attempts at a busy lock; doubled up to `LAST_POLL`."""

LAST_POLL: Final = 0.05

CREATE_TABLE: Final = """\
CREATE TABLE IF NOT EXISTS {table} (
    key text PRIMARY KEY,
    generation bigint NOT NULL CHECK (generation > 0),
    data bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
"""The table's statement; ``{table}`` is the quoted name."""

_READ: Final = "SELECT generation, data FROM {table} WHERE key = %s"
_INSERT: Final = (
    "INSERT INTO {table} (key, generation, data) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING"
)
_UPDATE: Final = (
    "UPDATE {table} SET generation = %s, data = %s, updated_at = now() "
    "WHERE key = %s AND generation = %s"
)
# The lease is local to the lock's transaction: the server ends it, and so the lock, when
# nothing is said in it for that long.
_TRY_LOCK: Final = (
    "SELECT set_config('idle_in_transaction_session_timeout', %s, true), "
    "pg_try_advisory_xact_lock(%s)"
)

_SECRET_PARAMETERS: Final = frozenset({"password", "sslpassword"})


def _import_psycopg() -> None:
    try:
        importlib.import_module("psycopg")  # only the `postgres` extra brings it
    except ImportError as error:
        msg = "PostgresStore needs psycopg 3: pip install -e '.[postgres]' in a clone"
        raise ImportError(msg, name="psycopg") from error


def _table_name(table: object) -> tuple[str, ...]:
    """The parts of a table name, ``name`` or ``schema.name``; ValueError for anything else."""
    parts = tuple(table.split(".")) if isinstance(table, str) else ()
    if not 1 <= len(parts) <= 2 or not all(parts):  # a name, or a schema and a name
        msg = f"table must be a table name, optionally schema-qualified, got {table!r}"
        raise ValueError(msg)
    return parts


class PostgresStore:
    """Records and locks in a PostgreSQL database that the processes of many hosts share.

    Args:
        dsn: A libpq connection string, as a URL (``postgresql://user:password@host/db``) or
            as ``key=value`` pairs. Each renewal opens its own connections (two while it holds
            the lock), so the store works from any event loop and thread.
        table: The table of records (``name`` or ``schema.name``), created on first use when
            it does not exist. Create it yourself with `table_statement` when the store's role
            may not create tables; the role then needs SELECT, INSERT and UPDATE on it.
        lease: Seconds a lock outlives a holder that stops speaking (hung, or cut off from
            the server): the server ends its transaction, and the lock with it. A holder that
            dies loses its lock at once, with its connection. Renewed every third of it while
            the holder fetches.
        timeout: Seconds to connect and to wait for each statement before
            `StoreUnavailableError`.

    Raises:
        ImportError: psycopg 3 is not installed (the ``postgres`` extra).
        TypeError: `dsn` is not a string.
        ValueError: `dsn` is not a connection string, `table` is not a table name, or
            `lease` or `timeout` is not a positive number of seconds.

    The lock is an advisory lock of the transaction, never of the session: a pooler in
    transaction mode (PgBouncer) between the fleet and the server cannot hand a held lock on.

    """

    __slots__ = ("_conninfo", "_lease", "_shown", "_table_parts", "table", "timeout")

    def __init__(
        self,
        dsn: str,
        *,
        table: str = TABLE,
        lease: float = LEASE,
        timeout: float = 3.0,
    ) -> None:
        _import_psycopg()
        options: dict[str, object] = {"lease": lease, "timeout": timeout}
        for name, value in options.items():
            if not finite_seconds(value):
                msg = f"{name} must be a positive, finite number of seconds, got {value!r}"
                raise ValueError(msg)
        self._table_parts: Final = _table_name(table)
        self.table: Final = table
        self.timeout: Final = float(timeout)
        self._lease = float(lease)
        self._conninfo, self._shown = _conninfo(dsn, self.timeout)

    def __repr__(self) -> str:
        """Where the database is and the table, without the password."""
        return f"PostgresStore({self._shown!r}, table={self.table!r})"

    @property
    def lease(self) -> float:
        """Seconds a lock outlives a holder that stopped speaking to the server."""
        return self._lease

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncGenerator[_PostgresSession]:
        """A session on the row and lock of `key`; its connections are closed after the block.

        Closing the lock's connection ends its transaction: a lock left held is released.
        """
        session = _PostgresSession(self, key)
        try:
            yield session
        finally:
            await session.close()

    def table_statement(self) -> str:
        """The statement that creates the table, for those who create it themselves.

        Example:
            >>> from refresh_middleware.shared import PostgresStore
            >>> print(PostgresStore("host=db.internal", table="auth.tokens").table_statement())
            CREATE TABLE IF NOT EXISTS "auth"."tokens" (
                key text PRIMARY KEY,
                generation bigint NOT NULL CHECK (generation > 0),
                data bytea NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now()
            )

        """
        return self.statement(CREATE_TABLE).as_string()

    def connect(self) -> psycopg.Connection[Any]:
        """A new blocking connection in autocommit (call it in a worker thread)."""
        import psycopg  # noqa: PLC0415 - checked in __init__

        # prepare_threshold=None: no server-side prepared statements, which poolers in
        # transaction mode may not keep.
        return psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=None)

    def statement(self, template: LiteralString) -> sql.Composed:
        """`template` with the quoted table name in place of ``{table}``."""
        from psycopg import sql  # noqa: PLC0415

        return sql.SQL(template).format(table=sql.Identifier(*self._table_parts))


def _conninfo(dsn: object, timeout: float) -> tuple[str, str]:
    """The connection string to use, and the one to show (without a password).

    Raises ValueError, without echoing `dsn` (which may hold the password), when it does not
    parse.
    """
    from psycopg import ProgrammingError  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    if not isinstance(dsn, str):
        msg = f"dsn must be a connection string, got {type(dsn).__name__}"
        raise TypeError(msg)
    try:
        given = conninfo_to_dict(dsn)
    except ProgrammingError:
        msg = "dsn is not a PostgreSQL connection string (URL or key=value pairs)"
        raise ValueError(msg) from None
    seconds = math.ceil(timeout)
    # What the DSN does not say: give up on a server that does not answer, and tell a person
    # looking at pg_stat_activity who holds a lock.
    defaults: dict[str, object] = {
        "connect_timeout": max(2, seconds),  # libpq's least
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
        "application_name": "refresh_middleware",
    }
    extra = {name: value for name, value in defaults.items() if name not in given}
    shown = {name: value for name, value in given.items() if name not in _SECRET_PARAMETERS}
    return make_conninfo(dsn, **extra), make_conninfo("", **shown)  # type: ignore[arg-type]


class _Link:
    """One blocking connection, opened on first use, whose statements run one at a time.

    Statements run in worker threads; a caller that was cancelled leaves its statement running
    in its thread, and the lock makes the next statement, or the close, wait for its end.
    """

    __slots__ = ("_closed", "_connection", "_lock", "_store")

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._closed = False

    def run(self, step: Callable[[psycopg.Connection[Any]], R]) -> R:
        """`step(connection)`, connecting first if need be (in a worker thread)."""
        import psycopg  # noqa: PLC0415

        with self._lock:
            if self._closed:
                msg = "the session has ended"
                raise psycopg.InterfaceError(msg)
            if self._connection is None:
                self._connection = self._store.connect()
            return step(self._connection)

    def close(self) -> None:
        """Close the connection once its running statement, if any, has ended."""
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()


class _PostgresSession:
    """One key's row and lock: a connection for the records, another for the lock."""

    __slots__ = ("held", "key", "lock_key", "locking", "records", "store")

    def __init__(self, store: PostgresStore, key: str) -> None:
        self.store = store
        self.key = key
        # The advisory lock's key: 64 bits of a hash of the table and the key, so that two
        # tables (two fleets) on one database never share a lock.
        digest = hashlib.blake2b(f"{store.table}\0{key}".encode(), digest_size=8).digest()
        self.lock_key = int.from_bytes(digest, "big", signed=True)
        self.records = _Link(store)
        self.locking = _Link(store)
        self.held: str | None = None

    def unavailable(self, what: str, error: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"{what} ({describe(error)})", store=repr(self.store), key=self.key
        )

    async def _run(self, link: _Link, what: str, step: Callable[[psycopg.Connection[Any]], R]) -> R:
        """`step` on `link`'s connection in a worker thread, bounded by the store's timeout.

        Any error of psycopg (the server down, gone, refusing the role, shutting down) is a
        store that cannot be used: `StoreUnavailableError`.
        """
        import psycopg  # noqa: PLC0415

        timeout = self.store.timeout

        def slow() -> StoreUnavailableError:
            return self.unavailable(
                f"cannot {what}", TimeoutError(f"no answer within {timeout:g} s")
            )

        try:
            return await bounded(
                lambda: call_in_thread_async(lambda: link.run(step)), timeout, slow
            )
        except psycopg.Error as error:
            raise self.unavailable(f"cannot {what}", error) from error

    def _execute(
        self,
        connection: psycopg.Connection[Any],
        template: LiteralString,
        values: tuple[object, ...],
    ) -> psycopg.Cursor[Any]:
        """Run a statement on the table, creating the table first if it is missing."""
        import psycopg.errors  # noqa: PLC0415

        statement = self.store.statement(template)
        try:
            return connection.execute(statement, values)
        except psycopg.errors.UndefinedTable:
            self._create_table(connection)
        return connection.execute(statement, values)

    def _read_row(self, connection: psycopg.Connection[Any]) -> tuple[object, object] | None:
        row = self._execute(connection, _READ, (self.key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _create_table(self, connection: psycopg.Connection[Any]) -> None:
        import psycopg.errors  # noqa: PLC0415

        try:
            connection.execute(self.store.statement(CREATE_TABLE))
        except (
            psycopg.errors.UniqueViolation,
            psycopg.errors.DuplicateTable,
            psycopg.errors.DuplicateObject,
        ):
            # Another process created it at the same moment (IF NOT EXISTS checks before it
            # takes the catalogue's lock): the loser meets the table, its row type or the
            # catalogue's unique index, by timing. It exists now, which is all that was wanted.
            return
        logger.info("refresh_middleware: %r created its table", self.store)

    async def read(self) -> Record | None:
        row = await self._run(self.records, "read the record", self._read_row)
        if row is None:
            return None
        generation, data = row
        if not (isinstance(generation, int) and generation > 0 and isinstance(data, bytes)):
            msg = f"the row of {self.store.table!r} has no readable generation or data"
            raise CorruptRecordError(msg, store=repr(self.store), key=self.key)
        return Record(generation, data)

    async def lock(self, wait: float) -> Lease | None:
        lease_ms = str(math.ceil(self.store.lease * 1000))
        deadline = time.monotonic() + wait
        pause = FIRST_POLL
        while True:
            # A lock taken by a statement whose caller was cancelled meanwhile is released
            # when the session ends: closing the connection ends its transaction.
            taken = await self._run(
                self.locking,
                "take the lock",
                lambda connection: self._try_lock(connection, lease_ms),
            )
            if taken:
                self.held = secrets.token_hex(8)
                return Lease(self.key, self.held)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await sleep(min(pause, left))
            pause = min(pause * 2, LAST_POLL)

    def _try_lock(self, connection: psycopg.Connection[Any], lease_ms: str) -> bool:
        from psycopg.pq import TransactionStatus  # noqa: PLC0415

        if connection.info.transaction_status == TransactionStatus.IDLE:
            connection.execute("BEGIN")
        row = connection.execute(_TRY_LOCK, (lease_ms, self.lock_key)).fetchone()
        return bool(row is not None and row[1])

    @contextlib.asynccontextmanager
    async def keep(self, lease: Lease) -> AsyncGenerator[None]:
        """Speak in the lock's transaction every third of the lease while the block runs.

        From a thread of its own, which needs no event loop: the statements are blocking.
        """
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew_while_held,
            args=(lease, stop),
            name="refresh_middleware lease",
            daemon=True,
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()

    def _renew_while_held(self, lease: Lease, stop: threading.Event) -> None:  # noqa: ARG002
        import psycopg  # noqa: PLC0415

        while not stop.wait(self.store.lease / 3):
            try:
                self.locking.run(_speak)
            except psycopg.Error as error:
                # A statement that fails ends the transaction: the lock is gone.
                logger.warning(
                    "refresh_middleware: %r: the lease of %r ran out while fetching (%s); the "
                    "compare-and-set decides whose record stays",
                    self.store,
                    self.key,
                    describe(error),
                )
                return

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:
        if lease.token != self.held:
            msg = "a record is written only under the lock this session holds"
            raise RuntimeError(msg)
        # The generation decides, not the lock: a holder whose lease ran out may still write
        # when nobody wrote meanwhile, which keeps the rotation it fetched.
        values: tuple[object, ...]
        if expected == 0:
            template, values = _INSERT, (self.key, record.generation, record.data)
        else:
            template, values = _UPDATE, (record.generation, record.data, self.key, expected)
        written = await self._run(
            self.records,
            "write the record",
            lambda connection: self._execute(connection, template, values).rowcount,
        )
        return written == 1

    async def unlock(self, lease: Lease) -> None:
        if lease.token != self.held:
            return
        self.held = None
        # The statement runs in its thread to its end even when the caller is cancelled.
        try:
            await self._run(self.locking, "release the lock", _end_transaction)
        except StoreUnavailableError as error:
            logger.warning(
                "refresh_middleware: %r could not release the lock of %r (%s); it ends with "
                "its connection",
                self.store,
                self.key,
                describe(error.__cause__ or error),
            )

    async def close(self) -> None:
        """Close both connections, in a worker thread that runs to its end even if cancelled."""
        await call_in_thread_async(self._close_links)

    def _close_links(self) -> None:
        self.locking.close()
        self.records.close()


def _speak(connection: psycopg.Connection[Any]) -> None:
    connection.execute("SELECT 1")  # in the lock's transaction: it is not idle, the lease holds


def _end_transaction(connection: psycopg.Connection[Any]) -> None:
    connection.execute("ROLLBACK")  # nothing was written in it: ending it releases the lock
