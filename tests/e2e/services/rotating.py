#!/usr/bin/env python3
"""Writes numbered lines to logs/app.log; rotates it (rename + new file) every 25 lines."""

import os
import time

os.makedirs("logs", exist_ok=True)
print("rotating logger up", flush=True)
handle = open("logs/app.log", "a")  # noqa: SIM115 - reopened at every rotation
n = 0
while True:
    n += 1
    handle.write(f"line {n}\n")
    handle.flush()
    if n % 25 == 0:
        handle.close()
        os.replace("logs/app.log", "logs/app.log.1")
        handle = open("logs/app.log", "a")  # noqa: SIM115
    time.sleep(0.04)
