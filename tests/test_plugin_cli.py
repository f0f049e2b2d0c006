"""`openkoi plugin new|build|inspect|approve|list` and `openkoi demo`, through the real CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import _plugins
import pytest
from _server import LoopbackServer, Recorded, Reply
from openkoi._paths import config_path, openkoi_home
from openkoi.cli import main


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def _write_config(text: str) -> None:
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text(text, encoding="utf-8")


def _openai_style(request: Recorded) -> Reply:
    assert request.headers["authorization"] == "Bearer gw-test-key-0123456789"
    events = [
        'data: {"choices":[{"delta":{"content":"Scaffolded"}}]}\n\n',
        'data: {"choices":[{"delta":{"content":" and streaming"},"finish_reason":"stop"}]}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
        "data: [DONE]\n\n",
    ]
    return Reply.sse(events)


def test_new_build_configure_and_run_a_plugin(
    tmp_path: Path,
    serve: Callable[..., LoopbackServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "my-gateway"
    code, out, _ = run(capsys, "plugin", "new", "My Gateway", "-d", str(folder))
    assert code == 0 and "created" in out
    assert (folder / "provider.py").is_file() and (folder / "plugin.toml").is_file()
    code, _, err = run(capsys, "plugin", "new", "My Gateway", "-d", str(folder))
    assert code == 1 and "exists and is not empty" in err

    wasm = tmp_path / "gw.wasm"
    code, out, err = run(
        capsys,
        "plugin",
        "build",
        str(folder / "provider.py"),
        "--manifest",
        str(folder / "plugin.toml"),
        "-o",
        str(wasm),
    )
    assert code == 0, err
    assert f"built {wasm}" in out and "plugin my-gateway 0.1.0, wit 0.2.1" in out

    server = serve(_openai_style)
    monkeypatch.setenv("MY_GATEWAY_API_KEY", "gw-test-key-0123456789")
    _write_config(
        f'[plugins]\nwasm = ["{wasm}"]\n\n[plugins.my-gateway]\n'
        f'config = {{ base_url = "{server.url}/v1" }}\n'
        f'network = {{ extend = ["{server.url}"] }}\n'
    )
    code, out, err = run(capsys, "--model", "my-gateway/example-model", "hello")
    assert code == 0, err
    assert out == "Scaffolded and streaming\n"
    sent = server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json()["messages"] == [{"role": "user", "content": "hello"}]

    code, out, _ = run(capsys, "plugin", "list")
    assert code == 0 and "my-gateway" in out and " ok " in out


def test_build_errors_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "plugin.toml"
    manifest.write_text(
        'id = "empty"\nname = "Empty"\nversion = "0.1.0"\nwit = "0.1.0"\n'
        '[network]\nallow = ["https://api.example.com"]\n',
        encoding="utf-8",
    )
    code, _, err = run(capsys, "plugin", "build", str(tmp_path / "nope.py"))
    assert code == 1 and "does not exist" in err and "Traceback" not in err

    source = tmp_path / "provider.py"
    source.write_text("import json\n", encoding="utf-8")
    code, _, err = run(capsys, "plugin", "build", str(source), "-o", str(tmp_path / "x.wasm"))
    assert code == 1
    assert "componentize-py could not build provider.py" in err
    assert "must define exactly one Provider subclass" in err
    assert not (tmp_path / "x.wasm").exists()


def test_inspect_shows_manifest_capabilities_and_exports_without_running(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wasm = _plugins.cohere()
    monkeypatch.setenv("COHERE_API_KEY", _plugins.COHERE_KEY)
    _write_config(
        f'[plugins]\nwasm = ["{wasm}"]\n\n[plugins.cohere]\npool_size = 2\n'
        'network = { extend = ["http://127.0.0.1:8080"] }\n'
    )
    code, out, err = run(capsys, "plugin", "inspect", str(wasm))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "plugin    cohere 0.1.0 (Cohere)"
    exports = next(line for line in lines if line.startswith("exports "))
    assert "openkoi:provider/provider@0.2.1" in exports
    assert "network   https://api.cohere.com  [manifest]" in lines
    assert "          http://127.0.0.1:8080  [user-granted]" in lines
    assert (
        "secrets   COHERE_API_KEY (env COHERE_API_KEY, CO_API_KEY), sent to any allowed origin: "
        "configured"
    ) in lines
    assert _plugins.COHERE_KEY not in out
    assert "pool      2 instances" in lines
    assert "approval  not yet approved" in out
    assert "wit       openkoi:provider@0.2.1 (this host speaks 0.2.1)" in lines

    code, out, _ = run(capsys, "plugin", "inspect", str(wasm), "--json")
    info = json.loads(out)
    assert info["sha256"] == _plugins.hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert info["size"] == wasm.stat().st_size
    assert {"origin": "http://127.0.0.1:8080", "granted_by": "user"} in info["network"]

    code, _, err = run(capsys, "plugin", "inspect", str(wasm.parent / "missing.wasm"))
    assert code == 1 and "does not exist" in err


def test_approve_records_and_list_explains_a_refused_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from openkoi.plugins._manifest import embed_manifest, parse_manifest, read_plugin_file

    original = tmp_path / "cohere.wasm"
    shutil.copyfile(_plugins.cohere(), original)
    code, out, _ = run(capsys, "plugin", "approve", "--yes", str(original))
    assert code == 0 and "approved cohere" in out
    assert "https://api.cohere.com" in out

    # The same plugin, changed to ask for one more origin.
    manifest = read_plugin_file(original).manifest
    greedy = json.loads(manifest.to_json())
    greedy["network"]["allow"].append("https://exfil.example")
    original.write_bytes(embed_manifest(original.read_bytes(), parse_manifest(greedy, "x")))
    _write_config(f'[plugins]\nwasm = ["{original}"]\n')
    code, out, _ = run(capsys, "plugin", "list")
    assert "cohere" in out and "refused" in out and "+ network https://exfil.example" in out
    code, _, err = run(capsys, "--model", "cohere/command-a", "hi")
    assert code == 1 and "asks for more than you approved" in err

    code, out, _ = run(capsys, "plugin", "approve", "--yes", str(original))
    assert "+ network https://exfil.example" in out
    code, out, _ = run(capsys, "plugin", "list")
    assert " ok " in out
    approvals = json.loads((openkoi_home() / "plugins" / "approvals.json").read_text())
    entry = approvals["plugins"][str(original.absolute())]
    assert entry["id"] == "cohere"
    assert "https://exfil.example" in entry["origins"]


def test_demo_runs_offline_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    from openkoi.plugins._build import _repo_root, inputs_digest

    source = _repo_root() / "guest-sdk" / "examples" / "cohere" / "provider.py"
    digest = inputs_digest(source, source.parent / "plugin.toml")[:20]
    cached = openkoi_home() / "cache" / "demo" / f"cohere-{digest}.wasm"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(_plugins.cohere(), cached)  # the suite's build of the same inputs

    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert "(cached build)" in err
    assert "network  https://api.cohere.com       from the manifest" in out
    assert "user-granted for this demo" in out
    assert "Server-sent events let a server push" in out
    assert "the fake Cohere received the key: yes; the plugin never held it" in out
    assert (
        "refused: plugin cohere: https://cohere-mirror.example.net is not in network.allow" in out
    )
    assert 'network.allow = ["https://cohere-mirror.example.net"]' in out
