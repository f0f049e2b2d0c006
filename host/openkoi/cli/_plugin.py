"""`openkoi plugin`: build, inspect, approve, scaffold and list WASM provider plugins.

openkoi plugin build provider.py --manifest plugin.toml -o provider.wasm
openkoi plugin inspect provider.wasm          manifest, capabilities, exports; nothing is run
openkoi plugin approve provider.wasm          record what the plugin may do
openkoi plugin new my-provider                a working plugin to start from
openkoi plugin list                           the plugins in config and their state
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from openkoi._errors import ConfigError
from openkoi._suggest import did_you_mean
from openkoi.cli._warm import compile_into_cache


@click.group("plugin")
def plugin() -> None:
    """Build, inspect and approve WebAssembly provider plugins.

    Example: openkoi plugin build provider.py --manifest plugin.toml -o provider.wasm
    """


@plugin.command("build")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path),
    help="the plugin.toml (default: plugin.toml next to SOURCE)",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="the .wasm to write (default: <id>.wasm)",
)
def plugin_build(source: Path, manifest_path: Path | None, output: Path | None) -> None:
    """Build SOURCE (a Python module with one openkoi_guest.Provider) into a plugin component.

    Example: openkoi plugin build provider.py --manifest plugin.toml -o provider.wasm
    """
    from openkoi.plugins._build import build_plugin
    from openkoi.plugins._manifest import load_manifest_toml, read_plugin_file

    manifest_path = manifest_path or source.parent / "plugin.toml"
    if output is None:
        output = source.parent / f"{load_manifest_toml(manifest_path).id}.wasm"
    click.echo(f"building {source} with componentize-py (this takes a few seconds)...", err=True)
    result = build_plugin(source, manifest_path, output)
    m = result.manifest
    click.echo(
        f"built {result.path} ({_size(result.size)}, sha256 {result.digest[:16]}) in "
        f"{result.seconds:.1f} s: plugin {m.id} {m.version}, wit {m.wit}"
    )
    seconds, cached = compile_into_cache(read_plugin_file(result.path))
    if not cached:  # so the first prompt through it loads in milliseconds
        click.echo(f"compiled into the cache in {seconds:.1f} s", err=True)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _configured_settings(plugin_id: str) -> Any:
    from openkoi._config import ConfigFile
    from openkoi.plugins._loader import plugin_settings

    return plugin_settings(ConfigFile().config, plugin_id)


def describe(path: Path) -> dict[str, Any]:
    """Everything `inspect` shows, as data (also `inspect --json`)."""
    from openkoi.plugins._approvals import ApprovalStore, differences
    from openkoi.plugins._limits import effective_limits
    from openkoi.plugins._loader import build_policy, resolve_secrets
    from openkoi.plugins._manifest import RequestedLimits, host_wit_version, read_plugin_file

    plugin = read_plugin_file(path)
    m = plugin.manifest
    settings = _configured_settings(m.id)
    policy = build_policy(plugin, settings)
    configured, _missing = resolve_secrets(plugin, settings)
    limits = effective_limits(m.limits, RequestedLimits(**settings.limits.model_dump()))
    approved = ApprovalStore().get(plugin.path)
    if approved is None:
        approval = "not yet approved (approved on first load, or `openkoi plugin approve`)"
    elif approved.digest == plugin.digest and approved.plugin_id == m.id:
        approval = f"approved (sha256 {approved.digest[:16]})"
    else:
        more = differences(plugin, approved)
        approval = (
            "changed since approval; asks for more: " + ", ".join(more)
            if more
            else "changed since approval; asks for nothing new (accepted on load)"
        )
    return {
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "description": m.description,
        "file": str(plugin.path),
        "size": plugin.size,
        "sha256": plugin.digest,
        "wit": m.wit,
        "host_wit": host_wit_version(),
        "exports": list(plugin.exports),
        "imports": list(plugin.imports),
        "network": [
            {
                "origin": o.normalized,
                "granted_by": "user" if o.user_granted else "manifest",
            }
            for o in policy.origins
        ],
        "manifest_network": list(m.allow),
        "secrets": [
            {
                "name": s.name,
                "env": list(s.env),
                "origins": list(s.origins) or ["any allowed origin"],
                "configured": s.name in configured,
            }
            for s in m.secrets
        ],
        "config": [
            {
                "key": c.key,
                "description": c.description,
                "default": c.default,
                "value": settings.config.get(c.key),
            }
            for c in m.config
        ],
        "limits": limits.describe(),
        "pool_size": settings.pool_size,
        "approval": approval,
    }


@plugin.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the description as JSON")
def plugin_inspect(file: Path, as_json: bool) -> None:
    """Show a plugin's manifest, capabilities, exports, WIT version, size and digest.

    Nothing is compiled or run. Example: openkoi plugin inspect ~/.openkoi/plugins/wasm/cohere.wasm
    """
    info = describe(file)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    wasi = sorted(
        {i.split("/")[0].removeprefix("wasi:") for i in info["imports"] if i.startswith("wasi:")}
    )
    own = [i for i in info["imports"] if not i.startswith("wasi:")]
    rows: list[tuple[str, str]] = [
        ("plugin", f"{info['id']} {info['version']} ({info['name']})"),
        ("file", f"{info['file']} ({_size(info['size'])})"),
        ("sha256", info["sha256"]),
        ("wit", f"openkoi:provider@{info['wit']} (this host speaks {info['host_wit']})"),
        ("exports", ", ".join(info["exports"])),
        ("imports", ", ".join(own)),
    ]
    if wasi:
        rows.append(
            ("", "wasi " + ", ".join(wasi) + " (provided empty: no env, files, sockets or stdio)")
        )
    for i, net in enumerate(info["network"]):
        by = "user-granted" if net["granted_by"] == "user" else "manifest"
        rows.append(("network" if i == 0 else "", f"{net['origin']}  [{by}]"))
    for i, s in enumerate(info["secrets"]):
        env = f" (env {', '.join(s['env'])})" if s["env"] else ""
        state = "configured" if s["configured"] else "not configured"
        to = ", ".join(s["origins"])
        rows.append(("secrets" if i == 0 else "", f"{s['name']}{env}, sent to {to}: {state}"))
    for i, c in enumerate(info["config"]):
        value = c["value"] if c["value"] is not None else c["default"]
        shown = f" = {value!r}" if value is not None else ""
        rows.append(("config" if i == 0 else "", f"{c['key']}{shown}  {c['description']}".rstrip()))
    for i, (k, v) in enumerate(info["limits"].items()):
        rows.append(("limits" if i == 0 else "", f"{k}: {v}"))
    rows.append(("pool", f"{info['pool_size']} instances"))
    rows.append(("approval", info["approval"]))
    for label, value in rows:
        click.echo(f"{label:<9} {value}")


@plugin.command("approve")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
def plugin_approve(file: Path, yes: bool) -> None:
    """Record the capabilities of FILE as approved (its digest, origins and secrets).

    Example: openkoi plugin approve ~/.openkoi/plugins/wasm/cohere.wasm
    """
    from openkoi.plugins._approvals import ApprovalStore, Capabilities, differences
    from openkoi.plugins._manifest import read_plugin_file

    if not yes and not _in_terminal():
        raise click.UsageError(
            f"approving needs -y when not run in a terminal: openkoi plugin approve -y {file}"
        )
    plugin = read_plugin_file(file)
    store = ApprovalStore()
    wanted = Capabilities.of(plugin)
    previous = store.get(plugin.path)
    click.echo(
        f"plugin {plugin.manifest.id} {plugin.manifest.version} (sha256 {plugin.digest[:16]})"
    )
    if previous is not None:
        diff = differences(plugin, previous) + wanted.dropped(previous.capabilities)
        click.echo("changes since the last approval:" if diff else "no new capabilities")
        for line in diff:
            click.echo(f"  {line}")
    click.echo("it may reach: " + (", ".join(sorted(wanted.origins)) or "nothing"))
    for name, grant in sorted(wanted.secrets.items()):
        where = "any allowed origin" if grant.origins == ("*",) else ", ".join(grant.origins)
        click.echo(f"secret {name}: read from {', '.join(grant.env)}; sent to {where}")
    for name, value in sorted(wanted.limits.items()):
        click.echo(f"limit above the default: {name} = {value}")
    if not yes and not click.confirm("approve?", default=False):
        raise click.exceptions.Exit(1)
    store.record(plugin)
    click.echo(f"approved {plugin.manifest.id}")


def _in_terminal() -> bool:
    import sys

    return sys.stdin.isatty()


_TEMPLATE_PROVIDER = '''"""{name}: an openkoi provider plugin for an OpenAI-style chat API.

Edit the request and response mapping for your service. Build with:
    openkoi plugin build provider.py --manifest plugin.toml -o {id}.wasm
"""

from openkoi_guest import (
    ChatResponse,
    Provider,
    Stop,
    TextDelta,
    ToolCall,
    Unsupported,
    Usage,
    UsageUpdate,
    config,
    http,
)

_STOP = {{"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}}


def _content(m):
    """Text, or (openkoi:provider 0.2) a list of parts: text and images; anything else is
    refused rather than dropped."""
    if not m.parts:
        return m.content or ""
    out = []
    for part in m.parts:
        if isinstance(part, str):
            out.append({{"type": "text", "text": part}})
        elif part.kind == "image":
            out.append({{"type": "image_url", "image_url": {{"url": part.url or part.data_url()}}}})
        else:
            raise Unsupported(f"this service takes images only, not {{part.media_type}}")
    return out


def _url(path):
    return (config("base_url") or "https://api.example.com/v1").rstrip("/") + path


def _headers():
    return {{"authorization": "Bearer " + http.secret("{secret}")}}


def _body(request, stream):
    messages = [{{"role": "system", "content": request.system}}] if request.system else []
    for m in request.messages:
        messages.append({{"role": m.role, "content": _content(m)}})
    body = {{"model": request.model, "messages": messages, "stream": stream}}
    if request.max_tokens:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.schema is not None:
        body["response_format"] = {{
            "type": "json_schema",
            "json_schema": {{"name": "response", "schema": request.schema}},
        }}
    choice = request.tool_choice
    if choice is not None:
        named = {{"type": "function", "function": {{"name": choice}}}}
        body["tool_choice"] = choice if choice in ("auto", "none", "required") else named
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
    body.update(request.extra)
    return body


def _usage(data):
    usage = data.get("usage") or {{}}
    return Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))


class {cls}(Provider):
    name = "{name}"
    default_model = "example-model"

    def chat(self, request):
        response = http.send("POST", _url("/chat/completions"), headers=_headers(),
                             json=_body(request, False)).raise_for_status()
        data = response.json()
        choice = data["choices"][0]
        message = choice.get("message") or {{}}
        return ChatResponse(
            content=message.get("content") or "",
            tool_calls=[
                ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{{}}")
                for c in message.get("tool_calls") or []
            ],
            usage=_usage(data),
            stop_reason=_STOP.get(choice.get("finish_reason"), "other"),
            model=data.get("model", request.model),
        )

    def stream(self, request):
        with http.stream("POST", _url("/chat/completions"), headers=_headers(),
                         json=_body(request, True)) as response:
            response.raise_for_status()
            for event in response.sse():
                if event.data == "[DONE]":
                    break
                data = event.json()
                if data.get("usage"):
                    yield UsageUpdate(_usage(data))
                for choice in data.get("choices") or []:
                    text = (choice.get("delta") or {{}}).get("content")
                    if text:
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        yield Stop(_STOP.get(choice["finish_reason"], "other"))
'''

_TEMPLATE_MANIFEST = """id = "{id}"
name = "{name}"
version = "0.1.0"
wit = "{wit}"
description = "A provider plugin for an OpenAI-style chat API"

[network]
allow = ["https://api.example.com"]

[secrets]
{secret} = {{ env = ["{secret}"], description = "the API key" }}

[config]
base_url = {{ description = "the API base URL", default = "https://api.example.com/v1" }}

[limits]
memory_mb = 128
timeout_ms = 120000
"""


@plugin.command("new")
@click.argument("name")
@click.option(
    "-d", "--directory", type=click.Path(path_type=Path), help="where to create it (default: NAME)"
)
def plugin_new(name: str, directory: Path | None) -> None:
    """Scaffold a working plugin: provider.py and plugin.toml.

    Example: openkoi plugin new my-provider
    """
    import re

    from openkoi._fileio import atomic_write_text
    from openkoi.plugins._manifest import host_wit_version

    plugin_id = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not plugin_id or not plugin_id[0].isalpha():
        raise click.UsageError(f"{name!r} does not make a plugin id (start with a letter)")
    plugin_id = plugin_id[:40]
    directory = directory or Path(plugin_id)
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} exists and is not empty")
    words = re.split(r"[^A-Za-z0-9]+", name)
    cls = "".join(w[:1].upper() + w[1:] for w in words if w) + "Provider"
    secret = re.sub(r"[^A-Z0-9]+", "_", plugin_id.upper()) + "_API_KEY"
    values = {
        "id": plugin_id,
        "name": name,
        "cls": cls if cls[0].isalpha() else "Plugin" + cls,
        "secret": secret,
        "wit": host_wit_version(),
    }
    atomic_write_text(directory / "provider.py", _TEMPLATE_PROVIDER.format(**values))
    atomic_write_text(directory / "plugin.toml", _TEMPLATE_MANIFEST.format(**values))
    click.echo(f"created {directory}/provider.py and {directory}/plugin.toml")
    click.echo(
        f"build it:  openkoi plugin build {directory}/provider.py "
        f"--manifest {directory}/plugin.toml -o {directory}/{plugin_id}.wasm"
    )


@plugin.command("list")
def plugin_list() -> None:
    """The plugins listed in config ([plugins] wasm) and whether each loads.

    Only each plugin's manifest is read; `openkoi plugin inspect FILE` shows its sha256.

    Example: openkoi plugin list
    """
    from openkoi._config import ConfigFile
    from openkoi.plugins._loader import read_configured

    config = ConfigFile().config
    if not config.plugins.wasm:
        click.echo('no plugins configured; add them under [plugins] wasm = ["path.wasm"]')
        return
    items = read_configured(config)
    ids = [i.plugin.manifest.id for i in items if i.plugin is not None]
    for table in sorted(set(config.plugins.model_extra or {}) - set(ids)):
        click.echo(
            f"note: [plugins.{table}] matches no configured plugin{did_you_mean(table, ids)}",
            err=True,
        )
    for item in items:
        if item.plugin is None or item.error is not None:
            label = item.id or "?"
            click.echo(f"{label:<16} refused  {item.path}: {item.error}")
            continue
        m = item.plugin.manifest
        state = "approved" if item.approval == "approved" else "new (recorded on first use)"
        click.echo(f"{m.id:<16} ok       {m.version:<8} {state}  {item.path}")
