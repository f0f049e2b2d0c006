"""AWS Bedrock ConverseStream (binary event stream, SigV4-signed request), for bench_streaming.py."""

from __future__ import annotations

import json
import struct
import zlib

from openkoi import ChatRequest, Message, ModelProvider
from openkoi._provider import ProviderSettings

NAME = "bedrock (event stream)"
CONTENT_TYPE = "application/vnd.amazon.eventstream"
TARGET = ">= 0.85x"  # issue 13: botocore's parser made it 0.50x


def _message(event_type: str, data: object) -> bytes:
    """One event-stream frame: prelude with its CRC, string headers, JSON payload, message CRC."""
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    head = b""
    for name, value in headers.items():
        raw = value.encode()
        head += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    payload = json.dumps(data, separators=(",", ":")).encode()
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    frame = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return frame + struct.pack(">I", zlib.crc32(frame))


def stream_body(events: int) -> bytes:
    parts = [_message("messageStart", {"role": "assistant", "p": "abcdef"})]
    for i in range(events):
        delta = {"contentBlockIndex": 0, "delta": {"text": f"tok{i} "}, "p": "abcdefghijklmnop"}
        parts.append(_message("contentBlockDelta", delta))
    parts.append(_message("contentBlockStop", {"contentBlockIndex": 0}))
    parts.append(_message("messageStop", {"stopReason": "end_turn"}))
    usage = {"inputTokens": 5, "outputTokens": events, "totalTokens": events + 5}
    parts.append(_message("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return b"".join(parts)


def make_provider(base_url: str) -> ModelProvider:
    from openkoi_providers.bedrock import AwsCredentials, create

    return create(
        ProviderSettings(id="bedrock", name="AWS Bedrock", base_url=base_url),
        region="us-east-1",
        credentials=AwsCredentials("AKIDBENCHMARK0000001", "bench-secret-key"),
    )


def make_request() -> ChatRequest:
    return ChatRequest(model="amazon.nova-pro-v1:0", messages=[Message.user("stream")])
