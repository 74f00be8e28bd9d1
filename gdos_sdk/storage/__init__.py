"""Package storage back ends behind one :class:`Storage` protocol."""

from __future__ import annotations

from gdos_sdk.storage.base import ObjectInfo, Storage, check_key
from gdos_sdk.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectInfo", "Storage", "check_key"]
