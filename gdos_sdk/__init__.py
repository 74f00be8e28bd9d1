"""GDOS SDK: models, protocol, configuration, storage, executors, metrics and API clients.

Example::

    from gdos_sdk import Client
    with Client("http://127.0.0.1:8080", token="gdos_...") as gdos:  # or Client(): GDOS_URL
        print([n.hostname for n in gdos.list_nodes()])

The guide is docs/python.md.
"""

from __future__ import annotations

from gdos_sdk.__about__ import __version__
from gdos_sdk.adoption import AdoptionSpec, AdoptionStrategy
from gdos_sdk.client import AsyncClient, Client
from gdos_sdk.cluster import LocalCluster
from gdos_sdk.display import ModelList
from gdos_sdk.errors import (
    AuthError,
    BackupError,
    BadRequestError,
    ConfigError,
    ConflictError,
    DeployFailed,
    DeployTimeout,
    GdosError,
    ManifestError,
    NotFoundError,
    PasswordChangeRequired,
    PermissionDenied,
    ProtocolError,
    RateLimitedError,
    RemoteError,
    SpawnError,
    StorageError,
    TooLargeError,
    TransportError,
    UnsupportedMediaType,
    ValidationError,
)
from gdos_sdk.manifest import Manifest
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = [
    "AdoptionSpec",
    "AdoptionStrategy",
    "AsyncClient",
    "AuthError",
    "BackupError",
    "BadRequestError",
    "Client",
    "ConfigError",
    "ConflictError",
    "DeployFailed",
    "DeployTimeout",
    "DesiredState",
    "GdosError",
    "Health",
    "InstanceState",
    "LocalCluster",
    "Manifest",
    "ManifestError",
    "ModelList",
    "NotFoundError",
    "PasswordChangeRequired",
    "PermissionDenied",
    "ProtocolError",
    "RateLimitedError",
    "RemoteError",
    "SpawnError",
    "StorageError",
    "TooLargeError",
    "TransportError",
    "UnsupportedMediaType",
    "ValidationError",
    "__version__",
]
