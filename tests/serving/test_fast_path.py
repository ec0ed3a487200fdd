"""The /score fast path (serving.online.fast_path) sends exactly the bytes the API sends.

In process: the fast path's body for many requests (known and unknown ids, mixed, repeated,
the most customers a request may carry, odd characters) equals the API method's answer as
BentoML's JSON serde writes it (``ScoreResponse.model_dump_json``), from the embedded lookup
store and from the in-memory table; and the middleware hands everything it does not answer to
the API with the body untouched. tests/serving/test_fast_path_server.py compares a real server
with the fast path on and off.
"""

import asyncio
import json
import random

import bentoml
import pytest

from features.io import MAX_ID_LENGTH
from serving.lookup_store import StoreUnavailable, StoreView
from serving.online.fast_path import (
    FastLookups,
    Template,
    build_answer,
    build_answers,
    parse_lookups,
)
from serving.online.guard import EXPLAINED
from serving.online.schema import MAX_CUSTOMERS, ScoreRequest, ScoreResponse
from serving.online.service import CustomerValue

ODD_IDS = [
    "nobody",
    "Zoë-1",
    'quote"and\\backslash',
    "tab\tinside",
    "line\u2028separator",
    "\U0001f642-1",
    "<script>alert(1)</script>",
    "x" * MAX_ID_LENGTH,
    "a",
]


def api_bytes(svc, body: dict) -> bytes:
    """What BentoML's API sends for ``body``: the method's answer through its JSON serde."""
    customers = ScoreRequest.model_validate(body).customers
    answer = asyncio.run(svc.score(customers=customers))
    assert isinstance(answer, ScoreResponse), answer
    return answer.model_dump_json().encode()


def bodies(known: list[str]) -> list[dict]:
    """Requests of every shape the fast path answers."""
    rng = random.Random(11)
    lookups = [
        [known[0]],
        ["nobody"],
        [known[1], "nobody", known[2]],
        [known[3]] * 3 + ["nobody", known[3], "nobody"],
        rng.sample(known, 40) + ODD_IDS,
        [rng.choice(known) if rng.random() < 0.8 else f"missing-{i}" for i in range(MAX_CUSTOMERS)],
        *([rng.choice(known)] for _ in range(30)),
    ]
    return [{"customers": [{"customer_id": i} for i in ids]} for ids in lookups]


def service(monkeypatch_context, served_store, config, store: str | None) -> CustomerValue:
    patch = monkeypatch_context
    patch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
    patch.setenv("CUSTOMER_VALUE_FEATURES", str(config.features_out))
    patch.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "-1")
    for name in ("CUSTOMER_VALUE_LOOKUPS", "CUSTOMER_VALUE_API_KEY", "CUSTOMER_VALUE_FAST_PATH"):
        patch.delenv(name, raising=False)
    if store is None:
        patch.delenv("CUSTOMER_VALUE_STORE", raising=False)
    else:
        patch.setenv("CUSTOMER_VALUE_STORE", store)
    return CustomerValue()


@pytest.fixture(scope="module", params=["store", "table"])
def svc(request, served_store, latest_scores, latest_store):
    """The service answering lookups from the embedded store, or from the in-memory table."""
    config, _ = latest_scores
    with pytest.MonkeyPatch.context() as patch:
        yield service(
            patch, served_store, config, latest_store if request.param == "store" else None
        )


@pytest.fixture(scope="module")
def known(latest_scores) -> list[str]:
    _, scores = latest_scores
    return [str(i) for i in scores.index]


def test_the_fast_path_writes_the_api_bytes_for_every_request(svc, known):
    template = Template.of(svc.served)
    assert template is not None
    for body in bodies(known):
        raw = json.dumps(body).encode()
        ids = parse_lookups(raw)
        assert ids == [c["customer_id"] for c in body["customers"]]
        assert build_answer(template, ids) == api_bytes(svc, body)


def test_requests_read_together_get_the_answers_they_get_alone(svc, known):
    template = Template.of(svc.served)
    requests = [(template, [c["customer_id"] for c in b["customers"]]) for b in bodies(known)]
    alone = [build_answer(t, ids) for t, ids in requests]
    assert build_answers(requests) == alone


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"customers": []}',
        b'{"customers": {"customer_id": "a"}}',
        b'{"customers": [{"customer_id": "a"}], "more": 1}',
        b'{"customers": [{"customer_id": 7}]}',
        b'{"customers": [{"customer_id": ""}]}',
        b'{"customers": [{"customer_id": " a"}]}',
        b'{"customers": [{"customer_id": "a\\n"}]}',
        b'{"customers": [{"customer_id": "\\u00a0a"}]}',
        b'{"customers": [{"customer_id": "a", "cutoff": "2025-01-01"}]}',
        b'{"customers": [{"customer_id": "a", "orders": []}]}',
        b'{"customers": [{"customer_id": "a"}, "a"]}',
        b'{"customers": [{"customer_id": "\\ud800"}]}',
        json.dumps({"customers": [{"customer_id": "x" * (MAX_ID_LENGTH + 1)}]}).encode(),
        json.dumps({"customers": [{"customer_id": "a"}] * (MAX_CUSTOMERS + 1)}).encode(),
    ],
)
def test_anything_but_a_plain_lookup_is_left_to_the_api(raw):
    assert parse_lookups(raw) is None


# -- the middleware ------------------------------------------------------------------------


class Api:
    """Stands in for the BentoML app behind the middleware: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"api"})


async def call(app, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
    sent = [{"type": "http.request", "body": raw, "more_body": False}]
    messages = []

    async def receive():
        return sent.pop() if sent else {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start, *parts = messages
    return start["status"], dict(start["headers"]), b"".join(p.get("body", b"") for p in parts)


@pytest.fixture
def current(svc, monkeypatch):
    """``svc`` as this process's BentoML service instance (as in a worker)."""
    monkeypatch.setattr(bentoml, "get_current_service", lambda: svc)
    monkeypatch.delenv("CUSTOMER_VALUE_FAST_PATH", raising=False)
    return svc


def test_the_middleware_answers_lookups_and_passes_the_rest_on_untouched(current, known):
    api = Api()
    app = FastLookups(api)
    every = bodies(known)

    async def all_at_once():
        return await asyncio.gather(*(call(app, json.dumps(b).encode()) for b in every))

    for body, (status, headers, answer) in zip(every, asyncio.run(all_at_once()), strict=True):
        assert status == 200
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"content-length"] == str(len(answer)).encode()
        assert headers[b"server"] == b"BentoML Service/CustomerValue"
        assert answer == api_bytes(current, body)
    assert api.bodies == []
    others = [
        b'{"customers": [{"customer_id": "a", "cutoff": "2025-01-01"}]}',
        b'{"customers": [{"customer_id": " a"}]}',
        b"{oops",
    ]
    for raw in others:
        assert asyncio.run(call(app, raw)) == (299, {}, b"api")
    assert api.bodies == others


def test_the_middleware_can_be_turned_off(current, known, monkeypatch):
    monkeypatch.setenv("CUSTOMER_VALUE_FAST_PATH", "off")
    api = Api()
    raw = json.dumps({"customers": [{"customer_id": known[0]}]}).encode()
    assert asyncio.run(call(FastLookups(api), raw)) == (299, {}, b"api")
    assert api.bodies == [raw]


def test_a_bad_setting_turns_the_fast_path_off_instead_of_failing_every_request(
    current, known, monkeypatch
):
    # The service's start-up gate reports the bad setting (503 "failed"); the middleware,
    # built when the first request arrives, must not raise in its place.
    monkeypatch.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "soon")
    api = Api()
    app = FastLookups(api)
    assert app.enabled is False
    raw = json.dumps({"customers": [{"customer_id": known[0]}]}).encode()
    assert asyncio.run(call(app, raw)) == (299, {}, b"api")
    assert api.bodies == [raw]


# The in-memory table has no store to fail or replace: these two run on the store only.
@pytest.mark.parametrize("svc", ["store"], indirect=True)
def test_a_store_that_cannot_answer_gets_the_api_503(current, known, monkeypatch):
    assert isinstance(current.served.table, StoreView)
    body = {"customers": [{"customer_id": known[0]}]}
    raw = json.dumps(body).encode()
    store = current.served.table.store
    health = current.reloader.health

    def hung(ids):
        raise StoreUnavailable("unreachable", "lookup store test: timed out")

    monkeypatch.setattr(store, "fetch", hung)
    try:
        status, headers, answer = asyncio.run(call(FastLookups(Api()), raw))
        assert health.down is not None and health.down.kind == "unreachable"
        api = asyncio.run(current.score(customers=ScoreRequest.model_validate(body).customers))
    finally:
        health.recovered()
    assert status == api.status_code == 503
    assert answer == api.body
    assert headers[b"retry-after"] == b"1"
    assert headers[EXPLAINED.encode()] == b"store"


@pytest.mark.parametrize("svc", ["store"], indirect=True)
def test_a_replaced_run_is_left_to_the_api(current, known, monkeypatch):
    assert isinstance(current.served.table, StoreView)
    raw = json.dumps({"customers": [{"customer_id": known[0]}]}).encode()

    def replaced(ids):
        raise StoreUnavailable("changed", "lookup store test: another run")

    monkeypatch.setattr(current.served.table.store, "fetch", replaced)
    api = Api()
    assert asyncio.run(call(FastLookups(api), raw)) == (299, {}, b"api")
    assert api.bodies == [raw]
    assert current.reloader.health.down is None


def test_orjson_writes_numbers_and_texts_as_pydantic_does():
    """The fast path writes with orjson what the API writes with pydantic: the same text."""
    import struct

    import orjson
    from pydantic import TypeAdapter

    rng = random.Random(3)
    numbers = [0.0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 64.04, float("inf"), None]
    numbers += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(5000)]
    numbers += [rng.uniform(-1e6, 1e6) for _ in range(5000)] + [float("nan")]
    texts = [*ODD_IDS, "\x00\x1f\x7f", "é↑↓", "\ud7ff", "<>&'", None]
    assert orjson.dumps(numbers) == TypeAdapter(list[float | None]).dump_json(numbers)
    assert orjson.dumps(texts) == TypeAdapter(list[str | None]).dump_json(texts)
