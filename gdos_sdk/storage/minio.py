"""Package storage in a MinIO (or any S3-compatible) bucket.

Decisions:

* **Nothing touches the network in ``__init__``.** A master whose object store
  is down still starts; the first call that needs the server fails with a
  :class:`~gdos_sdk.errors.StorageError` (HTTP 503) and the next call tries
  again. The bucket is created on the first successful upload (reads of a
  missing bucket simply find nothing).
* **Whole objects or nothing.** An S3 ``PUT`` is atomic. Objects larger than
  ``part_size`` go up as a multipart upload, which S3 shows to readers only
  once it is completed; on any failure the client aborts it. If the server
  dies mid-upload the abort cannot reach it either, and the parts stay as an
  invisible incomplete upload (a bucket lifecycle rule
  ``AbortIncompleteMultipartUpload`` reclaims them). Memory use is one part.
* **Errors are translated once, here.** ``S3Error`` for a missing object or
  bucket becomes :class:`~gdos_sdk.errors.NotFoundError`; every other
  ``S3Error``, any other MinIO exception, urllib3 error or ``OSError``
  becomes :class:`~gdos_sdk.errors.StorageError` naming the endpoint.
* **Blocking client calls run in worker threads** (``anyio.to_thread``), and
  downloads are read chunk by chunk, never whole.
* **Presigned URLs are signed locally** (the region is fixed, so the client
  never asks the server for it): handing one to a worker costs no round trip.

Example::

    storage = MinioStorage(
        "minio.internal:9000", access_key="gdos", secret_key="...", bucket="gdos", secure=True
    )
    await storage.put_file("packages/abc.zip", Path("/tmp/upload"))
    url = storage.presigned_get("packages/abc.zip", timedelta(minutes=10))
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import anyio.to_thread
import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name
from urllib3.response import BaseHTTPResponse

from gdos_sdk.errors import ConfigError, NotFoundError, StorageError
from gdos_sdk.storage.base import ObjectInfo, check_key

__all__ = ["MinioStorage"]

_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"})
_MIN_PART = 5 * 1024 * 1024  # the S3 minimum for every part but the last
_MAX_PRESIGN = timedelta(days=7)  # the S3 maximum for a presigned URL


def _describe(exc: BaseException) -> str:
    """A short reason for a network error, without urllib3's object reprs."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        text = text.split(": ", 1)[-1]
    return text or type(exc).__name__


class MinioStorage:
    """Objects in one bucket of a MinIO/S3 server.

    Parameters:
        endpoint: ``host:port`` of the server (no scheme; see ``secure``).
        access_key, secret_key: the credentials.
        bucket: bucket name; created on the first upload if missing.
        secure: use HTTPS (certificates are verified).
        region: region used to sign requests; MinIO's default is ``us-east-1``.
        presign_expiry: lifetime of the URLs :meth:`presigned_url` hands out, or
            None to hand out none (clients then fetch through the master).
        ca_file: CA bundle for ``secure``; default ``$SSL_CERT_FILE`` or certifi's.
        part_size: objects larger than this are uploaded in parts of this size.
        connect_timeout, read_timeout: seconds, per request.
        retries: attempts after a connection error or a 5xx answer.

    Example::

        storage = MinioStorage("127.0.0.1:9000", access_key="k", secret_key="s", bucket="gdos")
        info = await storage.put_file("packages/x.zip", Path("/tmp/upload"))
    """

    name = "minio"

    def __init__(
        self,
        endpoint: str,
        *,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = "us-east-1",
        presign_expiry: timedelta | None = timedelta(minutes=10),
        ca_file: str | None = None,
        part_size: int = 16 * 1024 * 1024,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        retries: int = 3,
    ) -> None:
        if not endpoint or "://" in endpoint or "/" in endpoint:
            raise ConfigError(
                f"storage.minio_endpoint must be host:port, got {endpoint!r}"
                " (use storage.minio_secure for https)"
            )
        if not access_key or not secret_key:
            raise ConfigError("storage.minio_access_key and storage.minio_secret_key are required")
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise ConfigError(f"storage.minio_bucket {bucket!r} is not valid: {exc}") from None
        if presign_expiry is not None and not (
            timedelta(seconds=1) <= presign_expiry <= _MAX_PRESIGN
        ):
            raise ConfigError("storage.presign_expiry must be between 1 and 604800 seconds")
        if part_size < _MIN_PART:
            raise ConfigError(f"part_size must be at least {_MIN_PART} bytes")
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.presign_expiry = presign_expiry
        self.part_size = part_size
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._http,
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"MinioStorage({scheme}://{self.endpoint}/{self.bucket})"

    # --- the error boundary -----------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Translate everything the client can raise into NotFoundError or StorageError."""
        what = f"{action} {key}" if key else action
        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in _MISSING:
                raise NotFoundError(f"no stored object {key!r}") from exc
            raise StorageError(
                f"cannot {what}: object storage {self.endpoint} answered {exc.code}"
                f"{': ' + exc.message if exc.message else ''}",
                details={"code": exc.code},
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise StorageError(
                f"cannot {what}: object storage {self.endpoint} is unreachable ({_describe(exc)})"
            ) from exc

    # --- blocking halves, run in threads ----------------------------------------------------

    def _ensure_bucket(self) -> None:
        with self._bucket_lock, self._errors(f"create bucket {self.bucket}"):
            if self._bucket_ready:
                return
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:  # another master made it in between
                    if exc.code != "BucketAlreadyOwnedByYou":
                        raise
            self._bucket_ready = True

    def _upload(self, key: str, source: Path) -> None:
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        with open(source, "rb") as data:
            self._client.put_object(
                self.bucket,
                key,
                data,
                os.fstat(data.fileno()).st_size,
                content_type=content_type,
                part_size=self.part_size,
                num_parallel_uploads=1,  # one part in memory at a time
            )

    def _put(self, key: str, source: Path) -> ObjectInfo:
        self._ensure_bucket()
        try:
            with self._errors("store", key):
                self._upload(key, source)
        except NotFoundError:
            # The bucket was removed behind our back: make it again, once.
            self._bucket_ready = False
            self._ensure_bucket()
            with self._errors("store", key):
                self._upload(key, source)
        return self._stat(key)

    def _stat(self, key: str) -> ObjectInfo:
        with self._errors("stat", key):
            obj = self._client.stat_object(self.bucket, key)
        modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
        return ObjectInfo(key=key, size=obj.size or 0, modified=modified)

    def _open(self, key: str) -> BaseHTTPResponse:
        with self._errors("read", key):
            return self._client.get_object(self.bucket, key)

    def _read(self, response: BaseHTTPResponse, size: int, key: str) -> bytes:
        with self._errors("read", key):
            return response.read(size)

    def _delete(self, key: str) -> None:
        with contextlib.suppress(NotFoundError), self._errors("delete", key):
            self._client.remove_object(self.bucket, key)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        try:
            with self._errors("list", prefix or "/"):
                for obj in self._client.list_objects(
                    self.bucket, prefix=prefix or None, recursive=True
                ):
                    if obj.is_dir or obj.object_name is None:
                        continue
                    modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
                    found.append(
                        ObjectInfo(key=obj.object_name, size=obj.size or 0, modified=modified)
                    )
        except NotFoundError:  # no bucket yet: nothing stored
            return []
        return sorted(found, key=lambda info: info.key)

    # --- the Storage protocol ---------------------------------------------------------------

    async def put_file(self, key: str, source: Path) -> ObjectInfo:
        check_key(key)
        return await anyio.to_thread.run_sync(self._put, key, source)

    async def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        return await anyio.to_thread.run_sync(self._stat, key)

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        check_key(key)
        response = await anyio.to_thread.run_sync(self._open, key)
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(self._read, response, chunk_size, key)
                if not chunk:
                    break
                yield chunk
        finally:
            # close() drops a half-read connection instead of returning it to the pool.
            response.close()
            response.release_conn()

    async def delete(self, key: str) -> None:
        check_key(key)
        await anyio.to_thread.run_sync(self._delete, key)

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        return await anyio.to_thread.run_sync(self._list, prefix)

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_get(self, key: str, expires: timedelta) -> str:
        """A URL that GETs ``key`` without credentials until ``expires`` from now.

        Signing is local: the server is not contacted, and the URL works only
        if the object exists when it is used.

        Example::

            url = storage.presigned_get("packages/abc.zip", timedelta(minutes=10))
        """
        check_key(key)
        if not timedelta(seconds=1) <= expires <= _MAX_PRESIGN:
            raise ConfigError("a presigned URL must expire within 1 second to 7 days")
        with self._errors("presign", key):
            url: str = self._client.presigned_get_object(self.bucket, key, expires=expires)
        return url

    def presigned_url(self, key: str) -> str | None:
        if self.presign_expiry is None:
            return None
        return self.presigned_get(key, self.presign_expiry)

    async def close(self) -> None:
        self._http.clear()
