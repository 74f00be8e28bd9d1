#!/usr/bin/env python3
"""Runs until stopped."""

import time

print("up", flush=True)
while True:
    time.sleep(1)
