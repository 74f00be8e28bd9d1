#!/usr/bin/env python3
"""A service that writes down when it runs: for rollouts.

Appends "start <instance id> <version> <time>" to EVENTS_FILE when it is up and
"stop <instance id> <version> <time>" when it gets SIGTERM (then exits). With
CRASH_AFTER set (a package's manifest env: a bad version) it exits with an error
that many seconds after it started.
"""

import os
import signal
import sys
import time

INSTANCE = os.environ.get("GDOS_INSTANCE_ID", "?")
VERSION = os.environ.get("GDOS_VERSION", "?")


def event(kind):
    path = os.environ.get("EVENTS_FILE")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{kind} {INSTANCE} {VERSION} {time.time():.6f}\n")


def stop(*_):
    event("stop")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
event("start")
print(f"running {VERSION}", flush=True)
crash = float(os.environ.get("CRASH_AFTER", "0"))
began = time.monotonic()
while True:
    time.sleep(0.05)
    if crash and time.monotonic() - began >= crash:
        print(f"{VERSION} gives up", flush=True)
        sys.exit(3)
