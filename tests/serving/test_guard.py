"""The HTTP edge: body bounds and media type, the overload answer, the log of rejected requests,
unknown paths and the OpenAPI document.

Middleware alone with a stand-in app, or in a small Starlette app shaped like BentoML's (a
path-recording middleware in place of the metrics one); the API key and 400s through the real
app are in test_service.py, and over real HTTP in test_server_e2e.py and test_edge_server.py.
"""

import asyncio
import json
import logging
import sys

import pytest
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from serving.online.batching import OVERLOADED
from serving.online.guard import (
    BENTOML_REQUEST_LOGGER,
    CLIENT_ERROR_LOG,
    MAX_BODY_BYTES,
    UNKNOWN_PATH,
    RequestGuard,
    document_edge,
    loggable,
)

JSON = ((b"content-type", b"application/json"),)


def through_guard(app, messages=(), *, headers=JSON) -> list[dict]:
    """One POST /score through RequestGuard: its body as ASGI ``messages``; what was sent."""
    pending, sent = list(messages), []

    async def receive():
        return pending.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": list(headers)}
    asyncio.run(RequestGuard(app)(scope, receive, send))
    return sent


def body(*chunks: bytes) -> list[dict]:
    """A request body in ``chunks`` as ASGI messages (chunked when more than one)."""
    return [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]


async def unreachable(scope, receive, send):  # pragma: no cover - must not be reached
    raise AssertionError("the app was called")


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch):
    monkeypatch.delenv("CUSTOMER_VALUE_API_KEY", raising=False)


def failed_request_record(error: Exception) -> logging.LogRecord:
    """The record BentoML's API wrapper logs when a request fails with ``error``."""
    try:
        raise error
    except type(error):
        return logging.LogRecord(
            BENTOML_REQUEST_LOGGER,
            logging.ERROR,
            __file__,
            1,
            "Exception on %s [%s]",
            ("/score", "POST"),
            sys.exc_info(),
        )


def test_server_faults_keep_their_traceback_in_the_log():
    record = failed_request_record(RuntimeError("model file vanished"))
    assert CLIENT_ERROR_LOG.filter(record)
    assert record.levelname == "ERROR"
    assert record.exc_info is not None


def test_declared_oversized_body_is_413():
    declared = [*JSON, (b"content-length", str(MAX_BODY_BYTES + 1).encode())]
    sent = through_guard(unreachable, headers=declared)
    assert sent[0]["status"] == 413
    assert b"expected at most" in sent[1]["body"]


def test_chunked_body_is_bounded_while_read(monkeypatch):
    monkeypatch.setattr("serving.online.guard.MAX_BODY_BYTES", 100)
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    over = through_guard(app, body(b"x" * 60, b"x" * 60))
    assert over[0]["status"] == 413 and not seen
    assert b"chunked request body is over 100 bytes" in over[1]["body"]
    within = through_guard(app, body(b"x" * 40, b"y" * 40))
    assert within[0]["status"] == 200
    assert seen == body(b"x" * 40 + b"y" * 40)


def test_a_client_gone_mid_body_is_not_answered():
    partial = {"type": "http.request", "body": b'{"customers": [', "more_body": True}
    gone = [partial, {"type": "http.disconnect"}]
    assert through_guard(unreachable, gone) == []


def test_a_body_that_never_finishes_is_408_not_held_until_504(monkeypatch):
    # Issue 21: a body that stopped arriving held the request until BentoML's 30 s timeout,
    # then got 504 (a gateway's status).
    monkeypatch.setattr("serving.online.guard.BODY_READ_SECONDS", 0.05)
    stalled = asyncio.Event()  # never set: the rest of the body never comes

    async def receive():
        if not stalled.is_set() and not getattr(receive, "sent", False):
            receive.sent = True
            return {"type": "http.request", "body": b'{"customers": [', "more_body": True}
        await stalled.wait()

    sent = []

    async def send(message):
        sent.append(message)

    declared = [*JSON, (b"content-length", b"400")]
    scope = {"type": "http", "method": "POST", "path": "/score", "headers": declared}
    asyncio.run(asyncio.wait_for(RequestGuard(unreachable)(scope, receive, send), 30))
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"].startswith("the request body did not arrive")


def test_shed_requests_say_why_and_when_to_retry():
    generic = b'{"error":"An unexpected error has occurred, please check the server log."}'

    async def app(scope, receive, send):  # what BentoML answers for ServiceUnavailable
        headers = [(b"content-type", b"application/json"), (b"x-bentoml-request-id", b"42")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": generic})

    sent = through_guard(app, body(b"{}"), headers=[*JSON, (b"content-length", b"2")])
    assert len(sent) == 2 and sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert (b"x-bentoml-request-id", b"42") in sent[0]["headers"]  # kept for the log
    assert [name for name, _ in sent[0]["headers"]].count(b"content-type") == 1
    assert json.loads(sent[1]["body"]) == {"error": OVERLOADED}
    # ...and the log says it in one warning line, not as a fault with a traceback.
    record = failed_request_record(ServiceUnavailable(OVERLOADED))
    assert CLIENT_ERROR_LOG.filter(record)
    assert (record.levelname, record.exc_info) == ("WARNING", None)
    assert "the service is overloaded" in record.getMessage()


# -- what reaches the log ---------------------------------------------------------------------

FORGED = "[ERROR] 2026-01-01T00:00:00 FORGED admin login"


def test_loggable_escapes_what_would_break_the_line_and_cuts_long_values():
    sent = f"x\n{FORGED}\r\x1b[2J\u2028\\n"
    assert loggable(sent) == f"x\\n{FORGED}\\r\\x1b[2J\\u2028\\\\n"
    assert loggable("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"  # printable: as sent
    cut = loggable("y" * 1_000_000)
    assert cut == "y" * 200 + "...[truncated, 1000000 characters]"
    # An escape is never cut in half.
    assert loggable("\n" * 300, limit=11) == "\\n" * 5 + "...[truncated, 300 characters]"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str


def test_a_rejected_request_is_one_bounded_line_whatever_the_field_names():
    try:
        Strict.model_validate({"customer_id": "a", f"x\n{FORGED}\r\n": 1, "y" * 2**20: 1})
    except ValidationError as error:
        record = failed_request_record(error)
    assert CLIENT_ERROR_LOG.filter(record)
    message = record.getMessage()
    assert not set(message) & {"\n", "\r", "\x1b"}
    assert len(message) < 1000
    assert f"x\\n{FORGED}\\r\\n: Extra inputs are not permitted" in message
    assert "...[truncated, 1048576 characters]" in message
    assert record.levelname == "WARNING"


# -- media type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [b"text/plain", b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded"],
)
def test_a_body_that_is_not_json_is_415(content_type):
    sent = through_guard(unreachable, body(b"{}"), headers=[(b"content-type", content_type)])
    assert sent[0]["status"] == 415
    assert "expected application/json" in json.loads(sent[1]["body"])["error"]


def test_json_with_parameters_passes_and_no_declared_type_is_415():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    json_type = [(b"content-type", b"Application/JSON; charset=utf-8")]
    assert through_guard(app, body(b"{}"), headers=json_type)[0]["status"] == 200
    # A cross-site fetch() with a bare body declares no type: refused like a form.
    untyped = through_guard(unreachable, body(b"{}"), headers=[])
    assert untyped[0]["status"] == 415
    assert b"no Content-Type header" in untyped[1]["body"]
    # Every declared type counts, not only the last one.
    both = [(b"content-type", b"multipart/form-data"), (b"content-type", b"application/json")]
    assert through_guard(unreachable, body(b"{}"), headers=both)[0]["status"] == 415


# -- paths and the OpenAPI document, in a Starlette app shaped like BentoML's ------------------


class PathRecorder:
    """Stands in for BentoML's metrics middleware: notes the path of every request."""

    paths: list[str] = []

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def bentoml_like_spec() -> dict:
    """The parts of BentoML's /docs.json that the guard amends."""
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    }
    bad_request = {"content": {"application/json": {"schema": {"$ref": "#/x/InvalidArgument"}}}}
    return {
        "paths": {
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/score": {
                "post": {"x-bentoml-name": "score", "responses": {"400": bad_request}},
            },
        },
        "components": {"schemas": {"InvalidArgument": error}},
    }


@pytest.fixture
def app_client(tmp_path):
    (tmp_path / "swagger-ui.css").write_text("body {}")

    async def score(request):
        return JSONResponse({"customers": len((await request.json())["customers"])})

    async def spec(request):
        return JSONResponse(bentoml_like_spec())

    async def ok(request):
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/healthz", ok),
            Route("/score", score, methods=["POST"]),
            Route("/docs.json", spec, name="openapi-spec"),
            Route("/items/{item_id:int}", ok),
            Mount("/static_content", StaticFiles(directory=tmp_path)),
        ],
        middleware=[Middleware(PathRecorder), Middleware(RequestGuard)],
    )
    PathRecorder.paths = []
    with TestClient(app) as client:  # the lifespan startup puts the folding outside
        yield client


def test_paths_the_app_does_not_serve_are_folded_before_the_metrics_see_them(app_client):
    served = ["/healthz", "/docs.json", "/static_content/swagger-ui.css", "/items/3"]
    for path in served:
        assert app_client.get(path).status_code == 200, path
    assert app_client.post("/score", json={"customers": [1, 2]}).json() == {"customers": 2}
    assert app_client.get("/score").status_code == 405  # a known path, another method
    unknown = ["/zq123", "/static_content/zq123.js", "/score/zq123", "/items/x", "/score/"]
    for path in unknown:
        response = app_client.get(path)
        assert response.status_code == 404, path
        assert "POST /score" in response.json()["error"]
    assert PathRecorder.paths == [*served, "/score", "/score", *[UNKNOWN_PATH] * len(unknown)]


def test_the_served_openapi_document_declares_the_edge(app_client):
    spec = app_client.get("/docs.json").json()
    assert spec == document_edge(bentoml_like_spec())
    detail = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array"
    problem = spec["components"]["schemas"]["ValidationProblem"]
    assert problem["required"] == ["loc", "msg", "type"]
    responses = spec["paths"]["/score"]["post"]["responses"]
    assert {"400", "401", "413", "415", "503"} <= set(responses)
    assert responses["503"]["headers"] == {"Retry-After": {"schema": {"type": "string"}}}
    assert set(spec["paths"]["/healthz"]["get"]["responses"]) == {"200"}


@pytest.fixture
def framework_errors_client(tmp_path):
    """The guard in front of an app answering like BentoML: its 400 wording, a plain 405."""

    async def score(request):
        return JSONResponse(
            {
                "error": "1 validation error for ScoreRequestIODescriptor",
                "detail": [
                    {
                        "type": "string_too_short",
                        "loc": ["customers", 0, "customer_id"],
                        "msg": "String should have at least 1 character",
                        "url": "https://errors.pydantic.dev/2.14/v/string_too_short",
                    }
                ],
            },
            status_code=400,
        )

    async def index(request):
        return HTMLResponse("<script src='https://www.googletagmanager.com/gtm.js'></script>")

    app = Starlette(
        routes=[Route("/", index), Route("/score", score, methods=["POST"])],
        middleware=[Middleware(RequestGuard)],
    )
    with TestClient(app) as client:
        yield client


def test_the_services_own_page_describes_it_and_loads_nothing_from_elsewhere(
    framework_errors_client,
):
    page = framework_errors_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "customer-value" in page.text and "POST /score" in page.text
    assert "<script" not in page.text and "googletagmanager" not in page.text
    assert "http" not in page.text.replace("http://HOST:PORT", "")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert framework_errors_client.head("/").text == ""


def test_errors_are_json_and_name_no_framework_internals(framework_errors_client):
    wrong_method = framework_errors_client.get("/score")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "GET is not allowed on /score; use POST"}
    assert wrong_method.headers["allow"] == "POST"
    bad = framework_errors_client.post("/score", json={"customers": [{"customer_id": ""}]})
    assert bad.status_code == 400
    body = bad.json()
    assert "IODescriptor" not in bad.text and "pydantic" not in bad.text
    assert body["error"].startswith("the request body does not match the API's schema: 1 problem")
    assert body["detail"] == [
        {
            "type": "string_too_short",
            "loc": ["customers", 0, "customer_id"],
            "msg": "String should have at least 1 character",
        }
    ]
    assert int(bad.headers["content-length"]) == len(bad.content)
