"""Serving the gateway on uvicorn: header read timeout, a cap on unauthenticated connections, and the drain.

uvicorn (h11) waits forever for a request's headers, so a client that opens
connections and trickles bytes holds them without ever showing a key (issue #12).
`GuardedH11Protocol` closes a connection whose request headers have not all arrived
within `header_timeout_s` of its opening (or of the first byte of a later request on a
kept-alive connection), and keeps at most `max_pending_connections` such connections: a
new one closes the oldest (the one nearest its timeout anyway), so a flood of slow
connections cannot starve clients that send their headers at once. Connections younger
than `MIN_EVICT_AGE_S` are not evicted (a busy loop may not have read a burst of real
clients' headers yet), so the cap can be passed briefly. Idle kept-alive connections
are not counted; uvicorn closes them after `keep_alive_timeout_s`.
Bodies are read by the handlers, which authenticate first and bound the read with
`body_timeout_s`.

On SIGTERM (or Ctrl-C) `GatewayServer` stops accepting, closes idle connections, and
runs `GatewayState.drain` before uvicorn's own shutdown, so streams still running at
the end of `drain_timeout_s` get an SSE error event and `[DONE]` instead of a cut.

The protocol subclass uses uvicorn's `H11Protocol` hooks (`connection_made`,
`data_received`, `connection_lost`, `cycle`), stable since
uvicorn 0.14; the gateway always runs the h11 implementation.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from uvicorn import Config, Server
from uvicorn.protocols.http.h11_impl import H11Protocol

from equinox.integrations.gateway.config import GatewayConfig
from equinox.integrations.gateway.runtime import GatewayState

logger = logging.getLogger(__name__)

MIN_EVICT_AGE_S = 1.0  # the cap closes only connections that have been sending headers at least this long


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header read timeout and a cap on connections still sending headers."""

    header_timeout_s = 10.0
    max_pending = 256
    pending: OrderedDict[GuardedH11Protocol, float]  # per server (set by `guarded_protocol`): -> armed at
    num_closed_slow = 0  # per server: connections closed for slow headers or evicted by the cap

    _header_timer: Any = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if self._header_timer is None and (cycle is None or cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers were parsed: it is up to the handler now
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        cls = type(self)
        now = self.loop.time()
        while len(cls.pending) >= cls.max_pending:
            oldest, since = next(iter(cls.pending.items()))
            if now - since < min(MIN_EVICT_AGE_S, cls.header_timeout_s):
                break  # all young: a burst of real clients the loop has not read yet, not a slowloris
            cls.pending.pop(oldest)
            oldest._close_slow()
        cls.pending[self] = now
        self._header_timer = self.loop.call_later(cls.header_timeout_s, self._close_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        type(self).pending.pop(self, None)

    def _close_slow(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            type(self).num_closed_slow += 1
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_pending: int) -> type[GuardedH11Protocol]:
    """A protocol class with its own limits and pending-connection book (one per server)."""
    attrs = {"header_timeout_s": header_timeout_s, "max_pending": max_pending, "pending": OrderedDict(),
             "num_closed_slow": 0}
    return type("GatewayH11Protocol", (GuardedH11Protocol,), attrs)


class GatewayServer(Server):
    """uvicorn's Server with the gateway's drain before the usual shutdown."""

    def __init__(self, config: Config, state: GatewayState) -> None:
        super().__init__(config)
        self.state = state

    async def shutdown(self, sockets: Any = None) -> None:
        """Stop accepting, close idle connections, drain the gateway, then shut down as uvicorn does."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await self.state.drain()
        await super().shutdown(sockets)


def make_server(app: Any, config: GatewayConfig, *, log_level: str = "warning", port: int | None = None) -> Any:
    """A GatewayServer for `app` (built by `build_app(config)`) with the config's timeouts and limits."""
    protocol = guarded_protocol(config.header_timeout_s, config.max_pending_connections)
    uv = Config(app, host=config.host, port=config.port if port is None else port, log_level=log_level,
                access_log=False, http=protocol, lifespan="on", timeout_keep_alive=config.keep_alive_timeout_s,  # type: ignore[arg-type]
                timeout_graceful_shutdown=int(config.drain_timeout_s + 10))  # type: ignore[arg-type]
    return GatewayServer(uv, app.state.gateway)


def serve(config: GatewayConfig, *, log_level: str = "warning") -> None:
    """Run the gateway until SIGTERM or Ctrl-C, then drain."""
    from equinox.integrations.gateway.app import build_app

    app = build_app(config)
    logger.info("gateway on http://%s:%d (policy %s, %d backend(s), %d tenant(s))", config.host, config.port,
                config.policy, len(config.backends), len(config.tenants))
    make_server(app, config, log_level=log_level).run()
