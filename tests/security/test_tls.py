"""Issue 12, finding 8: TLS is the normal set-up; plain HTTP is refused or flagged.

The certificate is made by the very openssl commands of docs/security.md ("Make a
certificate"), for localhost and 127.0.0.1; a real master serves HTTPS with it and a real
worker joins over wss://, deploys over HTTPS and reports. A worker refuses an http:// master
that is not on loopback before it connects, unless told -insecure; a master listening
beyond loopback without TLS warns.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gdos_sdk.config import MasterServer, load_worker_settings, plain_http_warning
from gdos_sdk.errors import ConfigError
from gdos_sdk.testing import LocalCluster, TlsFiles, free_port, wait_until

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).parents[2] / "docs" / "security.md"
# An address that is certainly not this machine's (TEST-NET-1, RFC 5737): nothing answers.
NOT_HERE = "192.0.2.1"


def script(name: str) -> list[str]:
    found = Path(sys.executable).with_name(name)
    return [str(found)] if found.exists() else [sys.executable, "-m", name.replace("-", "_")]


def documented_commands() -> str:
    """The shell block under "Make a certificate" in docs/security.md."""
    text = DOCS.read_text()
    section = text[text.index("### Make a certificate") :]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (Debian package openssl)")
    commands = documented_commands()
    commands = commands.replace("MASTER_NAME=gdos.example.com", "MASTER_NAME=localhost")
    commands = commands.replace("MASTER_IP=10.0.0.1", "MASTER_IP=127.0.0.1")
    folder = tmp_path / "pki"
    folder.mkdir()
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return TlsFiles(cert=folder / "master.crt", key=folder / "master.key", ca=folder / "ca.crt")


@pytest.fixture
def cluster(tmp_path: Path, tls_files: TlsFiles) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster", tls=tls_files)
    try:
        yield local
    finally:
        local.close()


def package(tmp_path: Path) -> Path:
    path = tmp_path / "sleepy-1.0.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "service.json",
            json.dumps({"name": "sleepy", "version": "1.0.0", "entrypoint": "run.sh"}),
        )
        entry = zipfile.ZipInfo("run.sh")
        entry.external_attr = 0o755 << 16
        zf.writestr(entry, "#!/bin/sh\nexec sleep 1000\n")
    return path


def test_a_worker_joins_and_deploys_over_tls(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.start_master()
    assert cluster.url.startswith("https://")
    assert cluster.master is not None and "WITHOUT TLS" not in cluster.master.output()
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP gets no answer from a TLS port
        httpx.get(f"http://127.0.0.1:{cluster.master_port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # and an unknown CA is refused
        httpx.get(f"{cluster.url}/healthz", timeout=5)
    worker = cluster.start_worker()
    node_id = cluster.wait_worker_connected(worker)
    assert cluster.worker_health(worker)["connected"] is True  # over wss: the master is TLS-only
    with cluster.client() as gdos:
        uploaded = gdos.upload_package(package(tmp_path))
        system = gdos.create_system("shop")
        module = gdos.create_module(system.id, "web", uploaded.name, uploaded.version)
        instance = gdos.deploy(
            module.id, node_id, start=True, wait="started"
        )  # the package over HTTPS
        assert instance.state.value == "running"
        wait_until(lambda: gdos.get_node(node_id).latest is not None, what="samples over wss")


def test_a_worker_refuses_plain_http_to_another_machine(tmp_path: Path) -> None:
    argv = [
        *script("gdos-worker"),
        "-master",
        f"http://{NOT_HERE}:8080",
        "-join_token",
        "t",
        "-work_dir",
        str(tmp_path / "work"),
        "-port",
        f"127.0.0.1:{free_port()}",
    ]
    began = time.monotonic()
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert f"refusing plain HTTP to http://{NOT_HERE}:8080" in refused.stderr
    assert "-insecure" in refused.stderr
    assert time.monotonic() - began < 30  # refused at once, not after a connect timeout
    assert not (tmp_path / "work").exists()  # nothing was started

    # Told -insecure, it starts and dials (nothing answers at that address).
    port = free_port()
    argv[-1] = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*argv, "-insecure"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def health() -> dict[str, object] | None:
            try:
                data: dict[str, object] = httpx.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ).json()
            except httpx.HTTPError:
                return None
            return data

        status = wait_until(health, timeout=30, what="the insecure worker's status port")
        assert status["connected"] is False  # started (-insecure), and trying the plain-HTTP master
    finally:
        proc.terminate()
        proc.wait(15)


def test_loopback_http_needs_no_flag_and_the_status_port_is_loopback() -> None:
    settings = load_worker_settings(["-master", "http://127.0.0.1:8080"], env={})
    assert settings.server.listen == "127.0.0.1:8081"
    for url in ("http://localhost:8080", "http://[::1]:8080", "https://192.0.2.1:8443"):
        load_worker_settings(["-master", url], env={})
    with pytest.raises(ConfigError, match="-insecure"):
        load_worker_settings([], env={"OPS_WORKER_CONNECT_MASTER_URL": "http://10.1.2.3:80"})
    insecure = load_worker_settings(
        ["-insecure", "-master", "http://10.1.2.3:80"], env={}
    )  # a boolean flag alone means true
    assert insecure.connect.insecure is True


def test_the_master_warns_when_it_listens_beyond_loopback_without_tls(tmp_path: Path) -> None:
    assert plain_http_warning(MasterServer(listen="127.0.0.1:8080")) is None
    assert plain_http_warning(MasterServer(listen="[::1]:8080")) is None
    assert plain_http_warning(MasterServer(listen=":8443", tls_cert="c", tls_key="k")) is None
    assert "0.0.0.0:8080 WITHOUT TLS" in (plain_http_warning(MasterServer(listen=":8080")) or "")
    # A real master told to listen on an address that is not this machine's: it warns, then
    # fails to bind (so nothing is exposed by this test).
    result = subprocess.run(
        [*script("gdos-master"), "-port", f"{NOT_HERE}:{free_port()}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"OPS_MASTER_AUTH_ADMIN_PASSWORD": "a-password-1", "PATH": "/usr/bin:/bin"},
    )
    assert f"WARNING: listening on {NOT_HERE}:" in result.stderr
    assert "-tls_cert" in result.stderr
    assert result.returncode == 1  # cannot listen there
