"""Names to ids: exact id, then name, then a unique id prefix; clear errors otherwise."""

from __future__ import annotations

import pytest

from gdos_cli.core import CliError, ExitCode
from gdos_cli.resolve import pick

ITEMS = [
    {"id": "1111aaaa-0000", "name": "web", "alias": "front"},
    {"id": "1111bbbb-0000", "name": "web", "alias": ""},
    {"id": "2222cccc-0000", "name": "db", "alias": "1111aaaa-0000"},
]


def _pick(ref: str) -> dict[str, str]:
    return pick(
        "node",
        ref,
        ITEMS,
        lambda i: (i["name"], i["alias"]),
        lambda i: f"{i['name']} ({i['id'][:8]})",
        ident=lambda i: i["id"],
    )


def test_an_exact_id_wins_over_a_name_that_looks_like_it() -> None:
    assert _pick("1111aaaa-0000")["name"] == "web"


def test_names_aliases_and_prefixes() -> None:
    assert _pick("db")["id"] == "2222cccc-0000"
    assert _pick("front")["id"] == "1111aaaa-0000"
    assert _pick("2222")["name"] == "db"


@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [
        (
            "web",
            ExitCode.USAGE,
            "node 'web' is ambiguous: it matches web (1111aaaa), web (1111bbbb)",
        ),
        ("1111", ExitCode.USAGE, "is ambiguous"),
        ("wbe", ExitCode.NOT_FOUND, "no node 'wbe'; did you mean 'web'?"),
        ("zzz", ExitCode.NOT_FOUND, "no node 'zzz'"),
        ("222", ExitCode.NOT_FOUND, "no node '222'"),  # prefixes need 4 characters
    ],
)
def test_what_cannot_be_picked(ref: str, code: ExitCode, message: str) -> None:
    with pytest.raises(CliError) as caught:
        _pick(ref)
    assert caught.value.exit_code == code
    assert message in caught.value.message
