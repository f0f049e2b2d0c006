"""A plugin's manifest: what it is and what it may do, embedded in the component itself.

The manifest is written as `plugin.toml` next to the plugin's source and embedded by
`openkoi plugin build` as a custom section named `openkoi-manifest` (JSON), so it travels with the
`.wasm` file. `read_plugin_header` reads it, and the component's import and export names, by
seeking from one top-level section to the next (the code is never read); `read_plugin_file` reads
the whole file too, with its digest, to run it. Nothing is compiled or run here.

    id = "cohere"                      # lower-case, digits, '-': the provider id (`cohere/model`)
    name = "Cohere"
    version = "0.1.0"
    wit = "0.2.1"                      # the openkoi:provider version the plugin targets
    description = "Cohere v2 chat"     # optional

    [network]
    allow = ["https://api.cohere.com"] # scheme://host[:port], a leading "*." label allowed

    [secrets]                          # names a header may use as {{secret:NAME}}
    COHERE_API_KEY = { env = ["COHERE_API_KEY", "CO_API_KEY"], description = "API key" }

    [config]                           # keys the user may set under [plugins.cohere.config]
    base_url = { description = "API base URL", default = "https://api.cohere.com" }

    [limits]                           # requests; the host clamps each to its own maximum
    memory_mb = 128
    timeout_ms = 120000                # wall time per call
    event_timeout_ms = 60000           # wall time per stream event
    max_response_bytes = 16777216
    max_requests = 32                  # HTTP requests per call

Validation is strict: an unknown field, a wrong type, an origin that does not parse or an empty
allow-list is refused with a message naming the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from openkoi._errors import ManifestError, PluginLoadError

SECTION_NAME = "openkoi-manifest"
WIT_PACKAGE = "openkoi:provider"
HOST_WIT_VERSION = (0, 2, 1)
# Every contract version this host serves (each one's imports are linked under its own name); a
# 0.1 plugin's requests are adapted (see _convert). 0.2.1 only adds the `text-run` stream event.
SUPPORTED_WIT_VERSIONS = ((0, 1, 0), (0, 2, 0), HOST_WIT_VERSION)
PROVIDER_EXPORT = "openkoi:provider/provider"

_ID = re.compile(r"[a-z][a-z0-9-]{0,39}")
_SECRET = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CONFIG_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"
_MODULE_HEADER = b"\x00asm\x01\x00\x00\x00"


def host_wit_version() -> str:
    return ".".join(str(p) for p in HOST_WIT_VERSION)


def supported_wit_versions() -> tuple[str, ...]:
    return tuple(".".join(str(p) for p in v) for v in SUPPORTED_WIT_VERSIONS)


@dataclass(frozen=True)
class SecretDecl:
    name: str
    env: tuple[str, ...] = ()
    description: str = ""
    origins: tuple[str, ...] = ()  # where it may be sent; empty: any origin the plugin may reach


@dataclass(frozen=True)
class ConfigDecl:
    key: str
    description: str = ""
    default: str | None = None


@dataclass(frozen=True)
class RequestedLimits:
    """What the plugin asks for; `None` means the host's default."""

    memory_mb: int | None = None
    timeout_ms: int | None = None
    event_timeout_ms: int | None = None
    max_response_bytes: int | None = None
    max_requests: int | None = None


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    version: str
    wit: str
    allow: tuple[str, ...]
    description: str = ""
    secrets: tuple[SecretDecl, ...] = ()
    config: tuple[ConfigDecl, ...] = ()
    limits: RequestedLimits = field(default_factory=RequestedLimits)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "wit": self.wit,
        }
        if self.description:
            data["description"] = self.description
        data["network"] = {"allow": list(self.allow)}
        if self.secrets:
            data["secrets"] = {
                s.name: {
                    k: v
                    for k, v in (
                        ("env", list(s.env)),
                        ("description", s.description),
                        ("origins", list(s.origins)),
                    )
                    if v
                }
                for s in self.secrets
            }
        if self.config:
            data["config"] = {
                c.key: {
                    k: v
                    for k, v in (("description", c.description), ("default", c.default))
                    if v is not None and v != ""
                }
                for c in self.config
            }
        limits = {k: v for k, v in vars(self.limits).items() if v is not None}
        if limits:
            data["limits"] = limits
        return json.dumps(data, indent=2, sort_keys=False)


# -- validation -------------------------------------------------------------------------------


def _fail(message: str, source: str) -> ManifestError:
    return ManifestError(f"invalid plugin manifest ({source}): {message}", path=source)


def _only(table: Mapping[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            known = ", ".join(allowed)
            raise _fail(f"unknown field {key!r} in {where} (known fields: {known})", source)


def _string(value: Any, where: str, source: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(f"{where} must be a string, not {type(value).__name__}", source)
    if not empty and not value.strip():
        raise _fail(f"{where} must not be empty", source)
    return value


def _table(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{where} must be a table, not {type(value).__name__}", source)
    return value


def _positive(value: Any, where: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(f"{where} must be a positive integer, not {value!r}", source)
    return value


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.fullmatch(text)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3])


def check_wit_version(wanted: str, source: str) -> None:
    """Refuse a plugin built for a WIT version this host cannot serve.

    Semver for a 0.x package: the same minor version as one the host serves is compatible, and
    the plugin's patch may not be newer than that one's (a newer patch may use additions this
    host lacks).
    """
    version = parse_version(wanted)
    host = host_wit_version()
    if version is None:
        raise _fail(f"wit must be a version like {host!r}, not {wanted!r}", source)
    major, minor, patch = version
    h_major, h_minor, _ = HOST_WIT_VERSION
    compatible = any(
        major == s_major
        and (minor == s_minor if major == 0 else minor <= s_minor)
        and (patch <= s_patch if minor == s_minor else True)
        for s_major, s_minor, s_patch in SUPPORTED_WIT_VERSIONS
    )
    if not compatible:
        raise ManifestError(
            f"plugin ({source}) targets {WIT_PACKAGE}@{wanted}, but this openkoi speaks "
            f"{WIT_PACKAGE}@{host} (and loads {', '.join(supported_wit_versions()[:-1])}); rebuild the plugin against {WIT_PACKAGE}@{h_major}.{h_minor}.x "
            "or use an openkoi that supports it",
            path=source,
        )


def parse_manifest(data: Any, source: str) -> Manifest:
    """Validate a manifest's fields (from TOML or the embedded JSON) into a `Manifest`."""
    from openkoi.plugins._egress import EgressPolicy, OriginSyntaxError

    top = _table(data, "the manifest", source)
    _only(
        top,
        ("id", "name", "version", "wit", "description", "network", "secrets", "config", "limits"),
        "the manifest",
        source,
    )
    for required in ("id", "name", "version", "wit", "network"):
        if required not in top:
            raise _fail(f"missing required field {required!r}", source)
    plugin_id = _string(top["id"], "id", source)
    if not _ID.fullmatch(plugin_id):
        raise _fail(
            f"id {plugin_id!r} must be 1-40 characters of a-z, 0-9 and '-', starting with a "
            "letter (it is the provider id in `id/model`)",
            source,
        )
    name = _string(top["name"], "name", source)
    version = _string(top["version"], "version", source)
    if parse_version(version) is None:
        raise _fail(f"version must look like '1.2.3', not {version!r}", source)
    wit = _string(top["wit"], "wit", source)
    check_wit_version(wit, source)
    description = _string(top.get("description", ""), "description", source, empty=True)

    network = _table(top["network"], "[network]", source)
    _only(network, ("allow",), "[network]", source)
    if "allow" not in network:
        raise _fail("missing required field 'allow' in [network]", source)
    allow = network["allow"]
    if not isinstance(allow, list):
        raise _fail(
            'network.allow must be a list of origins like "https://api.example.com"', source
        )
    if not allow:
        raise _fail(
            "network.allow is empty: a provider plugin must declare the origins it calls, "
            'e.g. allow = ["https://api.example.com"]',
            source,
        )
    try:
        EgressPolicy.parse(allow)
    except OriginSyntaxError as exc:
        raise _fail(str(exc), source) from None

    secrets: list[SecretDecl] = []
    for secret_name, spec in _table(top.get("secrets", {}), "[secrets]", source).items():
        if not _SECRET.fullmatch(secret_name):
            raise _fail(
                f"secret name {secret_name!r} must be upper-case letters, digits and '_'", source
            )
        where = f"secrets.{secret_name}"
        spec = _table(spec, where, source)
        _only(spec, ("env", "description", "origins"), where, source)
        env = spec.get("env", [])
        if not isinstance(env, list) or not all(
            isinstance(e, str) and _ENV.fullmatch(e) for e in env
        ):
            raise _fail(f"{where}.env must be a list of environment variable names", source)
        origins = spec.get("origins", [])
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise _fail(f"{where}.origins must be a list of origins like {allow[:1]}", source)
        try:
            bound = EgressPolicy.parse(origins)
        except OriginSyntaxError as exc:
            raise _fail(f"{where}.origins: {exc}", source) from None
        allowed = EgressPolicy.parse(allow)
        for origin in bound.origins:
            if origin.normalized not in {o.normalized for o in allowed.origins}:
                raise _fail(
                    f"{where}.origins lists {origin}, which network.allow does not; a secret "
                    "can only be bound to origins the plugin may reach",
                    source,
                )
        secrets.append(
            SecretDecl(
                secret_name,
                tuple(env),
                _string(spec.get("description", ""), f"{where}.description", source, empty=True),
                tuple(origins),
            )
        )

    config: list[ConfigDecl] = []
    for key, spec in _table(top.get("config", {}), "[config]", source).items():
        if not _CONFIG_KEY.fullmatch(key):
            raise _fail(f"config key {key!r} must be lower-case letters, digits and '_'", source)
        where = f"config.{key}"
        spec = _table(spec, where, source)
        _only(spec, ("description", "default"), where, source)
        default = spec.get("default")
        if default is not None:
            default = _string(default, f"{where}.default", source, empty=True)
        config.append(
            ConfigDecl(
                key,
                _string(spec.get("description", ""), f"{where}.description", source, empty=True),
                default,
            )
        )

    limits_table = _table(top.get("limits", {}), "[limits]", source)
    names = tuple(RequestedLimits.__dataclass_fields__)
    _only(limits_table, names, "[limits]", source)
    limits = RequestedLimits(
        **{k: _positive(v, f"limits.{k}", source) for k, v in limits_table.items()}
    )
    return Manifest(
        id=plugin_id,
        name=name,
        version=version,
        wit=wit,
        allow=tuple(allow),
        description=description,
        secrets=tuple(secrets),
        config=tuple(config),
        limits=limits,
    )


def load_manifest_toml(path: Path) -> Manifest:
    """Read and validate `plugin.toml`."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(
            f"cannot read manifest {path}: {exc.strerror}", path=str(path)
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"manifest {path} is not valid TOML: {exc}", path=str(path)) from None
    return parse_manifest(data, str(path))


# -- the component binary ---------------------------------------------------------------------


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise ValueError("number too long")


def _encode_leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _name(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _leb(data, pos)
    if pos + size > len(data):
        raise ValueError("truncated name")
    return data[pos : pos + size].decode("utf-8"), pos + size


def _extern_name(data: bytes, pos: int) -> tuple[str, int]:
    kind = data[pos]
    if kind not in (0x00, 0x01):
        raise ValueError(f"unknown extern name encoding 0x{kind:02x}")
    return _name(data, pos + 1)


def _skip_externdesc(data: bytes, pos: int) -> int:
    kind = data[pos]
    pos += 1
    if kind == 0x00:  # core module: 0x11 typeidx
        return _leb(data, pos + 1)[1]
    if kind in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
        return _leb(data, pos)[1]
    if kind in (0x02, 0x03):  # value / type bound
        bound = data[pos]
        pos += 1
        if kind == 0x03 and bound == 0x01:  # sub resource
            return pos
        if kind == 0x02 and bound == 0x01 and data[pos] >= 0x64:  # primitive value type
            return pos + 1
        return _leb(data, pos)[1]
    raise ValueError(f"unknown extern descriptor 0x{kind:02x}")


def _skip_sortidx(data: bytes, pos: int) -> int:
    sort = data[pos]
    pos += 1
    if sort == 0x00:  # core sort byte follows
        pos += 1
    return _leb(data, pos)[1]


@dataclass(frozen=True)
class ComponentSections:
    """What the top level of a component binary declares, read without compiling it."""

    imports: tuple[str, ...]
    exports: tuple[str, ...]
    custom: dict[str, bytes]


# Read from a file by offset: (offset, count) -> at most `count` bytes.
_Reader = Callable[[int, int], bytes]
# The most a section read into memory by `read_plugin_header` (names, imports, exports, the
# manifest) may hold; real ones are a few KiB, and everything else is skipped by seeking.
MAX_HEADER_SECTION = 16 * 1024 * 1024
_WINDOW = 64 * 1024


class _FileWindow:
    """Reads a file by offset through one small window, so walking a few hundred section
    headers costs a few reads and never holds more than the window (or the one section read)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._start = 0
        self._data = b""

    def read(self, offset: int, count: int) -> bytes:
        stop = offset + count
        if not (self._start <= offset and stop <= self._start + len(self._data)):
            self._file.seek(offset)
            self._data = self._file.read(max(count, _WINDOW))
            self._start = offset
        return self._data[offset - self._start : stop - self._start]


def _check_header(first: bytes, source: str) -> None:
    if first[:8] == _MODULE_HEADER:
        raise PluginLoadError(
            f"{source} is a core WebAssembly module, not a component; build it with "
            "`openkoi plugin build` (componentize-py) so it targets the openkoi:provider world",
            path=source,
        )
    if first[:8] != _COMPONENT_HEADER:
        what = "is empty" if not first else "does not start with the WebAssembly component header"
        raise PluginLoadError(
            f"{source} is not a WebAssembly component: the file {what}", path=source
        )


def _walk(read: _Reader, total: int, source: str, keep: frozenset[str] | None) -> ComponentSections:
    """The top-level sections through `read`: import and export names, and the custom sections
    named in `keep` (every one when `keep` is None). Other sections are skipped, never read."""
    _check_header(read(0, 8), source)
    imports: list[str] = []
    exports: list[str] = []
    custom: dict[str, bytes] = {}
    pos = 8
    try:
        while pos < total:
            head = read(pos, 6)
            section_id = head[0]
            size, offset = _leb(head, 1)
            body = pos + offset
            end = body + size
            if end > total:
                raise ValueError(f"section {section_id} runs past the end of the file")
            if section_id == 0:
                name_head = read(body, min(size, 5))
                length, skip = _leb(name_head, 0)
                if skip + length > size:
                    raise ValueError("truncated name")
                name = _bounded(read, body + skip, length, "a custom section name").decode()
                if keep is None or name in keep:
                    start = body + skip + length
                    custom[name] = _bounded(read, start, end - start, f"section {name!r}")
            elif section_id in (10, 11):
                data = _bounded(read, body, size, f"section {section_id}")
                if section_id == 10:
                    imports += _import_names(data)
                else:
                    exports += _export_names(data)
            pos = end
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise PluginLoadError(
            f"{source} is not a valid component (truncated or corrupt: {exc})", path=source
        ) from None
    return ComponentSections(tuple(imports), tuple(exports), custom)


def _bounded(read: _Reader, offset: int, count: int, what: str) -> bytes:
    if count > MAX_HEADER_SECTION:
        raise ValueError(f"{what} is {count} bytes, more than {MAX_HEADER_SECTION}")
    data = read(offset, count)
    if len(data) != count:
        raise ValueError(f"{what} runs past the end of the file")
    return data


def _import_names(data: bytes) -> list[str]:
    names = []
    count, p = _leb(data, 0)
    for _ in range(count):
        name, p = _extern_name(data, p)
        names.append(name)
        p = _skip_externdesc(data, p)
    return names


def _export_names(data: bytes) -> list[str]:
    names = []
    count, p = _leb(data, 0)
    for _ in range(count):
        name, p = _extern_name(data, p)
        names.append(name)
        p = _skip_sortidx(data, p)
        has_desc = data[p]
        p += 1
        if has_desc == 0x01:
            p = _skip_externdesc(data, p)
    return names


def read_sections(data: bytes, source: str = "plugin") -> ComponentSections:
    """Walk a component's top-level sections. Refuses core modules and truncated files."""

    def read(offset: int, count: int) -> bytes:
        return data[offset : offset + count]

    return _walk(read, len(data), source, None)


def embed_manifest(wasm: bytes, manifest: Manifest) -> bytes:
    """The component with its manifest section replaced by `manifest`."""
    sections = read_sections(wasm)
    del sections  # validates the header and framing before anything is rewritten
    out = bytearray(wasm[:8])
    pos = 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = _leb(wasm, pos + 1)
        end = body + size
        keep = True
        if section_id == 0:
            name, _ = _name(wasm, body)
            keep = name != SECTION_NAME
        if keep:
            out += wasm[pos:end]
        pos = end
    label = SECTION_NAME.encode("utf-8")
    payload = _encode_leb(len(label)) + label + manifest.to_json().encode("utf-8")
    out += b"\x00" + _encode_leb(len(payload)) + payload
    return bytes(out)


@dataclass(frozen=True)
class PluginHeader:
    """A plugin file as listing it needs: manifest, imports, exports and size, read from its
    sections without the rest of the file (no digest: that needs every byte)."""

    path: Path
    manifest: Manifest
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class PluginFile(PluginHeader):
    """A plugin file as running it needs: the header, the whole file and its digest."""

    digest: str  # sha256 hex of the whole file
    data: bytes = field(repr=False, compare=False)


_ALLOWED_IMPORT_PREFIXES = ("openkoi:provider/", "wasi:")
_REFUSED_IMPORT_PREFIXES = ("wasi:http/",)


def check_world(sections: ComponentSections, source: str) -> None:
    """Refuse a component of another world: it must export openkoi:provider/provider and import
    nothing but openkoi's own interfaces and the WASI ones the host provides empty."""
    provider = [e for e in sections.exports if e.split("@")[0] == PROVIDER_EXPORT]
    if not provider:
        shown = ", ".join(sections.exports) or "nothing"
        raise PluginLoadError(
            f"{source} is not an openkoi provider plugin: it must export "
            f"{PROVIDER_EXPORT}@{host_wit_version()} but exports {shown}",
            path=source,
        )
    version = provider[0].partition("@")[2]
    check_wit_version(version or "0.0.0", source)
    for name in sections.imports:
        if name.startswith(_REFUSED_IMPORT_PREFIXES) or not name.startswith(
            _ALLOWED_IMPORT_PREFIXES
        ):
            why = (
                "wasi:http would bypass the egress policy; openkoi's `http` import is the only "
                "way out"
                if name.startswith("wasi:http/")
                else "the host provides only openkoi:provider and WASI interfaces"
            )
            raise PluginLoadError(f"{source} imports {name}, which is refused: {why}", path=source)
        if name.startswith("openkoi:provider/"):
            check_wit_version(name.partition("@")[2] or "0.0.0", source)


def _open_error(exc: OSError, source: str) -> PluginLoadError:
    if isinstance(exc, FileNotFoundError):
        return PluginLoadError(f"plugin file {source} does not exist", path=source)
    return PluginLoadError(f"cannot read plugin file {source}: {exc.strerror}", path=source)


def _describe(path: Path, sections: ComponentSections, size: int) -> PluginHeader:
    source = str(path)
    raw = sections.custom.get(SECTION_NAME)
    if raw is None:
        raise ManifestError(
            f"{source} has no embedded manifest (custom section {SECTION_NAME!r}); build it with "
            "`openkoi plugin build provider.py --manifest plugin.toml -o plugin.wasm`",
            path=source,
        )
    try:
        data_json = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"{source} has a manifest section that is not valid JSON ({exc})", path=source
        ) from None
    manifest = parse_manifest(data_json, source)
    check_world(sections, source)
    return PluginHeader(path, manifest, sections.imports, sections.exports, size)


def read_plugin_header(path: Path) -> PluginHeader:
    """Read and check a plugin's manifest and world by seeking from section to section: the
    code is never read, so listing many large plugins costs a few small reads each."""
    source = str(path)
    try:
        with path.open("rb", buffering=0) as file:
            total = os.fstat(file.fileno()).st_size
            sections = _walk(_FileWindow(file).read, total, source, frozenset({SECTION_NAME}))
    except OSError as exc:
        raise _open_error(exc, source) from None
    return _describe(path, sections, total)


def file_digest(path: Path) -> str:
    """The sha256 of a plugin file, read in pieces (nothing of it kept)."""
    source = str(path)
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise _open_error(exc, source) from None


def read_plugin_file(path: Path) -> PluginFile:
    """Read, check and describe a whole plugin file (to run it) without compiling it."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _open_error(exc, source) from None
    header = _describe(path, read_sections(data, source), len(data))
    return PluginFile(**vars(header), digest=hashlib.sha256(data).hexdigest(), data=data)
