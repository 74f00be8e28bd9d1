"""Start a master and one local worker on the embedded defaults (``nox -s up``).

Everything lives under one folder (default ``.gdos/up``): the master's
database and package storage, the worker's instances, and two secrets made
on the first run (admin password and cluster join token, mode 0600). The URL
and the admin credentials are printed on every start. Ctrl-C stops both
processes; the services they run keep running and are re-attached next time.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdos_sdk.executors.accounts import current_account  # noqa: E402


def secret_file(path: Path, size: int) -> str:
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(size)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def script(name: str) -> list[str]:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return [str(found)]
    which = shutil.which(name)
    if which:
        return [which]
    module = name.replace("gdos-", "gdos_")
    return [sys.executable, "-m", module]


def wait_healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=".gdos/up", help="folder for all data")
    parser.add_argument("--port", type=int, default=8080, help="master port")
    parser.add_argument("--worker-port", type=int, default=8081, help="worker status port")
    parser.add_argument("--host", default="127.0.0.1", help="master listen address")
    args = parser.parse_args()

    root = Path(args.data).absolute()
    root.mkdir(parents=True, exist_ok=True)
    password = secret_file(root / "admin-password", 12)
    join_token = secret_file(root / "join-token", 32)
    url = f"http://{args.host}:{args.port}"

    env = dict(os.environ)
    master_env = {
        **env,
        "OPS_MASTER_AUTH_ADMIN_PASSWORD": password,
        "OPS_MASTER_AUTH_JOIN_TOKEN": join_token,
    }
    # Local services live in the developer's checkout: run them as the developer (a
    # worker running as root would otherwise use runtime.default_user, "nobody").
    worker_env = {
        "OPS_WORKER_RUNTIME_DEFAULT_USER": current_account().name,
        **env,
        "OPS_WORKER_CONNECT_JOIN_TOKEN": join_token,
    }
    (root / "master").mkdir(exist_ok=True)
    master = subprocess.Popen(
        [
            *script("gdos-master"),
            "-port",
            f"{args.host}:{args.port}",
            "-data_dir",
            str(root / "master"),
        ],
        env=master_env,
    )
    procs = [master]
    try:
        if not wait_healthy(f"{url}/healthz", 30):
            print(f"the master did not come up on {url}", file=sys.stderr)
            return 1
        worker = subprocess.Popen(
            [
                *script("gdos-worker"),
                "-master",
                url,
                "-port",
                f"127.0.0.1:{args.worker_port}",
                "-work_dir",
                str(root / "worker"),
            ],
            env=worker_env,
        )
        procs.append(worker)
        wait_healthy(f"http://127.0.0.1:{args.worker_port}/healthz", 30)
        print()
        print(f"  GDOS is up: {url}")
        print("  admin user: admin")
        print(f"  admin password: {password}")
        print(f"  data: {root}")
        print("  Ctrl-C stops the master and the worker (services keep running).")
        print(flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
