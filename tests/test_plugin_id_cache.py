"""Start-up registers listed plugins from a cache of their ids when every file still matches
it (`openkoi/plugins/_listing.py`): no plugin code is imported for a prompt to another
provider, and nothing but the id and name is taken from the cache: first use reads the file,
checks its id, its settings and its approval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openkoi._config import validate_config
from openkoi._errors import PluginApprovalError, PluginLoadError
from openkoi._paths import config_path
from openkoi._registry import ProviderRegistry
from openkoi.plugins._approvals import check_approval
from openkoi.plugins._listing import cache_path, listed_for
from openkoi.plugins._loader import plugin_item, registered_plugins
from openkoi.plugins._manifest import read_plugin_file
from test_plugin_lazy_load import _sse, _write
from test_plugin_manifest import VALID, _with

# The CLI, reporting on stderr as it ends which plugin modules it imported.
WATCHED = ("openkoi.plugins._loader", "openkoi.plugins._manifest", "openkoi.plugins._egress")
REPORTING_CLI = (
    "import atexit, json, sys\n"
    f"atexit.register(lambda: sys.stderr.write('IMPORTED ' + json.dumps("
    f"[m for m in {WATCHED!r} if m in sys.modules]) + '\\n'))\n"
    "from openkoi.cli import main\n"
    "main()\n"
)


def registry_for(*paths: Path) -> ProviderRegistry:
    config = validate_config({"plugins": {"wasm": [str(p) for p in paths]}})
    return ProviderRegistry(config, load_entry_points=False)


def cached() -> dict[str, Any]:
    entries: dict[str, Any] = json.loads(cache_path().read_text())["entries"]
    return entries


def test_a_second_start_registers_from_the_cache_and_reads_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    first = registry_for(path)
    assert first.is_plugin("acme") and "acme" in registered_plugins(first)  # headers read
    entry = cached()[str(path)]
    assert (entry["id"], entry["name"]) == ("acme", VALID["name"])

    second = registry_for(path)
    assert second.is_plugin("acme") and second.spec("acme").name == VALID["name"]
    assert "acme" in listed_for(second) and registered_plugins(second) == {}  # nothing read
    item = plugin_item(second, "acme")  # first use reads and checks the header now
    assert item is not None and item.error is None and item.plugin is not None
    assert item.plugin.manifest.id == "acme"


def test_a_changed_file_misses_the_cache(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    registry_for(path)
    _write(path, _with(id="other"), code=64)  # another size (and time): read again
    registry = registry_for(path)
    assert registry.is_plugin("other") and not registry.is_plugin("acme")
    assert listed_for(registry) == {}
    assert cached()[str(path)]["id"] == "other"


def test_an_id_in_the_cache_that_the_file_does_not_declare_is_refused_on_use(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    registry_for(path)
    data = json.loads(cache_path().read_text())
    data["entries"][str(path)]["id"] = "evil"  # the stat still matches
    cache_path().write_text(json.dumps(data))
    registry = registry_for(path)
    assert registry.is_plugin("evil")
    with pytest.raises(PluginLoadError, match="now declares the plugin id 'acme', not 'evil'"):
        registry.get("evil")


def test_an_unapproved_plugin_from_the_cache_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    check_approval(read_plugin_file(path))
    registry_for(path)
    # The file now asks for a new origin, and the cache is made to match it (as if a change
    # kept the file's size, time and inode): the cache gives the id, the check is the file's.
    _write(path, _with(network={"allow": ["https://evil.example"]}))
    data = json.loads(cache_path().read_text())
    stat = path.stat()
    data["entries"][str(path)]["stat"] = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev]
    cache_path().write_text(json.dumps(data))
    registry = registry_for(path)
    assert "acme" in listed_for(registry)
    with pytest.raises(PluginApprovalError):
        registry.get("acme")


@pytest.mark.parametrize("text", ["{not json", '{"version": 99, "entries": {}}', "[]", ""])
def test_a_broken_cache_is_ignored(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "acme.wasm", VALID)
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text(text)
    registry = registry_for(path)
    assert registry.is_plugin("acme") and "acme" in registered_plugins(registry)
    assert cached()[str(path)]["id"] == "acme"


def test_two_files_with_one_id_are_read_again_not_taken_from_the_cache(tmp_path: Path) -> None:
    one, two = _write(tmp_path / "one.wasm", VALID), _write(tmp_path / "two.wasm", VALID)
    registry_for(one, two)
    registry = registry_for(one, two)
    assert listed_for(registry) == {}  # the full read says which one it refuses
    items = registered_plugins(registry)
    assert set(items) == {"acme"}


def test_a_prompt_to_a_native_provider_imports_no_plugin_code_once_cached(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(lambda request: _sse("native answer"))
    path = _write(tmp_path / "acme.wasm", VALID)
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text(
        f'[plugins]\nwasm = ["{path}"]\n'
        f'[providers.local]\nbase_url = "{server.url}/v1"\ndefault_model = "m"\n'
    )
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", REPORTING_CLI, "--model", "local/m", "hi"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "native answer\n"
        line = next(x for x in done.stderr.splitlines() if x.startswith("IMPORTED "))
        runs.append(json.loads(line.removeprefix("IMPORTED ")))
    assert "openkoi.plugins._loader" in runs[0]  # the first start read the header
    assert runs[1] == []  # the second registered the plugin from the cache


def test_a_plugin_with_a_built_in_id_is_skipped_both_ways(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "impostor.wasm", _with(id="openai"))
    config = validate_config({"plugins": {"wasm": [str(path)]}})
    for start in ("header read", "from the cache"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="openkoi.plugins"):
            registry = ProviderRegistry(config)
        assert registry.spec("openai").auth != "plugin", start
        assert "taken by the provider" in caplog.text, start
    assert cached()[str(path)]["id"] == "openai"  # the second start came from the cache
