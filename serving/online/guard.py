"""The HTTP edge of the service: what happens around the API call, as ASGI middleware.

The API key, bounds on the request body, JSON-only API bodies, a 503 that says why, one log
line per rejected request instead of BentoML's traceback (escaped and bounded: it quotes what
the caller sent), an OpenAPI document that declares the answers the edge gives, and a
``/metrics`` whose labels stay bounded whatever paths are requested.

Where this sits in BentoML 1.4's ASGI stack (``_bentoml_impl.server.app``), outermost first:
Starlette's ``ServerErrorMiddleware``, BentoML's traffic metrics middleware (labels every
request with its path), OpenTelemetry, the access log (off here), timeout and concurrency
limits, then the service's own middlewares (:class:`RequestGuard` among them), CORS,
BentoML's request context and the router. The guard is inside the metrics middleware, so it
cannot keep a path out of the metrics by answering early; when the app starts, it puts
:class:`FoldUnknownPaths` outside the whole stack, which renames every path the app does not
serve to :data:`UNKNOWN_PATH` before the metrics middleware reads it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from serving.online.batching import OVERLOADED
from serving.online.home_page import home_page
from serving.online.settings import OnlineConfig

#: Bodies declaring a larger Content-Length are refused with 413 before they are read.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Paths that stay open when an API key is configured (probes and Prometheus).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
#: The logger BentoML's API wrapper reports every failed request on (with a traceback).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
#: The one path (and ``endpoint`` label on ``/metrics``) every path the app does not serve
#: becomes; like a route template, so it reads as "any other path" on a dashboard.
UNKNOWN_PATH = "/{unknown}"
#: The only media type API bodies may have (parameters such as ``charset`` are allowed).
JSON_TYPE = "application/json"
#: At most this many characters of one request-supplied value reach a log line.
LOGGED_CHARS = 200
#: A header the service sets on an answer whose JSON body already says why (a 503 because
#: the lookup store cannot answer): the edge passes it on instead of explaining it as overload.
EXPLAINED = "x-customer-value-error"
#: Seconds a request body may take to arrive in full; then 408. Under BentoML's 30 s request
#: timeout, which answered a body that never finished with 504 (a gateway's status) after
#: holding it for the whole 30 s.
BODY_READ_SECONDS = 10.0
#: Methods whose requests carry a body; only the service's APIs accept them.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

logger = logging.getLogger(__name__)


def loggable(value: object, limit: int = LOGGED_CHARS) -> str:
    r"""``value`` as text that stays on one log line and within about ``limit`` characters.

    For anything a request supplied (field names, values, paths, headers) before it goes into
    a log message: characters that are not printable (CR, LF, ANSI escape sequences, other
    control characters, line and paragraph separators) and backslashes are written as Python
    escapes (``\n``, ``\x1b``, ``\u2028``, ``\\``), so the value can neither start a forged
    log line nor rewrite the terminal; past ``limit`` characters it is cut, and the cut says
    how long the value was.

    Parameters
    ----------
    value : object
        What to log; ``str(value)`` is what is escaped.
    limit : int
        Characters of the escaped text to keep.

    Returns
    -------
    str
        The escaped text, ending with ``...[truncated, N characters]`` when it was cut.
    """
    text = str(value)
    pieces, size = [], 0
    for char in text:
        piece = char if char.isprintable() and char != "\\" else _escaped(char)
        if size + len(piece) > limit:
            pieces.append(f"...[truncated, {len(text)} characters]")
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class Routes:
    """The paths an app serves, read off its router once, when it starts.

    Attributes
    ----------
    exact : frozenset of str
        Paths served as they are: routes without path parameters, and every file of a
        static-files mount (BentoML's docs assets).
    matched : tuple of starlette.routing.BaseRoute
        Routes that can only be matched per request (path parameters, mounted apps).
    spec : str or None
        The path of the OpenAPI document (BentoML's ``openapi-spec`` route).
    apis : tuple of str
        The paths that accept POST: the service's APIs.
    """

    exact: frozenset[str]
    matched: tuple[BaseRoute, ...] = ()
    spec: str | None = None
    apis: tuple[str, ...] = ()

    @classmethod
    def of(cls, routes: Iterable[BaseRoute]) -> Routes:
        """The served paths of ``routes`` (a Starlette router's)."""
        exact, matched, spec, apis = set(), [], None, []
        for route in routes:
            if isinstance(route, Route) and "POST" in (route.methods or ()):
                apis.append(route.path)
            if isinstance(route, Route | WebSocketRoute) and not route.param_convertors:
                exact.add(route.path)
                if route.name == "openapi-spec":
                    spec = route.path
            elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
                exact.update(f"{route.path}/{name}" for name in _files(route.app))
            else:
                matched.append(route)
        return cls(frozenset(exact), tuple(matched), spec, tuple(sorted(apis)))

    def serves(self, scope: dict[str, Any]) -> bool:
        """Whether the request ``scope`` is for a path the app serves (any method)."""
        if _route_path(scope) in self.exact:
            return True
        return any(route.matches(scope)[0] is not Match.NONE for route in self.matched)


def _files(static: StaticFiles) -> list[str]:
    """The files a static-files app serves, as URL paths relative to its mount."""
    names: list[str] = []
    for directory in static.all_directories:
        root = Path(directory)
        names.extend(
            path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()
        )
    return names


def _route_path(scope: dict[str, Any]) -> str:
    """The request's path below the app's ``root_path`` (as Starlette's router sees it)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


class FoldUnknownPaths:
    """ASGI middleware, outermost: a path the app does not serve becomes :data:`UNKNOWN_PATH`.

    BentoML's metrics middleware labels every request with its path, so each random path a
    scanner sends was a new Prometheus series, kept until the server restarts, and ``/metrics``
    grew without bound (from 183 KB to 35 MB in 9,000 requests). Outside it, the paths are
    folded into one label; :class:`RequestGuard` answers them with a JSON 404.

    Parameters
    ----------
    app : ASGI app
        The app's whole middleware stack.
    routes : Routes
        What the app serves.
    """

    def __init__(self, app: Any, routes: Routes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on, its path folded when the app does not serve it (ASGI)."""
        if scope["type"] in ("http", "websocket") and not self.routes.serves(scope):
            # A copy: uvicorn's own record of the request (its access log) keeps the path.
            scope = {**scope, "path": UNKNOWN_PATH, "root_path": ""}
        await self.app(scope, receive, send)


class RequestGuard:
    """ASGI middleware: the API key, body bounds and media type, and the answers of the edge.

    The key (``CUSTOMER_VALUE_API_KEY``) is read once, when the app is built. When it is set,
    requests must send ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, else 401; the
    probes and ``/metrics`` stay open. A path the app does not serve is 404 (JSON). A body
    sent with a ``Content-Type`` other than ``application/json``, or with none, gets 415, so a
    cross-site HTML form (``text/plain``, multipart or urlencoded) or a ``fetch`` with a bare
    body cannot reach the API. Requests that
    declare a body larger than :data:`MAX_BODY_BYTES` get 413 before the body is read; a
    chunked body (no declared length) gets 413 as soon as it passes the bound. A 503 (the
    model queue is full) says so, with ``Retry-After``, instead of BentoML's generic text.
    The OpenAPI document (``/docs.json``) is amended to declare these answers and the real
    shape of a 400 (:func:`document_edge`).

    When the app starts (its first ASGI call, the lifespan startup), the guard puts
    :class:`FoldUnknownPaths` around the app's whole middleware stack, metrics included.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key = OnlineConfig.from_env().api_key.encode()
        self.routes: Routes | None = None
        self._started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check an HTTP request at the edge, then pass it on (ASGI)."""
        if not self._started:
            self._started = True
            self._fold_unknown_paths(scope.get("app"))
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        headers = dict(scope.get("headers") or ())
        if self.key and path not in OPEN_PATHS and not self._authorised(headers):
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
        if path == UNKNOWN_PATH:
            await _json(send, 404, {"error": _not_found(self.routes)})
            return
        if path == "/" and scope.get("method") in ("GET", "HEAD"):
            # The service's own page instead of BentoML's (its branding and a third-party
            # tag manager script on an internal customer-data API).
            await _page(send, home_page(), head=scope["method"] == "HEAD")
            return
        if scope.get("method") in BODY_METHODS:
            sent_types = [
                value for name, value in scope.get("headers") or () if name == b"content-type"
            ]
            # No type at all is refused too: a cross-site fetch() with a Blob body sends none.
            wrong = [value for value in sent_types if not _is_json(value)] or (
                [b""] if not sent_types else []
            )
            if wrong:
                await _unsupported(send, wrong[0])
                return
        length = headers.get(b"content-length")
        if length is not None:
            # More digits than any bound has is too large too (and never reaches int()).
            if length.isdigit() and (len(length) > 18 or int(length) > MAX_BODY_BYTES):
                await _too_large(send, f"request body is {loggable(length.decode(), 24)} bytes")
                return
        if scope.get("method") in BODY_METHODS:
            # The body is read here, up to the bound and within BODY_READ_SECONDS, and handed
            # to the app buffered: a chunked body declares no length (the app would read any
            # size into memory), and a body that stops arriving must get 408, not hold the
            # request until BentoML's 504.
            try:
                async with asyncio.timeout(BODY_READ_SECONDS):
                    body = await _read_bounded(receive)
            except TimeoutError:
                error = (
                    f"the request body did not arrive in full within {BODY_READ_SECONDS:g} s; "
                    "send the whole body at once"
                )
                logger.warning("Rejected request: 408: %s", error)
                await _json(send, 408, {"error": error}, [(b"connection", b"close")])
                return
            if body is _GONE:
                return  # the client left before sending the whole body: nobody to answer
            if body is None:
                await _too_large(send, f"chunked request body is over {MAX_BODY_BYTES} bytes")
                return
            replay = [{"type": "http.request", "body": body, "more_body": False}]
            upstream = receive

            async def receive() -> dict[str, Any]:
                return replay.pop() if replay else await upstream()

        if self.routes is not None and path == self.routes.spec and scope.get("method") == "GET":
            send = _amend_json(send, document_edge)
        elif path not in OPEN_PATHS:
            send = _explain_overload(_readable_errors(send, str(path), scope.get("method", "")))
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        sent = headers.get(b"x-api-key")
        if sent is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            sent = token.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(sent, self.key)

    def _fold_unknown_paths(self, app: Any) -> None:
        """Put :class:`FoldUnknownPaths` outside ``app``'s middleware stack (a Starlette app).

        The stack is built by the time the guard is first called (it is part of it), and
        Starlette calls ``app.middleware_stack`` afresh for every request. Without a Starlette
        app (the guard alone, in tests) paths are not folded.
        """
        router, stack = getattr(app, "router", None), getattr(app, "middleware_stack", None)
        if router is None or stack is None:
            return
        self.routes = Routes.of(router.routes)
        app.middleware_stack = FoldUnknownPaths(stack, self.routes)


#: The 400 body's ``detail`` items, as BentoML sends them (pydantic's errors, without input).
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ValidationProblem",
    "description": "One problem with the request body.",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {
            "type": "array",
            "title": "Location",
            "description": "Where: the field names and list indexes from the body's root, "
            'e.g. ["customers", 0, "cutoff"]; empty for the body as a whole.',
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "msg": {"type": "string", "title": "Message", "description": "What is wrong."},
        "type": {
            "type": "string",
            "title": "Error Type",
            "description": "The kind of problem, e.g. missing, extra_forbidden, too_long.",
        },
        "url": {"type": "string", "title": "Documentation of the error type"},
    },
}
#: The body of every answer the edge gives itself (401, 404, 413, 415, 503).
REJECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "RequestRejected",
    "required": ["error"],
    "properties": {"error": {"type": "string", "title": "Message"}},
}
_EDGE_ANSWERS = {
    "401": ("Missing or wrong API key (when the server has one).", "WWW-Authenticate"),
    "408": (f"The request body did not arrive in full within {BODY_READ_SECONDS:g} s.", None),
    "413": (f"The request body is over {MAX_BODY_BYTES} bytes.", None),
    "415": (f"The request body's Content-Type is not {JSON_TYPE}.", None),
    "503": (
        "Overloaded (the request was shed), or the lookup store cannot answer for the served "
        "batch run (status store_unavailable, with a reason); retry after Retry-After seconds.",
        "Retry-After",
    ),
}


def document_edge(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document, amended to declare the answers the edge really gives.

    BentoML declares a 400's ``detail`` as a string, but sends pydantic's list of problems
    (field location, message, type), which is what lets a caller find the bad field; the
    declaration is corrected to that list (:data:`VALIDATION_PROBLEM_SCHEMA`) rather than
    flattening the detail into a string. The service's API operations also declare the 401,
    413, 415 and 503 answers of :class:`RequestGuard` (:data:`REJECTION_SCHEMA`).

    Parameters
    ----------
    spec : dict
        The document as BentoML serves it; changed in place.

    Returns
    -------
    dict
        ``spec``.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    schemas["RequestRejected"] = REJECTION_SCHEMA
    invalid = schemas.get("InvalidArgument")
    if invalid is not None:
        invalid.setdefault("properties", {})["detail"] = {
            "type": "array",
            "title": "Error Detail",
            "description": "The problems found (at most one per field); sent with validation "
            "errors only.",
            "items": {"$ref": "#/components/schemas/ValidationProblem"},
        }
    rejected = {"application/json": {"schema": {"$ref": "#/components/schemas/RequestRejected"}}}
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "x-bentoml-name" not in operation:
                continue  # BentoML's own endpoints (probes, metrics): the guard passes them on
            responses = operation.setdefault("responses", {})
            for status, (description, header) in _EDGE_ANSWERS.items():
                answer: dict[str, Any] = {"description": description, "content": rejected}
                if header is not None:
                    answer["headers"] = {header: {"schema": {"type": "string"}}}
                responses.setdefault(status, answer)
    return spec


def _not_found(routes: Routes | None) -> str:
    apis = ", ".join(f"POST {path}" for path in routes.apis) if routes else ""
    where = f" (documented at {routes.spec})" if routes and routes.spec else ""
    return f"no such path; the API is {apis or 'POST /score'}{where}"


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == JSON_TYPE.encode()


async def _unsupported(send: Any, content_type: bytes) -> None:
    sent = loggable(content_type.decode("latin-1"), 100)
    error = (
        f"Content-Type '{sent}' is not accepted; expected {JSON_TYPE} (a JSON body)"
        if sent
        else f"no Content-Type header; send 'Content-Type: {JSON_TYPE}' with a JSON body"
    )
    logger.warning("Rejected request: 415: %s", error)
    await _json(send, 415, {"error": error})


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


def _amend_json(send: Any, amend: Any) -> Any:
    """``send`` with a 200 JSON answer replaced by ``amend(answer)``."""
    start: dict[str, Any] | None = None
    parts: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] == 200:
            start = message
        elif start is not None and message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = json.dumps(amend(json.loads(b"".join(parts)))).encode()
                await _send_whole(send, start, body)
        else:
            await send(message)

    return wrapped


async def _send_whole(send: Any, start: dict[str, Any], body: bytes) -> None:
    """Send a response's start (its length set to ``body``'s) and ``body`` in one part."""
    headers = [
        (name, value)
        for name, value in start.get("headers", ())
        if name.lower() != b"content-length"
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


async def _page(send: Any, html: bytes, *, head: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(html)).encode()),
                # Nothing on the page comes from elsewhere; the browser is told so.
                (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else html})


#: The framework's wording of a 400: "1 validation error for ScoreRequestIODescriptor".
_FRAMEWORK_400 = re.compile(r"^(\d+) validation errors? for \w+$")


def _readable_400(answer: dict[str, Any]) -> dict[str, Any]:
    """A 400 body without the framework's class names or links to its documentation."""
    error = answer.get("error")
    found = _FRAMEWORK_400.match(error) if isinstance(error, str) else None
    if found:
        count = int(found[1])
        answer["error"] = (
            f"the request body does not match the API's schema: {count} "
            f"problem{'s' if count != 1 else ''}, each in 'detail' (field location and message)"
        )
    detail = answer.get("detail")
    if isinstance(detail, list):
        answer["detail"] = [
            {k: v for k, v in item.items() if k != "url"} if isinstance(item, dict) else item
            for item in detail
        ]
    return answer


def _readable_errors(send: Any, path: str, method: str) -> Any:
    """``send`` with the framework's 405 (plain text) as JSON and its 400 wording replaced."""
    start: dict[str, Any] | None = None
    parts: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] == 405:
            allowed = dict(message.get("headers", ())).get(b"allow", b"").decode("latin-1")
            kept = [
                (name, value)
                for name, value in message.get("headers", ())
                if name.lower() not in (b"content-type", b"content-length")
            ]
            error = f"{loggable(method, 16)} is not allowed on {loggable(path, 100)}"
            if allowed:
                error += f"; use {allowed}"
            start = {"replaced": True}
            await _json(send, 405, {"error": error}, kept)
        elif start is not None and start.get("replaced"):
            return  # the framework's plain-text body of the replaced 405
        elif (
            message["type"] == "http.response.start"
            and message["status"] == 400
            and _is_json(dict(message.get("headers", ())).get(b"content-type", b""))
        ):
            start = message
        elif start is not None and message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                try:
                    answer = json.loads(b"".join(parts))
                except ValueError:
                    answer = None
                body = (
                    json.dumps(_readable_400(answer)).encode()
                    if isinstance(answer, dict)
                    else b"".join(parts)
                )
                await _send_whole(send, start, body)
        else:
            await send(message)

    return wrapped


def _explain_overload(send: Any) -> Any:
    """``send`` with a 503 answer replaced by :data:`OVERLOADED` and ``Retry-After: 1``."""
    replaced = False

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal replaced
        if (
            message["type"] == "http.response.start"
            and message["status"] == 503
            and not any(
                name.lower() == EXPLAINED.encode() for name, _ in message.get("headers", ())
            )
        ):
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
    server faults (other 5xx) keep their traceback. What the line quotes from the request
    (field names, values, the path) goes through :func:`loggable`: escaped and cut.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of client errors in place; never drop a record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            # Field names, and the values some messages quote, are the caller's: escaped and
            # cut (loggable), or a name with a newline forges log lines and a 1 MB name
            # writes a 1 MB line.
            problems = "; ".join(
                f"{loggable('.'.join(map(str, e['loc'])) or 'body')}: {loggable(e['msg'])}"
                for e in error.errors(
                    include_url=False, include_context=False, include_input=False
                )[:3]
            )
            summary = f"{error.error_count()} validation error(s): {problems}"
        elif isinstance(error, ServiceUnavailable) or (
            isinstance(error, BentoMLException) and int(error.error_code) < 500
        ):
            summary = f"{int(error.error_code)}: {loggable(error)}"
        else:
            return True
        # BentoML's message is "Exception on <path> [<method>]"; keep where, drop the word.
        where = loggable(record.getMessage().removeprefix("Exception on "))
        record.msg, record.args = "Rejected request on %s: %s", (where, summary)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


CLIENT_ERROR_LOG = ClientErrorLog()
