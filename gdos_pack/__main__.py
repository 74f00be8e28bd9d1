"""``python -m gdos_pack``: the same as the ``gdos-pack`` command."""

from __future__ import annotations

from gdos_pack.cli import main

raise SystemExit(main())
