"""Schemathesis against a real master and worker: the document matches what the server does.

As admin and as viewer, every operation of the OpenAPI document (see harness.py for what is
left out and why) with a fixed seed: no 5xx, no undocumented status, every body, content
type and documented header as the document says, and valid-looking requests accepted. The
whole session runs in a loopback-only network namespace where the machine allows one
(session.py).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .conftest import ROLES

# The bounded run takes under a minute on a quiet 2-core machine; the full one much longer.
_TIMEOUT = 4 * 3600 if os.environ.get("GDOS_FUZZ_PROFILE") == "full" else 900
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(_TIMEOUT)]


@pytest.mark.parametrize("role", ROLES)
def test_the_api_answers_as_its_document_says(
    fuzz_results: dict[str, dict[str, Any]], role: str
) -> None:
    result = fuzz_results[role]
    problems = result["problems"]
    assert not problems, "\n".join([*problems, "", result["output"][-20000:]])
