"""Write-only values and admin-only settings: the pure rules (gdos_sdk.redaction, .privileges)."""

from __future__ import annotations

import pytest

from gdos_sdk.adoption import AdoptionSpec, AdoptionStrategy
from gdos_sdk.errors import PermissionDenied
from gdos_sdk.privileges import admin_only_settings, escapes_folder, require_admin_for
from gdos_sdk.redaction import MASK, is_secret_env, keeps_url, mask_env, mask_url, merge_env


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("DB_PASSWORD", "x", True),
        ("api_key", "x", True),
        ("GITHUB_TOKEN", "x", True),
        ("AWS_SECRET_ACCESS_KEY", "x", True),
        ("SSH_PRIVATE", "x", True),
        ("PORT", "8080", False),
        ("DATABASE_URL", "postgres://app:pw@db/app", True),
        ("DATABASE_URL", "postgres://db/app", False),
        ("HOME", "/x@y", False),
    ],
)
def test_which_env_values_are_secret(name: str, value: str, secret: bool) -> None:
    assert is_secret_env(name, value) is secret


def test_mask_env_and_the_explicit_list() -> None:
    shown, masked = mask_env({"PORT": "1", "REGION": "eu", "TOKEN": "t"}, ["REGION"])
    assert shown == {"PORT": "1", "REGION": MASK, "TOKEN": MASK}
    assert masked == ["REGION", "TOKEN"]


def test_merge_env_keeps_secrets_it_does_not_see() -> None:
    stored = {"PORT": "1", "TOKEN": "t", "REGION": "eu"}
    assert merge_env(stored, {"PORT": "2"}, ["REGION"]) == {
        "PORT": "2",
        "TOKEN": "t",
        "REGION": "eu",
    }
    assert merge_env(stored, {"TOKEN": MASK}) == {"TOKEN": "t"}  # PORT, REGION removed
    assert merge_env(stored, {"TOKEN": None, "PORT": None}) == {}
    assert merge_env(stored, {"TOKEN": "new"}) == {"TOKEN": "new"}
    assert merge_env({"PORT": MASK}, {"PORT": MASK}) == {"PORT": MASK}  # not secret: a value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://alerts.example.com/", "https://alerts.example.com/"),
        ("https://alerts.example.com", "https://alerts.example.com"),
        ("https://a:b@h.example:8443/x?y=1", "https://***@h.example:8443/***"),
        ("https://TOKEN@h.example", "https://***@h.example"),
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/***"),
        ("http://[::1]:9/x", "http://[::1]:9/***"),
        ("http://h/#frag", "http://h/***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_keeps_url_only_for_the_masked_form_of_a_hidden_url() -> None:
    assert keeps_url("https://h/secret", "https://h/***")
    assert not keeps_url("https://h/", "https://h/")  # nothing hidden: it is a plain update
    assert not keeps_url("https://h/secret", "https://other/***")


@pytest.mark.parametrize(
    ("path", "escapes"),
    [
        ("logs/app.log", False),
        ("./logs/../app.log", False),
        ("../x", True),
        ("logs/../../x", True),
        ("/etc/shadow", True),
        ("C:\\Windows\\x.log", True),
        ("logs\\..\\..\\x", True),
    ],
)
def test_escapes_folder(path: str, escapes: bool) -> None:
    assert escapes_folder(path) is escapes


def test_admin_only_settings_follow_the_override_rules() -> None:
    cmd = {"type": "cmd", "command": ["true"]}
    manifest = {"name": "x", "version": "1", "health_check": cmd, "user": "svc"}
    # The module's http check replaces the manifest's cmd check; its user replaces the manifest's.
    found = admin_only_settings(manifest=manifest, health_check={"type": "tcp", "port": 1})
    assert [f.path for f in found] == ["$.manifest.user"]
    found = admin_only_settings(manifest=manifest, user="root")
    assert [f.path for f in found] == ["$.user", "$.manifest.health_check"]
    spec = AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="n", restart_command=" ")
    assert admin_only_settings(adoption=spec) == []  # a blank command runs nothing
    with pytest.raises(PermissionDenied) as info:
        require_admin_for(admin_only_settings(group="disk"))
    assert info.value.details == [
        {"path": "$.group", "message": "admin only: runs the service with the group 'disk'"}
    ]
    require_admin_for([])  # nothing to refuse
