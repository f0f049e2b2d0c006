"""State files: atomic writes (a reader sees the old file or the new one, never half of
either), and reads whose every failure is one typed line naming the file.

The temp file sits next to the target (`.<name>.<random>.tmp`) so the rename stays on one file
system. A write that fails removes its temp file; one that was killed (power cut, SIGKILL) cannot,
so each write also sweeps the target's temp files older than `STALE_TEMP_SECONDS`: far older than
any write takes, so a concurrent writer's file is never taken from under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from openkoi._errors import ConfigError

STALE_TEMP_SECONDS = 600.0


def _sweep_stale_temps(path: Path, now: float) -> None:
    """Remove leftovers of interrupted writes of `path` (only its own temp files)."""
    prefix, suffix = f".{path.name}.", ".tmp"
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(suffix)):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if entry.is_file(follow_symlinks=False) and now - info.st_mtime > (
                    STALE_TEMP_SECONDS
                ):
                    os.unlink(entry.path)


def atomic_write_bytes(
    path: Path, data: bytes, *, mode: int = 0o644, dir_mode: int = 0o755
) -> None:
    """Write `data` to a temp file in the same folder, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    _sweep_stale_temps(path, time.time())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


MAX_STATE_FILE_BYTES = 16 * 1024 * 1024  # a config or credential file is a few kilobytes


def read_state_text(path: Path, what: str, error: type[ConfigError] = ConfigError) -> str | None:
    """The text of one of openkoi's own files, or None when it does not exist.

    Anything else (bytes that are not UTF-8, no permission, a folder, a FIFO or a device in its
    place, a file over `MAX_STATE_FILE_BYTES`) raises `error` with one line that names the file
    and leaves the file as it is, for the user to look at. A UTF-8 byte order mark, which some
    editors write, is not part of the text.
    """
    try:
        data = _read_regular_file(path, MAX_STATE_FILE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except _NotAFile as exc:
        raise error(
            f"{what} {path} is {exc}; openkoi left it untouched: move it away",
            path=str(path),
        ) from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} {path} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); openkoi left it untouched: fix it, or move it away",
            path=str(path),
        ) from None
    return text.removeprefix("\ufeff")


class _NotAFile(Exception):
    """What stands at a path instead of a regular file (the text says what)."""


def _read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`. Opened without blocking, so a FIFO (which would
    wait for a writer) or a device (which may never end) is refused rather than read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise _NotAFile(f"{kind}, not a file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _NotAFile(f"larger than {max_bytes:,} bytes")
    return data


def read_small_json(path: Path, max_bytes: int) -> Any:
    """A cache file's JSON value; None when it is missing, unreadable, over `max_bytes` or not
    JSON (a cache is only ever a shortcut: whoever reads it starts afresh then)."""
    try:
        if path.stat().st_size > max_bytes:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
