"""The account a service runs as: look a user and group up, tell whether we may switch.

On POSIX a worker running as root starts each service as an unprivileged
account (the manifest's or module's ``user``, else the worker's
``runtime.default_user``): the executor passes the uid, gid and supplementary
groups (what ``initgroups`` would set) to the child, which drops root before it
runs the program. A worker that is not root cannot switch and runs everything
as itself. On Windows switching accounts needs the account's password, so an
explicit account is refused there and the default is ignored.

Example::

    account = lookup_account("nobody")
    account.uid, account.gid, account.home
"""

from __future__ import annotations

import os
import sys
from typing import Any

import attrs

from gdos_sdk.errors import SpawnError

if sys.platform != "win32":
    import grp
    import pwd

__all__ = [
    "Account",
    "can_switch_accounts",
    "current_account",
    "lookup_account",
    "switch_arguments",
]


@attrs.frozen
class Account:
    """A resolved account: ids, supplementary groups and what the environment should say.

    Parameters:
        name: the user name (``str(uid)`` for a numeric id without a passwd entry).
        uid, gid: the user id and primary group id.
        groups: supplementary group ids (the user's groups from the group database).
        home: the home folder, for ``HOME``.
    """

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"

    def env(self) -> dict[str, str]:
        """``HOME``, ``USER`` and ``LOGNAME`` as a login as this account would set them."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def can_switch_accounts() -> bool:
    """True when this process may start children as another account (POSIX root)."""
    return sys.platform != "win32" and os.geteuid() == 0


def switch_arguments(account: Account | None, program: str) -> dict[str, Any]:
    """``subprocess.Popen`` keywords that start ``program`` as ``account`` ({}: stay as we are).

    The child drops to the account (setgroups, setregid, setreuid, in that order) after
    the fork and before it runs the program, so nothing of the service runs as root.

    Raises:
        SpawnError: the account differs from ours and we may not switch (not root, or
            Windows).

    Example::

        subprocess.Popen(argv, **switch_arguments(lookup_account("nobody"), argv[0]))
    """
    if account is None:
        return {}
    if sys.platform == "win32":
        raise SpawnError(
            f"cannot start {program!r} as {account.name!r}: running a service as another"
            " account is not supported on Windows",
            details={"user": account.name},
        )
    else:
        if (account.uid, account.gid) == (os.geteuid(), os.getegid()):
            return {}
        if os.geteuid() != 0:
            raise SpawnError(
                f"cannot start {program!r} as {account.name!r}: the worker runs as uid"
                f" {os.geteuid()}, and only a worker running as root can switch accounts",
                details={"user": account.name, "uid": account.uid},
            )
        return {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}


def current_account() -> Account:
    """The account this process runs as."""
    if sys.platform == "win32":
        name = os.environ.get("USERNAME", "")
        return Account(name=name, uid=0, gid=0, home=os.path.expanduser("~"))
    else:
        uid, gid = os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return Account(name=str(uid), uid=uid, gid=gid)
        return Account(name=entry.pw_name, uid=uid, gid=gid, home=entry.pw_dir)


def lookup_account(user: str, group: str = "") -> Account:
    """Resolve ``user`` (a name or a numeric id) and, if given, ``group``.

    Raises:
        SpawnError: no such user or group on this host, or Windows.

    Example::

        lookup_account("www-data", "www-data")
    """
    if sys.platform == "win32":
        raise SpawnError(
            f"running a service as the account {user!r} is not supported on Windows;"
            " the worker runs services as its own account there",
            details={"user": user},
        )
    else:
        return _lookup_posix(user, group)


if sys.platform != "win32":

    def _lookup_posix(user: str, group: str) -> Account:
        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            if not user.isdigit():
                raise SpawnError(f"no user {user!r} on this node", details={"user": user}) from None
            uid, gid, name, home = int(user), int(user), user, "/"
        else:
            uid, gid, name, home = entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
            except KeyError:
                raise SpawnError(
                    f"no group {group!r} on this node", details={"group": group}
                ) from None
        try:
            groups = tuple(os.getgrouplist(name, gid)) if not name.isdigit() else (gid,)
        except OSError:
            groups = (gid,)
        return Account(name=name, uid=uid, gid=gid, groups=groups, home=home)
