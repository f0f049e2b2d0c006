"""AWS plumbing for the Bedrock provider that needs no botocore and no network: whether the
credential chain has anything to offer, the region, the endpoint path and the model id.

Credential discovery imports this module, not the provider, so finding credentials stays cheap.
"""

from __future__ import annotations

import configparser
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from openkoi._errors import ConfigError
from openkoi._secrets import Secret

DEFAULT_REGION = "us-east-1"
INSTALL_HINT = "pip install 'openkoi[bedrock]'"
BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"

# The spec's short ids, and which models serve on-demand only through a cross-region profile.
_MODEL_ALIASES = {
    "anthropic.claude-sonnet-4-20250514": "anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-3-5-haiku-20241022": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
_PROFILE_ONLY = frozenset(
    {
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "meta.llama3-3-70b-instruct-v1:0",
    }
)


def _import_botocore() -> None:
    try:
        import botocore  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"AWS Bedrock needs botocore for request signing: {INSTALL_HINT}"
        ) from None


# -- credentials, cheaply ----------------------------------------------------------------------


def aws_credential() -> Secret | None:
    """Whether the AWS chain has something to offer, from the environment and files alone.

    Never calls the network (instance metadata is not asked at discovery time) and never
    imports botocore. Returns a Bedrock API key as itself; otherwise a marker `Secret` of kind
    `aws` whose `source` says where the real credentials will come from when a request is made.
    """
    env = os.environ
    token = env.get(BEARER_ENV, "").strip()
    if token:
        return Secret(token, source=f"env:{BEARER_ENV}")
    if env.get("AWS_ACCESS_KEY_ID", "").strip() and env.get("AWS_SECRET_ACCESS_KEY", "").strip():
        return _marker("env:AWS_ACCESS_KEY_ID")
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return _marker("aws:container")
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        return _marker("aws:web-identity")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path.home() / ".aws"
    credentials = _read_ini(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials")
    if credentials.has_option(profile, "aws_access_key_id"):
        return _marker(f"aws:profile {profile}")
    config = _read_ini(env.get("AWS_CONFIG_FILE") or home / "config")
    keys = (
        "aws_access_key_id",
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
        "web_identity_token_file",
        "login_session",
    )
    for section in (f"profile {profile}", profile if profile == "default" else ""):
        found = section and config.has_section(section)
        if found and any(config.has_option(section, key) for key in keys):
            return _marker(f"aws:profile {profile}")
    return None


def _marker(source: str) -> Secret:
    return Secret("aws-credential-chain", source=source, kind="aws")


def _read_ini(path: str | os.PathLike[str]) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
        parser.read(os.fspath(path), encoding="utf-8")
    return parser


@dataclass(frozen=True)
class AwsCredentials:
    """Explicit static credentials (tests, benchmarks, callers with their own source)."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


# -- region, endpoint, model id ----------------------------------------------------------------


def resolve_region(options: Mapping[str, Any] | None = None, profile: str | None = None) -> str:
    """`region` option, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1."""
    explicit = (options or {}).get("region")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip()
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    try:
        import botocore.session

        region = botocore.session.Session(profile=profile).get_config_variable("region")
    except Exception:  # a broken profile must not stop us from using the default region
        region = None
    return region if isinstance(region, str) and region else DEFAULT_REGION


def _geo_prefix(region: str) -> str | None:
    if region.startswith("us-gov-"):
        return "us-gov"
    for start, geo in (("us-", "us"), ("eu-", "eu"), ("ap-", "apac")):
        if region.startswith(start):
            return geo
    return None


def resolve_model_id(model: str, region: str) -> str:
    """The id Bedrock accepts for `model`: the spec's short ids gain their version, and models
    served on-demand only through a cross-region inference profile gain the region's geography.
    Full ids, inference profiles and ARNs pass through unchanged."""
    full = _MODEL_ALIASES.get(model, model)
    if full in _PROFILE_ONLY:
        geo = _geo_prefix(region)
        if geo:
            return f"{geo}.{full}"
    return full


def model_path(model_id: str, action: str) -> str:
    return f"/model/{quote(model_id, safe='')}/{action}"
