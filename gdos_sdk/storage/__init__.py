"""Package storage back ends behind one :class:`Storage` protocol.

:class:`MinioStorage` is imported when first used: the MinIO client library takes a
noticeable part of a second to import, which clients of the SDK (the ``gdos`` command)
that never touch storage should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gdos_sdk.storage.base import ObjectInfo, Storage, check_key
from gdos_sdk.storage.local import LocalStorage

if TYPE_CHECKING:
    from gdos_sdk.storage.minio import MinioStorage

__all__ = ["LocalStorage", "MinioStorage", "ObjectInfo", "Storage", "check_key"]


def __getattr__(name: str) -> Any:
    if name == "MinioStorage":
        from gdos_sdk.storage.minio import MinioStorage

        return MinioStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
