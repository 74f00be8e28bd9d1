"""Where a client finds its master and credential: arguments, environment, profile file.

``Client()`` with no arguments looks, in this order:

1. the arguments (``base_url``, ``token``, ``profile``, ``verify``);
2. the environment: ``GDOS_URL`` and ``GDOS_TOKEN`` (like ``NOMAD_ADDR``/``NOMAD_TOKEN``);
3. a profile of the profile file: the one ``GDOS_PROFILE`` names, else the file's
   ``current`` one, else the one called ``default``.

A profile's token is only used with the URL of that profile: with ``GDOS_URL`` pointing
elsewhere and no ``GDOS_TOKEN``, the client takes the token of the profile whose ``url``
is that URL (if there is one) and never sends a token to a master it was not saved for.

The profile file is ``$GDOS_CONFIG``, else ``$XDG_CONFIG_HOME/gdos/config.toml``, else
``~/.config/gdos/config.toml``. It is TOML; the ``gdos login`` command writes it with
:func:`save_profile` (mode 0600, in a 0700 folder, replaced atomically)::

    # GDOS client profiles: keep this file private (it holds API tokens).
    current = "prod"

    [profiles."prod"]
    url = "https://gdos.example.com"
    token = "gdos_..."

    [profiles."lab"]
    url = "https://10.0.0.5:8080"
    token = "gdos_..."
    verify = "/etc/gdos/lab-ca.pem"   # a CA bundle, or false (not recommended)

Example::

    from gdos_sdk.profiles import Profile, save_profile
    save_profile(Profile("lab", "http://127.0.0.1:8080", token), make_current=True)
    gdos = Client()  # now talks to the lab master
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

import attrs

from gdos_sdk.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "PROFILE_ENV",
    "TOKEN_ENV",
    "URL_ENV",
    "Profile",
    "ProfileFile",
    "Resolved",
    "config_path",
    "load_profiles",
    "remove_profile",
    "resolve",
    "save_profile",
]

URL_ENV = "GDOS_URL"
TOKEN_ENV = "GDOS_TOKEN"
PROFILE_ENV = "GDOS_PROFILE"
CONFIG_ENV = "GDOS_CONFIG"
DEFAULT_PROFILE = "default"


@attrs.frozen
class Profile:
    """A named master: its URL, an API token, and how to check its TLS certificate."""

    name: str
    url: str
    token: str | None = None
    verify: bool | str = True  # False, or the path of a CA bundle

    def __repr__(self) -> str:  # the token is a secret: never in a repr or a log
        token = "set" if self.token else "none"
        return f"Profile(name={self.name!r}, url={self.url!r}, token={token})"


@attrs.frozen
class ProfileFile:
    """The whole profile file: the profiles and which one is current."""

    profiles: dict[str, Profile] = attrs.field(factory=dict)
    current: str | None = None


@attrs.frozen
class Resolved:
    """What a client will use; ``source`` says where the URL came from (for messages)."""

    url: str
    token: str | None
    verify: bool | str | ssl.SSLContext
    profile: str | None
    source: str

    def __repr__(self) -> str:
        token = "set" if self.token else "none"
        return f"Resolved(url={self.url!r}, token={token}, profile={self.profile!r})"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The profile file's path (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "gdos" / "config.toml"


def load_profiles(path: Path | None = None) -> ProfileFile:
    """Read the profile file; a missing file is an empty one.

    Raises:
        ConfigError: the file is not valid TOML or a profile is malformed.
    """
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ProfileFile()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    profiles: dict[str, Profile] = {}
    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table")
    for name, raw in raw_profiles.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
            raise ConfigError(f"{path}: profile {name!r} needs a url")
        token = raw.get("token")
        verify = raw.get("verify", True)
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"{path}: profile {name!r}: token must be a string")
        if not isinstance(verify, bool | str):
            raise ConfigError(f"{path}: profile {name!r}: verify must be true, false or a path")
        profiles[name] = Profile(name=name, url=raw["url"], token=token, verify=verify)
    current = data.get("current")
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path}: 'current' must be a profile name")
    return ProfileFile(profiles=profiles, current=current)


def _toml(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _render(config: ProfileFile) -> str:
    lines = ["# GDOS client profiles: keep this file private (it holds API tokens)."]
    if config.current:
        lines.append(f"current = {_toml(config.current)}")
    for name in sorted(config.profiles):
        profile = config.profiles[name]
        lines += ["", f"[profiles.{_toml(name)}]", f"url = {_toml(profile.url)}"]
        if profile.token:
            lines.append(f"token = {_toml(profile.token)}")
        if profile.verify is not True:
            lines.append(f"verify = {_toml(profile.verify)}")
    return "\n".join(lines) + "\n"


def _write(config: ProfileFile, path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        os.chmod(tmp, 0o600)  # before a secret is written to it
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_render(config))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_profile(profile: Profile, *, path: Path | None = None, make_current: bool = False) -> Path:
    """Add or replace ``profile`` in the profile file (mode 0600); returns the path.

    Example::

        save_profile(Profile("prod", "https://gdos.example.com", "gdos_..."), make_current=True)
    """
    path = path or config_path()
    config = load_profiles(path)
    profiles = {**config.profiles, profile.name: profile}
    current = profile.name if make_current or config.current is None else config.current
    _write(ProfileFile(profiles=profiles, current=current), path)
    return path


def remove_profile(name: str, *, path: Path | None = None) -> bool:
    """Remove a profile (``gdos logout``); False when there was none by that name."""
    path = path or config_path()
    config = load_profiles(path)
    if name not in config.profiles:
        return False
    profiles = {k: v for k, v in config.profiles.items() if k != name}
    current = None if config.current == name else config.current
    _write(ProfileFile(profiles=profiles, current=current), path)
    return True


def resolve(
    base_url: str | None = None,
    token: str | None = None,
    *,
    profile: str | None = None,
    verify: bool | str | ssl.SSLContext | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Resolved:
    """The URL, token and TLS setting a client should use (see the module docstring).

    Raises:
        ConfigError: no URL anywhere, or a named profile that does not exist.
    """
    env = os.environ if env is None else env
    if base_url and token is not None and profile is None:  # nothing to look up
        return Resolved(base_url, token, True if verify is None else verify, None, "argument")
    named = profile or env.get(PROFILE_ENV) or None
    config = load_profiles(path or config_path(env))
    chosen: Profile | None = None
    if named:
        chosen = config.profiles.get(named)
        if chosen is None:
            known = ", ".join(sorted(config.profiles)) or "none"
            raise ConfigError(f"no GDOS profile {named!r} (profiles: {known})")
    elif config.current in config.profiles:
        chosen = config.profiles[config.current]
    else:
        chosen = config.profiles.get(DEFAULT_PROFILE)

    env_url = env.get(URL_ENV) or None
    env_token = env.get(TOKEN_ENV) or None
    if base_url:
        url, source = base_url, "argument"
    elif profile and chosen is not None:  # an explicit profile= beats the environment
        url, source = chosen.url, f"profile {chosen.name!r}"
    elif env_url:
        url, source = env_url, URL_ENV
    elif chosen is not None:
        url, source = chosen.url, f"profile {chosen.name!r}"
    else:
        raise ConfigError(
            "no GDOS master URL: pass base_url, set GDOS_URL (and GDOS_TOKEN), or save a"
            f" profile in {path or config_path(env)} (gdos login)"
        )
    # A saved token goes only to the master it was saved for.
    candidates = ([chosen] if chosen else []) + list(config.profiles.values())
    matching = next((p for p in candidates if _same(p.url, url)), None)
    if token is None:
        token = env_token if not (profile and matching) else None
        if token is None and matching is not None:
            token = matching.token
    if verify is None:
        verify = matching.verify if matching is not None else True
    return Resolved(
        url=url,
        token=token,
        verify=verify,
        profile=matching.name if matching is not None else None,
        source=source,
    )


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")
