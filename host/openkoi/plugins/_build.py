"""`openkoi plugin build`: a Python provider module to a plugin component.

componentize-py compiles the guest against the project's WIT (`wit/`, world `plugin`) with the
guest SDK (`guest-sdk/openkoi_guest`) on its path; then the manifest is embedded as the
`openkoi-manifest` custom section. componentize-py expects, for the `provider` export, a class
`Provider` in the app module and a module named `provider` holding the `ChatStream` resource
class; the build writes those two glue modules next to a copy of the plugin's source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openkoi._errors import PluginBuildError
from openkoi.plugins._manifest import Manifest, embed_manifest, load_manifest_toml

_USER_MODULE = "openkoi_user_plugin"
_APP_MODULE = "openkoi_plugin_app"
_APP = f"""\
import {_USER_MODULE}
from openkoi_guest._export import Provider, bind

bind({_USER_MODULE})
"""
_RESOURCE_MODULE = "from openkoi_guest._export import ChatStream\n"
_RUN_COMPONENTIZE = (
    "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; "
    "sys.exit(script())"
)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: Manifest
    size: int
    digest: str
    seconds: float


def _repo_root() -> Path:
    import openkoi

    return Path(openkoi.__file__).resolve().parents[2]


def wit_dir() -> Path:
    override = os.environ.get("OPENKOI_WIT_DIR")
    path = Path(override) if override else _repo_root() / "wit"
    if not (path / "provider.wit").is_file():
        raise PluginBuildError(f"the openkoi WIT files are not at {path} (set OPENKOI_WIT_DIR)")
    return path


def sdk_dir() -> Path:
    override = os.environ.get("OPENKOI_GUEST_SDK")
    path = Path(override) if override else _repo_root() / "guest-sdk"
    if not (path / "openkoi_guest" / "__init__.py").is_file():
        raise PluginBuildError(f"the openkoi guest SDK is not at {path} (set OPENKOI_GUEST_SDK)")
    return path


def inputs_digest(source: Path, manifest: Path) -> str:
    """A digest of everything a build depends on: source, manifest, SDK and WIT."""
    h = hashlib.sha256()
    files = [source, manifest]
    files += sorted((sdk_dir() / "openkoi_guest").glob("*.py"))
    files += sorted(wit_dir().glob("*.wit"))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _check_componentize() -> None:
    import importlib.util

    if importlib.util.find_spec("componentize_py") is None:
        raise PluginBuildError(
            "building a plugin needs componentize-py: `uv sync` in the openkoi checkout, or "
            "`pip install 'openkoi[plugin-build]'`"
        )


def build_plugin(source: Path, manifest_path: Path, output: Path) -> BuildResult:
    """Build `source` (a module with one `openkoi_guest.Provider` subclass) into `output`."""
    started = time.perf_counter()
    manifest = load_manifest_toml(manifest_path)
    if not source.is_file():
        raise PluginBuildError(f"plugin source {source} does not exist")
    if source.suffix != ".py":
        raise PluginBuildError(f"plugin source {source} is not a Python file (.py)")
    _check_componentize()
    wit, sdk = wit_dir(), sdk_dir()
    with tempfile.TemporaryDirectory(prefix="openkoi-build-") as tmp:
        work = Path(tmp)
        shutil.copyfile(source, work / f"{_USER_MODULE}.py")
        (work / f"{_APP_MODULE}.py").write_text(_APP, encoding="utf-8")
        (work / "provider.py").write_text(_RESOURCE_MODULE, encoding="utf-8")
        raw = work / "plugin.wasm"
        command = [
            sys.executable,
            "-c",
            _RUN_COMPONENTIZE,
            "-q",
            "-d",
            str(wit),
            "-w",
            "plugin",
            "componentize",
            "-p",
            str(work),
            "-p",
            str(sdk),
            _APP_MODULE,
            "-o",
            str(raw),
        ]
        env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=work, check=False, env=env
        )
        if done.returncode != 0 or not raw.is_file():
            raise PluginBuildError(
                f"componentize-py could not build {source.name}:\n"
                + _failure_detail(done.stderr or done.stdout)
            )
        wasm = embed_manifest(raw.read_bytes(), manifest)
    _write_bytes(output, wasm)
    return BuildResult(
        path=output,
        manifest=manifest,
        size=len(wasm),
        digest=hashlib.sha256(wasm).hexdigest(),
        seconds=time.perf_counter() - started,
    )


def _failure_detail(output: str) -> str:
    """The cause componentize-py reports, without its Rust backtrace."""
    text = output.split("Stack backtrace:")[0]
    _, found, cause = text.partition("Caused by:")
    lines = [line.rstrip() for line in (cause if found else text).splitlines() if line.strip()]
    return "\n".join(lines[-12:]) or "(no output)"


def _write_bytes(path: Path, data: bytes) -> None:
    from openkoi.plugins._engine import write_atomic

    write_atomic(path, data, mode=0o644)
