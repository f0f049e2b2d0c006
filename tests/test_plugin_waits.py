"""A plugin's first compile is announced on stderr, and `plugin build` compiles into the cache,
so the first prompt after a build does not sit silent."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import _plugins
from _connect_support import run_cli
from openkoi.plugins._manifest import read_plugin_file


def _configure(wasm: Path, server_url: str) -> None:
    config = Path(os.environ["OPENKOI_HOME"]) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[plugins]\nwasm = ["{wasm}"]\n\n[plugins.cohere]\n'
        f'config = {{ base_url = "{server_url}" }}\nnetwork = {{ extend = ["{server_url}"] }}\n'
    )


def test_first_prompt_through_a_new_plugin_says_it_is_compiling(serve: Any, tmp_path: Path) -> None:
    wasm = tmp_path / "cohere.wasm"
    shutil.copy(_plugins.cohere(), wasm)
    server = serve(_plugins.cohere_handler)
    _configure(wasm, server.url)
    env = {
        "OPENKOI_WASM_CACHE": str(tmp_path / "fresh-cache"),
        "COHERE_API_KEY": _plugins.COHERE_KEY,
    }

    first = run_cli("-m", "cohere/command-a-03-2025", "hi", env=env, timeout=180)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Hello from Cohere\n"
    assert "compiling plugin cohere (first use" in first.stderr
    digest = read_plugin_file(wasm).digest
    assert any(p.name.startswith(digest) for p in (tmp_path / "fresh-cache").iterdir())

    # Compiled now: the plugin's live model list comes without the wait (and without the line).
    listed = run_cli("models", "cohere", "--json", env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "compiling" not in listed.stderr
    models = {m["id"]: m for m in json.loads(listed.stdout)["providers"][0]["models"]}
    assert models["command-a-03-2025"]["context_window"] == 256000
    assert "command-r7b" in models


def test_plugin_build_compiles_into_the_cache(tmp_path: Path) -> None:
    source = _plugins.EXAMPLES / "cohere" / "provider.py"
    out = tmp_path / "cohere.wasm"
    cache = tmp_path / "cache"
    env = {"OPENKOI_WASM_CACHE": str(cache)}
    built = run_cli("plugin", "build", str(source), "-o", str(out), env=env, timeout=600)
    assert built.returncode == 0, built.stderr
    assert "compiled into the cache" in built.stderr
    digest = read_plugin_file(out).digest
    assert [p.name.startswith(digest) for p in cache.iterdir()] == [True]
