"""The real server (`bentoml serve`) answering lookups from the embedded store and from Redis.

Each answer over HTTP must be the one the in-memory Parquet path gives for the same batch run
(tests/serving/test_store_service.py computes those in-process); with Redis, the next run
written to the store reaches the running server without a restart.
"""

import os
import shutil
import time

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from local_server import LOADED_LINE, local_server, store_server_env, wait_for_log, worker_count
from test_store_service import UNKNOWN, run_frames, write_run_to_redis

from serving.lookup_store import write_lookup_store
from serving.online.schema import ScoreRequest
from serving.online.service import CustomerValue
from serving.run_files import RunStamp

pytestmark = pytest.mark.server

API_KEY = "store-key"


def in_process_parquet_answers(served_store, config, body) -> list[dict]:
    import asyncio

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
        patch.setenv("CUSTOMER_VALUE_FEATURES", str(config.features_out))
        patch.delenv("CUSTOMER_VALUE_STORE", raising=False)
        patch.delenv("CUSTOMER_VALUE_LOOKUPS", raising=False)
        svc = CustomerValue()
        customers = ScoreRequest.model_validate(body).customers
        return asyncio.run(svc.score(customers=customers)).model_dump()["results"]


def server_env(served_store, home, store: str, **extra: str) -> dict[str, str]:
    return store_server_env(
        served_store.tracking_uri, served_store.model_uri, home, store, API_KEY, **extra
    )


def ask(url: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}/score", json=body, headers={"X-API-Key": API_KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


@pytest.fixture(scope="module")
def early_run(latest_scores, tmp_path_factory):
    """Another batch run of the same store (an earlier cutoff): the next run to land."""
    import dataclasses

    from serving.batch.base_scoring import run as score_base

    config, _ = latest_scores
    folder = tmp_path_factory.mktemp("early-e2e")
    early = dataclasses.replace(
        config,
        cutoff="2025-01-01",
        out=folder / "scores.parquet",
        features_out=folder / "online_features.parquet",
        store=None,
    )
    score_base(early)
    return early


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_store_answers_over_http_as_the_parquet_table_and_follows_new_runs(
    backend, served_store, latest_scores, latest_store, early_run, tmp_path, request
):
    config, scores = latest_scores
    ids = [{"customer_id": i} for i in scores.index[:300]]
    body = {"customers": [*ids, {"customer_id": UNKNOWN}]}
    expected = in_process_parquet_answers(served_store, config, body)
    assert expected[-1]["status"] == "unknown_customer"
    if backend == "sqlite":
        store = str(tmp_path / "online_store.sqlite")
        shutil.copyfile(latest_store, store)
    else:
        store = request.getfixturevalue("redis_url")
        redis.Redis.from_url(store).flushdb()
        write_run_to_redis(store, config)
    env = server_env(served_store, tmp_path, store, CUSTOMER_VALUE_RELOAD_SECONDS="0.2")
    with local_server(env=env, log_path=tmp_path / "server.log", ready_timeout=90) as server:
        # Both workers answer (new connections are shared out among them).
        for _ in range(4):
            assert ask(server.url, body) == expected
        # The next run lands (a new file renamed into place; a new run flipped in Redis) and
        # reaches every worker without a restart.
        if backend == "sqlite":
            staged = tmp_path / ".staged"
            write_lookup_store(
                staged,
                run_frames(early_run.out, early_run.features_out, feature_names(early_run)),
                RunStamp.from_metadata(pq.read_schema(early_run.out).metadata),
                feature_names(early_run),
            )
            os.replace(staged, store)
        else:
            write_run_to_redis(store, early_run)
        one = {"customers": [ids[5]]}
        deadline = time.monotonic() + 60
        answers: list[dict] = []

        def last_cutoffs() -> list[str]:
            return [answer["cutoff"] for answer in answers[-6:]]

        while time.monotonic() < deadline and last_cutoffs() != ["2025-01-01"] * 6:
            answers.append(ask(server.url, one)[0])
            time.sleep(0.1)
        assert last_cutoffs() == ["2025-01-01"] * 6, [a["cutoff"] for a in answers]
        # An answer that says it is from the new run. Each worker switches on its own reload:
        # one more request may still reach a worker a moment behind, whose answer says so
        # (its own cutoff), so a later ask would prove nothing about the new run.
        result = answers[-1]
    early = pd.read_parquet(early_run.out).set_index("customer_id")
    assert result["clv"] == early.loc[ids[5]["customer_id"], "clv"]
    assert result["reasons"] == early.loc[ids[5]["customer_id"], "reasons"]


def feature_names(run) -> list[str]:
    return list(pq.read_schema(run.features_out).names[1:])


def post(url: str, body: dict) -> httpx.Response:
    # A generous client timeout, so that a server that hangs fails the test instead of
    # hanging it (a paused Redis held every request for 30 s before).
    return httpx.post(f"{url}/score", json=body, headers={"X-API-Key": API_KEY}, timeout=20)


def until_answered(url: str, body: dict, run_id: str | None = None) -> dict:
    """Ask until a 200 (from ``run_id``, when given); every other answer must be a JSON 503."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = post(url, body)
        if response.status_code == 200 and run_id in (None, response.json()["run_id"]):
            return response.json()
        if response.status_code != 200:
            assert response.status_code == 503, response.text
            assert response.json()["status"] == "store_unavailable", response.text
        time.sleep(0.2)
    raise AssertionError(f"no answer from run {run_id} within 60 s")


def test_a_hung_or_restarted_redis_is_a_503_livez_stays_up_and_the_service_recovers(
    served_store, latest_scores, tmp_path
):
    # Issue 21 M5/M6: paused Redis froze every request and /livez (39.8 s or never); Redis
    # down was a 500 with a traceback per request; restarted empty, every lookup was
    # unknown_customer with HTTP 200 and /readyz 200.
    from redis_server import redis_process

    config, scores = latest_scores
    one = {"customers": [{"customer_id": scores.index[5]}, {"customer_id": UNKNOWN}]}
    with redis_process(tmp_path / "redis") as store:
        first = write_run_to_redis(store.url, config)
        env = server_env(served_store, tmp_path, store.url, CUSTOMER_VALUE_STORE_TIMEOUT="0.3")
        log = tmp_path / "server.log"
        with local_server(env=env, log_path=log, ready_timeout=90) as server:
            assert until_answered(server.url, one)["run_id"] == first.run_id
            # Every worker must have loaded (local_server waits, but does not fail): a worker
            # still loading when Redis pauses answers 503 "loading", not "unreachable" (the CI
            # run of ca836ca got that).
            wait_for_log(log, LOADED_LINE, worker_count(env), timeout=90)
            store.pause()
            try:
                for _ in range(6):
                    response = post(server.url, one)
                    assert response.status_code == 503, response.text
                    assert response.json()["reason"] == "unreachable"
                    assert int(response.headers["retry-after"]) >= 1
                assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
                readyz = httpx.get(f"{server.url}/readyz", timeout=20)
                assert readyz.status_code == 503 and readyz.json()["status"] == "store_unavailable"
            finally:
                store.resume()
            assert until_answered(server.url, one)["run_id"] == first.run_id
            store.restart()  # empty: the served run is gone
            seen = set()
            for _ in range(6):
                response = post(server.url, one)
                assert response.status_code == 503, response.text  # never unknown_customer
                seen.add(response.json()["reason"])
                time.sleep(0.2)
            assert "gone" in seen
            assert httpx.get(f"{server.url}/readyz", timeout=20).status_code == 503
            again = write_run_to_redis(store.url, config, run_id="published-again")
            answer = until_answered(server.url, one, again.run_id)
            assert answer["results"][0]["status"] == "ok"
            assert answer["results"][1]["status"] == "unknown_customer"
            # Every worker becomes ready (connections are shared out among them), the one
            # that had no request since the restart included.
            deadline = time.monotonic() + 60
            ready = 0
            while ready < 6 and time.monotonic() < deadline:
                readyz = httpx.get(f"{server.url}/readyz", timeout=20)
                ready = ready + 1 if readyz.status_code == 200 else 0
                time.sleep(0.1)
            assert ready == 6, readyz.text
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    # One line per outage and worker (unreachable, then gone), not one per request.
    assert 1 <= text.count("cannot answer") <= 8, text
