"""The loopback server's Responses API and Gemini API, read by the real SDKs, unwrapped."""

from __future__ import annotations

import dataclasses
import json
import typing

import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from refresh_middleware.testing._dialects import DIALECTS
from refresh_middleware.testing._server import Api, LoopbackStats

# The SDKs leave their inner SSE generators suspended (see test_loopback_server.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|google|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)

DEFAULT_TEXT = "chunk-0 chunk-1 chunk-2 "
TEXTS = ["chunk-0 ", "chunk-1 ", "chunk-2 "]


async def collect(items, received):
    """Append each item to ``received`` as it arrives, so items before an error are kept."""
    async for item in items:
        received.append(item)


async def wire_lines(url, **kwargs):
    async with httpx.AsyncClient() as client, client.stream("POST", url, **kwargs) as response:
        return [line async for line in response.aiter_lines() if line]


async def post(url, **kwargs):
    async with httpx.AsyncClient() as client:
        return await client.post(url, **kwargs)


# OpenAI Responses API


@pytest.fixture
async def responses(loopback, token):
    """An `AsyncOpenAI` on the loopback server, for its `responses` resource."""
    async with openai.AsyncOpenAI(
        base_url=loopback.openai_base_url, api_key=token, max_retries=0
    ) as client:
        yield client.responses


async def response_events(responses, received):
    """Collect the events of ``responses.create(stream=True)`` into ``received``."""
    stream = await responses.create(model="m", input="hi", stream=True)
    async with stream:
        await collect(stream, received)
    return received


async def test_responses_json_carries_text_and_usage(responses):
    """A non-stream response has the text as output_text and the usage of input and output."""
    response = await responses.create(model="m", input="hi")
    assert (DEFAULT_TEXT, "completed", 1, 3, 4) == (
        response.output_text,
        response.status,
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.total_tokens,
    )


async def test_responses_stream_sends_the_real_event_sequence(responses):
    """A stream opens with created and in_progress, sends text deltas, ends with completed."""
    events = await response_events(responses, [])
    assert [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ] == [event.type for event in events]


async def test_responses_stream_numbers_its_events_in_sequence(responses):
    """Every event carries the next sequence_number, from 0."""
    events = await response_events(responses, [])
    assert list(range(len(events))) == [event.sequence_number for event in events]


async def test_responses_stream_deltas_carry_the_text(responses):
    """The output_text.delta events carry the chunks, in order."""
    events = await response_events(responses, [])
    assert TEXTS == [event.delta for event in events if event.type == "response.output_text.delta"]


async def test_responses_stream_helper_accumulates_the_final_response(responses):
    """responses.stream() gives the final response with the whole text and the usage."""
    async with responses.stream(model="m", input="hi") as stream:
        texts = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert (TEXTS, DEFAULT_TEXT, 4) == (texts, final.output_text, final.usage.total_tokens)


async def test_responses_refused_token_raises_authentication_error(loopback, responses):
    """An expired token is AuthenticationError 401 with an invalid_api_key body."""
    loopback.expire_all()
    with pytest.raises(openai.AuthenticationError) as caught:
        await responses.create(model="m", input="hi")
    assert (401, "invalid_api_key") == (caught.value.status_code, caught.value.body["code"])


async def test_responses_stream_with_refused_token_raises_at_create(loopback, responses):
    """With stream=True a refused token raises AuthenticationError before any event."""
    loopback.expire_all()
    with pytest.raises(openai.AuthenticationError):
        await responses.create(model="m", input="hi", stream=True)


async def test_responses_injected_error_before_content_is_an_error_event(loopback, responses):
    """An error before content follows created and in_progress as an error event, not raised."""
    loopback.inject_stream_error("before_content", api="responses")
    events = await response_events(responses, [])
    assert (
        ["response.created", "response.in_progress", "error"],
        openai.types.responses.ResponseErrorEvent,
        "invalid_api_key",
    ) == ([event.type for event in events], type(events[-1]), events[-1].code)


async def test_responses_injected_error_after_content_follows_half_the_text(loopback, responses):
    """An error after content arrives once half the text was sent, and ends the stream."""
    loopback.inject_stream_error("after_content", api="responses")
    events = await response_events(responses, [])
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert (["chunk-0 "], "error") == (deltas, events[-1].type)


async def test_responses_wire_stream_names_every_event_and_sends_no_done(loopback, token):
    """On the wire each event is named, and nothing follows response.completed."""
    lines = await wire_lines(
        f"{loopback.openai_base_url}/responses",
        json={"input": "hi", "stream": True},
        headers={"authorization": f"Bearer {token}"},
    )
    assert ("event: response.created", "response.completed") == (
        lines[0],
        json.loads(lines[-1].removeprefix("data: "))["type"],
    )


async def test_responses_malformed_body_is_bad_request(loopback, token):
    """A Responses body that is not JSON is an OpenAI-style 400."""
    response = await post(
        f"{loopback.openai_base_url}/responses",
        content=b"{",
        headers={"authorization": f"Bearer {token}"},
    )
    assert (400, "invalid_request_error") == (
        response.status_code,
        response.json()["error"]["type"],
    )


# Gemini API


@pytest.fixture
async def gemini(loopback, token):
    """A google-genai client on the loopback server, with the httpx client that runs on trio."""
    async with httpx.AsyncClient() as http:
        options = genai_types.HttpOptions(base_url=loopback.base_url, httpx_async_client=http)
        yield genai.Client(api_key=token, http_options=options).aio.models


async def gemini_chunks(models, received):
    """Collect the chunks of ``generate_content_stream`` into ``received``."""
    await collect(await models.generate_content_stream(model="m", contents="hi"), received)
    return received


async def test_gemini_json_carries_text_and_usage(gemini):
    """generateContent answers the text, finish reason STOP and the token counts."""
    response = await gemini.generate_content(model="m", contents="hi")
    assert (DEFAULT_TEXT, genai_types.FinishReason.STOP, 1, 3, 4) == (
        response.text,
        response.candidates[0].finish_reason,
        response.usage_metadata.prompt_token_count,
        response.usage_metadata.candidates_token_count,
        response.usage_metadata.total_token_count,
    )


async def test_gemini_stream_sends_one_chunk_per_text_then_a_finishing_one(gemini):
    """A stream sends each text in its own chunk, then an empty one with finish reason STOP."""
    chunks = await gemini_chunks(gemini, [])
    assert [*[(text, None) for text in TEXTS], ("", genai_types.FinishReason.STOP)] == [
        (chunk.text, chunk.candidates[0].finish_reason) for chunk in chunks
    ]


async def test_gemini_stream_reports_usage_on_its_last_chunk(gemini):
    """Only the finishing chunk carries usage metadata."""
    chunks = await gemini_chunks(gemini, [])
    assert [None, None, None, 4] == [
        chunk.usage_metadata and chunk.usage_metadata.total_token_count for chunk in chunks
    ]


async def test_gemini_refused_key_raises_client_error_unauthenticated(loopback, gemini):
    """An expired key is ClientError 401 UNAUTHENTICATED, the message saying why."""
    loopback.expire_all()
    with pytest.raises(genai_errors.ClientError) as caught:
        await gemini.generate_content(model="m", contents="hi")
    assert (401, "UNAUTHENTICATED", "token expired") == (
        caught.value.code,
        caught.value.status,
        caught.value.message,
    )


async def test_gemini_stream_with_refused_key_raises_at_first_item(loopback, gemini):
    """generate_content_stream sends its request lazily: the 401 comes at the first item."""
    loopback.expire_all()
    stream = await gemini.generate_content_stream(model="m", contents="hi")
    with pytest.raises(genai_errors.ClientError) as caught:
        await anext(stream)
    assert 401 == caught.value.code


async def test_gemini_injected_error_before_content_raises_before_any_chunk(loopback, gemini):
    """An error before content is the stream's first chunk: ClientError 401, nothing before it."""
    loopback.inject_stream_error("before_content", api="gemini")
    received = []
    with pytest.raises(genai_errors.ClientError) as caught:
        await gemini_chunks(gemini, received)
    assert ([], 401, "UNAUTHENTICATED") == (received, caught.value.code, caught.value.status)


async def test_gemini_injected_error_after_content_follows_half_the_text(loopback, gemini):
    """An error after content arrives once half the text was sent."""
    loopback.inject_stream_error("after_content", api="gemini")
    received = []
    with pytest.raises(genai_errors.ClientError):
        await gemini_chunks(gemini, received)
    assert ["chunk-0 "] == [chunk.text for chunk in received]


async def test_gemini_wire_error_chunk_is_a_google_error_body(loopback, token):
    """On the wire an injected error is a data chunk with code, message and status."""
    loopback.inject_stream_error("before_content", api="gemini")
    lines = await wire_lines(
        f"{loopback.base_url}/v1beta/models/m:streamGenerateContent?alt=sse",
        json={"contents": []},
        headers={"x-goog-api-key": token},
    )
    expected = {"error": {"code": 401, "message": "token expired", "status": "UNAUTHENTICATED"}}
    assert [expected] == [json.loads(line.removeprefix("data: ")) for line in lines]


async def test_gemini_accepts_bearer_authorization_on_v1(loopback, token):
    """An OAuth access token as a bearer token works too, on the v1 path as on v1beta."""
    response = await post(
        f"{loopback.base_url}/v1/models/m:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"authorization": f"Bearer {token}"},
    )
    assert (200, DEFAULT_TEXT, 1) == (
        response.status_code,
        response.json()["candidates"][0]["content"]["parts"][0]["text"],
        response.json()["usageMetadata"]["promptTokenCount"],
    )


async def test_gemini_request_without_contents_counts_no_input(loopback, token):
    """A body without contents is answered, with a prompt of zero tokens."""
    response = await post(
        f"{loopback.base_url}/v1beta/models/m:generateContent",
        json={},
        headers={"x-goog-api-key": token},
    )
    assert 0 == response.json()["usageMetadata"]["promptTokenCount"]


async def test_gemini_refusal_on_the_wire_is_a_401_google_error(loopback):
    """Without a key the answer is status 401 with an UNAUTHENTICATED error body."""
    response = await post(f"{loopback.base_url}/v1beta/models/m:generateContent", json={})
    assert (401, 401, "UNAUTHENTICATED") == (
        response.status_code,
        response.json()["error"]["code"],
        response.json()["error"]["status"],
    )


async def test_gemini_unknown_method_is_not_found(loopback, token):
    """A model method other than (stream)generateContent is a 404 NOT_FOUND."""
    response = await post(
        f"{loopback.base_url}/v1beta/models/m:embedContent",
        json={},
        headers={"x-goog-api-key": token},
    )
    assert (404, "NOT_FOUND") == (response.status_code, response.json()["error"]["status"])


async def test_gemini_malformed_body_is_invalid_argument(loopback, token):
    """A body that is not JSON is a 400 INVALID_ARGUMENT."""
    response = await post(
        f"{loopback.base_url}/v1beta/models/m:generateContent",
        content=b"{",
        headers={"x-goog-api-key": token},
    )
    assert (400, "INVALID_ARGUMENT") == (response.status_code, response.json()["error"]["status"])


# Both


async def test_injected_errors_go_to_the_named_api_only(loopback, responses, gemini):
    """An error injected into Gemini streams leaves Responses streams whole."""
    loopback.inject_stream_error("before_content", api="gemini")
    events = await response_events(responses, [])
    with pytest.raises(genai_errors.ClientError):
        await gemini_chunks(gemini, [])
    assert "response.completed" == events[-1].type


async def test_stats_count_responses_and_gemini_requests(loopback, responses, gemini):
    """Stats count each API's requests, their 401s (responses and injected) and their streams."""
    await responses.create(model="m", input="hi")
    await response_events(responses, [])
    await gemini.generate_content(model="m", contents="hi")
    loopback.inject_stream_error("before_content", api="gemini")
    with pytest.raises(genai_errors.ClientError):
        await gemini_chunks(gemini, [])
    loopback.expire_all()
    with pytest.raises(openai.AuthenticationError):
        await responses.create(model="m", input="hi")
    expected = LoopbackStats(
        responses_requests=3,
        gemini_requests=2,
        unauthorized=2,
        tokens_issued=1,
        streams_completed=1,
    )
    assert expected == loopback.stats


# The dialect registry


def test_every_api_a_stream_error_can_name_has_a_dialect():
    """The dialects registered are exactly the APIs inject_stream_error takes."""
    assert set(typing.get_args(Api)) == {dialect.api for dialect in DIALECTS}


def test_every_dialect_counts_its_requests_in_a_stats_field():
    """Each dialect's request counter is a field of LoopbackStats."""
    fields = {field.name for field in dataclasses.fields(LoopbackStats)}
    assert [] == [dialect.counter for dialect in DIALECTS if dialect.counter not in fields]
