"""``python -m refresh_middleware.shared``: the shared credential for tools that run a command.

Some tools ask a command for their key (``apiKeyHelper``-style settings), and child processes
may not import Python at all. This command is their door to the fleet's credential:

- ``token`` prints the current access token, renewed first through the fleet's lock when it
  is due (in the windows before expiry, or expired) and a token endpoint is given;
- ``seed`` reads a credential as JSON from stdin (``access_token``, ``refresh_token``,
  ``expires_at`` or ``expires_in``) and stores it as the key's first record (``--replace``
  after a re-authentication);
- ``status`` prints the generation and the expiry, never a secret.

Exit codes: 0 done; 2 a usage error; 3 a person must sign in again (nothing stored, or the
refresh token refused); 4 the store cannot be reached or its lock not obtained; 5 any other
failure to renew (the token endpoint refused, timed out; a corrupt record). Messages go to
stderr and never carry a token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from refresh_middleware._backend import run_on_private_loop
from refresh_middleware._events import describe
from refresh_middleware._flight import trigger

from ._ahead import ADVISORY, MANDATORY, depth, expired
from ._credential import SharedCredential
from ._errors import (
    LockTimeoutError,
    ReauthenticationRequiredError,
    SharedCredentialError,
    StoreUnavailableError,
)
from ._file import FileStore
from ._memory import MemoryStore
from ._records import Credential, decode

if TYPE_CHECKING:
    from ._credential import Fetch
    from ._store import Store

__all__ = ["main"]

OK: Final = 0
USAGE: Final = 2
REAUTHENTICATE: Final = 3
STORE_DOWN: Final = 4
FAILED: Final = 5

_PROGRAM: Final = "python -m refresh_middleware.shared"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROGRAM,
        description="The fleet's shared credential, for tools that ask a command for a key.",
        epilog=(
            "Exit codes: 0 done, 2 usage, 3 sign in again (nothing stored or refresh token "
            "refused), 4 store unreachable or lock not obtained, 5 renewal failed otherwise."
        ),
    )
    parser.add_argument("command", choices=["token", "seed", "status"])
    parser.add_argument(
        "--store",
        required=True,
        help="a directory (or file:///dir) for FileStore; redis://, rediss://, unix:// for Redis",
    )
    parser.add_argument("--key", required=True, help="the credential's key in the store")
    parser.add_argument("--token-url", help="the OAuth token endpoint, to renew (token)")
    parser.add_argument("--client-id", help="the OAuth client id (with --token-url)")
    parser.add_argument(
        "--client-secret-env",
        metavar="VAR",
        help="the environment variable holding the client secret (never on the command line)",
    )
    parser.add_argument("--scope", help="the scope to ask for when renewing")
    parser.add_argument(
        "--replace", action="store_true", help="seed: overwrite a stored credential"
    )
    return parser


def store_of(where: str) -> Store:
    """The store a ``--store`` value names."""
    if where.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisStore  # noqa: PLC0415 - the redis extra only when used

        return RedisStore(where)
    if where == "memory:":  # one process only: for trying the command out
        return MemoryStore()
    return FileStore(where.removeprefix("file://"))


def _no_fetch(current: Credential | None) -> Credential:
    if current is None:
        msg = "nothing is stored under this key: seed it (python -m refresh_middleware.shared seed)"
    else:
        msg = "the credential is due for renewal, and no --token-url was given to renew it"
    raise ReauthenticationRequiredError(msg, store="the command line", key="")


class _UsageError(Exception):
    """A mistake on the command line that argparse cannot see."""


def _fetch_of(options: argparse.Namespace) -> Fetch:
    if options.token_url is None:
        return _no_fetch
    if not options.client_id:
        msg = "--token-url needs --client-id"
        raise _UsageError(msg)
    from ._oauth import OAuth2RefreshGrant  # noqa: PLC0415 - httpx2 only when renewing

    secret = None
    if options.client_secret_env is not None:
        secret = os.environ.get(options.client_secret_env)
        if secret is None:
            msg = f"the environment variable {options.client_secret_env} is not set"
            raise _UsageError(msg)
    return OAuth2RefreshGrant(
        options.token_url, client_id=options.client_id, client_secret=secret, scope=options.scope
    )


def _read_seed(stdin: TextIO) -> Credential:
    try:
        document: object = json.loads(stdin.read())
    except ValueError:
        msg = "seed reads a JSON object from stdin; it is not JSON"
        raise _UsageError(msg) from None
    if not isinstance(document, dict):
        msg = "seed reads a JSON object from stdin"
        raise _UsageError(msg)
    fields = cast("dict[str, Any]", document)
    expires_at = fields.get("expires_at")
    expires_in = fields.get("expires_in")
    if expires_at is None and isinstance(expires_in, int | float):
        expires_at = time.time() + expires_in
    known = {"access_token", "refresh_token", "extra"}
    try:
        return Credential(
            **{name: value for name, value in fields.items() if name in known},
            expires_at=expires_at,
        )
    except TypeError as error:
        raise _UsageError(str(error)) from None


def _describe(credential: Credential) -> str:
    if credential.expires_at is None:
        expiry = "expiry unknown"
    else:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(credential.expires_at))
        left = credential.expires_at - time.time()
        expiry = f"expires {when} (in {left:.0f} s)" if left > 0 else f"expired {when}"
    refresh = "a refresh token" if credential.refresh_token else "no refresh token"
    return f"generation {credential.generation}, {expiry}, {refresh}"


async def _status(shared: SharedCredential) -> str:
    async with shared.store.open(shared.key) as session:
        record = await session.read()
    if record is None:
        msg = "nothing is stored under this key: seed it (python -m refresh_middleware.shared seed)"
        raise ReauthenticationRequiredError(msg, store=repr(shared.store), key=shared.key)
    try:
        return _describe(decode(record, None))
    except ValueError as error:
        msg = f"the stored record cannot be read: {error}"
        raise _FailedError(msg) from None


class _FailedError(Exception):
    """A failure that is not one of the shared credential's own errors."""


async def _run(options: argparse.Namespace, stdin: TextIO) -> str:
    shared = SharedCredential(store_of(options.store), key=options.key, fetch=_fetch_of(options))
    if options.command == "status":
        return await _status(shared)
    if options.command == "seed":
        stored = await shared.seed(_read_seed(stdin), replace=options.replace)
        return _describe(stored)
    return await _token(shared)


async def _token(shared: SharedCredential) -> str:
    """The access token, renewed first when due; a failed renewal fails only an expired one."""
    credential = await shared.current()
    reached = depth(credential, time.time())
    if reached == 0:
        return credential.access_token
    reason = trigger.set(ADVISORY if reached == 1 else MANDATORY)
    try:
        return (await shared.renew(credential)).access_token
    except Exception as error:
        if expired(credential):
            raise
        print(f"{_PROGRAM}: not renewed ({describe(error)}); still valid", file=sys.stderr)  # noqa: T201
        return credential.access_token
    finally:
        trigger.reset(reason)


def main(
    argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the command; return its exit code."""
    source = sys.stdin if stdin is None else stdin
    options = _parser().parse_args(argv)
    try:
        said = run_on_private_loop(lambda: _run(options, source))
    except _UsageError as error:
        return _fail(USAGE, str(error))
    except ReauthenticationRequiredError as error:
        return _fail(REAUTHENTICATE, f"sign in again: {error}")
    except (StoreUnavailableError, LockTimeoutError) as error:
        return _fail(STORE_DOWN, f"the store is unavailable: {error}")
    except (SharedCredentialError, _FailedError) as error:
        return _fail(FAILED, str(error))
    except Exception as error:  # noqa: BLE001 - a token endpoint's refusal, a timeout, ...
        return _fail(FAILED, f"{type(error).__name__}: {error}")
    print(said, file=sys.stdout if stdout is None else stdout)
    return OK


def _fail(code: int, message: str) -> int:
    print(f"{_PROGRAM}: {message}", file=sys.stderr)  # noqa: T201 - the command's message
    return code
