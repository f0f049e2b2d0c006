"""Reading the recorded provider traffic in ../shared/corpus (never copied into the project).

Where the corpus is absent, tests that need it are skipped with a reason that says so; the
project's own fixtures cover the same behaviours.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _server import Reply, split_bytes

STREAM_TYPES = frozenset(
    {"text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream"}
)

CORPUS = Path(
    os.environ.get("OPENKOI_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


@dataclass
class Case:
    protocol: str
    name: str
    request: dict[str, Any]
    meta: dict[str, Any]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.meta["status"])

    @property
    def content_type(self) -> str:
        return str(self.meta.get("content_type") or "application/json")

    def response_headers(self) -> dict[str, str]:
        headers = {"content-type": self.content_type}
        for key, value in (self.meta.get("response_headers") or {}).items():
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding"):
                headers[key.lower()] = str(value)
        return headers

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_stream(self) -> bool:
        return self.content_type.split(";")[0].strip() in STREAM_TYPES

    def reply(self, chunk_size: int, *, chunked: bool | None = None) -> Reply:
        """The recorded answer. A stream goes out in `chunk_size` pieces, so boundaries fall
        mid-line, mid-event and mid-UTF-8; anything else as one body."""
        if self.is_stream if chunked is None else chunked:
            return Reply(
                status=self.status,
                chunks=list(split_bytes(self.body, chunk_size)),
                headers=self.response_headers(),
            )
        return Reply(status=self.status, body=self.body, headers=self.response_headers())


def case_names(protocol: str) -> list[str]:
    folder = CORPUS / protocol
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".meta.json")] for p in folder.glob("*.meta.json"))


def load_case(protocol: str, name: str) -> Case:
    folder = CORPUS / protocol
    if not folder.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}; the project's own fixtures cover this")
    return Case(
        protocol=protocol,
        name=name,
        request=json.loads((folder / f"{name}.request.json").read_text()),
        meta=json.loads((folder / f"{name}.meta.json").read_text()),
        body=(folder / f"{name}.response").read_bytes(),
    )


def corpus_params(protocol: str) -> list[Any]:
    """Parametrize over a protocol's cases; one explicit skip when the corpus is absent."""
    names = case_names(protocol)
    if not names:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    return names
