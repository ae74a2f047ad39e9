"""google-genai on Vertex AI with `google_credentials()`, over loopback (issue 20).

``genai.Client(vertexai=True, credentials=..., project=..., location=...)`` with its base URL
pointed at the loopback server, whose gemini dialect answers the Vertex AI paths; the loopback
identity provider rotates refresh tokens and counts reuse.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from google import genai
from google.auth.transport.requests import AuthorizedSession
from google.genai import types

from refresh_middleware import refresh_on_401
from refresh_middleware.shared import (
    Credential,
    MemoryStore,
    OAuth2RefreshGrant,
    SharedCredential,
)
from refresh_middleware.testing import run_loopback_server_in_thread

KEY = "loopback/vertex-account"
MODEL_PATH = "/v1beta1/projects/p/locations/l/publishers/google/models/gemini:generateContent"
BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
FULL_TEXT = "chunk-0 chunk-1 chunk-2 "


def shared_on(server, *, expires_in: float) -> SharedCredential:
    """A SharedCredential seeded with a sign-in's tokens, set to expire in `expires_in` s."""
    credential = SharedCredential(
        MemoryStore(), key=KEY, fetch=OAuth2RefreshGrant(server.token_url, client_id="app")
    )
    code = server.oauth.authorization_code()
    tokens = httpx.post(
        server.token_url, data={"grant_type": "authorization_code", "code": code}
    ).json()
    credential.seed_sync(
        Credential(tokens["access_token"], tokens["refresh_token"], time.time() + expires_in)
    )
    return credential


def vertex_client(server, credential: SharedCredential) -> genai.Client:
    return genai.Client(
        vertexai=True,
        credentials=credential.google_credentials(),
        project="loopback-project",
        location="us-central1",
        http_options=types.HttpOptions(base_url=server.base_url),
    )


def test_eight_threads_on_a_token_near_expiry_make_one_grant():
    """The sync client in 8 threads, the token a minute from expiry: 8 answers, 1 grant, no 401."""
    with run_loopback_server_in_thread() as server:
        client = vertex_client(server, shared_on(server, expires_in=60))
        barrier = threading.Barrier(8)
        texts: list[str] = []

        def call() -> None:
            barrier.wait()
            texts.append(client.models.generate_content(model="gemini", contents="hi").text or "")

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = server.oauth.stats
        figures = (stats.refresh_grants, stats.reuse_detections, server.stats.unauthorized)
    assert ([FULL_TEXT] * 8, (1, 0, 0)) == (texts, figures)


def test_the_async_client_refreshes_in_its_worker_thread_once_for_twenty_callers():
    """client.aio on asyncio, 20 calls and streams near expiry: refreshed in a thread, 1 grant."""
    with run_loopback_server_in_thread() as server:
        client = vertex_client(server, shared_on(server, expires_in=60))

        async def call(index: int) -> str:
            models = client.aio.models
            if index % 2:
                stream = await models.generate_content_stream(model="gemini", contents="hi")
                return "".join([chunk.text or "" async for chunk in stream])
            return (await models.generate_content(model="gemini", contents="hi")).text or ""

        async def main() -> list[str]:
            texts = await asyncio.gather(*(call(index) for index in range(20)))
            await client.aio.aclose()
            return list(texts)

        texts = asyncio.run(main())
        stats = server.oauth.stats
        figures = (stats.refresh_grants, stats.reuse_detections, server.stats.unauthorized)
    assert ([FULL_TEXT] * 20, (1, 0, 0)) == (texts, figures)


def test_google_auths_own_session_renews_once_after_a_401_and_resends():
    """AuthorizedSession: a 401 makes it call refresh on a good-looking token: renewed, resent."""
    with run_loopback_server_in_thread() as server:
        session = AuthorizedSession(shared_on(server, expires_in=3600).google_credentials())
        first = session.post(server.base_url + MODEL_PATH, json=BODY)
        server.expire_all()
        second = session.post(server.base_url + MODEL_PATH, json=BODY)
        session.close()
        stats = server.oauth.stats
        figures = (stats.refresh_grants, stats.reuse_detections, server.stats.unauthorized)
    assert (200, 200, (1, 0, 1)) == (first.status_code, second.status_code, figures)


def test_genai_with_refresh_on_401_renews_once_for_ten_callers_after_a_401():
    """A token refused early: refresh_on_401 calls the credentials' refresh once, 10/10 answered."""
    with run_loopback_server_in_thread() as server:
        vertex = shared_on(server, expires_in=3600).google_credentials()
        client = refresh_on_401(
            genai.Client(
                vertexai=True,
                credentials=vertex,
                project="loopback-project",
                location="us-central1",
                http_options=types.HttpOptions(base_url=server.base_url),
            ),
            # In place: the client reads the credentials' new token at its next request.
            refresh=lambda _stale: vertex.refresh(None),
            calls=("aio.models.generate_content",),
            streams=("aio.models.generate_content_stream",),
        )

        async def main() -> list[str]:
            models = client.aio.models
            await models.generate_content(model="gemini", contents="hi")
            server.expire_all()
            replies = await asyncio.gather(
                *(models.generate_content(model="gemini", contents="hi") for _ in range(10))
            )
            await client.aio.aclose()
            return [reply.text or "" for reply in replies]

        texts = asyncio.run(main())
        stats = server.oauth.stats
        figures = (stats.refresh_grants, stats.reuse_detections, server.stats.unauthorized)
    assert ([FULL_TEXT] * 10, (1, 0, 10)) == (texts, figures)
