"""Client configuration: arguments, GDOS_URL/GDOS_TOKEN, the profile file."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import httpx
import pytest

from gdos_sdk import Client, ConfigError
from gdos_sdk.profiles import (
    Profile,
    load_profiles,
    remove_profile,
    resolve,
    save_profile,
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "gdos" / "config.toml"
    for name in ("GDOS_URL", "GDOS_TOKEN", "GDOS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GDOS_CONFIG", str(path))
    return path


def test_save_writes_a_private_toml_file_and_reads_it_back(config: Path) -> None:
    save_profile(Profile("prod", "https://gdos.example.com", 'gdos_se"cret'), path=config)
    save_profile(
        Profile("lab", "http://10.0.0.5:8080", "gdos_lab", verify="/ca.pem"),
        path=config,
        make_current=True,
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    data = tomllib.loads(config.read_text())
    assert data["current"] == "lab"
    assert data["profiles"]["prod"] == {"url": "https://gdos.example.com", "token": 'gdos_se"cret'}
    loaded = load_profiles(config)
    assert loaded.current == "lab" and loaded.profiles["lab"].verify == "/ca.pem"
    assert "gdos_lab" not in repr(loaded.profiles["lab"])  # a token never shows in a repr
    assert remove_profile("lab", path=config) and not remove_profile("lab", path=config)
    assert load_profiles(config).current is None


def test_precedence_arguments_environment_profile(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="GDOS_URL"):
        resolve()
    save_profile(Profile("default", "http://saved:1", "tok-saved"), path=config)
    found = resolve()
    assert (found.url, found.token, found.profile) == ("http://saved:1", "tok-saved", "default")

    monkeypatch.setenv("GDOS_URL", "http://env:2")
    monkeypatch.setenv("GDOS_TOKEN", "tok-env")
    found = resolve()
    assert (found.url, found.token) == ("http://env:2", "tok-env")
    assert resolve("http://arg:3", "tok-arg").token == "tok-arg"

    # a saved token is never sent to another master
    monkeypatch.delenv("GDOS_TOKEN")
    assert resolve().token is None
    monkeypatch.setenv("GDOS_URL", "http://saved:1/")
    assert resolve().token == "tok-saved"

    save_profile(Profile("lab", "http://lab:4", "tok-lab"), path=config)
    monkeypatch.setenv("GDOS_PROFILE", "lab")
    monkeypatch.delenv("GDOS_URL")
    assert (resolve().url, resolve().token) == ("http://lab:4", "tok-lab")
    monkeypatch.setenv("GDOS_URL", "http://env:2")
    monkeypatch.setenv("GDOS_TOKEN", "tok-env")
    # profile= as an argument beats the environment
    found = resolve(profile="lab")
    assert (found.url, found.token) == ("http://lab:4", "tok-lab")
    with pytest.raises(ConfigError, match="no GDOS profile 'nope'"):
        resolve(profile="nope")


def test_bad_profile_file_is_a_config_error(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("current = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profiles(config)
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve("http://arg:1")  # it looks for a saved token for this URL
    assert resolve("http://arg:1", "tok").token == "tok"  # nothing to look up: not read
    config.write_text('[profiles.x]\ntoken = "t"\n')
    with pytest.raises(ConfigError, match="needs a url"):
        load_profiles(config)


def test_client_with_no_arguments_uses_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    monkeypatch.setenv("GDOS_URL", "http://from-env:8080")
    monkeypatch.setenv("GDOS_TOKEN", "gdos_from_env")
    with Client(transport=httpx.MockTransport(handler)) as gdos:
        assert gdos.base_url == "http://from-env:8080"
        assert gdos.health() == {"status": "ok"}
    assert str(seen[0].url) == "http://from-env:8080/api/v1/health"
    assert seen[0].headers["Authorization"] == "Bearer gdos_from_env"
