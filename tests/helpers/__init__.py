"""Test doubles shared by several test folders (imported, not fixtures: see tests/conftest.py)."""
