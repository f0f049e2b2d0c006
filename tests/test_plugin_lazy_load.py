"""Listed plugins cost their manifest at start-up; the whole file is read, checked against its
approval and compiled only when the plugin is first used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _server import Reply
from openkoi._config import validate_config
from openkoi._errors import PluginApprovalError, PluginLoadError
from openkoi._paths import config_path
from openkoi._registry import ProviderRegistry
from openkoi.plugins._approvals import ApprovalStore, check_approval
from openkoi.plugins._engine import cache_path
from openkoi.plugins._loader import read_configured, read_for_use
from openkoi.plugins._manifest import (
    _encode_leb,
    embed_manifest,
    parse_manifest,
    read_plugin_file,
    read_plugin_header,
)
from test_plugin_manifest import PROVIDER_WAT, VALID, _wat, _with

CODE_BYTES = 192 * 1024 * 1024  # a "core module" of zeros: sparse on disk, never valid code

# Runs the CLI and writes its peak resident memory (VmHWM, kB) to stderr as it exits.
_MEASURED_CLI = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
    "from openkoi.cli import main\n"
    "main()\n"
)


def _write(path: Path, manifest: dict[str, Any], *, code: int = 0) -> Path:
    """A component with `manifest`, then (when `code`) a core module section of `code` zero
    bytes, left sparse: reading it whole costs `code` bytes of memory, and it cannot compile."""
    path.write_bytes(embed_manifest(_wat(PROVIDER_WAT), parse_manifest(manifest, "test")))
    if code:
        with path.open("r+b") as file:
            file.seek(0, os.SEEK_END)
            file.write(b"\x01" + _encode_leb(code))
            file.truncate(file.tell() + code)
    return path


def _cli(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_CLI, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    peaks = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK ")]
    assert peaks, done.stderr
    return done, peaks[0] // 1024


def _sse(text: str) -> Reply:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events = [f"data: {json.dumps(delta)}\n\n", f"data: {json.dumps(stop)}\n\n"]
    return Reply.sse([*events, "data: [DONE]\n\n"])


def test_the_header_is_read_by_seeking_and_matches_the_whole_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.wasm", VALID, code=CODE_BYTES)
    header = read_plugin_header(path)
    assert header.manifest == parse_manifest(VALID, "x")
    assert header.exports == ("openkoi:provider/provider@0.1.0",)
    assert header.size == path.stat().st_size > CODE_BYTES
    small = read_plugin_file(_write(tmp_path / "small.wasm", VALID))
    assert (small.manifest, small.imports, small.exports) == (
        header.manifest,
        header.imports,
        header.exports,
    )


def test_a_truncated_file_is_refused_by_the_header_read_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.wasm", VALID, code=4096)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 1)
    with pytest.raises(PluginLoadError, match="section 1 runs past the end of the file"):
        read_plugin_header(path)


def test_unused_listed_plugins_are_never_read_whole(serve: Any, tmp_path: Path) -> None:
    """Two listed plugins with 192 MiB of code each that would not even compile: a prompt to
    a native provider answers, and neither it nor `plugin list` comes near that memory."""
    server = serve(lambda request: _sse("native ok"))
    files = [
        _write(tmp_path / f"p{i}.wasm", _with(id=f"big{i}"), code=CODE_BYTES) for i in range(2)
    ]
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text(
        f"[plugins]\nwasm = {json.dumps([str(f) for f in files])}\n"
        f'[providers.local]\nbase_url = "{server.url}/v1"\ndefault_model = "m"\n'
    )
    done, peak_mib = _cli("--model", "local/m", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "native ok\n"
    assert peak_mib < 150, f"peak {peak_mib} MiB"

    done, peak_mib = _cli("plugin", "list")
    assert done.returncode == 0, done.stderr
    for i in range(2):
        assert f"big{i}" in done.stdout
    assert done.stdout.count(" ok ") == 2 and "new (recorded on first use)" in done.stdout
    assert peak_mib < 150, f"peak {peak_mib} MiB"
    assert not ApprovalStore().path.exists()  # nothing was used, so nothing was recorded


def test_a_plugin_changed_after_start_up_is_refused_at_first_use(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    check_approval(read_plugin_file(path))  # approved as it was
    registry = ProviderRegistry(
        validate_config({"plugins": {"wasm": [str(path)]}}), load_entry_points=False
    )
    assert "acme" in registry.ids()
    greedy = _with(network={"allow": [*VALID["network"]["allow"], "https://exfil.example"]})
    _write(path, greedy)  # changed after start-up read its header
    with pytest.raises(PluginApprovalError, match=r"\+ network https://exfil\.example"):
        registry.get("acme")
    # the refusal changed nothing: the record still holds what was approved
    approved = ApprovalStore().get(path)
    assert approved is not None and "https://exfil.example" not in approved.capabilities.origins


def test_a_plugin_that_changes_its_id_after_start_up_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    (item,) = read_configured(validate_config({"plugins": {"wasm": [str(path)]}}))
    _write(path, _with(id="other"))
    with pytest.raises(PluginLoadError, match="now declares the plugin id 'other', not 'acme'"):
        read_for_use(item)
    assert not ApprovalStore().path.exists()


def test_first_use_records_the_file_it_will_run(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    config = validate_config({"plugins": {"wasm": [str(path)]}})
    (item,) = read_configured(config)
    assert item.approval == "new" and item.file is None
    assert not ApprovalStore().path.exists()
    plugin = read_for_use(item)
    assert item.approval == "recorded" and read_for_use(item) is plugin
    approved = ApprovalStore().get(path)
    assert approved is not None and approved.digest == plugin.digest

    # Changed code that asks for nothing new: accepted at first use, its record updated.
    _write(path, VALID, code=64)
    (item,) = read_configured(config)
    assert item.approval == "approved"
    plugin = read_for_use(item)
    assert item.approval == "updated"
    approved = ApprovalStore().get(path)
    assert approved is not None and approved.digest == plugin.digest


def test_a_same_file_approval_holds_however_its_record_reads(tmp_path: Path) -> None:
    """A record of the first format has no limits: the manifest looks like it asks for more, but
    the file is the one approved, so the header check hashes it and accepts it."""
    path = _write(tmp_path / "acme.wasm", _with(limits={"memory_mb": 512}))
    plugin = read_plugin_file(path)
    old = {
        "acme": {
            "path": str(path),
            "digest": plugin.digest,
            "origins": list(VALID["network"]["allow"]),
        }
    }
    ApprovalStore().path.parent.mkdir(parents=True, exist_ok=True)
    ApprovalStore().path.write_text(json.dumps(old))
    (item,) = read_configured(validate_config({"plugins": {"wasm": [str(path)]}}))
    assert item.error is None and item.approval == "approved"


def test_warming_a_refused_plugin_compiles_nothing(tmp_path: Path) -> None:
    from openkoi.cli._warm import warm

    path = _write(tmp_path / "acme.wasm", VALID)
    check_approval(read_plugin_file(path))
    registry = ProviderRegistry(
        validate_config({"plugins": {"wasm": [str(path)]}}), load_entry_points=False
    )
    _write(path, _with(network={"allow": ["https://evil.example"]}))
    warm(registry, ["acme"])
    assert not cache_path(read_plugin_file(path).digest).exists()
    with pytest.raises(PluginApprovalError, match=r"evil\.example"):
        registry.get("acme")


def test_a_real_component_reads_the_same_by_seeking_as_whole() -> None:
    """A componentize-py build has hundreds of top-level sections; seeking past them finds the
    same manifest, imports and exports as walking the whole file."""
    import _plugins

    path = _plugins.cohere()
    header, whole = read_plugin_header(path), read_plugin_file(path)
    assert (header.manifest, header.imports, header.exports, header.size) == (
        whole.manifest,
        whole.imports,
        whole.exports,
        whole.size,
    )
    assert any(name.startswith("openkoi:provider/") for name in header.imports)
