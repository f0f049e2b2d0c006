"""Media types of attachments: sniffed from the bytes first, then from the name."""

from __future__ import annotations

import mimetypes
from typing import Literal

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_EXTRA_TYPES = {".webp": "image/webp", ".md": "text/markdown", ".heic": "image/heic"}


def sniff_media_type(data: bytes | None, name: str | None = None) -> str:
    """The media type the bytes say, else the name's extension, else `application/octet-stream`."""
    if data:
        head = data[:16]
        for magic, offset, media_type in _MAGIC:
            if head.startswith(magic, offset):
                return media_type
        if head.startswith(b"RIFF") and head[8:12] in _RIFF:
            return _RIFF[head[8:12]]
        if head[4:8] == b"ftyp":
            brand = head[8:12]
            if brand in (b"heic", b"heix", b"mif1"):
                return "image/heic"
            return "audio/mp4" if brand == b"M4A " else "video/mp4"
    if name:
        path = name.split("?", 1)[0].split("#", 1)[0]
        dot = path.rfind(".")
        extension = path[dot:].lower() if dot >= 0 else ""
        if extension in _EXTRA_TYPES:
            return _EXTRA_TYPES[extension]
        guessed, _ = mimetypes.guess_type(path, strict=False)
        if guessed:
            return guessed
    if data is not None and _is_text(data[:4096]):
        return "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a character cut by the sample's end
    return b"\x00" not in head


def media_kind(media_type: str) -> Literal["image", "document", "audio", "video", "file"]:
    major = media_type.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]
    if media_type == "application/pdf" or major == "text":
        return "document"
    return "file"


# Types outside text/* whose files are text a model reads as it is.
_TEXT_APPLICATION_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/sql",
    }
)


def is_text_type(media_type: str) -> bool:
    """Whether a file of `media_type` is plain text (source, data, markup), for protocols that
    take such a file only as text in the prompt."""
    return media_type.startswith("text/") or media_type in _TEXT_APPLICATION_TYPES
