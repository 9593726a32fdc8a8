"""The connections of one core: one authorization state each (S11), kept across restarts.

Every connection gets one `ConnectionAuth`, shared by all the API destinations it
authorizes (a 401 through one of them deauthorizes the connection for all). When a
connection becomes DEAUTHORIZED the state is queued for the store's next commit, with a
salted hash of the connection's credentials. On start, `restore` puts back every
connection a previous run left DEAUTHORIZED — unless the operator has changed its
credentials since, which authorizes it again, as updating a connection does in AWS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sim.live.config.resources import CoreConfig
from sim.live.delivery.auth import ConnectionAuth, Send, auth_for, credentials_of
from sim.live.delivery.store import Deauthorized, Store, StoreWriter

log = logging.getLogger("sim.live")


class Connections:
    """The authorization state of each connection of `config`, by name."""

    def __init__(self, config: CoreConfig, send: Send, redact: Callable[[str], str]) -> None:
        self.config = config
        self._redact = redact
        self._writer: StoreWriter | None = None
        self._auths: dict[str, ConnectionAuth] = {}
        for connection in config.Connections:
            auth = auth_for(connection, send, time.time)
            auth.on_deauthorize = self._deauthorized
            self._auths[connection.Name] = auth

    def __getitem__(self, name: str) -> ConnectionAuth:
        return self._auths[name]

    def secrets(self) -> set[str]:
        """Every credential the connections send right now (for scrubbing messages)."""
        return {secret for auth in self._auths.values() for secret in auth.secrets()}

    async def restore(self, writer: StoreWriter, store: Store) -> None:
        """Put back the DEAUTHORIZED states the store holds; persist new ones from now on."""
        self._writer = writer
        credentials = {c.Name: credentials_of(c) for c in self.config.Connections}
        still, renewed = await writer.call(lambda: store.deauthorized(credentials))
        for name, (reason, since) in still.items():
            self._auths[name].restore(reason)
            log.warning(
                "connection %s is DEAUTHORIZED since %s (%s): deliveries through it end with "
                "CONNECTION_DEAUTHORIZED until its credentials change",
                name, datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"), reason,
            )  # fmt: skip
        for name in renewed:
            log.warning("connection %s: its credentials changed, so it is authorized again", name)

    def _deauthorized(self, name: str, reason: str) -> None:
        reason = self._redact(reason)
        log.warning("connection %s is now DEAUTHORIZED: %s", name, reason)
        if self._writer is not None:
            credentials = credentials_of(self.config.connections[name])
            self._writer.record(Deauthorized(name, reason, time.time(), credentials))
