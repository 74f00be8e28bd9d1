"""The in-process master fixtures of tests/master, for the security tests."""

from __future__ import annotations

from ..master.conftest import admin, app, master, settings

__all__ = ["admin", "app", "master", "settings"]
