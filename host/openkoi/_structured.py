"""Structured output: the schema a request asks for, in the forms vendors take, and the check of
what came back.

Providers with native JSON-schema output send `schema_of(request)` (OpenAI and Anthropic want the
strict form of `strict_form`); the others ask for a forced call of one tool whose parameters are
the schema (`as_forced_tool`) and turn that call back into text (`from_forced_tool`), so the
caller sees the same response either way. `parse_output` validates the text into
`ChatResponse.parsed`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from openkoi._errors import OutputValidationError, UnsupportedError
from openkoi._jsonschema import check
from openkoi._types import ChatRequest, ChatResponse, ToolDef

SCHEMA_TOOL = "structured_output"


def schema_of(request: ChatRequest) -> tuple[str, dict[str, Any]] | None:
    """(name, JSON schema) of the requested output, or None when the request has no schema."""
    schema = request.output_schema
    if schema is None:
        return None
    if isinstance(schema, dict):
        title = schema.get("title")
        return _name(title if isinstance(title, str) else "response"), schema
    return _name(schema.__name__), schema.model_json_schema()


def _name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in text)[:64]
    return cleaned or "response"


def strict_form(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema with `additionalProperties: false` on every object that says nothing of it, and
    whether it then meets strict mode (every object lists all its properties as required)."""
    result = copy.deepcopy(schema)
    strict = True
    for node in schema_nodes(result):
        if node.get("type") == "object" or isinstance(node.get("properties"), dict):
            node.setdefault("additionalProperties", False)
            props = node.get("properties") or {}
            if node["additionalProperties"] is not False or set(node.get("required") or ()) != set(
                props
            ):
                strict = False
    return result, strict


# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE_SCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
               "propertyNames", "unevaluatedItems", "unevaluatedProperties")  # fmt: skip
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every (sub)schema of `schema`, itself first, found by where JSON Schema puts them: a
    property map is walked as names to schemas, so a field named `properties` or `type` is a
    field, not a keyword."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        yield node
        for key in _ONE_SCHEMA:
            if isinstance(node.get(key), dict):
                pending.append(node[key])
        if isinstance(node.get("items"), list):  # the older tuple form
            pending.extend(node["items"])
        for key in _SCHEMA_LISTS:
            if isinstance(node.get(key), list):
                pending.extend(node[key])
        for key in _SCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                pending.extend(node[key].values())


def as_forced_tool(request: ChatRequest, provider: str) -> ChatRequest:
    """The request with the schema as a tool the model must call (for providers without native
    structured output). With tools of the caller's own, any call is required instead, so a tool
    loop still runs; the schema tool's call ends it."""
    found = schema_of(request)
    if found is None:
        return request
    if request.tool_choice not in (None, "auto", "required"):
        raise UnsupportedError(
            f"tool_choice={request.tool_choice!r} cannot be combined with a schema here: the "
            "schema is sent as a forced tool call",
            provider=provider,
        )
    _, schema = found
    tool = ToolDef(
        name=SCHEMA_TOOL,
        description="Give the final answer as JSON matching these parameters.",
        parameters=schema,
    )
    return request.model_copy(
        update={
            "tools": [*request.tools, tool],
            "tool_choice": "required" if request.tools else SCHEMA_TOOL,
            "output_schema": None,
        }
    )


def from_forced_tool(response: ChatResponse) -> ChatResponse:
    """The schema tool's call as the answer's text; other calls stay tool calls."""
    ours = [c for c in response.tool_calls if c.name == SCHEMA_TOOL]
    if not ours:
        return response
    rest = [c for c in response.tool_calls if c.name != SCHEMA_TOOL]
    stop = response.stop_reason
    if stop == "tool_use" and not rest:
        stop = "end_turn"
    return response.model_copy(
        # The provider's own turn holds a call that will never get a result: not sent back.
        update={
            "content": ours[0].arguments,
            "tool_calls": rest,
            "stop_reason": stop,
            "native": None,
        }
    )


def parse_output(request: ChatRequest, response: ChatResponse) -> ChatResponse:
    """`response` with `parsed` set from its text; OutputValidationError when the text is not JSON
    matching the schema. A turn that only calls tools (a tool loop mid-way) is left alone."""
    schema = request.output_schema
    if schema is None or (response.tool_calls and not response.content):
        return response
    text = response.content
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            parsed: Any = schema.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
            where = ".".join(str(p) for p in first.get("loc", ())) or "the answer"
            raise OutputValidationError(
                f"the answer does not match {schema.__name__}: {where}: {first['msg']}",
                raw_text=text,
            ) from None
    else:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(
                f"the answer is not JSON ({exc.msg} at position {exc.pos})", raw_text=text
            ) from None
        problem = check(parsed, schema)
        if problem:
            raise OutputValidationError(
                f"the answer does not match the schema: {problem}", raw_text=text
            )
    return response.model_copy(update={"parsed": parsed})
