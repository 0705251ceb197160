"""The request's id, its log line and its metrics: one ASGI middleware, the outermost layer of the app.

It wraps even the layer that turns an unhandled error into a 500 (CheckinOffersAPI puts it there), so
it sees the status of every response (431, 413 and 500 included), every response carries the
X-Request-ID, and the 500 handler's log line and problem body have the request id too.

Only the route template is logged and measured (`/v1/codes/{code}`), never the path or the query
string, which can hold a code, a cursor or a position; a request that matches no route is
`unmatched`. The merchant comes from the principal AuthenticateBeforeBody verified (api/deps.py).
"""

from __future__ import annotations

import logging
from time import perf_counter

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import PRINCIPAL
from core import metrics
from core.auth import Principal
from core.logs import ACCESS_LOGGER, REQUEST_ID, request_id_from

X_REQUEST_ID = b"x-request-id"
UNMATCHED = "unmatched"
# Any other method is counted as "other": the label must not take whatever a client sends.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger(ACCESS_LOGGER)


# Mounted apps (the static files) by the app they serve: FastAPI's router names the route it chose
# in the scope only for its own routes, and leaves the mounted app as the scope's endpoint.
_mount_templates: dict[object, str] = {}


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/v1/venues/{venue_id}`, `/static/{path}` for a mount)."""
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return UNMATCHED
    if endpoint not in _mount_templates:
        mounts = (r for r in getattr(scope.get("app"), "routes", ()) if isinstance(r, Mount) and r.app is endpoint)
        _mount_templates[endpoint] = next((mount.path_format for mount in mounts), UNMATCHED)
    return _mount_templates[endpoint]


def _merchant(scope: Scope) -> str | None:
    principal = scope.get("state", {}).get(PRINCIPAL)
    if isinstance(principal, Principal) and principal.merchant_id is not None:
        return str(principal.merchant_id)
    return None


def _record(scope: Scope, status: int, seconds: float) -> None:
    method = scope["method"] if scope["method"] in METHODS else "other"
    route = route_template(scope)
    metrics.observe_request(method, route, status, seconds)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "merchant": _merchant(scope),
            },
        )


class ObserveRequests:
    """Request id (X-Request-ID, kept when it is a safe id, else generated), one JSON log line and the
    request histogram per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        sent_id = None
        for name, value in scope["headers"]:
            if name == X_REQUEST_ID:
                sent_id = value
                break
        request_id = request_id_from(sent_id)
        id_header = (X_REQUEST_ID, request_id.encode("ascii"))
        status = 500  # unless a response starts: the app failed before it could answer
        recorded = False
        context = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Recorded before the last part goes out: once a client has its answer, the line
                # and the metrics of the request exist.
                recorded = True
                _record(scope, status, perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not recorded:  # no complete answer: the client went away, or nothing could answer
                _record(scope, status, perf_counter() - started)
            REQUEST_ID.reset(context)
