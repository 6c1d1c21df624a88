"""One registration per algorithm, where its server side and its client side meet.

``strategy=<name>`` selects an algorithm. Its server side (``strategies/<name>.py``) registers
its config dataclass and builder with ``register_server``; if its clients do more than plain
local training, its client side (``clients/<name>.py``) registers a routine, or extra query
handlers, under the same name with ``register_client``. The server tells every client the
algorithm's name (``protocol.ALGORITHM``) and the client runs what was registered for it,
or the plain routine. Both sides import this module and never each other, as a real server
and a real client meet only on the wire; each refuses a second registration of a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServerSide:
    """What the ServerApp needs: the config dataclass (``strategy.*``) and the strategy's builder."""

    name: str
    config_cls: type
    build: Callable[[Any, Any], Any]  # (ExperimentConfig, ClientDirectory) -> the strategy


@dataclass(frozen=True)
class ClientSide:
    """What the ClientApp needs: a routine (None: the plain one) and query handlers by action."""

    routine: Any = None  # clients.personal.Routine
    queries: dict[str, Callable[..., Any]] = field(default_factory=dict)  # action -> (Message, Context) -> Message


class Registry:
    """Algorithms by name; each side registers its half once."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerSide] = {}
        self.clients: dict[str, ClientSide] = {}

    def register_server(self, config_cls: type, build: Callable[[Any, Any], Any]) -> None:
        """Register a strategy under its config's name (``config_cls().name``), the one place it is spelled."""
        name = config_cls().name
        if name in self.servers:
            raise ValueError(f"strategy {name!r} is registered twice; give the new one another name")
        self.servers[name] = ServerSide(name, config_cls, build)

    def register_client(
        self, name: str, routine: Any = None, queries: dict[str, Callable[..., Any]] | None = None
    ) -> None:
        """Register what the clients of algorithm ``name`` run beyond plain training."""
        if name in self.clients:
            raise ValueError(f"client side of {name!r} is registered twice")
        taken = {a for side in self.clients.values() for a in side.queries} & set(queries or {})
        if taken:
            raise ValueError(f"query actions {sorted(taken)} of {name!r} are handled by another algorithm already")
        self.clients[name] = ClientSide(routine, dict(queries or {}))

    def server(self, name: str) -> ServerSide:
        if name not in self.servers:
            raise ValueError(f"strategy={name!r} is unknown; choose one of {', '.join(sorted(self.servers))}")
        return self.servers[name]

    def routine(self, name: str, plain: Any) -> Any:
        """The routine registered for ``name``'s clients, or ``plain`` where none was."""
        side = self.clients.get(name)
        return plain if side is None or side.routine is None else side.routine

    def queries(self) -> dict[str, Callable[..., Any]]:
        """Every registered query handler by its action."""
        return {action: h for side in self.clients.values() for action, h in side.queries.items()}


ALGORITHMS = Registry()
register_server = ALGORITHMS.register_server
register_client = ALGORITHMS.register_client
