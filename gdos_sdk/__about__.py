"""The one place the GDOS version is written.

The package metadata (pyproject.toml reads it with ``attr:``), the ``--version`` of every
command, the API's ``/api/v1/health`` and the OpenAPI document all take it from here, and
tests/test_packaging.py checks that they agree.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
