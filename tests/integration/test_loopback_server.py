"""The loopback LLM server, exercised through raw httpx and the official SDKs, unwrapped."""

from __future__ import annotations

import dataclasses
import json
import threading

import anthropic
import httpx
import openai
import pytest
import trio

from refresh_middleware.testing import _server
from refresh_middleware.testing._server import (
    CHUNKS_HEADER,
    LoopbackLLMServer,
    LoopbackStats,
    open_loopback_server,
    run_loopback_server_in_thread,
)

# The SDKs leave their inner SSE generators suspended: openai breaks out at ``[DONE]`` and both
# abandon them when a stream raises. Trio warns when it collects them; that is the SDKs' doing,
# not the server's, so only those generators are let through.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.:ResourceWarning"
)

MESSAGES = [{"role": "user", "content": "hello"}]
DEFAULT_TEXT = "chunk-0 chunk-1 chunk-2 "


def openai_client(server, api_key):
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key=api_key, max_retries=0)


def anthropic_client(server, api_key):
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key=api_key, max_retries=0)


async def chat(server, api_key, **kwargs):
    async with openai_client(server, api_key) as client:
        return await client.chat.completions.create(model="m", messages=MESSAGES, **kwargs)


async def openai_stream(server, api_key, **kwargs):
    async with openai_client(server, api_key) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, **kwargs
        )
        return [chunk async for chunk in stream]


async def message(server, api_key, **kwargs):
    async with anthropic_client(server, api_key) as client:
        return await client.messages.create(model="m", max_tokens=16, messages=MESSAGES, **kwargs)


async def collect(items, received):
    """Append each item to ``received`` as it arrives, so items before an error are kept."""
    async for item in items:
        received.append(item)


async def anthropic_events(server, api_key, received):
    """Collect the events of ``messages.create(stream=True)`` into ``received``."""
    async with anthropic_client(server, api_key) as client:
        stream = await client.messages.create(
            model="m", max_tokens=16, messages=MESSAGES, stream=True
        )
        async with stream:
            await collect(stream, received)


async def anthropic_stream_texts(server, api_key, received):
    """Collect the text of ``messages.stream()`` into ``received``."""
    async with (
        anthropic_client(server, api_key) as client,
        client.messages.stream(model="m", max_tokens=16, messages=MESSAGES) as stream,
    ):
        await collect(stream.text_stream, received)


def texts_of(events):
    return [event.delta.text for event in events if event.type == "content_block_delta"]


async def post(url, **kwargs):
    async with httpx.AsyncClient() as client:
        return await client.post(url, **kwargs)


# Token endpoint


async def test_token_endpoint_issues_bearer_token_with_configured_ttl():
    """POST /oauth/token answers a bearer token that lives token_ttl seconds."""
    async with open_loopback_server(token_ttl=42.0) as server:
        response = await post(server.token_url, data={"grant_type": "client_credentials"})
    body = response.json()
    assert (200, "bearer", 42.0) == (response.status_code, body["token_type"], body["expires_in"])


async def test_token_from_endpoint_authenticates_chat(loopback):
    """A token from the endpoint is accepted by the chat API."""
    response = await post(loopback.token_url, data={"grant_type": "client_credentials"})
    completion = await chat(loopback, response.json()["access_token"])
    assert DEFAULT_TEXT == completion.choices[0].message.content


async def test_token_endpoint_accepts_json_body(loopback):
    """A JSON client-credentials body is accepted like a form."""
    response = await post(loopback.token_url, json={"grant_type": "client_credentials"})
    assert 200 == response.status_code


async def test_token_endpoint_treats_bare_post_as_client_credentials(loopback):
    """A POST without a body gets a token."""
    response = await post(loopback.token_url)
    assert 200 == response.status_code


async def test_token_endpoint_rejects_other_grant_types(loopback):
    """Any grant other than client_credentials is an unsupported_grant_type 400."""
    response = await post(loopback.token_url, data={"grant_type": "password"})
    assert (400, {"error": "unsupported_grant_type"}) == (response.status_code, response.json())


async def test_token_endpoint_rejects_malformed_json(loopback):
    """A JSON body that does not parse is an invalid_request 400."""
    response = await post(
        loopback.token_url, content=b"{", headers={"content-type": "application/json"}
    )
    assert (400, {"error": "invalid_request"}) == (response.status_code, response.json())


async def test_tokens_are_distinct(loopback):
    """Every issued token is a fresh random string."""
    assert 2 == len({loopback.issue_token(), loopback.issue_token()})


# Expiry


async def test_token_is_accepted_until_its_ttl_elapses(manual_clock):
    """A token still works a moment before token_ttl has passed."""
    async with open_loopback_server(token_ttl=10.0, clock=manual_clock) as server:
        token = server.issue_token()
        manual_clock.advance(9.999)
        completion = await chat(server, token)
    assert DEFAULT_TEXT == completion.choices[0].message.content


async def test_token_is_refused_once_its_ttl_elapses(manual_clock):
    """A token is an expired 401 once token_ttl has passed."""
    async with open_loopback_server(token_ttl=10.0, clock=manual_clock) as server:
        token = server.issue_token()
        manual_clock.advance(10.0)
        with pytest.raises(openai.AuthenticationError) as caught:
            await chat(server, token)
    assert "token expired" == caught.value.body["message"]


async def test_expire_all_refuses_existing_tokens(loopback, token):
    """expire_all makes every issued token an expired 401."""
    loopback.expire_all()
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await message(loopback, token)
    assert "token expired" == caught.value.body["error"]["message"]


async def test_expire_all_spares_tokens_issued_afterwards(loopback, token):
    """A token issued after expire_all works."""
    loopback.expire_all()
    reply = await message(loopback, loopback.issue_token())
    assert DEFAULT_TEXT == reply.content[0].text


async def test_rotate_makes_existing_tokens_unknown(loopback, token):
    """After rotate, an issued token is refused as unknown, not as expired."""
    loopback.rotate()
    with pytest.raises(openai.AuthenticationError) as caught:
        await chat(loopback, token)
    assert "missing or unknown bearer token" == caught.value.body["message"]


# OpenAI dialect


async def test_openai_sdk_parses_json_completion(loopback, token):
    """A non-stream chat completion carries the chunks' text and usage."""
    completion = await chat(loopback, token)
    assert (DEFAULT_TEXT, 1, 3, 4) == (
        completion.choices[0].message.content,
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    )


async def test_openai_sdk_streams_text_chunks(loopback, token):
    """A chat stream opens with the role, then one chunk per text, then finish_reason stop."""
    chunks = await openai_stream(loopback, token)
    assert [
        ("assistant", ""),
        (None, "chunk-0 "),
        (None, "chunk-1 "),
        (None, "chunk-2 "),
        (None, None),
    ] == [(chunk.choices[0].delta.role, chunk.choices[0].delta.content) for chunk in chunks]


async def test_openai_stream_ends_with_usage_when_asked(loopback, token):
    """stream_options.include_usage adds a final chunk without choices that holds usage."""
    chunks = await openai_stream(loopback, token, stream_options={"include_usage": True})
    assert ([], 3) == (chunks[-1].choices, chunks[-1].usage.completion_tokens)


async def test_openai_sdk_raises_authentication_error_for_unknown_token(loopback):
    """An unknown token is AuthenticationError 401 with an invalid_api_key body."""
    with pytest.raises(openai.AuthenticationError) as caught:
        await chat(loopback, "not-a-token")
    assert (401, "invalid_api_key") == (caught.value.status_code, caught.value.body["code"])


async def test_openai_stream_with_expired_token_raises_at_create(loopback, token):
    """With stream=True a refused token raises AuthenticationError before any chunk."""
    loopback.expire_all()
    with pytest.raises(openai.AuthenticationError) as caught:
        await openai_stream(loopback, token)
    assert 401 == caught.value.status_code


async def test_missing_authorization_is_refused(loopback):
    """A chat request without credentials is a 401 with an OpenAI error body."""
    response = await post(f"{loopback.openai_base_url}/chat/completions", json={})
    assert (401, "invalid_request_error") == (
        response.status_code,
        response.json()["error"]["type"],
    )


async def test_openai_injected_error_after_content_raises_api_error(loopback, token):
    """An error injected into an OpenAI stream is a status-less APIError with the error body."""
    loopback.inject_stream_error("after_content", api="openai")
    with pytest.raises(openai.APIError) as caught:
        await openai_stream(loopback, token)
    assert (openai.APIError, "invalid_api_key") == (type(caught.value), caught.value.body["code"])


# Anthropic dialect


async def test_anthropic_sdk_parses_json_message(loopback, token):
    """A non-stream message carries the chunks' text and usage."""
    reply = await message(loopback, token)
    assert (DEFAULT_TEXT, "end_turn", 1, 3) == (
        reply.content[0].text,
        reply.stop_reason,
        reply.usage.input_tokens,
        reply.usage.output_tokens,
    )


async def test_anthropic_create_stream_sends_the_real_event_sequence(loopback, token):
    """messages.create(stream=True) yields the API's event sequence (ping is skipped by the SDK)."""
    received = []
    await anthropic_events(loopback, token, received)
    assert [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] == [event.type for event in received]


async def test_anthropic_messages_stream_accumulates_text_and_usage(loopback, token):
    """messages.stream() yields the texts and a final message with the output usage."""
    async with (
        anthropic_client(loopback, token) as client,
        client.messages.stream(model="m", max_tokens=16, messages=MESSAGES) as stream,
    ):
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert (["chunk-0 ", "chunk-1 ", "chunk-2 "], 3) == (texts, final.usage.output_tokens)


async def test_anthropic_sdk_raises_authentication_error_for_unknown_token(loopback):
    """An unknown x-api-key is AuthenticationError 401 with an authentication_error body."""
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await message(loopback, "not-a-token")
    assert (401, "authentication_error") == (
        caught.value.status_code,
        caught.value.body["error"]["type"],
    )


async def test_anthropic_accepts_bearer_authorization(loopback, token):
    """/v1/messages accepts Authorization: Bearer as well as x-api-key."""
    response = await post(
        f"{loopback.base_url}/v1/messages",
        json={"messages": MESSAGES},
        headers={"authorization": f"Bearer {token}"},
    )
    assert (200, DEFAULT_TEXT) == (response.status_code, response.json()["content"][0]["text"])


async def test_injected_error_before_content_is_api_status_error_200(loopback, token):
    """An error before content is a plain APIStatusError, status 200, authentication_error body."""
    loopback.inject_stream_error("before_content")
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_events(loopback, token, [])
    assert (anthropic.APIStatusError, 200, "authentication_error") == (
        type(caught.value),
        caught.value.status_code,
        caught.value.body["error"]["type"],
    )


async def test_injected_error_before_content_follows_message_start_only(loopback, token):
    """An error before content arrives right after message_start, before any block."""
    loopback.inject_stream_error("before_content")
    received = []
    with pytest.raises(anthropic.APIStatusError):
        await anthropic_events(loopback, token, received)
    assert ["message_start"] == [event.type for event in received]


@pytest.mark.parametrize("loopback_options", [{"chunks": 4}])
async def test_injected_error_after_content_follows_half_the_text(loopback, token):
    """An error after content arrives once half the text chunks were sent."""
    loopback.inject_stream_error("after_content")
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_events(loopback, token, received)
    assert (["chunk-0 ", "chunk-1 "], "authentication_error") == (
        texts_of(received),
        caught.value.body["error"]["type"],
    )


async def test_injected_error_surfaces_in_messages_stream(loopback, token):
    """messages.stream() raises the same APIStatusError from its text stream."""
    loopback.inject_stream_error("after_content")
    texts = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_stream_texts(loopback, token, texts)
    assert (["chunk-0 "], 200) == (texts, caught.value.status_code)


async def test_injected_errors_apply_to_count_streams_then_stop(loopback, token):
    """inject_stream_error(count=2) breaks the next two streams, not the third."""
    loopback.inject_stream_error("before_content", count=2)
    outcomes = []
    for _ in range(3):
        try:
            await anthropic_events(loopback, token, [])
        except anthropic.APIStatusError:
            outcomes.append("error")
        else:
            outcomes.append("ok")
    assert ["error", "error", "ok"] == outcomes


async def test_injected_errors_leave_non_stream_requests_alone(loopback, token):
    """A pending injected error waits for a stream; JSON replies are unaffected."""
    loopback.inject_stream_error("before_content")
    reply = await message(loopback, token)
    received = []
    with pytest.raises(anthropic.APIStatusError):
        await anthropic_events(loopback, token, received)
    assert (DEFAULT_TEXT, ["message_start"]) == (reply.content[0].text, [e.type for e in received])


async def wire_lines(url, **kwargs):
    async with httpx.AsyncClient() as client, client.stream("POST", url, **kwargs) as response:
        return [line async for line in response.aiter_lines() if line]


async def test_anthropic_wire_stream_names_every_event_and_pings(loopback, token):
    """On the wire each SSE event is named, and a ping follows message_start."""
    lines = await wire_lines(
        f"{loopback.base_url}/v1/messages",
        json={"messages": MESSAGES, "stream": True},
        headers={"x-api-key": token},
    )
    assert ["message_start", "ping", "content_block_start"] == [
        line.removeprefix("event: ") for line in lines if line.startswith("event: ")
    ][:3]


async def test_anthropic_wire_error_event_is_authentication_error(loopback, token):
    """An injected error is an SSE event named error with an authentication_error body."""
    loopback.inject_stream_error("before_content")
    lines = await wire_lines(
        f"{loopback.base_url}/v1/messages",
        json={"messages": MESSAGES, "stream": True},
        headers={"x-api-key": token},
    )
    expected_body = {
        "type": "error",
        "error": {"type": "authentication_error", "message": "token expired"},
    }
    assert ("event: error", expected_body) == (
        lines[-2],
        json.loads(lines[-1].removeprefix("data: ")),
    )


async def test_openai_wire_stream_ends_with_done(loopback, token):
    """An OpenAI stream ends with data: [DONE]."""
    lines = await wire_lines(
        f"{loopback.openai_base_url}/chat/completions",
        json={"messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {token}"},
    )
    assert "data: [DONE]" == lines[-1]


# Request shape


async def test_malformed_json_body_is_bad_request(loopback, token):
    """A chat body that is not JSON is an OpenAI-style 400."""
    response = await post(
        f"{loopback.openai_base_url}/chat/completions",
        content=b"{",
        headers={"authorization": f"Bearer {token}"},
    )
    assert (400, "invalid_request_error") == (
        response.status_code,
        response.json()["error"]["type"],
    )


async def test_non_object_body_is_bad_request(loopback, token):
    """A messages body that is not a JSON object is an Anthropic-style 400."""
    response = await post(f"{loopback.base_url}/v1/messages", json=[], headers={"x-api-key": token})
    assert (400, "invalid_request_error") == (
        response.status_code,
        response.json()["error"]["type"],
    )


async def test_chunks_header_overrides_reply_length(loopback, token):
    """The x-loopback-chunks header sets the number of chunks for one request."""
    completion = await chat(loopback, token, extra_headers={CHUNKS_HEADER: "2"})
    assert "chunk-0 chunk-1 " == completion.choices[0].message.content


async def test_request_model_is_echoed(loopback, token):
    """The reply names the model the request asked for."""
    completion = await chat(loopback, token)
    assert "m" == completion.model


async def test_chunk_delay_spaces_streamed_chunks():
    """chunk_delay makes a stream take at least chunks * chunk_delay."""
    async with open_loopback_server(chunk_delay=0.05) as server:
        started = trio.current_time()
        await openai_stream(server, server.issue_token())
        elapsed = trio.current_time() - started
    assert elapsed >= 0.15


# Stats


async def test_stats_count_what_the_server_did(loopback, token):
    """Stats count requests per endpoint, 401s (responses and injected), tokens and streams."""
    await post(loopback.token_url)
    await chat(loopback, token)
    await openai_stream(loopback, token)
    loopback.inject_stream_error("before_content")
    with pytest.raises(anthropic.APIStatusError):
        await anthropic_events(loopback, token, [])
    await anthropic_events(loopback, token, [])
    with pytest.raises(anthropic.AuthenticationError):
        await message(loopback, "not-a-token")
    expected = LoopbackStats(
        token_requests=1,
        chat_completions_requests=2,
        messages_requests=3,
        unauthorized=2,
        tokens_issued=2,
        streams_completed=2,
    )
    assert expected == loopback.stats


def test_stats_snapshot_is_frozen():
    """A stats snapshot cannot be changed."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoopbackLLMServer().stats.unauthorized = 1


# Lifecycle


async def test_base_url_is_loopback_with_an_os_chosen_port(loopback):
    """The server listens on 127.0.0.1 on a port the OS picked."""
    host, port = loopback.base_url.removeprefix("http://").split(":")
    assert ("127.0.0.1", True) == (host, int(port) > 0)


async def test_base_url_raises_once_the_server_stopped():
    """base_url raises RuntimeError after the server stopped."""
    async with open_loopback_server() as server:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


async def test_repr_shows_the_base_url(loopback):
    """repr names the address, for failing tests to show."""
    assert f"<LoopbackLLMServer base_url={loopback.base_url!r}>" == repr(loopback)


@pytest.mark.parametrize("options", [{"token_ttl": 0.0}, {"chunks": 0}, {"chunk_delay": -1.0}])
def test_invalid_options_are_rejected(options):
    """Non-positive ttl, fewer than one chunk and negative delays are ValueError."""
    with pytest.raises(ValueError, match="token_ttl must be positive"):
        LoopbackLLMServer(**options)


def test_threaded_server_serves_sync_openai_client():
    """A sync openai client gets a completion from the threaded server."""
    with (
        run_loopback_server_in_thread() as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key=server.issue_token()) as client,
    ):
        completion = client.chat.completions.create(model="m", messages=MESSAGES)
    assert DEFAULT_TEXT == completion.choices[0].message.content


def test_threaded_server_controls_work_from_the_calling_thread():
    """expire_all called from another thread refuses the token on the server's thread."""
    with (
        run_loopback_server_in_thread() as server,
        openai.OpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        ) as client,
    ):
        server.expire_all()
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="m", messages=MESSAGES)
    assert 401 == caught.value.status_code


def test_threaded_server_joins_its_thread_on_exit():
    """Leaving the block stops the server and joins its thread."""
    with run_loopback_server_in_thread():
        pass
    assert [] == [t for t in threading.enumerate() if t.name == "loopback-llm-server"]


def test_threaded_server_start_failure_raises_runtime_error(monkeypatch):
    """A server thread that fails to start raises RuntimeError chained to the cause."""

    async def refuse_to_serve(*args, **kwargs):
        raise OSError("no sockets today")

    monkeypatch.setattr(_server, "serve", refuse_to_serve)
    with (
        pytest.raises(RuntimeError, match="failed to start") as caught,
        run_loopback_server_in_thread(),
    ):
        pass
    assert [OSError] == [type(error) for error in caught.value.__cause__.exceptions]
