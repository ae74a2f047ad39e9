"""``python -m refresh_middleware.shared``: the credential helper command and its exit codes."""

from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys
import time

import httpx
import pytest

from refresh_middleware._shared._cli import main
from refresh_middleware.testing import run_loopback_server_in_thread

KEY = "loopback/account"
# coredis leaves the buffers of a connection that failed to connect (see test_stores.py).
LEAK = r"ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"
COMMAND = [sys.executable, "-m", "refresh_middleware.shared"]


def run(*arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command, with our own arguments
        [*COMMAND, *arguments], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def sign_in(server) -> dict[str, object]:
    code = server.oauth.authorization_code()
    return httpx.post(
        server.token_url, data={"grant_type": "authorization_code", "code": code}
    ).json()


def call(*arguments: str, stdin: str = "") -> tuple[int, str]:
    """main() in this process: its exit code and what it printed on stdout."""
    out = io.StringIO()
    code = main(list(arguments), stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue()


def test_seed_status_and_token_in_subprocesses(tmp_path):
    """A sign-in's JSON seeds the store; status shows no secret; token prints the token."""
    store = ["--store", str(tmp_path), "--key", KEY]
    signed_in = {"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600}
    seeded = run("seed", *store, stdin=json.dumps(signed_in))
    status = run("status", *store)
    token = run("token", *store)
    assert (0, 0, 0, True, "at-1\n", False) == (
        seeded.returncode,
        status.returncode,
        token.returncode,
        status.stdout.startswith("generation 1, expires "),
        token.stdout,
        "at-1" in status.stdout + seeded.stdout or "rt-1" in status.stdout + seeded.stdout,
    )


def test_token_renews_a_due_credential_through_the_token_endpoint(tmp_path):
    """A credential a minute from expiry: token renews it (1 grant) and prints the new one."""
    with run_loopback_server_in_thread() as server:
        tokens = sign_in(server)
        store = ["--store", f"file://{tmp_path}", "--key", KEY]
        seed = {**tokens, "expires_in": 60}
        assert 0 == run("seed", *store, stdin=json.dumps(seed)).returncode
        renewed = run("token", *store, "--token-url", server.token_url, "--client-id", "app")
        assert (0, True, 1) == (
            renewed.returncode,
            renewed.stdout.strip() not in {"", tokens["access_token"]},
            server.oauth.stats.refresh_grants,
        )


def test_the_module_runs_as_a_script(tmp_path, monkeypatch, capsys):
    """runpy of refresh_middleware.shared as __main__ exits with the command's code."""
    monkeypatch.setattr(sys, "argv", ["x", "status", "--store", str(tmp_path), "--key", KEY])
    with pytest.raises(SystemExit) as caught:
        runpy.run_module("refresh_middleware.shared", run_name="__main__")
    assert (3, True) == (caught.value.code, "nothing is stored" in capsys.readouterr().err)


# --------------------------------------------------------------------------------------------------
# exit codes, in this process


def test_status_of_an_empty_key_asks_for_a_seed(tmp_path, capsys):
    """Nothing stored: exit 3, and the message says how to seed."""
    code, _ = call("status", "--store", str(tmp_path), "--key", KEY)
    assert (3, True) == (code, "seed it" in capsys.readouterr().err)


def test_token_of_an_empty_key_without_an_endpoint_asks_for_a_seed(capsys):
    """token with nothing stored and no --token-url: exit 3."""
    code, _ = call("token", "--store", "memory:", "--key", KEY)
    assert (3, True) == (code, "nothing is stored" in capsys.readouterr().err)


def test_token_of_an_expired_credential_without_an_endpoint_is_exit_3(tmp_path, capsys):
    """A credential past expiry and no --token-url to renew it: exit 3, no token printed."""
    store = ["--store", str(tmp_path), "--key", KEY]
    call("seed", *store, stdin=json.dumps({"access_token": "a", "expires_at": time.time() - 5}))
    code, printed = call("token", *store)
    assert (3, "", True) == (code, printed, "no --token-url" in capsys.readouterr().err)


@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
def test_a_store_that_cannot_be_reached_is_exit_4(capsys):
    """A Redis nobody listens on: exit 4, within the store's timeout."""
    code, _ = call("status", "--store", "redis://127.0.0.1:1/0", "--key", KEY)
    assert (4, True) == (code, "the store is unavailable" in capsys.readouterr().err)


def test_a_token_endpoint_refusal_is_exit_5(tmp_path, capsys):
    """The endpoint answers 404 (a wrong URL) for an expired credential: exit 5."""
    store = ["--store", str(tmp_path), "--key", KEY]
    past = {"access_token": "a", "refresh_token": "r", "expires_at": time.time() - 5}
    call("seed", *store, stdin=json.dumps(past))
    with run_loopback_server_in_thread() as server:
        code, _ = call(
            "token", *store, "--token-url", f"{server.base_url}/nowhere", "--client-id", "app"
        )
    assert (5, True) == (code, "answered 404" in capsys.readouterr().err)


def test_a_corrupt_record_is_exit_5(tmp_path, capsys):
    """A record the store cannot read: exit 5."""
    (tmp_path / "loopback%2Faccount.record").write_bytes(b"garbage")
    code, _ = call("status", "--store", str(tmp_path), "--key", KEY)
    assert 5 == code


def test_a_record_that_is_not_a_credential_is_exit_5(tmp_path):
    """A framed record whose JSON is not a credential: exit 5."""
    (tmp_path / "loopback%2Faccount.record").write_bytes(b"1\n{}")
    assert (5, "") == call("status", "--store", str(tmp_path), "--key", KEY)


@pytest.mark.parametrize(
    ("stdin", "said"),
    [
        ("not json", "it is not JSON"),
        ("[1]", "reads a JSON object"),
        ('{"access_token": 5}', "access_token must be a str"),
    ],
)
def test_a_seed_that_is_not_a_credential_is_a_usage_error(stdin, said, capsys):
    """seed's stdin must be a JSON credential: exit 2 with what is wrong."""
    code, _ = call("seed", "--store", "memory:", "--key", KEY, stdin=stdin)
    assert (2, True) == (code, said in capsys.readouterr().err)


def test_a_token_url_needs_a_client_id(capsys):
    """--token-url without --client-id: exit 2."""
    code, _ = call("token", "--store", "memory:", "--key", KEY, "--token-url", "https://x/t")
    assert (2, True) == (code, "needs --client-id" in capsys.readouterr().err)


def test_the_client_secret_comes_from_the_environment(monkeypatch, capsys):
    """--client-secret-env names a variable; unset, it is a usage error (exit 2)."""
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    arguments = ["--token-url", "https://x/t", "--client-id", "app"]
    code, _ = call(
        "token",
        "--store",
        "memory:",
        "--key",
        KEY,
        *arguments,
        "--client-secret-env",
        "NO_SUCH_SECRET",
    )
    assert (2, True) == (code, "NO_SUCH_SECRET is not set" in capsys.readouterr().err)


def test_a_renewal_that_fails_before_expiry_prints_the_still_valid_token(tmp_path, capsys):
    """Due but not expired, the endpoint refusing: the current token, and a note on stderr."""
    store = ["--store", str(tmp_path), "--key", KEY]
    due = {"access_token": "still-good", "refresh_token": "r", "expires_in": 10}
    call("seed", *store, stdin=json.dumps(due))
    with run_loopback_server_in_thread() as server:
        code, printed = call(
            "token", *store, "--token-url", f"{server.base_url}/nowhere", "--client-id", "app"
        )
    assert (0, "still-good\n", True) == (code, printed, "still valid" in capsys.readouterr().err)


def test_a_secret_from_the_environment_is_used_and_never_printed(tmp_path, monkeypatch, capsys):
    """With the secret set, token renews through the endpoint; the secret is nowhere in output."""
    monkeypatch.setenv("THE_SECRET", "s3cret-value")
    store = ["--store", str(tmp_path), "--key", KEY]
    with run_loopback_server_in_thread() as server:
        call("seed", *store, stdin=json.dumps({**sign_in(server), "expires_in": 10}))
        code, printed = call(
            "token", *store, "--token-url", server.token_url, "--client-id", "app",
            "--client-secret-env", "THE_SECRET", "--scope", "chat",
        )  # fmt: skip
    output = printed + capsys.readouterr().err
    assert (0, False) == (code, "s3cret-value" in output)


@pytest.mark.parametrize(
    ("credential", "said"),
    [
        ({"access_token": "a"}, "generation 1, expiry unknown, no refresh token"),
        ({"access_token": "a", "refresh_token": "r", "expires_at": 1.0}, "expired 1970-01-01"),
    ],
)
def test_status_says_expiry_and_whether_a_refresh_token_is_held(credential, said):
    """status: the generation, the expiry (or that it passed or is unknown), never a token."""
    _, printed = call("seed", "--store", "memory:", "--key", KEY, stdin=json.dumps(credential))
    assert said in printed


def test_seed_with_replace_overwrites(tmp_path):
    """seed --replace writes generation 2 over a stored credential."""
    store = ["--store", str(tmp_path), "--key", KEY]
    call("seed", *store, stdin='{"access_token": "a"}')
    _, printed = call("seed", *store, "--replace", stdin='{"access_token": "b"}')
    assert printed.startswith("generation 2")


def test_redis_urls_name_a_redis_store():
    """redis://, rediss:// and unix:// URLs make a RedisStore; a path a FileStore."""
    from refresh_middleware._shared._cli import store_of

    kinds = [
        type(store_of(where)).__name__ for where in ("redis://h:1/0", "credentials", "file:///x")
    ]
    assert ["RedisStore", "FileStore", "FileStore"] == kinds


def test_a_directory_that_cannot_be_made_is_exit_4(capsys):
    """A FileStore where no directory can be made (inside /proc): exit 4."""
    code, _ = call(
        "seed", "--store", "/proc/self/no-store", "--key", KEY, stdin='{"access_token": "a"}'
    )
    assert (4, True) == (code, "the store is unavailable" in capsys.readouterr().err)


def test_token_prints_a_fresh_token_as_it_is(tmp_path):
    """A credential far from expiry: token prints it without renewing (no endpoint needed)."""
    store = ["--store", str(tmp_path), "--key", KEY]
    call("seed", *store, stdin='{"access_token": "fresh", "expires_in": 3600}')
    assert (0, "fresh\n") == call("token", *store)


def test_any_other_failure_is_exit_5_with_its_type(monkeypatch, capsys):
    """An error of no known kind (here raised by a stand-in run) is exit 5, its type named."""

    async def broken(options, stdin):
        raise OSError("disk on fire")

    monkeypatch.setattr("refresh_middleware._shared._cli._run", broken)
    code, _ = call("status", "--store", "memory:", "--key", KEY)
    assert (5, True) == (code, "OSError: disk on fire" in capsys.readouterr().err)
