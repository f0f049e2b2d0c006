"""Plugins built for openkoi:provider 0.1.0, 0.2.0 and 0.2.1, side by side in one host.

The 0.2 plugins receive attachments, the schema, tool choice and reasoning, and their native
turn comes back on the next request; the 0.1.0 plugin keeps working for what 0.1.0 can say,
gets `tool_choice="none"` as a request without tools, and is refused (UnsupportedError, before
it runs) what its contract cannot carry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import _plugins
import pytest
from openkoi import Attachment, ChatRequest, Message, ToolDef, UnsupportedError
from openkoi._provider import collect
from openkoi.plugins._loader import load_plugin_file

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)
TOOLS = [ToolDef(name="lookup", parameters={"type": "object", "properties": {}})]


@pytest.fixture(autouse=True)
def _shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))


@pytest.fixture
async def both() -> AsyncIterator[tuple[Any, Any]]:
    new = load_plugin_file(_plugins.echo(), {})
    old = load_plugin_file(_plugins.echo(legacy=True), {})
    try:
        yield new, old
    finally:
        await new.aclose()
        await old.aclose()


async def test_the_two_plugins_speak_their_own_versions(both: tuple[Any, Any]) -> None:
    new, old = both
    assert new.runtime.export_name.endswith("@0.2.1") and not new.legacy
    assert old.runtime.export_name.endswith("@0.1.0") and old.legacy
    for provider in (new, old):
        answer = await provider.chat(ChatRequest(messages=[Message.user("hi")], tools=TOOLS))
        seen = json.loads(answer.content)
        assert seen["text"] == "hi" and seen["tools"] == ["lookup"]
        assert answer.usage.output_tokens == 4


async def test_a_0_2_plugin_gets_everything(both: tuple[Any, Any]) -> None:
    new, _ = both
    request = ChatRequest(
        messages=[Message.user("what is it?", [Attachment.of(PNG)])],
        tools=TOOLS,
        tool_choice="lookup",
        parallel_tool_calls=False,
        reasoning=3000,
        schema={"type": "object", "required": ["text"]},
    )
    answer = await new.chat(request)
    seen = json.loads(answer.content)
    assert seen["parts"] == [["image/png", len(PNG), None], "what is it?"]
    assert seen["schema"] == {"type": "object", "required": ["text"]}
    assert (seen["tool_choice"], seen["parallel_tool_calls"]) == ("lookup", False)
    assert seen["reasoning"] == ["medium", 3000]
    assert answer.parsed == seen  # checked against the schema by the host
    assert answer.native is not None and answer.native.protocol == "echo"
    follow = request.model_copy(
        update={"messages": [*request.messages, answer.message, Message.user("and?")]}
    )
    again = json.loads((await new.chat(follow)).content)
    assert again["native_back"] == [{"type": "thought", "signature": "sig-1"}]


async def test_a_0_2_stream_carries_the_native_turn(both: tuple[Any, Any]) -> None:
    new, old = both
    request = ChatRequest(messages=[Message.user("hi")])
    streamed = await collect(new.chat_stream(request), request)
    assert streamed.native is not None and streamed.native.blocks[0]["signature"] == "sig-2"
    legacy = await collect(old.chat_stream(request), request)
    assert json.loads(legacy.content)["text"] == "hi"
    assert legacy.native is None  # 0.1.0 has no way to say it; the rest of the stream arrives


async def test_a_0_1_plugin_gets_tool_choice_none_as_no_tools(both: tuple[Any, Any]) -> None:
    _, old = both
    request = ChatRequest(messages=[Message.user("hi")], tools=TOOLS, tool_choice="none")
    assert json.loads((await old.chat(request)).content)["tools"] == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"messages": [Message.user("x", [Attachment.of(PNG)])]}, "attachments"),
        ({"schema": {"type": "object"}}, "a schema"),
        ({"reasoning": "high"}, "reasoning settings"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice='required'"),
        ({"tools": TOOLS, "parallel_tool_calls": False}, "parallel_tool_calls=False"),
    ],
)
async def test_a_0_1_plugin_is_refused_what_it_cannot_express(
    both: tuple[Any, Any], fields: dict[str, Any], named: str
) -> None:
    _, old = both
    request = ChatRequest(**{"messages": [Message.user("hi")], **fields})
    calls = old.runtime.stats.calls
    with pytest.raises(UnsupportedError, match=r"0\.1\.0") as caught:
        await old.chat(request)
    assert named in str(caught.value)
    with pytest.raises(UnsupportedError):
        await collect(old.chat_stream(request))
    assert old.runtime.stats.calls == calls  # refused before the plugin ran


PIECES = ["Hello", ", ", "", "wörld ✓", "a\x1eb", "\n", "end"]


@pytest.mark.parametrize("wit", ["0.2.1", "0.2.0"])
async def test_text_deltas_arrive_one_by_one_whether_sent_as_a_run_or_not(wit: str) -> None:
    """0.2.1 sends a batch's text deltas as `text-run`s (the one holding the separator on its
    own); 0.2.0 sends each as `text`. The host hands out the same chunks for both."""
    plugin = load_plugin_file(_plugins.echo(wit=None if wit == "0.2.1" else wit), {})
    try:
        assert plugin.runtime.export_name.endswith(f"@{wit}")
        request = ChatRequest(model="pieces", messages=[Message.user(json.dumps(PIECES))])
        deltas = [c.delta async for c in plugin.chat_stream(request) if c.stop_reason is None]
        assert deltas == PIECES
    finally:
        await plugin.aclose()
