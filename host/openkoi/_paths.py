"""Where openkoi keeps its files: `~/.openkoi`, or `$OPENKOI_HOME`."""

from __future__ import annotations

import os
from pathlib import Path


def openkoi_home() -> Path:
    override = os.environ.get("OPENKOI_HOME")
    return Path(override).expanduser() if override else Path.home() / ".openkoi"


def config_path() -> Path:
    return openkoi_home() / "config.toml"
