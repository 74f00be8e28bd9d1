"""Names an operator types, turned into the ids the API takes.

- a node: its id, hostname or alias, or a unique prefix of its id;
- a system: its id or name;
- a module: ``SYSTEM/MODULE``, its id, or a module name found in only one system;
- an instance: its id or a unique id prefix (``gdos ps`` shows 8 characters), or
  ``MODULE@NODE`` (``shop/web@app-01``): the instance of that module on that node.

A name that matches nothing is a :class:`~gdos_cli.core.CliError` with exit code 4 (with
a guess when one is close); one that matches several is exit code 2 and lists them.
Lookups are cached for the life of one command (:class:`Names`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from gdos_cli.core import CliError, ExitCode
from gdos_sdk import Client
from gdos_sdk.codec import suggest
from gdos_sdk.models import Instance, Module, Node, System

__all__ = ["MIN_PREFIX", "Names", "pick"]

T = TypeVar("T")

#: the shortest id prefix accepted (shorter ones would match by accident)
MIN_PREFIX = 4


def pick(
    kind: str,
    ref: str,
    items: Sequence[T],
    keys: Callable[[T], Iterable[str]],
    label: Callable[[T], str],
    *,
    ident: Callable[[T], str],
) -> T:
    """The one item ``ref`` names: an exact id, then an exact key, then an id prefix.

    Raises:
        CliError: nothing matches (exit 4, with a guess) or several do (exit 2).
    """
    for match in (
        [i for i in items if ident(i) == ref],
        [i for i in items if ref in set(keys(i))],
        [i for i in items if len(ref) >= MIN_PREFIX and ident(i).startswith(ref)],
    ):
        unique = list({id(i): i for i in match}.values())
        if len(unique) == 1:
            return unique[0]
        if len(unique) > 1:
            listed = ", ".join(sorted(label(i) for i in unique))
            raise CliError(
                f"{kind} {ref!r} is ambiguous: it matches {listed}; use an id",
                ExitCode.USAGE,
            )
    known = sorted({k for i in items for k in keys(i) if k})
    guess = suggest(ref, known)
    hint = f"; did you mean {guess!r}?" if guess else ""
    raise CliError(f"no {kind} {ref!r}{hint}", ExitCode.NOT_FOUND)


class Names:
    """Resolve and show names with the fewest requests (each list fetched once)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._nodes: list[Node] | None = None
        self._systems: list[System] | None = None
        self._modules: dict[str, list[Module]] = {}

    # --- the lists ---------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        if self._nodes is None:
            self._nodes = list(self.client.list_nodes())
        return self._nodes

    def systems(self) -> list[System]:
        if self._systems is None:
            self._systems = list(self.client.list_systems())
        return self._systems

    def modules(self, system_id: str) -> list[Module]:
        if system_id not in self._modules:
            self._modules[system_id] = list(self.client.list_modules(system_id))
        return self._modules[system_id]

    def all_modules(self) -> list[Module]:
        return [m for s in self.systems() for m in self.modules(s.id)]

    # --- names to things ---------------------------------------------------------------

    def node(self, ref: str) -> Node:
        return pick(
            "node",
            ref,
            self.nodes(),
            lambda n: (n.hostname, n.alias),
            lambda n: f"{n.hostname} ({n.id[:8]})",
            ident=lambda n: n.id,
        )

    def system(self, ref: str) -> System:
        return pick(
            "system",
            ref,
            self.systems(),
            lambda s: (s.name,),
            lambda s: f"{s.name} ({s.id[:8]})",
            ident=lambda s: s.id,
        )

    def module(self, ref: str) -> Module:
        if "/" in ref:
            system_ref, name = ref.split("/", 1)
            system = self.system(system_ref)
            return pick(
                f"module in system {system.name!r}:",
                name,
                self.modules(system.id),
                lambda m: (m.name,),
                lambda m: f"{system.name}/{m.name}",
                ident=lambda m: m.id,
            )
        return pick(
            "module",
            ref,
            self.all_modules(),
            lambda m: (m.name, f"{self.system_name(m.system_id)}/{m.name}"),
            lambda m: f"{self.system_name(m.system_id)}/{m.name}",
            ident=lambda m: m.id,
        )

    def instance(self, ref: str, instances: Sequence[Instance] | None = None) -> Instance:
        found = list(self.client.list_instances()) if instances is None else list(instances)
        if "@" in ref:
            module_ref, node_ref = ref.rsplit("@", 1)
            module, node = self.module(module_ref), self.node(node_ref)
            matches = [i for i in found if i.module_id == module.id and i.node_id == node.id]
            if not matches:
                raise CliError(
                    f"no instance of {self.module_label(module)} on {node.hostname}",
                    ExitCode.NOT_FOUND,
                )
            return matches[0]
        return pick(
            "instance",
            ref,
            found,
            lambda i: (),
            lambda i: f"{i.id[:8]} ({i.package} on {self.node_name(i.node_id)})",
            ident=lambda i: i.id,
        )

    # --- ids to names (for tables) -----------------------------------------------------

    def node_name(self, node_id: str) -> str:
        for node in self.nodes():
            if node.id == node_id:
                return node.alias or node.hostname
        return node_id[:8]

    def system_name(self, system_id: str) -> str:
        for system in self.systems():
            if system.id == system_id:
                return system.name
        return system_id[:8]

    def module_label(self, module: Module) -> str:
        return f"{self.system_name(module.system_id)}/{module.name}"

    def module_name(self, system_id: str, module_id: str) -> str:
        for module in self.modules(system_id) if system_id else []:
            if module.id == module_id:
                return self.module_label(module)
        return module_id[:8]

    def instance_label(self, instance: Instance) -> str:
        module = self.module_name(instance.system_id, instance.module_id)
        return f"{module}@{self.node_name(instance.node_id)}"
