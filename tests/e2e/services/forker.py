#!/usr/bin/env python3
"""Forks two children; one of them forks a grandchild that calls setsid() and ignores SIGTERM.

Every process appends "pid create-time-ticks" to $GDOS_INSTANCE_DIR/pids so the test
can check that all of them are gone after a stop.
"""

import os
import signal
import time

record = os.path.join(os.environ["GDOS_INSTANCE_DIR"], "pids")


def note(role):
    with open(record, "a") as fh:
        fh.write(f"{role} {os.getpid()}\n")


def idle():
    while True:
        time.sleep(1)


note("main")
if os.fork() == 0:
    note("child1")
    if os.fork() == 0:
        os.setsid()  # leaves the process group: killpg alone would miss it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("grandchild")
        idle()
    idle()
if os.fork() == 0:
    note("child2")
    idle()
idle()
