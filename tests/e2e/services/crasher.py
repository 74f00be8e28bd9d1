#!/usr/bin/env python3
"""Writes the time it started, then exits with an error."""

import sys
import time

print(f"start {time.time():.3f}", flush=True)
sys.exit(3)
