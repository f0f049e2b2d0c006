"""`text_chunk` builds the hot path's chunk without validation: it must be the very model
`ChatChunk(delta=...)` validates, in every way a caller can look at or change it."""

from __future__ import annotations

import copy
import pickle

from openkoi._types import ChatChunk, ToolCallDelta, text_chunk


def test_a_text_chunk_is_the_validated_chunk() -> None:
    fast, validated = text_chunk("héllo"), ChatChunk(delta="héllo")
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert fast.model_fields_set == validated.model_fields_set == {"delta"}
    assert fast.model_dump(exclude_unset=True) == {"delta": "héllo"}
    assert fast.model_dump_json() == validated.model_dump_json()
    assert repr(fast) == repr(validated)
    assert pickle.loads(pickle.dumps(fast)) == validated
    assert copy.deepcopy(fast) == validated
    assert fast.model_copy(update={"delta": "x"}).delta == "x"


def test_each_text_chunk_has_its_own_list_and_takes_assignment() -> None:
    first, second = text_chunk("a"), text_chunk("b")
    first.tool_calls.append(ToolCallDelta(index=0, arguments="{"))
    assert second.tool_calls == []
    second.model = "m"
    assert second.model_fields_set == {"delta", "model"}
    assert ChatChunk.model_validate(first.model_dump()) == first
