"""The loopback identity provider: sign-in codes, rotation, reuse detection, held grants."""

from __future__ import annotations

import httpx
import pytest
import trio

from refresh_middleware.testing import OAuthStats

AUTH_HEADER = "authorization"


async def grant(server, **form: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(server.token_url, data=form)


async def sign_in(server) -> dict[str, object]:
    code = server.oauth.authorization_code()
    response = await grant(server, grant_type="authorization_code", code=code)
    return response.json()


async def rotate(server, refresh_token: object) -> httpx.Response:
    return await grant(server, grant_type="refresh_token", refresh_token=str(refresh_token))


async def chat_status(server, access_token: object) -> int:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.openai_base_url}/chat/completions",
            json={"model": "m", "messages": []},
            headers={AUTH_HEADER: f"Bearer {access_token}"},
        )
    return response.status_code


async def test_a_sign_in_code_buys_tokens_that_chat(loopback):
    """An authorization code is exchanged for an access token the chat endpoint accepts."""
    tokens = await sign_in(loopback)
    assert (200, "bearer", 3600.0) == (
        await chat_status(loopback, tokens["access_token"]),
        tokens["token_type"],
        tokens["expires_in"],
    )


async def test_a_refresh_token_is_rotated(loopback):
    """A refresh grant returns a new access token and a new refresh token."""
    tokens = await sign_in(loopback)
    rotated = (await rotate(loopback, tokens["refresh_token"])).json()
    assert (True, 200) == (
        rotated["refresh_token"] != tokens["refresh_token"],
        await chat_status(loopback, rotated["access_token"]),
    )


async def test_a_reused_refresh_token_revokes_the_family(loopback):
    """A refresh token used twice is refused, and every token of its family stops working."""
    tokens = await sign_in(loopback)
    rotated = (await rotate(loopback, tokens["refresh_token"])).json()
    reused = await rotate(loopback, tokens["refresh_token"])
    assert (400, "invalid_grant", 401, 401) == (
        reused.status_code,
        reused.json()["error"],
        await chat_status(loopback, rotated["access_token"]),
        await chat_status(loopback, tokens["access_token"]),
    )
    assert (
        OAuthStats(
            codes_issued=1,
            code_grants=1,
            refresh_grants=1,
            reuse_detections=1,
            families_revoked=1,
            invalid_grants=1,
        )
        == loopback.oauth.stats
    )


async def test_the_latest_refresh_token_of_a_revoked_family_is_refused(loopback):
    """After a reuse, even the family's newest refresh token is refused (not counted as reuse)."""
    tokens = await sign_in(loopback)
    rotated = (await rotate(loopback, tokens["refresh_token"])).json()
    await rotate(loopback, tokens["refresh_token"])
    refused = await rotate(loopback, rotated["refresh_token"])
    assert ("refresh token revoked", 1) == (
        refused.json()["error_description"],
        loopback.oauth.stats.reuse_detections,
    )


async def test_a_code_used_twice_revokes_what_it_bought(loopback):
    """An authorization code exchanged twice is reuse: its family is revoked."""
    code = loopback.oauth.authorization_code()
    first = (await grant(loopback, grant_type="authorization_code", code=code)).json()
    again = await grant(loopback, grant_type="authorization_code", code=code)
    assert (400, 401, 1) == (
        again.status_code,
        await chat_status(loopback, first["access_token"]),
        loopback.oauth.stats.families_revoked,
    )


async def test_a_family_is_revoked_once(loopback):
    """Reusing a code again, then revoking everything, revokes its family once."""
    code = loopback.oauth.authorization_code()
    for _ in range(3):
        await grant(loopback, grant_type="authorization_code", code=code)
    loopback.oauth.revoke_all()
    assert (2, 1) == (
        loopback.oauth.stats.reuse_detections,
        loopback.oauth.stats.families_revoked,
    )


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "authorization_code", "code": "made-up"},
        {"grant_type": "authorization_code"},
        {"grant_type": "refresh_token", "refresh_token": "made-up"},
        {"grant_type": "refresh_token"},
    ],
)
async def test_unknown_codes_and_tokens_are_invalid_grants(loopback, form):
    """A code or refresh token the server never issued is an invalid_grant."""
    response = await grant(loopback, **form)
    assert (400, "invalid_grant", 1) == (
        response.status_code,
        response.json()["error"],
        loopback.oauth.stats.invalid_grants,
    )


async def test_a_held_grant_waits_for_the_release(loopback):
    """While grants are held, a grant waits (counted as held) until released."""
    tokens = await sign_in(loopback)
    loopback.oauth.hold()
    loopback.oauth.hold()  # holding twice is holding
    answers: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: _append_status(answers, rotate(loopback, tokens["refresh_token"]))
        )
        while loopback.oauth.stats.held == 0:  # noqa: ASYNC110 - the server's own count
            await trio.sleep(0.01)
        answers.append(0)
        loopback.oauth.release()
    assert ([0, 200], 0) == (answers, loopback.oauth.stats.held)


async def _append_status(answers: list[int], response) -> None:
    answers.append((await response).status_code)


async def test_a_held_grant_whose_client_leaves_is_dropped(loopback):
    """A held grant whose client goes away is never answered: its refresh token stays unused."""
    tokens = await sign_in(loopback)
    loopback.oauth.hold()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rotate, loopback, tokens["refresh_token"])
        # Leave once the server holds the grant: a fixed wait raced a loaded machine, where the
        # client could leave before its request arrived, and nothing was ever abandoned.
        while loopback.oauth.stats.held == 0:  # noqa: ASYNC110 - the server's own count
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    while loopback.oauth.stats.abandoned == 0:  # noqa: ASYNC110 - the server's own count
        await trio.sleep(0.01)
    loopback.oauth.release()
    loopback.oauth.release()  # releasing twice is releasing
    assert (200, 0) == (
        (await rotate(loopback, tokens["refresh_token"])).status_code,
        loopback.oauth.stats.reuse_detections,
    )


async def test_revoke_all_logs_everyone_out(loopback):
    """revoke_all revokes every family: their tokens stop working."""
    first, second = await sign_in(loopback), await sign_in(loopback)
    loopback.oauth.revoke_all()
    assert (401, 401, 2) == (
        await chat_status(loopback, first["access_token"]),
        await chat_status(loopback, second["access_token"]),
        loopback.oauth.stats.families_revoked,
    )


async def test_grants_counts_both_kinds():
    """OAuthStats.grants adds sign-ins and rotations."""
    assert 5 == OAuthStats(code_grants=2, refresh_grants=3).grants


async def test_json_grants_are_read_too(loopback):
    """The token endpoint reads JSON bodies as well as forms."""
    code = loopback.oauth.authorization_code()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            loopback.token_url, json={"grant_type": "authorization_code", "code": code}
        )
    assert 200 == response.status_code


async def test_a_provider_that_does_not_rotate_keeps_the_refresh_token_good(loopback):
    """With rotating off, a grant answers no refresh token, and the old one works again."""
    tokens = await sign_in(loopback)
    loopback.oauth.rotating = False
    first = (await rotate(loopback, tokens["refresh_token"])).json()
    second = await rotate(loopback, tokens["refresh_token"])
    assert (False, 200, 2, 0) == (
        "refresh_token" in first,
        second.status_code,
        loopback.oauth.stats.refresh_grants,
        loopback.oauth.stats.reuse_detections,
    )
