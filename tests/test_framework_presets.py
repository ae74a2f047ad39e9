"""The framework presets are found by class, with no framework imported."""

from __future__ import annotations

import pytest

from refresh_middleware._kinds import preset_for


def lookalike(module: str, qualname: str) -> type:
    """A subclass of a class named like a framework's base, as a user's model class is."""
    base = type(qualname, (), {"__module__": module, "__qualname__": qualname})
    return type("UsersModel", (base,), {"__module__": "users.models"})


@pytest.mark.parametrize(
    ("module", "qualname", "calls", "streams"),
    [
        (
            "langchain_core.language_models.chat_models",
            "BaseChatModel",
            ("ainvoke", "invoke"),
            ("astream", "stream"),
        ),
        ("pydantic_ai.models", "Model", ("request",), ("request_stream",)),
        ("agents.models.interface", "Model", ("get_response",), ("stream_response",)),
        (
            "litellm.router",
            "Router",
            ("embedding", "aembedding"),
            ("completion", "acompletion", "text_completion", "atext_completion"),
        ),
        (
            "llama_index.core.llms.llm",
            "LLM",
            ("chat", "achat", "complete", "acomplete"),
            ("stream_chat", "astream_chat", "stream_complete", "astream_complete"),
        ),
    ],
)
def test_a_frameworks_model_class_finds_its_preset(module, qualname, calls, streams):
    """A subclass of a framework's base class gets that framework's calls and streams."""
    preset = preset_for(lookalike(module, qualname))
    assert (calls, streams) == (preset.calls, preset.streams)


@pytest.mark.parametrize(
    ("module", "qualname", "hand_out"),
    [
        ("langchain_core.language_models.chat_models", "BaseChatModel", "_astream_events_v1_v2"),
        ("langchain_core.language_models.chat_models", "BaseChatModel", "__or__"),
        ("langchain_core.language_models.chat_models", "BaseChatModel", "bind"),
        ("pydantic_ai.models", "Model", "_with_serving_wrapper"),
        ("llama_index.core.llms.llm", "LLM", "achat_with_tools"),
    ],
)
def test_framework_presets_hand_the_model_out(module, qualname, hand_out):
    """What the framework reaches the model through runs with the proxy as `self`."""
    assert hand_out in preset_for(lookalike(module, qualname)).hands_out


def test_a_class_named_like_a_framework_base_elsewhere_has_no_preset():
    """`Model` of another package is not the Agents SDK's or pydantic-ai's."""
    assert None is preset_for(lookalike("agentsmith.models", "Model"))
