"""The SDK covers the whole REST API, with real signatures and docstrings on both clients."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from gdos_master.app import create_app
from gdos_master.db import Database
from gdos_master.openapi import build_openapi
from gdos_master.routing import Api
from gdos_sdk import AsyncClient, Client
from gdos_sdk.config import MasterAuth, MasterServer, MasterSettings
from gdos_sdk.terminal_client import AsyncTerminal, Terminal

#: operationId -> SDK method, where the names differ (the rest are the same)
RENAMED = {
    "patch_user": "update_user",
    "patch_node": "update_node",
    "patch_system": "update_system",
    "patch_module": "update_module",
    "deploy_instance": "deploy",
    "create_batch": "start_batch",
    "run_command": "start_command",  # run_command() also exists: start + wait
    "list_audit_entries": "list_audit",
    "ingest": "ingest_status",
    "list_rules": "list_alert_rules",
    "create_rule": "create_alert_rule",
    "get_rule": "get_alert_rule",
    "replace_rule": "replace_alert_rule",
    "delete_rule": "delete_alert_rule",
    "alert_events": "alert_history",
    "patch_receiver": "update_receiver",
    "create_rollout": "rollout",
    "rollback_module": "rollback",
    "pause_rollout": "pause",
    "resume_rollout": "resume",
    "promote_rollout": "promote",
    "abort_rollout": "abort",
}

#: operations a user or script does not call, so the SDK has no method for them
NOT_IN_SDK = {
    # the worker's side of the API (node credentials only): gdos_worker calls it
    "agent_download",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder: Path = tmp_path_factory.mktemp("openapi")
    settings = MasterSettings(
        server=MasterServer(data_dir=str(folder / "data")),
        auth=MasterAuth(admin_password="admin-password-1", join_token="join-token-for-tests"),
    )
    db = Database.open(
        sqlite_path=folder / "ops.db"
    )  # closed here: the app is built, never served (Python 3.13 warns)
    try:
        app = create_app(settings, db=db)
        from gdos_master.api import api as registry

        assert app is not None
        yield registry
    finally:
        db.close()


def _operations(api: Api) -> dict[str, dict[str, object]]:
    document = build_openapi(api)
    found: dict[str, dict[str, object]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            found[op["operationId"]] = {"path": path, "method": method.upper(), **op}
    return found


def test_every_user_operation_has_a_method_on_both_clients(api: Api) -> None:
    operations = _operations(api)
    missing = []
    for op_id, op in sorted(operations.items()):
        if op_id in NOT_IN_SDK:
            assert op.get("security") == [{"nodeCredential": []}] or op_id in NOT_IN_SDK
            continue
        name = RENAMED.get(op_id, op_id)
        for cls in (Client, AsyncClient):
            if not callable(getattr(cls, name, None)):
                missing.append(f"{cls.__name__}.{name} ({op['method']} {op['path']})")
    assert not missing, "operations without an SDK method:\n" + "\n".join(missing)
    # The exception lists name only operations that exist (no stale entries).
    assert set(RENAMED) <= set(operations)
    assert set(NOT_IN_SDK) <= set(operations)


def test_agent_operations_are_the_only_exceptions(api: Api) -> None:
    agent = {e.operation_id for e in api.endpoints if e.agent}
    assert agent == NOT_IN_SDK


def _public_methods(cls: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, type)
    )


def test_both_clients_have_the_same_methods_and_parameters() -> None:
    sync, async_ = _public_methods(Client), _public_methods(AsyncClient)
    assert [n for n in sync if n != "close"] == [n for n in async_ if n != "aclose"]
    for name in sync:
        if name == "close":
            continue
        s = inspect.signature(getattr(Client, name))
        a = inspect.signature(getattr(AsyncClient, name))
        assert list(s.parameters) == list(a.parameters), name
        for param in s.parameters:
            assert s.parameters[param].default == a.parameters[param].default, (name, param)
        if name == "open_terminal":  # a blocking terminal on one side, an asyncio one on the other
            returned = [
                inspect.signature(getattr(cls, name), eval_str=True).return_annotation
                for cls in (Client, AsyncClient)
            ]
            assert returned == [Terminal, AsyncTerminal]
            continue
        # An iterator or a stream on one side is its async twin on the other.
        returned = str(a.return_annotation).replace("AsyncIterator", "Iterator")
        returned = returned.replace("AsyncLiveStream", "LiveStream")
        assert str(s.return_annotation) == returned, name


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_public_method_has_a_real_signature_and_a_docstring(cls: type) -> None:
    problems = []
    for name in _public_methods(cls):
        method = getattr(cls, name)
        signature = inspect.signature(method)
        # A typed ``*topics: str`` is a real parameter; a wrapper's ``*args: P.args`` is not.
        opaque = [
            p
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            and (
                p.annotation is inspect.Parameter.empty
                or ".args" in str(p.annotation)
                or ".kwargs" in str(p.annotation)
                or p.kind is inspect.Parameter.VAR_KEYWORD
            )
        ]
        if opaque:
            problems.append(f"{name}: *args/**kwargs in {signature}")
        if signature.return_annotation is inspect.Signature.empty:
            problems.append(f"{name}: no return annotation")
        returned = str(signature.return_annotation)
        if "Call[" in returned or "~T" in returned:
            problems.append(f"{name}: return annotation {returned}")
        doc = inspect.getdoc(method) or ""
        if not doc.strip():
            problems.append(f"{name}: no docstring")
            continue
        if "Raises:" not in doc:
            problems.append(f"{name}: docstring has no Raises: section")
        if signature.return_annotation not in (None, "None") and "Returns:" not in doc:
            problems.append(f"{name}: docstring has no Returns: section")
    assert not problems, "\n".join(problems)


def test_signatures_are_what_help_and_completion_show() -> None:
    gdos = Client("http://127.0.0.1:9", retries=0)
    try:
        bound = inspect.signature(gdos.list_nodes)
        assert list(bound.parameters) == ["status", "search"]
        assert bound.parameters["status"].kind is inspect.Parameter.KEYWORD_ONLY
        assert "ModelList[gdos_sdk.models.Node]" in str(bound.return_annotation)
        deploy = inspect.signature(gdos.deploy)
        assert list(deploy.parameters) == [
            "module_id",
            "node_id",
            "start",
            "wait",
            "timeout",
            "min_healthy_time",
            "progress",
        ]
        assert deploy.parameters["wait"].default == "healthy"
        hints = typing.get_type_hints(Client.deploy)
        assert hints["return"].__name__ == "Instance"
        assert typing.get_args(hints["wait"]) == ("started", "running", "stable", "healthy")
        assert Client.deploy.__qualname__ == "Client.deploy"
        assert AsyncClient.deploy.__qualname__ == "AsyncClient.deploy"
        assert inspect.iscoroutinefunction(AsyncClient.deploy)
        hints = typing.get_type_hints(Client.get_node)
        assert hints["return"].__name__ == "Node"
        query = inspect.signature(gdos.query_range)
        assert list(query.parameters) == ["metric", "target", "start", "end", "step", "agg"]
    finally:
        gdos.close()


def test_help_reads_like_a_reference() -> None:
    text = inspect.getdoc(Client) or ""
    assert "GDOS_URL" in text and "retries" in text
    import pydoc

    page = pydoc.render_doc(Client, renderer=pydoc.plaintext)
    # Python 3.13's pydoc wraps long signatures over several lines and spells
    # annotations out in full; read the page with its line breaks folded.
    flat = re.sub(r"\s*\n\s*\|\s*", " ", page)
    signature = r"list_nodes\( ?self, \*, status: '?[\w.]*NodeStatus \| str \| None'? = None"
    assert re.search(signature, flat)
    assert "Raises:" in page and "*args" not in page.split("class Client")[1].split("send(")[0]
