"""`openkoi demo`: the main job, offline, in one command.

It builds the Cohere example plugin (or takes it from the cache), starts a fake Cohere API on
127.0.0.1, shows what the plugin's manifest lets it do, streams a chat through the sandbox, and
shows the egress policy refusing a request the manifest does not allow. No keys, no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

_DEMO_KEY_VAR = "OPENKOI_DEMO_COHERE_KEY"
_WORDS = [
    "Server-sent",
    "events",
    "let",
    "a",
    "server",
    "push",
    "a",
    "stream",
    "of",
    "text",
    "events",
    "to",
    "a",
    "client",
    "over",
    "one",
    "long-lived",
    "HTTP",
    "response,",
    "one",
    "`data:`",
    "line",
    "at",
    "a",
    "time.",
]


def _example_plugin() -> Path:
    """The Cohere example, built once per change of its inputs, cached under OPENKOI_HOME."""
    from openkoi._paths import openkoi_home
    from openkoi.plugins._build import _repo_root, build_plugin, inputs_digest

    source = _repo_root() / "guest-sdk" / "examples" / "cohere" / "provider.py"
    manifest = source.parent / "plugin.toml"
    out = openkoi_home() / "cache" / "demo" / f"cohere-{inputs_digest(source, manifest)[:20]}.wasm"
    if out.exists():
        click.echo(f"plugin     {out} (cached build)", err=True)
        return out
    click.echo(
        "building   the Cohere example plugin with componentize-py (once, ~10 s)...", err=True
    )
    result = build_plugin(source, manifest, out)
    click.echo(f"built      {out} in {result.seconds:.1f} s", err=True)
    return out


async def _fake_cohere(key: str) -> tuple[asyncio.Server, list[str]]:
    """A tiny Cohere v2 chat API on 127.0.0.1 that streams its own SSE events."""
    seen_auth: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)
            )
            await reader.readexactly(int(headers.get("content-length", "0")))
            seen_auth.append(headers.get("authorization", ""))
            if headers.get("authorization") != f"Bearer {key}":
                body = b'{"message":"invalid api token"}'
                writer.write(
                    b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )

            async def send(kind: str, data: dict[str, object]) -> None:
                event = f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()
                writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                await writer.drain()

            await send("message-start", {"id": "demo", "delta": {"message": {"role": "assistant"}}})
            for i, word in enumerate(_WORDS):
                text = word if i == 0 else " " + word
                await send(
                    "content-delta",
                    {"index": 0, "delta": {"message": {"content": {"text": text}}}},
                )
                await asyncio.sleep(0.03)
            usage = {"tokens": {"input_tokens": 11, "output_tokens": len(_WORDS)}}
            await send("message-end", {"delta": {"finish_reason": "COMPLETE", "usage": usage}})
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen_auth


@contextlib.contextmanager
def _demo_key(value: str) -> Iterator[None]:
    previous = os.environ.get(_DEMO_KEY_VAR)
    os.environ[_DEMO_KEY_VAR] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_DEMO_KEY_VAR, None)
        else:
            os.environ[_DEMO_KEY_VAR] = previous


async def _run(path: Path) -> None:
    from openkoi._types import ChatRequest, Message
    from openkoi.plugins._errors import PluginDeniedError
    from openkoi.plugins._loader import load_plugin_file

    key = "demo-key-" + os.urandom(8).hex()
    server, seen_auth = await _fake_cohere(key)
    port = server.sockets[0].getsockname()[1]
    local = f"http://127.0.0.1:{port}"
    settings = {
        "config": {"base_url": local},
        "network": {"extend": [local]},
        "secrets": {"COHERE_API_KEY": _DEMO_KEY_VAR},
    }
    with _demo_key(key):
        started = time.perf_counter()
        provider = load_plugin_file(path, settings)
        runtime = provider.runtime
        how = "from the compiled cache" if runtime.from_cache else "compiled, now cached"
        click.echo(f"loaded     in {time.perf_counter() - started:.2f} s ({how})", err=True)
        manifest = runtime.plugin.manifest
        click.echo("")
        title = click.style(f"plugin {manifest.id} {manifest.version}", bold=True)
        click.echo(f"{title}  sha256 {runtime.plugin.digest[:16]}")
        click.echo("capabilities granted:")
        for origin in runtime.policy.origins:
            by = "user-granted for this demo" if origin.user_granted else "from the manifest"
            click.echo(f"  network  {origin.normalized:<28} {by}")
        for secret in manifest.secrets:
            click.echo(
                f"  secret   {secret.name:<28} the plugin writes {{{{secret:{secret.name}}}}}; "
                "the host fills it in"
            )
        limits = runtime.limits.describe()
        click.echo("  limits   " + ", ".join(f"{k} {v}" for k, v in limits.items()))
        click.echo("  nothing else: no sockets, files, environment or other hosts")
        click.echo("")
        try:
            click.echo(click.style("streaming a chat through the sandbox:", bold=True))
            request = ChatRequest(
                model="command-a-03-2025",
                messages=[Message.user("Explain server-sent events in one sentence")],
            )
            usage = None
            async for chunk in provider.chat_stream(request):
                if chunk.delta:
                    click.echo(chunk.delta, nl=False)
                    sys.stdout.flush()
                usage = chunk.usage or usage
            click.echo("")
            if usage is not None:
                click.echo(f"usage      {usage.input_tokens} in, {usage.output_tokens} out")
            held = "Bearer " + key
            click.echo(
                "the fake Cohere received the key: "
                + ("yes" if seen_auth and seen_auth[-1] == held else "NO")
                + "; the plugin never held it"
            )
        finally:
            await provider.aclose()

        click.echo("")
        click.echo(click.style("a request the policy refuses:", bold=True))
        hostile_settings = {**settings, "config": {"base_url": "https://cohere-mirror.example.net"}}
        refused = load_plugin_file(path, hostile_settings)
        try:
            await refused.chat(ChatRequest(model="command-a", messages=[Message.user("hi")]))
            click.echo("  (it was not refused: this should not happen)")
        except PluginDeniedError as exc:
            click.echo(f"  refused: {exc.message}")
        finally:
            await refused.aclose()
    server.close()
    await server.wait_closed()


@click.command("demo")
def demo() -> None:
    """Run a sandboxed WASM provider plugin end to end, offline, with no keys.

    Example: openkoi demo
    """
    path = _example_plugin()
    asyncio.run(_run(path))
