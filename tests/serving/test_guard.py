"""The HTTP edge: body bounds, the overload answer and the log of rejected requests.

Middleware alone, with a stand-in app; the API key and 400s through the real app are in
test_service.py, and over real HTTP in test_server_e2e.py.
"""

import asyncio
import json
import logging
import sys

import pytest
from bentoml.exceptions import ServiceUnavailable

from serving.batching import OVERLOADED
from serving.guard import BENTOML_REQUEST_LOGGER, CLIENT_ERROR_LOG, MAX_BODY_BYTES, RequestGuard


def through_guard(app, messages=(), *, headers=()) -> list[dict]:
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
    declared = [(b"content-length", str(MAX_BODY_BYTES + 1).encode())]
    sent = through_guard(unreachable, headers=declared)
    assert sent[0]["status"] == 413
    assert b"expected at most" in sent[1]["body"]


def test_chunked_body_is_bounded_while_read(monkeypatch):
    monkeypatch.setattr("serving.guard.MAX_BODY_BYTES", 100)
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


def test_shed_requests_say_why_and_when_to_retry():
    generic = b'{"error":"An unexpected error has occurred, please check the server log."}'

    async def app(scope, receive, send):  # what BentoML answers for ServiceUnavailable
        headers = [(b"content-type", b"application/json"), (b"x-bentoml-request-id", b"42")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": generic})

    sent = through_guard(app, body(b"{}"), headers=[(b"content-length", b"2")])
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
