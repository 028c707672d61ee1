"""Everything that knows daphne, Twisted, autobahn, processes and sockets.

This package is the one door to framework internals: every private attribute or monkeypatch of
daphne, Twisted, autobahn or Django the server relies on for speed lives in a module here, each
with a contract test (``tests/test_framework_contracts.py``) that fails with a clear message when
an upgrade removes it; ``requirements.txt`` pins those frameworks exactly.

``SERVER_FAST_PATHS`` (default on) chooses the transport:
* on: the tuned daphne (``tuning``: lean upgrades and per-socket state, the upgrade limit before
  the handshake, the keep-alive publish channel ``http_channel``), corked socket writes
  (``outlets``), and the lean API handler (``api_handler`` with ``fast_publish``);
* off: stock daphne and Django's own ASGI handler, none of the above. Both serve the same views
  and the same engine, so behaviour is the same except where stock daphne cannot do it: close
  frames carry no reason text, and an upgrade refused before the handshake (per-IP limit, applied
  by the WebSocket entry there; draining) gets ``403`` instead of ``429`` / ``503``.
"""

from __future__ import annotations

from typing import Any

from realtime.conf import server_settings


def fast_paths() -> bool:
    return bool(server_settings().SERVER_FAST_PATHS)


def install_transport() -> None:
    """Apply the tuning to daphne and register the corked outlet (once, before serving)."""
    if not fast_paths():
        return
    from realtime.node.outlet import register_outlet_factory
    from realtime.server import outlets, tuning

    tuning.install()
    outlets.set_flush_max_delay(server_settings().WEBSOCKET_FLUSH_MAX_DELAY_MS / 1000)
    register_outlet_factory(outlets.daphne_outlet)


def server_class() -> type:
    """The daphne server class a node runs."""
    from realtime.server.node import NodeServer, TunedNodeServer

    return TunedNodeServer if fast_paths() else NodeServer


def api_application(django_application: Any) -> Any:
    """The ASGI app for the HTTP API routes: the lean handler, or Django's own."""
    if not fast_paths():
        from realtime.server.body_limit import limit_body

        return limit_body(django_application, server_settings().HTTP_API_REQUEST_LIMIT_IN_MB << 20)
    from realtime.server.api_handler import APIHandler

    return APIHandler()
