"""gdos-pack: create, build, validate and inspect GDOS service packages.

Example::

    from gdos_pack import main
    main(["build", "my-service", "-o", "my-service-1.0.0.zip"])
"""

from __future__ import annotations

from gdos_pack.cli import main

__all__ = ["main"]
