"""``python -m gdos_cli`` runs ``gdos``."""

from __future__ import annotations

import sys

from gdos_cli.app import main

sys.exit(main())
