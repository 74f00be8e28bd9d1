"""Package storage back ends behind one :class:`Storage` protocol."""

from __future__ import annotations

from gdos_sdk.storage.base import ObjectInfo, Storage, check_key
from gdos_sdk.storage.local import LocalStorage
from gdos_sdk.storage.minio import MinioStorage

__all__ = ["LocalStorage", "MinioStorage", "ObjectInfo", "Storage", "check_key"]
