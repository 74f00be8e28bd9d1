"""Send N parallel logins with random user names, each from its own loopback address.

Run as a separate process (``python flood_client.py URL N``) so that the flood's own CPU
does not slow down the test process that measures the master. It connects every client,
prints ``ready``, waits for a line on stdin, then sends all the logins at once and prints
one JSON line per answer: ``[status, seconds, Retry-After]`` (status 0: no answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import time

import httpx


async def _login(http: httpx.AsyncClient, url: str) -> None:
    began = time.monotonic()
    try:
        response = await http.post(
            f"{url}/api/v1/auth/login",
            json={"username": f"nobody-{secrets.token_hex(6)}", "password": "guess-123"},
        )
    except httpx.HTTPError as exc:
        print(json.dumps([0, time.monotonic() - began, repr(exc)]), flush=True)
        return
    retry = response.headers.get("Retry-After")
    print(json.dumps([response.status_code, time.monotonic() - began, retry]), flush=True)


async def main(url: str, count: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i in range(count):
            transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{i + 2}")
            http = httpx.AsyncClient(transport=transport, timeout=120)
            clients.append(await stack.enter_async_context(http))
        await asyncio.gather(*(http.get(f"{url}/healthz") for http in clients))  # connected
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.gather(*(_login(http, url) for http in clients))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
