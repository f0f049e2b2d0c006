"""openkoi's built-in providers, registered through the `openkoi.providers` entry point."""

from __future__ import annotations

from openkoi_providers._catalog import register

__all__ = ["register"]
