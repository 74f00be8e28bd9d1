"""HTTP clients for the master API: :class:`Client` (blocking) and :class:`AsyncClient`."""

from __future__ import annotations

from gdos_sdk.client._async import AsyncClient
from gdos_sdk.client._base import Call
from gdos_sdk.client._sync import Client

__all__ = ["AsyncClient", "Call", "Client"]
