"""A Responses API turn goes back with its reasoning items: `encrypted_content` byte for byte,
as `store: false` needs (nothing is kept server-side for an id to point at).

The recorded reasoning exchanges of ../shared/corpus are replayed from a real socket through the
ChatGPT provider (the Responses API); the second request carries the output items as recorded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import load_case
from _oauth_server import chatgpt_access_token
from _round_trip import results_or, second_body
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message, ToolDef
from openkoi_providers.chatgpt import ChatGPTProvider

pytestmark = pytest.mark.anyio

TOKEN = chatgpt_access_token(3600, 1)
FINAL = {
    "id": "resp_2",
    "status": "completed",
    "model": "gpt-5",
    "output": [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Done."}],
        }
    ],
    "usage": {"input_tokens": 4, "output_tokens": 1},
}


def recorded_items(body: bytes) -> list[dict[str, Any]]:
    text = body.decode()
    if not text.lstrip().startswith(("event:", "data:")):
        return list(json.loads(text)["output"])
    done: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        if line.startswith("data: ") and line[6:].strip() not in ("", "[DONE]"):
            event = json.loads(line[6:])
            if event["type"] == "response.output_item.done":
                done[event["output_index"]] = event["item"]
    return [done[i] for i in sorted(done)]


def _provider(url: str, stream: bool) -> ChatGPTProvider:
    return ChatGPTProvider(
        ProviderSettings(
            id="openai-oauth",
            name="ChatGPT",
            base_url=f"{url}/backend-api/codex",
            api_key=Secret(TOKEN, source="codex-cli:/test/auth.json", kind="oauth"),
            options={"stream": stream},
        )
    )


@pytest.mark.parametrize("name", ["reasoning_encrypted", "reasoning_stream"])
async def test_reasoning_items_go_back_byte_for_byte(name: str, serve: Any) -> None:
    case = load_case("openai-responses", name)
    items = recorded_items(case.body)
    whole = all(i.get("encrypted_content") for i in items if i["type"] == "reasoning")
    recorded = case.request["body"]
    tools = [
        ToolDef(name=t["name"], description=t.get("description", ""), parameters=t["parameters"])
        for t in recorded.get("tools") or ()
    ]
    request = ChatRequest(
        model=recorded["model"], messages=[Message.user("Go.")], tools=tools, reasoning="high"
    )
    turn, bodies = await second_body(
        serve,
        lambda url: _provider(url, case.is_stream),
        case.reply(61),
        FINAL,
        request,
        results_or("Ok.", "42"),
        stream=case.is_stream,
        make_second=lambda url: _provider(url, False),
    )
    assert bodies[0]["include"] == ["reasoning.encrypted_content"]
    assert bodies[0]["reasoning"] == {"effort": "high", "summary": "auto"}
    sent = bodies[1]["input"]
    if whole:
        assert sent[1 : 1 + len(items)] == items
        for item in items:
            if item.get("encrypted_content"):
                assert json.dumps(item["encrypted_content"]) in json.dumps(sent)
    else:
        # A reasoning item without its encrypted content cannot go back, and the items that
        # followed it would be refused without it: the turn goes from its neutral fields.
        assert not [item for item in sent if item.get("type") == "reasoning" or "id" in item]
        assert [item["type"] for item in sent[1:-1] if item["type"] != "function_call_output"] == [
            item["type"] for item in items if item["type"] != "reasoning"
        ]
    if turn.tool_calls:
        assert sent[-1] == {
            "type": "function_call_output",
            "call_id": turn.tool_calls[-1].id,
            "output": "42",
        }
