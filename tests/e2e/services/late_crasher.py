#!/usr/bin/env python3
"""Starts fine, says so, and exits with code 2 after CRASH_AFTER seconds (default 1)."""

import os
import sys
import time

print("booting: config loaded", flush=True)
print("listening on nothing in particular", flush=True)
time.sleep(float(os.environ.get("CRASH_AFTER", "1")))
print("fatal: lost the database connection", file=sys.stderr, flush=True)
sys.exit(2)
