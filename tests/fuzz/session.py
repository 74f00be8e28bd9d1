"""One whole fuzz session in this process: a seeded cluster, then schemathesis per role.

``python -m tests.fuzz.session OUT PROFILE ROLE...`` writes ``OUT/result-<role>.json``
(exit code, problems, the console report). The test runs it in a network namespace of its
own (:func:`command`), where only loopback exists: whatever a fuzzed request makes the
master do (resolve a webhook's host name, deliver to it, ...) cannot leave the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from gdos_sdk.testing import LocalCluster

from .harness import PROFILES, run
from .world import seed

__all__ = ["command", "main"]

# Every HTTP request the master makes on its own (webhook deliveries to fuzzed receiver
# URLs) goes to this dead loopback port: a second fence where no namespace can be made.
_DEAD_PROXY = "http://127.0.0.1:9"
PROXY_ENV = {
    name: _DEAD_PROXY
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
} | {"NO_PROXY": "", "no_proxy": ""}


def isolated() -> bool:
    """Whether this machine lets us make a network namespace (root, unshare and ip)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return probe.returncode == 0


def command(out: Path, profile: str, roles: list[str]) -> list[str]:
    """The argv of a session, in a loopback-only network namespace when the machine allows."""
    argv = [sys.executable, "-m", "tests.fuzz.session", str(out), profile, *roles]
    if not isolated():
        return argv
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "fuzz", *argv]


def main(argv: list[str]) -> int:
    out, profile, roles = Path(argv[0]).absolute(), PROFILES[argv[1]], argv[2:]
    for old in ("cluster", "reports", "pkgs"):  # a new master, not a previous run's data
        shutil.rmtree(out / old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    with LocalCluster(out / "cluster") as cluster:
        cluster.start_master(env=PROXY_ENV)
        # An explicit shell: a login profile's slow hooks would delay the seeded terminal.
        cluster.start_worker(env={"OPS_WORKER_TERMINAL_SHELL": "/bin/sh -i"})
        world = seed(cluster, out)
        for role in roles:
            result = run(world, role, profile, out / "reports")
            summary = {
                "returncode": result.returncode,
                "problems": result.problems(),
                "output": result.output,
            }
            (out / f"result-{role}.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
