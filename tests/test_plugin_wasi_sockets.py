"""A guest that calls WASI sockets directly gets nothing from the host.

The hostile Python plugin cannot even try: the guest's CPython has no `socket` module
(tests/test_plugin_hostile.py). The component here (tests/plugins/wasi_sockets/sockets.wat,
component-model text, no language runtime) imports `wasi:sockets/*@0.2.12` itself and runs in a
Store made by the plugin runtime's own `new_store`, linked by the process `linker()`, so these
tests pin what the HOST answers a guest that asks for the network.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _plugins
import pytest
from openkoi._types import ChatRequest, Message
from openkoi.plugins._call import CallContext, activate
from openkoi.plugins._convert import record
from openkoi.plugins._engine import engine
from openkoi.plugins._limits import DEFAULT_LIMITS
from openkoi.plugins._linker import instantiate, prepare
from openkoi.plugins._loader import load_plugin_file
from openkoi.plugins._runtime import new_store
from wasmtime import Store
from wasmtime.component import Component, Variant

WAT = Path(__file__).resolve().parent / "plugins" / "wasi_sockets" / "sockets.wat"

# What openkoi's own WASI (`openkoi.plugins._wasi`) answers:
# - create-tcp-socket and create-udp-socket fail with `access-denied`, so the guest never holds
#   a socket and start-connect / start-bind are never reached (and are linked as traps).
# - ip-name-lookup.resolve-addresses fails with `access-denied` before it even parses the name:
#   an IP literal, which a granted lookup hands back without asking DNS, is refused the same way.
NO_SOCKET = ("create-socket", "access-denied")
NO_LOOKUP = ("resolve-addresses", "access-denied")


class Guest:
    """The sockets component, instantiated like a plugin: the process Linker, a runtime Store."""

    def __init__(
        self, component: Component, store: Store | None = None, linker: Any = None
    ) -> None:
        self.store = store if store is not None else new_store(DEFAULT_LIMITS)
        if linker is None:
            prepare(component)
            self.instance = instantiate(self.store, component)
        else:
            self.instance = linker.instantiate(self.store, component)

    def __call__(self, export: str, arg: Any) -> Any:
        """The export's answer: None (ok) or (step, error-code), run as a call of 10 s."""
        index = self.instance.get_export_index(self.store, export)
        assert index is not None, export
        func = self.instance.get_func(self.store, index)
        assert func is not None, export
        ctx = CallContext("sockets", None, None, {})
        ctx.start(10.0, "time")
        with activate(ctx):
            return func(self.store, arg)


def ipv4(port: int, address: tuple[int, int, int, int] = (127, 0, 0, 1)) -> Variant:
    return Variant("ipv4", record(port=port, address=address))


def ipv6(port: int, address: tuple[int, ...]) -> Variant:
    return Variant("ipv6", record(port=port, flow_info=0, address=address, scope_id=0))


IPV6_LOOPBACK = (0, 0, 0, 0, 0, 0, 0, 1)
IPV4_MAPPED_LOOPBACK = (0, 0, 0, 0, 0, 0xFFFF, 0x7F00, 0x0001)  # ::ffff:127.0.0.1


@pytest.fixture(scope="module")
def component() -> Component:
    return Component(engine(), WAT.read_text())


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real TCP listener on 127.0.0.1: the target a guest would want to reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.3)
    try:
        yield server
    finally:
        server.close()


def assert_no_connection(listener: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        connection, _ = listener.accept()
        connection.close()


def test_a_tcp_connect_to_a_loopback_listener_never_gets_a_socket(
    component: Component, listener: socket.socket
) -> None:
    guest = Guest(component)
    port = listener.getsockname()[1]
    assert guest("tcp-connect", ipv4(port)) == NO_SOCKET
    assert guest("tcp-connect", ipv6(port, IPV4_MAPPED_LOOPBACK)) == NO_SOCKET
    assert guest("tcp-connect", ipv4(port, (169, 254, 169, 254))) == NO_SOCKET
    assert_no_connection(listener)


def test_binding_tcp_or_udp_never_gets_a_socket(
    component: Component, listener: socket.socket
) -> None:
    guest = Guest(component)
    for export in ("tcp-bind", "udp-bind"):
        assert guest(export, ipv4(0)) == NO_SOCKET, export
        assert guest(export, ipv4(0, (0, 0, 0, 0))) == NO_SOCKET, export
        assert guest(export, ipv6(0, IPV6_LOOPBACK)) == NO_SOCKET, export
    assert_no_connection(listener)


def test_name_lookup_is_refused(component: Component) -> None:
    guest = Guest(component)
    for name in ("localhost", "127.0.0.1", "api.openai.com", ""):
        assert guest("resolve", name) == NO_LOOKUP, name


def test_the_lookup_refusal_is_the_hosts_configuration(component: Component) -> None:
    """Control: the same component, linked to wasmtime's own WASI in a store that does allow
    name lookup, is answered ok, and a different error-code comes through untouched. So
    NO_LOOKUP above is openkoi's WASI at work, not a guest that cannot make the call."""
    from wasmtime import WasiConfig, _ffi
    from wasmtime.component import Linker

    config = WasiConfig()
    _ffi.wasi_config_allow_ip_name_lookup(config.ptr(), True)
    store = Store(engine())
    store.set_wasi(config)
    store.set_epoch_deadline(1_000_000)
    wasmtime_wasi = Linker(engine())
    wasmtime_wasi.add_wasip2()
    granted = Guest(component, store, wasmtime_wasi)
    assert granted("resolve", "127.0.0.1") is None  # a literal: no DNS query is made
    assert granted("resolve", "") == ("resolve-addresses", "invalid-argument")
    assert granted("tcp-connect", ipv4(9)) == NO_SOCKET  # lookup granted, sockets still not


@pytest.mark.anyio
async def test_the_host_keeps_serving_after_the_attempts(
    component: Component,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = listener.getsockname()[1]
    for _ in range(2):  # refusals are answers, not traps: the instance stays usable
        guest = Guest(component)
        for _ in range(3):
            assert guest("tcp-connect", ipv4(port)) == NO_SOCKET
            assert guest("udp-bind", ipv4(0)) == NO_SOCKET
            assert guest("resolve", "localhost") == NO_LOOKUP
    assert_no_connection(listener)

    # A real plugin in the same process, through the same Linker, still serves.
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))
    provider = load_plugin_file(_plugins.hostile(), {"limits": {"timeout_ms": 5000}})
    try:
        reply = await provider.chat(ChatRequest(model="echo", messages=[Message.user("ping")]))
        assert reply.content == "echo: ping"
    finally:
        await provider.aclose()
