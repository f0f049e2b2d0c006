"""The error taxonomy and the public surface."""

from __future__ import annotations

from pathlib import Path

import httpx
import httpx_sse  # noqa: F401  (its SSEError subclasses httpx's errors: cover it too)
import openkoi
import pytest
from openkoi import _errors
from openkoi._http import map_transport_errors, parse_retry_after


def test_all_matches_public_names() -> None:
    public = {name for name in dir(openkoi) if not name.startswith("_")}
    assert set(openkoi.__all__) - {"__version__"} == public
    for name in openkoi.__all__:
        assert getattr(openkoi, name) is not None


def test_transient_flags() -> None:
    transient = {
        _errors.BudgetExceededError,
        _errors.RateLimitedError,
        _errors.OverloadedError,
        _errors.ServerError,
        _errors.ProviderTimeoutError,
        _errors.NetworkError,
        _errors.MalformedResponseError,
    }
    for cls in _errors.ERROR_KINDS.values():
        assert cls.transient is (cls in transient), cls


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


@pytest.mark.parametrize(
    "exc_type",
    sorted(_all_subclasses(httpx.HTTPError) | {httpx.InvalidURL}, key=lambda c: c.__name__),
)
def test_every_httpx_exception_is_mapped(exc_type: type[Exception]) -> None:
    request = httpx.Request("GET", "https://api.example.com/v1?key=sk-in-url-123456")
    try:
        if exc_type is httpx.HTTPStatusError:
            exc = exc_type("x", request=request, response=httpx.Response(500, request=request))
        elif issubclass(exc_type, httpx.RequestError):
            exc = exc_type(
                "failed https://api.example.com/v1?key=sk-in-url-123456", request=request
            )
        else:
            exc = exc_type("failed https://api.example.com/v1?key=sk-in-url-123456")
    except TypeError:
        exc = exc_type("failed")  # type: ignore[call-arg]
    with (
        pytest.raises(_errors.ProviderError) as info,
        map_transport_errors("p", secrets=["sk-in-url-123456"]),
    ):
        raise exc
    assert "sk-in-url-123456" not in str(info.value) + repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "12"}) == 12.0
    assert (
        parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0)
        == 10.0
    )
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, openkoi; print(','.join(m for m in ('httpx','pydantic','wasmtime','tomlkit','botocore','sqlite3','rich','redis','psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_router_on_local_state_imports_no_redis_or_postgres_client(tmp_path: Path) -> None:
    """Nor the modules of those backends, nor a TOML parser when there is no config file."""
    import subprocess
    import sys

    code = (
        "import sys; from openkoi.routing import Router; from openkoi._config import ConfigFile; "
        "from openkoi._registry import ProviderRegistry; from pathlib import Path; "
        "config = ConfigFile(Path(sys.argv[1])).config; Router(ProviderRegistry(config)); "
        "print(','.join(m for m in ('redis', 'psycopg', 'openkoi.routing._state_redis', "
        "'openkoi.usage._ledger_pg', 'tomllib', 'tomlkit') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""
