"""HTTP clients for the master API: :class:`Client` (blocking) and :class:`AsyncClient`.

Their live streams (``watch()``) are :class:`LiveStream` and :class:`AsyncLiveStream`.
"""

from __future__ import annotations

from gdos_sdk.client._async import AsyncClient
from gdos_sdk.client._base import Call
from gdos_sdk.client._live import AsyncLiveStream, LiveStream
from gdos_sdk.client._sync import Client

__all__ = ["AsyncClient", "AsyncLiveStream", "Call", "Client", "LiveStream"]
