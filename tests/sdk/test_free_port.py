"""free_port never hands out the same port twice in a row of calls.

A SeaweedFS fixture asks for one port per listener before it starts anything; the kernel
once gave the same port to the filer and the S3 gateway, the filer took it, and every
MinIO test of that run talked to the filer (unit-3.13, 2026-12-03).
"""

from __future__ import annotations

import socket

from gdos_sdk.testing import free_port


def test_ports_handed_out_are_distinct_and_free() -> None:
    ports = [free_port() for _ in range(400)]
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free
