"""/metrics (Prometheus text) and /health (JSON: which dependency is unhealthy) over HTTP.

Served by gevent's WSGI server, bound to 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from gevent.pywsgi import WSGIServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rater.metrics import Metrics


class StatusServer:
    """Serves the metrics of one registry and a health report."""

    def __init__(self, host: str, port: int, metrics: Metrics,
                 health: Callable[[], dict[str, Any]]) -> None:
        self._metrics = metrics
        self._health = health
        self.server = WSGIServer((host, port), self._app, log=None, error_log=None)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> None:
        self.server.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.server.stop(timeout=timeout)

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = generate_latest(self._metrics.registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path in ("/health", "/healthz"):
            report = self._health()
            status = "200 OK" if report.get("healthy") else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(report, indent=2).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /health\n"]
