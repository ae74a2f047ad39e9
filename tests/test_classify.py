"""The classifier: `is_unauthorized_error` and `kind_of`."""

from __future__ import annotations

import enum
import gc
import http
import types
import weakref

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from conftest import ANTHROPIC_MESSAGE
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from refresh_middleware.classify import ItemKind, is_unauthorized_error, kind_of

REQUEST = httpx2.Request("POST", "http://127.0.0.1/")
ANTHROPIC_STREAM_AUTH_BODY = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "token expired"},
}
OPENAI_STREAM_AUTH_BODY = {
    "message": "token expired",
    "type": "invalid_request_error",
    "code": "invalid_api_key",
}


def error_with(message="request failed", **attributes):
    """An exception carrying `attributes`, as SDK errors carry status and body."""
    error = RuntimeError(message)
    for name, value in attributes.items():
        setattr(error, name, value)
    return error


def chained(outer, inner, *, implicit=False):
    """`outer` raised while `inner` was handled (implicit) or `from inner` (explicit)."""
    if implicit:
        outer.__context__ = inner
    else:
        outer.__cause__ = inner
    return outer


# --------------------------------------------------------------------------------------------------
# is_unauthorized_error, messages

SEED_VECTORS = [
    ("HTTP 401", True),
    ("status=401 Unauthorized", True),
    ("Invalid API key", True),
    ("invalid_api_key", True),
    ("token_expired", True),
    ("Authentication failed", True),
    ("UNAUTHORIZED", True),
    ("rate limited", False),
    ("network error", False),
    ("", False),
    ("internal server error", False),
]


@pytest.mark.parametrize(("message", "expected"), SEED_VECTORS)
def test_seed_1_is_unauthorized_error_matches_expected_strings(message, expected):
    """Every positive and negative message vector of the seed's test 1 is classified the same."""
    assert expected == is_unauthorized_error(message)


@pytest.mark.parametrize(("message", "expected"), SEED_VECTORS)
def test_exception_messages_are_read_like_strings(message, expected):
    """An exception without structure is judged by its message, as the bare string would be."""
    assert expected == is_unauthorized_error(RuntimeError(message))


@pytest.mark.parametrize(
    "message",
    [
        "401 Unauthorized",
        "unauthenticated",
        "Unauthorised",
        "invalid_token",
        "Incorrect API key provided",
        "invalid x-api-key",
        "Your token has expired",
        "expired access token",
        "401 - Invalid credentials",
    ],
)
def test_other_unauthorized_messages_are_recognised(message):
    """Common provider wordings of rejected or expired credentials are unauthorized."""
    assert True is is_unauthorized_error(message)


@pytest.mark.parametrize(
    "message",
    [
        "403 Forbidden",
        "Forbidden",
        "HTTP 403",
        "407 Proxy Authentication Required",
        "Proxy Authentication Required",
        "proxy-auth failed",
        "HTTP 407",
        "status=401 Unauthorized, forbidden by policy",
    ],
)
def test_forbidden_and_proxy_authentication_are_not_unauthorized(message):
    """403 and proxy authentication (407) cannot be fixed by new provider credentials."""
    assert False is is_unauthorized_error(message)


@pytest.mark.parametrize("message", ["error 4011", "request id x401y", "1401 items"])
def test_401_inside_other_numbers_is_not_a_status(message):
    """`401` counts only as a whole number, not as digits inside another token."""
    assert False is is_unauthorized_error(message)


@pytest.mark.parametrize(
    "error",
    [KeyError(401), KeyError("401"), IndexError(401), "401", "HTTP error 4011"],
    ids=["KeyError(401)", "KeyError('401')", "IndexError(401)", "bare", "longer number"],
)
def test_a_bare_401_is_no_status(error):
    """A 401 that no word makes an HTTP status (a missing key, an index) is not unauthorized."""
    assert False is is_unauthorized_error(error)


@pytest.mark.parametrize(
    "message", ["row 401 missing", "processed 401 of 500 items", "ValueError: line 401"]
)
def test_401_as_a_count_or_a_position_is_not_unauthorized(message):
    """Text that uses 401 as a count, a row or a line number is not unauthorized."""
    assert False is is_unauthorized_error(ValueError(message))


@pytest.mark.parametrize(
    "message",
    [
        "Error code: 401 - {'error': {'message': 'expired'}}",
        "HTTP/1.1 401",
        "status code 401",
        "status_code=401",
        "http_status: 401",
        "server responded with error 401",
        "response 401 from gateway",
    ],
)
def test_401_after_a_word_that_makes_it_a_status_is_unauthorized(message):
    """`Error code: 401` (the SDKs' wording), `HTTP/1.1 401`, `status code 401` are statuses."""
    assert True is is_unauthorized_error(message)


@pytest.mark.parametrize(
    "message",
    [
        "Authentication service temporarily unavailable",
        "authentication backend timed out",
        "retrying authentication",
    ],
)
def test_authentication_without_a_failure_is_not_unauthorized(message):
    """The word `authentication` alone names a service, not rejected credentials."""
    assert False is is_unauthorized_error(message)


@pytest.mark.parametrize(
    "message",
    [
        "Authentication failed",
        "authentication_error",
        "AuthenticationError: bad key",
        "Authentication Fails, Your api key is invalid",
        "authentication required",
    ],
)
def test_authentication_with_a_failure_is_unauthorized(message):
    """`authentication failed` and its kin (error, fails, required) mean rejected credentials."""
    assert True is is_unauthorized_error(message)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"type": "server_error", "message": "Invalid API key"}},
        {"type": "api_error", "message": "HTTP 401"},
        {"error": {"code": "rate_limit_exceeded", "message": "token expired"}},
        {"error": {"type": "overloaded_error", "message": "Unauthorized"}},
    ],
)
def test_an_error_code_of_another_failure_outranks_the_message(body):
    """A body whose code names another failure (server, overload, rate) is judged by the code."""
    assert False is is_unauthorized_error(body)


def test_a_server_error_body_outranks_an_authentication_message():
    """A status-less SDK `APIError` whose body is a `server_error` is not unauthorized."""
    message = "Authentication service temporarily unavailable"
    body = {"message": message, "type": "server_error", "code": None}
    assert False is is_unauthorized_error(openai.APIError(message, REQUEST, body=body))


@pytest.mark.parametrize(
    "body",
    [
        {"type": "error", "message": "HTTP 401"},
        {"error": {"type": "invalid_request_error", "message": "Incorrect API key provided"}},
    ],
)
def test_envelope_types_leave_the_message_to_speak(body):
    """`error` and `invalid_request_error` name no failure: the message still counts."""
    assert True is is_unauthorized_error(body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"HTTP 401", True),
        (bytearray(b"invalid_api_key"), True),
        (b"403 Forbidden", False),
        (b"\xff\xfe HTTP 401 \xff", True),
        (b"", False),
    ],
)
def test_bytes_are_decoded_and_read_as_text(value, expected):
    """Bytes and bytearrays are read as (lenient) UTF-8 text."""
    assert expected == is_unauthorized_error(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (401, True),
        (http.HTTPStatus.UNAUTHORIZED, True),
        (403, False),
        (407, False),
        (500, False),
        (200, False),
        (0, False),
        (-1, False),
        (10**100, False),
        (True, False),
        (None, False),
        (3.5, False),
    ],
)
def test_bare_status_codes(value, expected):
    """A bare int is a status: only 401 is unauthorized; bools, None and floats are not statuses."""
    assert expected == is_unauthorized_error(value)


# --------------------------------------------------------------------------------------------------
# is_unauthorized_error, structure

STATUS_NAMES = ["status_code", "status", "code", "http_status"]


@pytest.mark.parametrize("status", [401, "401"])
@pytest.mark.parametrize("name", STATUS_NAMES)
def test_status_attribute_401_is_unauthorized(name, status):
    """An object whose status attribute is 401 (int or digit string) is unauthorized."""
    assert True is is_unauthorized_error(types.SimpleNamespace(**{name: status}))


@pytest.mark.parametrize("status", [401, "401"])
@pytest.mark.parametrize("name", STATUS_NAMES)
def test_status_attribute_401_on_an_exception_is_unauthorized(name, status):
    """An exception whose status attribute is 401 is unauthorized whatever its message says."""
    assert True is is_unauthorized_error(error_with("boom", **{name: status}))


@pytest.mark.parametrize("status", [401, "401"])
@pytest.mark.parametrize("name", STATUS_NAMES)
def test_status_key_401_in_a_mapping_is_unauthorized(name, status):
    """An error body whose status key is 401 is unauthorized."""
    assert True is is_unauthorized_error({name: status})


def test_response_status_code_401_is_unauthorized():
    """An error whose `.response.status_code` is 401 is unauthorized."""
    error = error_with(response=types.SimpleNamespace(status_code=401))
    assert True is is_unauthorized_error(error)


def test_httpx_status_error_401_is_unauthorized():
    """httpx's `HTTPStatusError` for a 401 response is unauthorized."""
    request = httpx.Request("POST", "http://127.0.0.1/")
    response = httpx.Response(401, request=request)
    error = httpx.HTTPStatusError("boom", request=request, response=response)
    assert True is is_unauthorized_error(error)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"type": "authentication_error"}},
        {"error": {"code": "invalid_api_key"}},
        {"error": {"error_code": "token_expired"}},
        {"error": {"code": 401, "status": "UNAUTHENTICATED"}},
        {"error": "invalid_api_key"},
        {"detail": {"type": "Unauthenticated"}},
        {"body": {"error": {"type": "authentication_error"}}},
        {"message": "Invalid API key"},
        {"response": {"status_code": 401}},
    ],
)
def test_error_bodies_naming_authentication_are_unauthorized(body):
    """JSON error bodies that name an authentication failure are unauthorized."""
    assert True is is_unauthorized_error(body)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"type": "overloaded_error"}},
        {"error": {"type": "permission_error", "message": "Forbidden"}},
        {"type": "error"},
        {"message": 42},
        {},
    ],
)
def test_other_error_bodies_are_not_unauthorized(body):
    """Error bodies that do not name an authentication failure are not unauthorized."""
    assert False is is_unauthorized_error(body)


@pytest.mark.parametrize("body", [{"error": {"type": "authentication_error"}}, "invalid_api_key"])
def test_exception_body_naming_authentication_is_unauthorized(body):
    """An exception whose `.body` names an authentication failure is unauthorized."""
    assert True is is_unauthorized_error(error_with("stream failed", body=body))


def test_object_message_attribute_is_read():
    """A plain error object with a `.message` naming expired credentials is unauthorized."""
    assert True is is_unauthorized_error(types.SimpleNamespace(message="token expired"))


def test_anthropic_like_mid_stream_error_is_unauthorized():
    """Anthropic's mid-stream shape (status 200, body with an authentication error) is read."""
    error = error_with("token expired", status_code=200, body=ANTHROPIC_STREAM_AUTH_BODY)
    assert True is is_unauthorized_error(error)


def test_openai_like_mid_stream_error_is_unauthorized():
    """OpenAI's mid-stream shape (no status, body code `invalid_api_key`) is read."""
    error = error_with("stream failed", body=OPENAI_STREAM_AUTH_BODY)
    assert True is is_unauthorized_error(error)


@pytest.mark.parametrize(
    "error",
    [
        error_with("authentication backend unavailable", status_code=500),
        error_with("Unauthorized", status=503, body={"error": {"type": "authentication_error"}}),
        {"status": 500, "message": "invalid api key"},
        types.SimpleNamespace(response=types.SimpleNamespace(status_code=502), message="401"),
    ],
)
def test_error_status_outranks_the_message(error):
    """A non-401 error status settles the question even when the text mentions authentication."""
    assert False is is_unauthorized_error(error)


@pytest.mark.parametrize("status", ["²", "9" * 5000, "4O1", " 401", ""])
def test_odd_status_strings_do_not_hide_the_body(status):
    """A status string that is no HTTP status is ignored, and the rest is still read."""
    body = {"status": status, "error": {"type": "authentication_error"}}
    assert True is is_unauthorized_error(body)


def test_success_status_alone_is_not_unauthorized():
    """A success status with nothing else to read is not unauthorized."""
    assert False is is_unauthorized_error(error_with("ok", status_code=200))


# --------------------------------------------------------------------------------------------------
# is_unauthorized_error, chains, groups, cycles


@pytest.mark.parametrize("implicit", [False, True])
def test_cause_or_context_401_makes_the_wrapper_unauthorized(implicit):
    """A wrapper raised from (or while handling) a 401 is unauthorized."""
    error = chained(RuntimeError("request failed"), error_with(status_code=401), implicit=implicit)
    assert True is is_unauthorized_error(error)


def test_deep_cause_chain_is_walked():
    """A 401 several links down a `__cause__` chain is found."""
    error = error_with(status_code=401)
    for depth in range(10):
        error = chained(RuntimeError(f"layer {depth}"), error)
    assert True is is_unauthorized_error(error)


def test_chain_without_401_is_not_unauthorized():
    """A chain whose links say nothing about credentials is not unauthorized."""
    error = chained(RuntimeError("request failed"), ConnectionError("network error"))
    assert False is is_unauthorized_error(error)


def test_wrapper_message_outranks_its_cause():
    """A wrapper that says Forbidden is not unauthorized even if its cause mentions a 401."""
    error = chained(RuntimeError("403 Forbidden"), RuntimeError("HTTP 401"))
    assert False is is_unauthorized_error(error)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (ExceptionGroup("g", [ValueError("x"), RuntimeError("HTTP 401")]), True),
        (
            ExceptionGroup(
                "outer", [ValueError("x"), ExceptionGroup("inner", [error_with(status_code=401)])]
            ),
            True,
        ),
        (ExceptionGroup("g", [RuntimeError("403 Forbidden"), RuntimeError("HTTP 401")]), True),
        (ExceptionGroup("g", [RuntimeError("403 Forbidden")]), False),
        (ExceptionGroup("g", [ValueError("x"), KeyError("y")]), False),
        (BaseExceptionGroup("g", [KeyboardInterrupt(), RuntimeError("HTTP 401")]), True),
    ],
)
def test_exception_groups_are_walked(group, expected):
    """A (nested) exception group is unauthorized when any member is."""
    assert expected == is_unauthorized_error(group)


def test_cyclic_chain_ends():
    """A cycle of causes without a 401 ends, and is not unauthorized."""
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert False is is_unauthorized_error(first)


def test_cyclic_chain_with_401_is_unauthorized():
    """A cycle of causes and contexts that contains a 401 is unauthorized."""
    first, second, third = RuntimeError("a"), RuntimeError("b"), RuntimeError("HTTP 401")
    first.__context__, second.__context__, third.__cause__ = second, first, first
    second.__cause__ = third
    assert True is is_unauthorized_error(first)


def test_self_referential_body_ends():
    """An error body that contains itself ends, and is not unauthorized."""
    body: dict[str, object] = {"type": "error"}
    body["error"] = body
    body["body"] = body
    assert False is is_unauthorized_error(body)


def test_object_whose_body_is_itself_ends():
    """An error whose `.body` is the error itself ends."""
    error = RuntimeError("boom")
    error.body = error  # type: ignore[attr-defined]
    assert False is is_unauthorized_error(error)


def test_very_deep_chain_returns():
    """A chain far deeper than any real error is cut short instead of overflowing the stack."""
    error: BaseException = error_with(status_code=401)
    for _ in range(5000):
        error = chained(RuntimeError("layer"), error)
    assert isinstance(is_unauthorized_error(error), bool)


# --------------------------------------------------------------------------------------------------
# is_unauthorized_error, real SDK errors


@pytest.mark.parametrize("sdk", [openai, anthropic])
def test_sdk_authentication_error_is_unauthorized(sdk):
    """The SDKs' `AuthenticationError` for a 401 response is unauthorized."""
    response = httpx2.Response(401, request=REQUEST)
    error = sdk.AuthenticationError("Error code: 401", response=response, body=None)
    assert True is is_unauthorized_error(error)


@pytest.mark.parametrize("sdk", [openai, anthropic])
def test_sdk_permission_denied_is_not_unauthorized(sdk):
    """The SDKs' `PermissionDeniedError` (403) is not unauthorized, even with an auth message."""
    response = httpx2.Response(403, request=REQUEST)
    error = sdk.PermissionDeniedError("invalid api key", response=response, body=None)
    assert False is is_unauthorized_error(error)


@pytest.mark.parametrize("sdk", [openai, anthropic])
def test_sdk_server_error_mentioning_auth_is_not_unauthorized(sdk):
    """The SDKs' `InternalServerError` (500) is not unauthorized, even with an auth message."""
    response = httpx2.Response(500, request=REQUEST)
    error = sdk.InternalServerError("authentication service down", response=response, body=None)
    assert False is is_unauthorized_error(error)


def test_anthropic_mid_stream_api_status_error_is_unauthorized():
    """Anthropic's mid-stream `APIStatusError` (status 200, authentication body) is unauthorized."""
    response = httpx2.Response(200, request=REQUEST)
    error = anthropic.APIStatusError(
        "token expired", response=response, body=ANTHROPIC_STREAM_AUTH_BODY
    )
    assert True is is_unauthorized_error(error)


def test_anthropic_mid_stream_overloaded_error_is_not_unauthorized():
    """Anthropic's mid-stream `APIStatusError` for an overload is not unauthorized."""
    response = httpx2.Response(200, request=REQUEST)
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    error = anthropic.APIStatusError("Overloaded", response=response, body=body)
    assert False is is_unauthorized_error(error)


def test_openai_mid_stream_api_error_is_unauthorized():
    """OpenAI's mid-stream `APIError` (no status, `invalid_api_key` body) is unauthorized."""
    error = openai.APIError("token expired", REQUEST, body=OPENAI_STREAM_AUTH_BODY)
    assert True is is_unauthorized_error(error)


def test_openai_mid_stream_server_error_is_not_unauthorized():
    """OpenAI's mid-stream `APIError` for a server error is not unauthorized."""
    body = {"message": "The server had an error", "type": "server_error", "code": None}
    error = openai.APIError("The server had an error", REQUEST, body=body)
    assert False is is_unauthorized_error(error)


class MidStreamFallbackError(Exception):
    """A look-alike of LiteLLM's: a `ServiceUnavailableError` (status 503, or 500 in the versions
    the design notes saw) that holds the error it replaced and is raised from it."""

    def __init__(self, message, *, original_exception=None, status_code=503):
        self.status_code = status_code
        self.message = f"litellm.MidStreamFallbackError: {message}"
        self.original_exception = original_exception
        self.llm_provider = "openai"
        self.model = "gpt"
        self.response = httpx.Response(
            status_code, request=httpx.Request("POST", "https://openai.com/v1/")
        )
        super().__init__(self.message)


def litellm_mid_stream(original, *, status_code=503, linked=True):
    """LiteLLM's wrapping of an error raised while streaming, as its stream wrapper does it."""
    wrapper = MidStreamFallbackError(
        str(original), original_exception=original, status_code=status_code
    )
    if linked:
        wrapper.__cause__ = original
    return wrapper


def openai_401():
    response = httpx2.Response(401, request=REQUEST)
    return openai.AuthenticationError("Error code: 401", response=response, body=None)


@pytest.mark.parametrize("status_code", [500, 503])
def test_litellm_mid_stream_fallback_with_a_401_cause_is_unauthorized(status_code):
    """LiteLLM's MidStreamFallbackError (500 or 503) around a 401 is judged by the 401."""
    assert True is is_unauthorized_error(litellm_mid_stream(openai_401(), status_code=status_code))


def test_litellm_mid_stream_fallback_holding_a_401_unlinked_is_unauthorized():
    """The 401 kept in `original_exception` counts even when the wrapper is raised unlinked."""
    assert True is is_unauthorized_error(litellm_mid_stream(openai_401(), linked=False))


def test_litellm_mid_stream_fallback_around_another_error_is_not_unauthorized():
    """Around a server error, the wrapper is not unauthorized, whatever its own text says."""
    response = httpx2.Response(500, request=REQUEST)
    original = openai.InternalServerError(
        "AuthenticationError upstream", response=response, body=None
    )
    assert False is is_unauthorized_error(litellm_mid_stream(original))


def test_litellm_mid_stream_fallback_without_a_cause_is_not_unauthorized():
    """A fallback raised for a refusal, with nothing wrapped, is not unauthorized."""
    assert False is is_unauthorized_error(MidStreamFallbackError("Unauthorized"))


class APIConnectionError(Exception):
    """A look-alike of LiteLLM's: status 500 for any error that has none of its own."""

    def __init__(self, message):
        self.status_code = 500
        self.message = f"litellm.APIConnectionError: {message}"
        super().__init__(self.message)


def litellm_router_mid_stream(original):
    """The chain LiteLLM's Router raises for a status-less error mid-stream (litellm 1.110)."""
    try:
        raise original
    except type(original):
        mapped = APIConnectionError(f"OpenAIException - {original}")
    fallback = litellm_mid_stream(mapped, status_code=500, linked=False)
    fallback.__context__ = original
    mapped.__cause__ = fallback
    return mapped


def test_litellm_router_mid_stream_token_expired_is_unauthorized():
    """The Router's APIConnectionError (500) over an auth error event is judged by the event."""
    original = openai.APIError("token expired", request=REQUEST, body=None)
    assert True is is_unauthorized_error(litellm_router_mid_stream(original))


def test_litellm_router_mid_stream_other_error_is_not_unauthorized():
    """The same chain over a stream that failed for another reason is not unauthorized."""
    original = openai.APIError("overloaded", request=REQUEST, body=None)
    assert False is is_unauthorized_error(litellm_router_mid_stream(original))


def test_another_wrappers_own_status_outranks_its_cause():
    """An error no dialect names as hiding its cause is judged by its own 500, not the 401."""
    error = chained(error_with("stream failed", status_code=500), openai_401())
    assert False is is_unauthorized_error(error)


def test_sdk_error_wrapped_by_the_host_is_unauthorized():
    """An SDK 401 raised as the cause of a host error, inside a trio-style group, is found."""
    response = httpx2.Response(401, request=REQUEST)
    sdk_error = openai.AuthenticationError("Error code: 401", response=response, body=None)
    group = ExceptionGroup("nursery", [chained(RuntimeError("provider failed"), sdk_error)])
    assert True is is_unauthorized_error(group)


# --------------------------------------------------------------------------------------------------
# is_unauthorized_error, never raises


class Boom(Exception):
    """What hostile objects raise."""


def _boom(*_args, **_kwargs):
    raise Boom


HOSTILE_METHODS = [
    "__str__",
    "__repr__",
    "__getattr__",
    "__eq__",
    "__hash__",
    "__bool__",
    "__len__",
    "__iter__",
    "__getitem__",
    "get",
]


def hostile(methods, base=object):
    """An instance of a `base` subclass whose `methods` all raise."""
    namespace = dict.fromkeys(methods, _boom)
    if base is dict:
        return type("HostileMapping", (dict,), namespace)({"type": "error"})
    if issubclass(base, BaseException):
        return type("HostileError", (base,), namespace)("HTTP 401")
    return type("Hostile", (base,), namespace)()


hostiles = st.builds(
    hostile,
    st.sets(st.sampled_from(HOSTILE_METHODS)),
    st.sampled_from([object, dict, RuntimeError]),
)


def test_hostile_object_is_not_unauthorized():
    """An object whose every inspection raises is classified False instead of raising."""
    assert False is is_unauthorized_error(hostile(HOSTILE_METHODS))


def _error_from(message, attributes, cause, context):
    error = RuntimeError(message)
    for name, value in attributes.items():
        setattr(error, name, value)
    if isinstance(cause, BaseException):
        error.__cause__ = cause
    if isinstance(context, BaseException):
        error.__context__ = context
    return error


ATTRIBUTE_NAMES = [
    "status_code",
    "status",
    "code",
    "http_status",
    "response",
    "type",
    "error_code",
    "body",
    "error",
    "detail",
    "message",
]
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.sampled_from([401, "401", 403, "authentication_error", "invalid_api_key", "Forbidden"])
    | hostiles
)


def _extend(children):
    keys = st.sampled_from(ATTRIBUTE_NAMES) | st.text(max_size=5)
    exceptions = st.builds(
        _error_from,
        st.text(max_size=20),
        st.dictionaries(st.sampled_from(ATTRIBUTE_NAMES), children, max_size=3),
        children,
        children,
    )
    return (
        st.lists(children, max_size=4)
        | st.dictionaries(keys, children, max_size=4)
        | exceptions
        | st.lists(exceptions, min_size=1, max_size=3).map(lambda es: ExceptionGroup("g", es))
        | st.builds(types.SimpleNamespace, **dict.fromkeys(ATTRIBUTE_NAMES[:4], children))
    )


nested_values = st.recursive(leaves, _extend, max_leaves=20)


@given(nested_values)
def test_classifier_never_raises_on_nested_values(value):
    """Arbitrary nested dicts, lists, strings, ints and exceptions give a bool, never an error."""
    assert isinstance(is_unauthorized_error(value), bool)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=6), st.data())
def test_classifier_never_raises_on_cyclic_chains(messages, data):
    """Exceptions linked into cycles through causes and contexts give a bool, never an error."""
    errors = [RuntimeError(message) for message in messages]
    for error in errors:
        error.__cause__ = data.draw(st.sampled_from(errors))
        error.__context__ = data.draw(st.sampled_from(errors))
    assert isinstance(is_unauthorized_error(errors[0]), bool)


@given(hostiles, st.sampled_from(["bare", "body", "cause", "group", "value"]))
def test_classifier_never_raises_on_hostile_objects(value, placement):
    """Objects whose dunders raise give a bool, wherever they sit in the error."""
    if placement == "body":
        value = error_with(body=value)
    elif placement == "cause" and isinstance(value, BaseException):
        value = chained(RuntimeError("wrapper"), value)
    elif placement == "group" and isinstance(value, Exception):
        value = ExceptionGroup("g", [value])
    elif placement == "value":
        value = {"error": value}
    assert isinstance(is_unauthorized_error(value), bool)


# --------------------------------------------------------------------------------------------------
# kind_of


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"type": "message_start"}, ItemKind.METADATA),
        ({"type": "ping"}, ItemKind.METADATA),
        ({"type": "message_delta"}, ItemKind.METADATA),
        ({"type": "content_block_stop"}, ItemKind.METADATA),
        ({"type": "content_block_start"}, ItemKind.OUTPUT),
        ({"type": "content_block_delta"}, ItemKind.OUTPUT),
        ({"type": "message_stop"}, ItemKind.DONE),
        ({"type": "error"}, ItemKind.ERROR),
    ],
)
def test_anthropic_event_names(item, expected):
    """Anthropic's stream event names map to the kinds of the gate table."""
    assert expected == kind_of(item)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"kind": "usage"}, ItemKind.METADATA),
        ({"kind": "text"}, ItemKind.OUTPUT),
        ({"event": "done"}, ItemKind.DONE),
        ({"event": "error"}, ItemKind.ERROR),
        ({"type": "", "kind": "ping"}, ItemKind.METADATA),
        ({"type": None, "event": "message_stop"}, ItemKind.DONE),
        (types.MappingProxyType({"type": "heartbeat"}), ItemKind.METADATA),
    ],
)
def test_mapping_kind_and_event_fields(item, expected):
    """Mappings are read by `type`, then `kind`, then `event`."""
    assert expected == kind_of(item)


@pytest.mark.parametrize("item", [{}, {"type": 5}, {"type": ["error"]}, {"text": "done"}])
def test_mapping_without_a_name_is_output(item):
    """A mapping without a string name is output (unknown commits)."""
    assert ItemKind.OUTPUT == kind_of(item)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("response.output_text.delta", ItemKind.OUTPUT),
        ("response.created", ItemKind.METADATA),
        ("response.in_progress", ItemKind.METADATA),
        ("response.completed", ItemKind.DONE),
        ("response.output_item.done", ItemKind.OUTPUT),
        ("Message-Start", ItemKind.METADATA),
        ("  ping  ", ItemKind.METADATA),
        ("stream_end", ItemKind.DONE),
        ("raw_message_stop_event", ItemKind.DONE),
        ("usage_chunk", ItemKind.METADATA),
        ("tool_error", ItemKind.ERROR),
        ("terror", ItemKind.OUTPUT),
    ],
)
def test_event_names_are_normalised(name, expected):
    """Dots, dashes, spaces, case and raw_/_event/_delta/_chunk affixes do not change the kind."""
    assert expected == kind_of({"type": name})


class EventType(enum.Enum):
    USAGE = "usage"
    TEXT = "text"
    DONE = "done"


class StatusCode(enum.IntEnum):
    OK = 200


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (types.SimpleNamespace(type="ping"), ItemKind.METADATA),
        (types.SimpleNamespace(kind="done"), ItemKind.DONE),
        (types.SimpleNamespace(type="error", message="HTTP 401"), ItemKind.ERROR),
        (types.SimpleNamespace(type=None, kind="message_start"), ItemKind.METADATA),
        (types.SimpleNamespace(type=EventType.USAGE), ItemKind.METADATA),
        (types.SimpleNamespace(kind=EventType.DONE), ItemKind.DONE),
        (types.SimpleNamespace(type=EventType.TEXT), ItemKind.OUTPUT),
    ],
)
def test_object_type_and_kind_attributes(item, expected):
    """Objects are read by their `type` or `kind` attribute; enum members count by value."""
    assert expected == kind_of(item)


def test_non_string_type_attribute_falls_back_to_the_class_name():
    """An object whose `type` is no name (an int enum here) is read by its class name."""
    usage = type("Usage", (), {"type": StatusCode.OK})()
    assert ItemKind.METADATA == kind_of(usage)


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("TextDelta", ItemKind.OUTPUT),
        ("ThinkingDelta", ItemKind.OUTPUT),
        ("ToolUseStart", ItemKind.OUTPUT),
        ("ToolInputDelta", ItemKind.OUTPUT),
        ("SignatureDelta", ItemKind.OUTPUT),
        ("RedactedThinking", ItemKind.OUTPUT),
        ("Usage", ItemKind.METADATA),
        ("Error", ItemKind.ERROR),
        ("ErrorDelta", ItemKind.ERROR),
        ("APIError", ItemKind.ERROR),
        ("Done", ItemKind.DONE),
        ("RawMessageStartEvent", ItemKind.METADATA),
        ("RawMessageStopEvent", ItemKind.DONE),
        ("Ping", ItemKind.METADATA),
        ("SomethingNew", ItemKind.OUTPUT),
    ],
)
def test_typed_deltas_by_class_name(class_name, expected):
    """Typed deltas without a `type` field are classified by their class name."""
    assert expected == kind_of(type(class_name, (), {})())


@pytest.mark.parametrize("item", ["Hello", "", "done", "error", b"ping", b""])
def test_strings_and_bytes_are_output(item):
    """Text and bytes are output, even when they spell a metadata or done name."""
    assert ItemKind.OUTPUT == kind_of(item)


@pytest.mark.parametrize(
    "item",
    [
        RuntimeError("rate limited"),
        RuntimeError("HTTP 401"),
        KeyboardInterrupt(),
        ExceptionGroup("g", [ValueError()]),
    ],
)
def test_exceptions_are_errors(item):
    """An exception yielded as an item is an error item."""
    assert ItemKind.ERROR == kind_of(item)


@pytest.mark.parametrize("item", [None, 42, 3.5, [1, 2], (), object()])
def test_unknown_items_are_output(item):
    """Anything not recognised is output: duplicated output is worse than a missed retry."""
    assert ItemKind.OUTPUT == kind_of(item)


def test_hostile_item_is_output():
    """An item whose every inspection raises is output instead of an error."""
    assert ItemKind.OUTPUT == kind_of(hostile(HOSTILE_METHODS))


def test_hostile_mapping_is_output():
    """A mapping whose lookups raise is output instead of an error."""
    assert ItemKind.OUTPUT == kind_of(hostile(HOSTILE_METHODS, base=dict))


@given(nested_values | hostiles)
def test_kind_of_never_raises(item):
    """Whatever it is given, `kind_of` answers with an `ItemKind`."""
    assert isinstance(kind_of(item), ItemKind)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            RawMessageStartEvent.model_validate(
                {"type": "message_start", "message": ANTHROPIC_MESSAGE}
            ),
            ItemKind.METADATA,
        ),
        (
            RawContentBlockStartEvent.model_validate(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
            ItemKind.OUTPUT,
        ),
        (
            RawContentBlockDeltaEvent.model_validate(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                }
            ),
            ItemKind.OUTPUT,
        ),
        (
            RawMessageDeltaEvent.model_validate(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                }
            ),
            ItemKind.METADATA,
        ),
        (RawMessageStopEvent.model_validate({"type": "message_stop"}), ItemKind.DONE),
        (anthropic.types.Usage(input_tokens=3, output_tokens=4), ItemKind.METADATA),
    ],
)
def test_anthropic_sdk_events(item, expected):
    """The anthropic SDK's typed stream events classify like their event names."""
    assert expected == kind_of(item)


def test_openai_sdk_chunk_is_output():
    """The openai SDK's `ChatCompletionChunk` is output."""
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
            "created": 0,
            "model": "gpt",
            "object": "chat.completion.chunk",
        }
    )
    assert ItemKind.OUTPUT == kind_of(chunk)


def openai_chunk(choices):
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "choices": choices,
            "created": 0,
            "model": "m",
            "object": "chat.completion.chunk",
        }
    )


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ([{"index": 0, "delta": {"role": "assistant", "content": ""}}], ItemKind.METADATA),
        ([], ItemKind.METADATA),
        ([{"index": 0, "delta": {"content": "Hi"}}], ItemKind.OUTPUT),
        ([{"index": 0, "delta": {"refusal": "no"}}], ItemKind.OUTPUT),
        (
            [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f"}}]}}],
            ItemKind.OUTPUT,
        ),
        ([{"index": 0, "delta": {}, "finish_reason": "stop"}], ItemKind.METADATA),
    ],
)
def test_openai_chunks_commit_only_when_they_carry_output(choices, expected):
    """The role-only first chunk and a usage-only last chunk are metadata; content commits."""
    assert expected == kind_of(openai_chunk(choices))
    assert expected == kind_of(openai_chunk(choices).model_dump())


def test_a_chunk_with_odd_choices_is_metadata():
    """A chunk-like mapping whose choices are not a list carries no output."""
    assert ItemKind.METADATA == kind_of({"object": "chat.completion.chunk", "choices": None})


def test_a_suppressed_context_is_not_read():
    """`raise ... from None` hides the context: a 401 there does not count."""
    try:
        try:
            raise PermissionError("HTTP 401")
        except PermissionError:
            raise ValueError("bad value") from None
    except ValueError as error:
        hidden = error

    assert not is_unauthorized_error(hidden)


def test_kind_of_does_not_keep_classes_made_on_the_fly_alive():
    """kind_of remembers how to read each class while it lives: a class made on the fly and
    dropped is collected, and its plan goes with it."""
    from refresh_middleware._kinds import _engine

    made = type("Made", (), {})
    assert ItemKind.OUTPUT == kind_of(made())
    ref, key = weakref.ref(made), id(made)

    del made
    gc.collect()

    assert (None, False) == (ref(), key in _engine._CLASSIFIERS)


def test_pydantic_fields_are_read_from_extras_and_properties():
    """Fields of pydantic models are found in extras and in properties, as getattr would."""
    import pydantic

    from refresh_middleware.classify import DEFAULT_USAGE

    class Loose(pydantic.BaseModel, extra="allow"):
        pass

    class Computed(pydantic.BaseModel):
        @property
        def usage(self):
            return {"input_tokens": 5}

    assert {"input_tokens": 3} == DEFAULT_USAGE.read(Loose(usage={"input_tokens": 3}))
    assert {"input_tokens": 5} == DEFAULT_USAGE.read(Computed())
    assert None is DEFAULT_USAGE.read(Loose())


def test_chunk_deltas_with_extra_fields_and_choices_without_delta():
    """A delta carrying output in an extra field commits; a choice with no delta does not."""
    reasoning = openai_chunk([{"index": 0, "delta": {"reasoning_content": "thinking"}}])
    no_delta = {"object": "chat.completion.chunk", "choices": [{"index": 0}]}

    assert ItemKind.OUTPUT == kind_of(reasoning)
    assert ItemKind.METADATA == kind_of(no_delta)
