"""The HTTP edge of the service: what happens around the API call, as ASGI middleware.

The API key, bounds on the request body, a 503 that says why, and one log line per rejected
request instead of BentoML's traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError

from serving.batching import OVERLOADED
from serving.online import API_KEY_ENV

#: Bodies declaring a larger Content-Length are refused with 413 before they are read.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Paths that stay open when an API key is configured (probes and Prometheus).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
#: The logger BentoML's API wrapper reports every failed request on (with a traceback).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"

logger = logging.getLogger(__name__)


class RequestGuard:
    """ASGI middleware: the API key (when ``CUSTOMER_VALUE_API_KEY`` is set) and a body bound.

    The key is read once, when the app is built. Requests must send ``X-API-Key: <key>`` or
    ``Authorization: Bearer <key>``, else 401; the probes and ``/metrics`` stay open. Requests
    that declare a body larger than :data:`MAX_BODY_BYTES` get 413 before the body is read;
    a chunked body (no declared length) gets 413 as soon as it passes the bound. A 503 (the
    model queue is full) says so, with ``Retry-After``, instead of BentoML's generic text.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key = os.environ.get(API_KEY_ENV, "").encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check an HTTP request at the edge, then pass it on (ASGI)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        if self.key and scope.get("path") not in OPEN_PATHS and not self._authorised(headers):
            await _json(
                send,
                401,
                {
                    "error": "missing or wrong API key; send header 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'"
                },
                [(b"www-authenticate", b"Bearer")],
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await _too_large(send, f"request body is {int(length)} bytes")
                return
        elif scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked body declares no length: read it here, up to the bound, and hand the
            # app the buffered body (the app would otherwise read any size into memory).
            body = await _read_bounded(receive)
            if body is _GONE:
                return  # the client left before sending the whole body: nobody to answer
            if body is None:
                await _too_large(send, f"chunked request body is over {MAX_BODY_BYTES} bytes")
                return
            replay = [{"type": "http.request", "body": body, "more_body": False}]
            upstream = receive

            async def receive() -> dict[str, Any]:
                return replay.pop() if replay else await upstream()

        if scope.get("path") not in OPEN_PATHS:
            send = _explain_overload(send)
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        sent = headers.get(b"x-api-key")
        if sent is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            sent = token.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(sent, self.key)


#: What :func:`_read_bounded` returns when the client disconnected mid-body.
_GONE = object()


async def _read_bounded(receive: Any) -> bytes | object | None:
    """Read the whole request body, bounded.

    Returns None once it exceeds :data:`MAX_BODY_BYTES`, and :data:`_GONE` if the client
    disconnected first.
    """
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _too_large(send: Any, what: str) -> None:
    error = f"{what}; expected at most {MAX_BODY_BYTES} bytes (send fewer customers per request)"
    logger.warning("Rejected request: 413: %s", error)
    await _json(send, 413, {"error": error})


async def _json(
    send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _explain_overload(send: Any) -> Any:
    """``send`` with a 503 answer replaced by :data:`OVERLOADED` and ``Retry-After: 1``."""
    replaced = False

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal replaced
        if message["type"] == "http.response.start" and message["status"] == 503:
            replaced = True
            # Keep BentoML's own headers (request id, server) for correlating the log.
            kept = [
                (name, value)
                for name, value in message.get("headers", ())
                if name.lower() not in (b"content-type", b"content-length")
            ]
            await _json(send, 503, {"error": OVERLOADED}, [*kept, (b"retry-after", b"1")])
        elif not (replaced and message["type"] == "http.response.body"):
            await send(message)

    return wrapped


class ClientErrorLog(logging.Filter):
    """Log a rejected request (4xx, or 503 when shed) as one warning, without a traceback.

    BentoML logs every failed request as an error with the full traceback, so each malformed
    storefront request printed about 40 lines that looked like a server fault. The caller
    already gets the details in the 400 body; the server log keeps one line per rejection, and
    server faults (other 5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of client errors in place; never drop a record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]
            )
            summary = f"{error.error_count()} validation error(s): {problems}"
        elif isinstance(error, ServiceUnavailable) or (
            isinstance(error, BentoMLException) and int(error.error_code) < 500
        ):
            summary = f"{int(error.error_code)}: {error}"
        else:
            return True
        # BentoML's message is "Exception on <path> [<method>]"; keep where, drop the word.
        where = record.getMessage().removeprefix("Exception on ")
        record.msg, record.args = "Rejected request on %s: %s", (where, summary)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


CLIENT_ERROR_LOG = ClientErrorLog()
