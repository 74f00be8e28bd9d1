"""The deploy flow with ``-store_type minio`` on a real S3 server (SeaweedFS), and its faults."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from gdos_sdk import Client, InstanceState, NotFoundError, RemoteError, StorageError
from gdos_sdk.storage import ObjectInfo
from gdos_sdk.testing import LocalCluster, free_port, wait_until

from ..conftest import write_service
from ..storage.seaweed import SeaweedFS
from .conftest import gdos_pack, read_json
from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone, which it stops and starts again."""
    server = SeaweedFS(tmp_path / "seaweedfs")
    try:
        server.start()
        yield server
    finally:
        server.kill()


def readable(server: SeaweedFS, bucket: str, key: str) -> bool:
    """Whether the S3 server serves ``key`` whole right now."""

    async def fetch() -> bool:
        storage = server.storage(bucket)
        try:
            url = storage.presigned_get(key, datetime.timedelta(minutes=5))
            async with httpx.AsyncClient() as http:
                return (await http.get(url, timeout=5)).status_code == 200
        finally:
            await storage.close()

    return anyio.run(fetch)


def objects(server: SeaweedFS, bucket: str) -> list[ObjectInfo]:
    """What the bucket really holds, asked of the S3 server directly."""

    async def listing() -> list[ObjectInfo]:
        storage = server.storage(bucket)
        try:
            return await storage.list_objects()
        finally:
            await storage.close()

    return anyio.run(listing)


def online_node(gdos: Client) -> str:
    nodes = wait_until(
        lambda: [n for n in gdos.list_nodes() if n.status.value == "online"], what="node online"
    )
    return nodes[0].id


def spec_of(cluster: LocalCluster, instance_id: str, worker: int = 0) -> dict[str, object]:
    record = read_json(
        cluster.root / f"worker{worker}" / "instances" / instance_id / "instance.json"
    )
    spec: dict[str, object] = record["spec"]
    return spec


def test_deploy_flow_fetches_by_presigned_url(
    cluster: LocalCluster, seaweed: SeaweedFS, pack: Callable[..., Path]
) -> None:
    bucket = "gdos-e2e-presigned"
    cluster.start_master(*seaweed.master_flags(bucket))
    cluster.start_worker()
    port = free_port()
    package = pack("http")
    with cluster.client() as gdos:
        node_id = online_node(gdos)
        instance = setup_module_instance(gdos, node_id, package, env={"PORT": str(port)})
        uploaded = gdos.get_package("http", "1.0.0")
        assert [(o.key, o.size) for o in objects(seaweed, bucket)] == [
            (f"packages/{uploaded.sha256}.zip", uploaded.size)
        ]
        assert not (cluster.root / "master" / "storage").exists()  # nothing on the local disk

        # The worker was handed a presigned S3 URL (default expiry), not the master's path;
        # the worker fetches exactly that URL, so the bytes came from SeaweedFS.
        url = urlsplit(str(spec_of(cluster, instance.id)["download_path"]))
        assert f"{url.scheme}://{url.netloc}" == f"http://{seaweed.endpoint}"
        assert url.path == f"/{bucket}/packages/{uploaded.sha256}.zip"
        assert parse_qs(url.query)["X-Amz-Expires"] == ["600"]

        started = gdos.start_instance(instance.id)
        assert started.state == InstanceState.RUNNING
        answer = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/hi", timeout=2).json(),
            what="service to answer",
        )
        assert answer["instance"] == instance.id

        # Users still download through the master, streamed from S3.
        saved = gdos.download_package("http", "1.0.0", cluster.root / "dl.zip")
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == uploaded.sha256

        gdos.destroy_instance(instance.id)
        gdos.delete_module(instance.module_id)
        gdos.delete_package("http", "1.0.0")
        assert objects(seaweed, bucket) == []


def test_worker_fetch_master_goes_through_the_master(
    cluster: LocalCluster, seaweed: SeaweedFS, pack: Callable[..., Path]
) -> None:
    cluster.start_master(
        *seaweed.master_flags("gdos-e2e-via-master"),
        env={"OPS_MASTER_STORAGE_WORKER_FETCH": "master"},
    )
    cluster.start_worker()
    with cluster.client() as gdos:
        instance = setup_module_instance(gdos, online_node(gdos), pack("sleeper"), start=True)
        assert instance.state == InstanceState.RUNNING
        sha256 = gdos.get_package("sleeper", "1.0.0").sha256
        assert spec_of(cluster, instance.id)["download_path"] == f"/api/v1/agent/packages/{sha256}"
        cached = cluster.root / "worker0" / "cache"
        assert [p.name for p in cached.iterdir() if not p.name.startswith(".")] != []


def test_s3_down_gives_a_clear_error_and_recovers_without_restart(
    cluster: LocalCluster, own_seaweed: SeaweedFS, pack: Callable[..., Path]
) -> None:
    bucket = "gdos-e2e-faults"
    master = cluster.start_master(*own_seaweed.master_flags(bucket))
    cluster.start_worker()
    package = pack("sleeper")
    with cluster.client() as gdos:
        node_id = online_node(gdos)

        # S3 down during the upload: a 503-class StorageError, no row, no object, no temp file.
        own_seaweed.kill()
        with pytest.raises(StorageError) as caught:
            gdos.upload_package(package)
        assert caught.value.status == 503 and own_seaweed.endpoint in caught.value.message
        with pytest.raises(NotFoundError):
            gdos.get_package("sleeper", "1.0.0")
        assert gdos.list_packages() == []
        assert list((cluster.root / "master" / "tmp").iterdir()) == []

        # S3 back: the same upload works with the same master process.
        own_seaweed.start()
        assert objects(own_seaweed, bucket) == []
        uploaded = gdos.upload_package(package)
        assert [o.key for o in objects(own_seaweed, bucket)] == [f"packages/{uploaded.sha256}.zip"]

        # S3 down while the worker fetches: it retries, then the deploy fails clearly
        # and leaves nothing on either side.
        system = gdos.create_system("shop")
        module = gdos.create_module(system.id, "web", "sleeper", "1.0.0")
        own_seaweed.kill()
        with pytest.raises(RemoteError, match=r"cannot fetch package sleeper@1\.0\.0"):
            gdos.deploy(module.id, node_id, start=True, wait="started")
        assert gdos.list_instances() == []
        assert list((cluster.root / "worker0" / "instances").iterdir()) == []

        own_seaweed.start()
        # The restarted server answers before it has loaded the bucket's volumes (reads of
        # older objects are HTTP 500 for a moment, longer on a loaded machine); a deploy
        # is expected to work once the server serves the package again.
        key = f"packages/{uploaded.sha256}.zip"
        wait_until(
            lambda: readable(own_seaweed, bucket, key), timeout=30, interval=0.2, what="the package"
        )
        instance = gdos.deploy(module.id, node_id, start=True, wait="started")
        assert instance.state == InstanceState.RUNNING
    assert master.alive() and cluster.master is master


class CuttingProxy:
    """A loopback TCP proxy to the S3 server that can cut responses short.

    ``cut(n, after)`` makes the next ``n`` new connections drop after ``after`` bytes of the
    server's answer: a download that breaks mid-way, as a flaky network does it.
    Requests signed for the proxy's address stay valid: bytes pass through unchanged.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.pending_cuts = 0
        self.cut_after = 0
        self.cuts = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, count: int, after: int) -> None:
        with self.lock:
            self.pending_cuts, self.cut_after = count, after

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                limit = self.cut_after if self.pending_cuts > 0 else None
                self.pending_cuts = max(0, self.pending_cuts - 1)
            threading.Thread(target=self._serve, args=(client, limit), daemon=True).start()

    def _serve(self, client: socket.socket, limit: int | None) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket, budget: int | None) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    if budget is not None and sent + len(data) >= budget:
                        dst.sendall(data[: budget - sent])
                        with self.lock:
                            self.cuts += 1
                        break
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        forward = threading.Thread(target=pump, args=(client, upstream, None), daemon=True)
        forward.start()
        pump(upstream, client, limit)
        forward.join(5)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def big_package(tmp_path: Path) -> Path:
    """A package with 2 MiB of incompressible data, so a cut lands inside the body."""
    folder = tmp_path / "big-src"
    source = (Path(__file__).parent / "services" / "sleeper.py").read_text()
    body = {"name": "big", "version": "1.0.0", "entrypoint": "main.py"}
    write_service(folder, body, {"main.py": source}, exec_files=("main.py",))
    (folder / "blob.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    out = tmp_path / "big-1.0.0.zip"
    result = gdos_pack("build", str(folder), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_download_cut_midway_is_retried_then_fails_clearly(
    cluster: LocalCluster, seaweed: SeaweedFS, tmp_path: Path
) -> None:
    proxy = CuttingProxy(seaweed.endpoint)
    try:
        flags = seaweed.master_flags("gdos-e2e-midway")
        flags[flags.index("-minio_endpoint") + 1] = proxy.endpoint
        cluster.start_master(*flags)
        # Three tries (the default is five), so that three cuts exhaust them.
        worker = cluster.start_worker(env={"OPS_WORKER_RUNTIME_FETCH_ATTEMPTS": "3"})
        with cluster.client() as gdos:
            node_id = online_node(gdos)
            package = gdos.upload_package(big_package(tmp_path))
            system = gdos.create_system("shop")
            module = gdos.create_module(system.id, "web", "big", "1.0.0")
            cache = cluster.root / "worker0" / "cache"

            # The first download breaks after 256 KiB of the body; the retry succeeds.
            proxy.cut(1, after=256 * 1024)
            instance = gdos.deploy(module.id, node_id, start=True, wait="started")
            assert instance.state == InstanceState.RUNNING
            assert proxy.cuts == 1
            assert "download of big failed (attempt 1)" in worker.output()
            assert [p.name for p in cache.iterdir()] == [f"{package.sha256}.zip"]

            # Every attempt breaks: a clear deploy error, nothing left on either side,
            # no partial download in the cache.
            gdos.destroy_instance(instance.id)
            for path in cache.iterdir():
                path.unlink()
            proxy.cut(3, after=256 * 1024)
            with pytest.raises(RemoteError, match=r"cannot fetch package big@1\.0\.0 \(3 tries\)"):
                gdos.deploy(module.id, node_id, start=True, wait="started")
            assert proxy.cuts == 4
            assert gdos.list_instances() == []
            assert list((cluster.root / "worker0" / "instances").iterdir()) == []
            assert list(cache.iterdir()) == []
    finally:
        proxy.close()
