"""A real server answers every request the same with the /score fast path on and off.

Two `bentoml serve` processes on the same embedded lookup store, one with the fast path
(the default) and one with ``CUSTOMER_VALUE_FAST_PATH=off`` (every request through BentoML's
API): lookups of every shape get the same status, headers and bytes, and so do the requests
the fast path leaves to the API (inline history, bad bodies, bounds, the API key).
"""

import json

import httpx
import pytest
from local_server import local_server, store_server_env
from test_fast_path import bodies

pytestmark = pytest.mark.server

API_KEY = "fast-key"
#: Headers that differ between any two answers (the request's id, the time).
VARYING = {"date", "x-bentoml-request-id"}


def env(served_store, home, store: str, **extra: str) -> dict[str, str]:
    return store_server_env(
        served_store.tracking_uri,
        served_store.model_uri,
        home,
        store,
        API_KEY,
        BENTOML_CONFIG_OPTIONS="services.CustomerValue.workers=1",
        **extra,
    )


@pytest.fixture(scope="module")
def servers(served_store, latest_store, tmp_path_factory):
    """The fast path's server and the API-only one, both ready."""
    home = tmp_path_factory.mktemp("fast-path-home")
    with (
        local_server(env=env(served_store, home, latest_store), log_path=home / "fast.log") as on,
        local_server(
            env=env(served_store, home, latest_store, CUSTOMER_VALUE_FAST_PATH="off"),
            log_path=home / "off.log",
        ) as off,
    ):
        yield on.url, off.url


def answer(url: str, raw: bytes, headers: dict[str, str] | None = None):
    sent = {"content-type": "application/json", "x-api-key": API_KEY, **(headers or {})}
    response = httpx.post(f"{url}/score", content=raw, headers=sent, timeout=30)
    kept = {k: v for k, v in response.headers.items() if k not in VARYING}
    return response.status_code, kept, response.content, response.headers


def test_lookups_get_the_same_bytes_and_headers_on_both_paths(servers, latest_scores):
    on, off = servers
    _, scores = latest_scores
    for body in bodies([str(i) for i in scores.index]):
        raw = json.dumps(body).encode()
        fast, api = answer(on, raw), answer(off, raw)
        assert fast[0] == 200
        assert fast[:3] == api[:3], body["customers"][:3]
        assert "x-bentoml-request-id" in fast[3] and "x-bentoml-request-id" in api[3]


def test_requests_the_fast_path_leaves_alone_get_the_same_answers(servers, latest_scores):
    on, off = servers
    _, scores = latest_scores
    known = str(scores.index[0])
    cutoff = str(scores["cutoff"].iloc[0].date())
    raws = [
        b"{oops",
        b"[]",
        b'{"customers": []}',
        b'{"customers": [{"customer_id": 7}]}',
        b'{"customers": [{"customer_id": " padded "}]}',
        json.dumps({"customers": [{"customer_id": known, "cutoff": cutoff}]}).encode(),
        json.dumps({"customers": [{"customer_id": known, "cutoff": "2001-01-01"}]}).encode(),
        json.dumps({"customers": [{"customer_id": known}], "extra": 1}).encode(),
        json.dumps({"customers": [{"customer_id": "a"}] * 1001}).encode(),
        json.dumps(
            {
                "customers": [
                    {"customer_id": known},
                    {
                        "customer_id": "new-1",
                        "cutoff": cutoff,
                        "orders": [{"ordered_at": "2025-01-02", "amount": 12.5}],
                    },
                ]
            }
        ).encode(),
    ]
    for raw in raws:
        fast, api = answer(on, raw), answer(off, raw)
        assert fast[:3] == api[:3], raw[:80]
    lookup = json.dumps({"customers": [{"customer_id": known}]}).encode()
    for headers in ({"x-api-key": "wrong"}, {"content-type": "text/plain"}):
        fast, api = answer(on, lookup, headers), answer(off, lookup, headers)
        assert fast[0] in (401, 415)
        assert fast[:3] == api[:3]
