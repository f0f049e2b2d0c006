"""The manifest, the component sections, approvals and the loader: strict validation with exact
messages, and malformed plugin files refused before anything is compiled."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openkoi._config import validate_config
from openkoi._errors import ConfigError, PluginApprovalError, ProviderError
from openkoi._paths import openkoi_home
from openkoi.plugins._approvals import ApprovalStore, check_approval
from openkoi.plugins._convert import PROVIDER_ERROR_CASES
from openkoi.plugins._limits import HOST_MAXIMUM, MIB, effective_limits
from openkoi.plugins._loader import build_policy, config_values, plugin_settings
from openkoi.plugins._manifest import (
    SECTION_NAME,
    ManifestError,
    PluginLoadError,
    RequestedLimits,
    _encode_leb,
    embed_manifest,
    load_manifest_toml,
    parse_manifest,
    read_plugin_file,
)

VALID: dict[str, Any] = {
    "id": "acme",
    "name": "Acme",
    "version": "1.2.3",
    "wit": "0.1.0",
    "network": {"allow": ["https://api.acme.example", "https://*.cdn.acme.example"]},
    "secrets": {"ACME_KEY": {"env": ["ACME_KEY", "ACME_TOKEN"], "description": "key"}},
    "config": {"region": {"description": "where", "default": "eu"}},
    "limits": {"memory_mb": 96, "timeout_ms": 30000},
}

# A component that exports openkoi:provider/provider (an empty instance): enough for every check
# that reads sections, nothing that instantiates.
PROVIDER_WAT = '(component (instance $i) (export "openkoi:provider/provider@0.1.0" (instance $i)))'


def _wat(text: str) -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(text))


def _with(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(VALID))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _raw_section(wasm: bytes, payload: bytes, name: str = SECTION_NAME) -> bytes:
    label = name.encode()
    body = _encode_leb(len(label)) + label + payload
    return wasm + b"\x00" + _encode_leb(len(body)) + body


def _plugin(tmp_path: Path, manifest: dict[str, Any] | None = None, name: str = "p.wasm") -> Path:
    path = tmp_path / name
    parsed = parse_manifest(manifest or VALID, "test")
    path.write_bytes(embed_manifest(_wat(PROVIDER_WAT), parsed))
    return path


def test_a_valid_manifest_parses_into_typed_fields() -> None:
    m = parse_manifest(VALID, "plugin.toml")
    assert (m.id, m.name, m.version, m.wit) == ("acme", "Acme", "1.2.3", "0.1.0")
    assert m.allow == ("https://api.acme.example", "https://*.cdn.acme.example")
    assert [(s.name, s.env) for s in m.secrets] == [("ACME_KEY", ("ACME_KEY", "ACME_TOKEN"))]
    assert [(c.key, c.default) for c in m.config] == [("region", "eu")]
    assert m.limits == RequestedLimits(memory_mb=96, timeout_ms=30000)
    assert parse_manifest(json.loads(m.to_json()), "again") == m


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            _with(extra=1),
            "unknown field 'extra' in the manifest (known fields: id, name, version, wit, "
            "description, network, secrets, config, limits)",
        ),
        (_with(id=None), "missing required field 'id'"),
        (_with(network=None), "missing required field 'network'"),
        (
            _with(id="Acme/x"),
            "id 'Acme/x' must be 1-40 characters of a-z, 0-9 and '-', starting with a letter "
            "(it is the provider id in `id/model`)",
        ),
        (_with(name=""), "name must not be empty"),
        (_with(name=3), "name must be a string, not int"),
        (_with(version="1.2"), "version must look like '1.2.3', not '1.2'"),
        (_with(wit="latest"), "wit must be a version like '0.2.1', not 'latest'"),
        (
            _with(network={"allow": []}),
            "network.allow is empty: a provider plugin must declare the origins it calls, "
            'e.g. allow = ["https://api.example.com"]',
        ),
        (
            _with(network={"allow": "https://api.acme.example"}),
            'network.allow must be a list of origins like "https://api.example.com"',
        ),
        (
            _with(network={"allow": ["https://a.example"], "deny": []}),
            "unknown field 'deny' in [network] (known fields: allow)",
        ),
        (_with(network={}), "missing required field 'allow' in [network]"),
        (
            _with(secrets={"acme_key": {}}),
            "secret name 'acme_key' must be upper-case letters, digits and '_'",
        ),
        (
            _with(secrets={"ACME_KEY": {"value": "sk-123"}}),
            "unknown field 'value' in secrets.ACME_KEY (known fields: env, description, origins)",
        ),
        (
            _with(secrets={"ACME_KEY": {"origins": ["https://evil.example"]}}),
            "secrets.ACME_KEY.origins lists https://evil.example, which network.allow does not; "
            "a secret can only be bound to origins the plugin may reach",
        ),
        (
            _with(secrets={"ACME_KEY": {"origins": "https://api.acme.example"}}),
            "secrets.ACME_KEY.origins must be a list of origins like ['https://api.acme.example']",
        ),
        (
            _with(secrets={"ACME_KEY": {"env": "ACME_KEY"}}),
            "secrets.ACME_KEY.env must be a list of environment variable names",
        ),
        (
            _with(config={"Region": {}}),
            "config key 'Region' must be lower-case letters, digits and '_'",
        ),
        (_with(limits={"memory_mb": -1}), "limits.memory_mb must be a positive integer, not -1"),
        (
            _with(limits={"memory_mb": True}),
            "limits.memory_mb must be a positive integer, not True",
        ),
        (
            _with(limits={"cpu": 2}),
            "unknown field 'cpu' in [limits] (known fields: memory_mb, timeout_ms, "
            "event_timeout_ms, max_response_bytes, max_requests)",
        ),
    ],
)
def test_a_malformed_manifest_is_refused_with_an_exact_message(
    manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest, "plugin.toml")
    assert str(caught.value) == f"invalid plugin manifest (plugin.toml): {message}"


def test_a_bad_origin_quotes_the_entry_and_the_fix() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(_with(network={"allow": ["api.acme.example"]}), "plugin.toml")
    text = str(caught.value)
    assert text.startswith("invalid plugin manifest (plugin.toml): network.allow entry ")
    assert "'api.acme.example'" in text
    with pytest.raises(ManifestError, match="path"):
        parse_manifest(_with(network={"allow": ["https://api.acme.example/v1"]}), "plugin.toml")


@pytest.mark.parametrize("wit", ["0.3.0", "1.1.0", "0.1.9", "0.2.2"])
def test_an_incompatible_wit_version_is_refused(wit: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(_with(wit=wit), "plugin.toml")
    assert str(caught.value) == (
        f"plugin (plugin.toml) targets openkoi:provider@{wit}, but this openkoi speaks "
        "openkoi:provider@0.2.1 (and loads 0.1.0, 0.2.0); rebuild the plugin against "
        "openkoi:provider@0.2.x or use an openkoi that supports it"
    )


@pytest.mark.parametrize("wit", ["0.1.0", "0.2.0", "0.2.1"])
def test_every_contract_version_is_accepted(wit: str) -> None:
    assert parse_manifest(_with(wit=wit), "plugin.toml").wit == wit


def test_manifest_toml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "plugin.toml"
    bad.write_text('id = "x"\nname = ', encoding="utf-8")
    with pytest.raises(ManifestError, match="is not valid TOML"):
        load_manifest_toml(bad)
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest_toml(tmp_path / "missing.toml")


# -- plugin files -------------------------------------------------------------------------------


def test_the_manifest_travels_in_the_component_and_is_read_without_compiling(
    tmp_path: Path,
) -> None:
    path = _plugin(tmp_path)
    plugin = read_plugin_file(path)
    assert plugin.manifest == parse_manifest(VALID, "x")
    assert plugin.exports == ("openkoi:provider/provider@0.1.0",)
    assert plugin.size == path.stat().st_size and len(plugin.digest) == 64
    # Embedding again replaces the section rather than adding a second one.
    again = embed_manifest(path.read_bytes(), parse_manifest(_with(version="2.0.0"), "x"))
    assert again.count(SECTION_NAME.encode()) == 1
    (tmp_path / "again.wasm").write_bytes(again)
    assert read_plugin_file(tmp_path / "again.wasm").manifest.version == "2.0.0"


def test_reading_a_plugin_does_not_import_wasmtime(tmp_path: Path) -> None:
    path = _plugin(tmp_path)
    code = (
        "import sys; from pathlib import Path; import openkoi\n"
        "from openkoi.plugins._manifest import read_plugin_file\n"
        "from openkoi.plugins._loader import read_configured\n"
        f"read_plugin_file(Path({str(path)!r}))\n"
        "print('wasmtime' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: b"", "is not a WebAssembly component: the file is empty"),
        (lambda: b"not wasm at all", "does not start with the WebAssembly component header"),
        (
            lambda: _wat("(module)"),
            "is a core WebAssembly module, not a component; build it with `openkoi plugin "
            "build` (componentize-py) so it targets the openkoi:provider world",
        ),
        (
            lambda: embed_manifest(_wat(PROVIDER_WAT), parse_manifest(VALID, "x"))[:-40],
            "is not a valid component (truncated or corrupt: section 0 runs past the end of "
            "the file)",
        ),
        (
            lambda: _wat(PROVIDER_WAT),
            "has no embedded manifest (custom section 'openkoi-manifest'); build it with "
            "`openkoi plugin build provider.py --manifest plugin.toml -o plugin.wasm`",
        ),
        (
            lambda: _raw_section(_wat(PROVIDER_WAT), b"{not json"),
            "has a manifest section that is not valid JSON",
        ),
        (
            lambda: _raw_section(_wat(PROVIDER_WAT), json.dumps(_with(color="red")).encode()),
            "unknown field 'color' in the manifest",
        ),
        (
            lambda: _raw_section(
                _wat(PROVIDER_WAT), json.dumps(_with(network={"allow": []})).encode()
            ),
            "network.allow is empty",
        ),
        (
            lambda: embed_manifest(_wat("(component)"), parse_manifest(VALID, "x")),
            "is not an openkoi provider plugin: it must export "
            "openkoi:provider/provider@0.2.1 but exports nothing",
        ),
        (
            lambda: embed_manifest(
                _wat('(component (instance $i) (export "acme:other/world@1.0.0" (instance $i)))'),
                parse_manifest(VALID, "x"),
            ),
            "but exports acme:other/world@1.0.0",
        ),
        (
            lambda: embed_manifest(
                _wat(
                    '(component (import "wasi:http/outgoing-handler@0.2.0" (instance)) '
                    '(instance $i) (export "openkoi:provider/provider@0.1.0" (instance $i)))'
                ),
                parse_manifest(VALID, "x"),
            ),
            "imports wasi:http/outgoing-handler@0.2.0, which is refused: wasi:http would bypass "
            "the egress policy",
        ),
        (
            lambda: embed_manifest(
                _wat(
                    '(component (instance $i) (export "openkoi:provider/provider@0.3.0" '
                    "(instance $i)))"
                ),
                parse_manifest(VALID, "x"),
            ),
            "targets openkoi:provider@0.3.0, but this openkoi speaks openkoi:provider@0.2.1",
        ),
    ],
    ids=[
        "empty",
        "not-wasm",
        "core-module",
        "truncated",
        "no-manifest",
        "manifest-not-json",
        "unknown-field",
        "empty-allow-list",
        "no-exports",
        "other-world",
        "wasi-http",
        "newer-wit-export",
    ],
)
def test_malformed_plugin_files_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "plugin.wasm"
    path.write_bytes(make())
    with pytest.raises(PluginLoadError) as caught:
        read_plugin_file(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_plugin_file(tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match="does not exist"):
        read_plugin_file(tmp_path / "nope.wasm")


# -- approvals ----------------------------------------------------------------------------------


def test_approvals_record_first_sight_and_refuse_a_plugin_that_asks_for_more(
    tmp_path: Path,
) -> None:
    store = ApprovalStore(tmp_path / "approvals.json")
    first = read_plugin_file(_plugin(tmp_path))
    assert check_approval(first, store) == "recorded"
    assert check_approval(first, store) == "approved"
    assert (tmp_path / "approvals.json").stat().st_mode & 0o777 == 0o600

    fewer = _with(version="1.2.4", network={"allow": ["https://api.acme.example"]})
    changed = read_plugin_file(_plugin(tmp_path, fewer))  # the same configured file, replaced
    assert check_approval(changed, store) == "updated"

    greedy = _with(
        version="1.3.0",
        network={"allow": ["https://api.acme.example", "https://evil.example"]},
        secrets={"ACME_KEY": {}, "OTHER_TOKEN": {}},
    )
    more = read_plugin_file(_plugin(tmp_path, greedy))
    with pytest.raises(PluginApprovalError) as caught:
        check_approval(more, store)
    text = str(caught.value)
    assert "asks for more than you approved" in text
    assert "+ network https://evil.example" in text
    assert "+ secret OTHER_TOKEN (read from OTHER_TOKEN)" in text
    assert f"openkoi plugin approve {more.path}" in text
    store.record(more)  # what `openkoi plugin approve` does
    assert check_approval(more, store) == "approved"


def _approved(tmp_path: Path, manifest: dict[str, Any]) -> tuple[ApprovalStore, Path]:
    store = ApprovalStore(tmp_path / "approvals.json")
    path = _plugin(tmp_path, manifest)
    assert check_approval(read_plugin_file(path), store) == "recorded"
    return store, path


def _refusal(store: ApprovalStore, path: Path) -> str:
    with pytest.raises(PluginApprovalError) as caught:
        check_approval(read_plugin_file(path), store)
    return str(caught.value)


def test_an_upgrade_that_reads_a_secret_from_another_variable_needs_approval(
    tmp_path: Path,
) -> None:
    """The attack: same secret name, now read from OPENAI_API_KEY, the user's OpenAI key."""
    store, path = _approved(tmp_path, _with(secrets={"ACME_KEY": {"env": ["MY_KEY"]}}))
    _plugin(tmp_path, _with(version="1.2.4", secrets={"ACME_KEY": {"env": ["OPENAI_API_KEY"]}}))
    text = _refusal(store, path)
    assert "+ secret ACME_KEY read from OPENAI_API_KEY" in text


def test_an_upgrade_that_unbinds_a_secret_from_its_origin_needs_approval(tmp_path: Path) -> None:
    bound = {"ACME_KEY": {"env": ["ACME_KEY"], "origins": ["https://api.acme.example"]}}
    store, path = _approved(tmp_path, _with(secrets=bound))
    _plugin(tmp_path, _with(version="1.2.4", secrets={"ACME_KEY": {"env": ["ACME_KEY"]}}))
    assert "+ secret ACME_KEY sent to any allowed origin" in _refusal(store, path)


def test_an_upgrade_that_raises_its_limits_needs_approval(tmp_path: Path) -> None:
    store, path = _approved(tmp_path, _with(limits={}))
    maximal = {"memory_mb": 1024, "timeout_ms": 600_000, "max_requests": 1000}
    _plugin(tmp_path, _with(version="1.2.4", limits=maximal))
    text = _refusal(store, path)
    assert "+ limit memory_mb 128 -> 1024" in text
    assert "+ limit timeout_ms 120000 -> 600000" in text
    assert "+ limit max_requests 32 -> 1000" in text
    # lower than approved again: accepted without asking
    store.record(read_plugin_file(path))
    _plugin(tmp_path, _with(version="1.2.5", limits={"memory_mb": 512}))
    assert check_approval(read_plugin_file(path), store) == "updated"


def test_a_file_at_an_approved_path_that_declares_another_id_is_refused(tmp_path: Path) -> None:
    """The attack: replace an approved file with one that is a new plugin (new id, new
    origins), so the user's [plugins.<old id>] narrowing no longer applies."""
    store, path = _approved(tmp_path, VALID)
    other = _with(id="acme-two", network={"allow": ["https://exfil.example"]})
    _plugin(tmp_path, other)
    text = _refusal(store, path)
    assert "now declares the plugin id 'acme-two' (approved as 'acme')" in text
    assert "- id acme\n  + id acme-two" in text
    assert "+ network https://exfil.example" in text
    store.record(read_plugin_file(path))  # `openkoi plugin approve`
    assert check_approval(read_plugin_file(path), store) == "approved"


def test_approvals_of_the_first_format_are_read_by_their_path(tmp_path: Path) -> None:
    path = _plugin(tmp_path, VALID)
    plugin = read_plugin_file(path)
    old = {
        "acme": {
            "digest": plugin.digest,
            "origins": ["https://api.acme.example", "https://*.cdn.acme.example"],
            "secrets": ["ACME_KEY"],
            "path": str(path),
            "version": "1.2.3",
        }
    }
    (tmp_path / "approvals.json").write_text(json.dumps(old))
    store = ApprovalStore(tmp_path / "approvals.json")
    assert check_approval(plugin, store) == "approved"
    # the first format knew no env sources: the manifest's ACME_TOKEN is new
    _plugin(tmp_path, _with(version="1.2.4"))
    assert "+ secret ACME_KEY read from ACME_TOKEN" in _refusal(store, path)


# -- settings and the registry ------------------------------------------------------------------


def _config(tmp_path: Path, plugins: dict[str, Any]) -> Any:
    return validate_config({"plugins": plugins})


def test_per_plugin_settings_are_validated(tmp_path: Path) -> None:
    plugin = read_plugin_file(_plugin(tmp_path))
    config = _config(tmp_path, {"acme": {"pool_size": 0}})
    with pytest.raises(ConfigError, match=r"plugins\.acme\.pool_size"):
        plugin_settings(config, "acme")
    with pytest.raises(ConfigError, match=r"unknown key 'plugins\.acme\.colour'"):
        plugin_settings(_config(tmp_path, {"acme": {"colour": "red"}}), "acme")

    narrowed = plugin_settings(
        _config(tmp_path, {"acme": {"network": {"only": ["https://api.acme.example"]}}}), "acme"
    )
    assert [o.normalized for o in build_policy(plugin, narrowed).origins] == [
        "https://api.acme.example"
    ]
    wrong = plugin_settings(
        _config(tmp_path, {"acme": {"network": {"only": ["https://evil.example"]}}}), "acme"
    )
    with pytest.raises(ConfigError, match="does not declare"):
        build_policy(plugin, wrong)

    extended = plugin_settings(
        _config(tmp_path, {"acme": {"network": {"extend": ["http://127.0.0.1:8080"]}}}), "acme"
    )
    origins = build_policy(plugin, extended).origins
    assert [(o.normalized, o.user_granted) for o in origins][-1] == ("http://127.0.0.1:8080", True)
    assert not any(o.user_granted for o in origins[:-1])

    with pytest.raises(ConfigError, match="which the plugin does not declare"):
        config_values(
            plugin, plugin_settings(_config(tmp_path, {"acme": {"config": {"zone": "x"}}}), "acme")
        )
    values = config_values(plugin, plugin_settings(_config(tmp_path, {}), "acme"))
    assert values == {"region": "eu"}


def test_limits_take_the_user_then_the_manifest_then_the_default_clamped_to_the_host() -> None:
    limits = effective_limits(
        RequestedLimits(memory_mb=999_999, timeout_ms=5000), RequestedLimits(timeout_ms=7000)
    )
    assert limits.memory_bytes == HOST_MAXIMUM.memory_bytes == 1024 * MIB
    assert limits.call_seconds == 7.0
    assert limits.max_requests == 32


def test_the_registry_registers_configured_plugins_and_explains_refusals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from openkoi._registry import ProviderRegistry

    good = _plugin(tmp_path, _with(id="goodone"), "good.wasm")
    greedy_id = _with(id="greedy")
    greedy = _plugin(tmp_path, greedy_id, "greedy.wasm")
    check_approval(read_plugin_file(greedy))  # approved once as it was...
    greedy_id["network"] = {"allow": ["https://evil.example"]}
    _plugin(tmp_path, greedy_id, "greedy.wasm")  # ...then it changed and asks for more
    config = validate_config(
        {"plugins": {"wasm": [str(good), str(greedy), str(tmp_path / "gone.wasm")]}}
    )
    with caplog.at_level(logging.WARNING, "openkoi.plugins"):
        registry = ProviderRegistry(config, load_entry_points=False)
    assert "goodone" in registry.ids() and "greedy" in registry.ids()
    assert registry.spec("goodone").auth == "plugin"
    assert registry.is_configured("goodone")
    assert "gone.wasm" in caplog.text and "does not exist" in caplog.text
    with pytest.raises(PluginApprovalError, match=r"evil\.example"):
        registry.get("greedy")


def test_every_wit_provider_error_case_maps_to_a_provider_error() -> None:
    wit = (Path(__file__).resolve().parent.parent / "wit" / "provider.wit").read_text()
    block = wit[wit.index("variant provider-error {") :]
    block = block[: block.index("}")]
    cases = re.findall(r"^\s*([a-z-]+)\(error-info\),", block, re.MULTILINE)
    assert set(cases) == set(PROVIDER_ERROR_CASES)
    transient = {case for case, cls in PROVIDER_ERROR_CASES.items() if cls.transient}
    assert transient == {
        "rate-limited",
        "overloaded",
        "server",
        "timeout",
        "network",
        "malformed-response",
    }
    assert all(issubclass(cls, ProviderError) for cls in PROVIDER_ERROR_CASES.values())


def test_secrets_resolve_from_the_mapped_variable_the_manifest_names_or_a_saved_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openkoi.plugins._loader import resolve_secrets

    two = _with(secrets={"ACME_KEY": {"env": ["ACME_TOKEN"]}, "EXTRA_KEY": {}})
    plugin = read_plugin_file(_plugin(tmp_path, two))
    none = plugin_settings(_config(tmp_path, {}), "acme")
    assert resolve_secrets(plugin, none) == ({}, ["ACME_KEY", "EXTRA_KEY"])

    saved = openkoi_home() / "credentials" / "acme.key"
    saved.parent.mkdir(parents=True)
    saved.write_text("saved-key-0123456789\n", encoding="utf-8")
    found, missing = resolve_secrets(plugin, none)
    assert found["ACME_KEY"].reveal() == "saved-key-0123456789" and missing == ["EXTRA_KEY"]

    monkeypatch.setenv("ACME_KEY", "by-its-own-name-123")
    assert resolve_secrets(plugin, none)[0]["ACME_KEY"].reveal() == "by-its-own-name-123"
    monkeypatch.setenv("ACME_TOKEN", "from-manifest-env-123")
    assert resolve_secrets(plugin, none)[0]["ACME_KEY"].reveal() == "from-manifest-env-123"
    monkeypatch.setenv("MY_ACME", "user-mapped-0123")
    monkeypatch.setenv("EXTRA_KEY", "extra-0123456")
    mapped = plugin_settings(
        _config(tmp_path, {"acme": {"secrets": {"ACME_KEY": "MY_ACME"}}}), "acme"
    )
    found, missing = resolve_secrets(plugin, mapped)
    assert found["ACME_KEY"].reveal() == "user-mapped-0123" and missing == []
    assert "user-mapped" not in repr(found)


def test_a_secret_bound_to_origins_round_trips_through_the_embedded_manifest() -> None:
    data = _with(
        secrets={"ACME_KEY": {"env": ["ACME_KEY"], "origins": ["https://api.acme.example"]}}
    )
    manifest = parse_manifest(data, "plugin.toml")
    assert manifest.secrets[0].origins == ("https://api.acme.example",)
    again = parse_manifest(json.loads(manifest.to_json()), "embedded")
    assert again.secrets == manifest.secrets
