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
from local_server import local_server
from test_store_service import UNKNOWN, run_frames, write_run_to_redis

from serving.lookup_store import write_lookup_store
from serving.run_files import RunStamp
from serving.service import CustomerValue, ScoreRequest

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
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": served_store.tracking_uri,
        "CUSTOMER_VALUE_MODEL_URI": served_store.model_uri,
        # No feature table where the server looks: every lookup must come from the store.
        "CUSTOMER_VALUE_FEATURES": str(home / "no-table.parquet"),
        "CUSTOMER_VALUE_STORE": store,
        "CUSTOMER_VALUE_API_KEY": API_KEY,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        **extra,
    }


def ask(url: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}/score", json=body, headers={"X-API-Key": API_KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


@pytest.fixture(scope="module")
def early_run(latest_scores, tmp_path_factory):
    """Another batch run of the same store (an earlier cutoff): the next run to land."""
    import dataclasses

    from serving.batch import run as score_base

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
        seen: list[str] = []
        while time.monotonic() < deadline and seen[-6:] != ["2025-01-01"] * 6:
            seen.append(ask(server.url, one)[0]["cutoff"])
            time.sleep(0.1)
        assert seen[-6:] == ["2025-01-01"] * 6, seen
        (result,) = ask(server.url, one)
    early = pd.read_parquet(early_run.out).set_index("customer_id")
    assert result["clv"] == early.loc[ids[5]["customer_id"], "clv"]
    assert result["reasons"] == early.loc[ids[5]["customer_id"], "reasons"]


def feature_names(run) -> list[str]:
    return list(pq.read_schema(run.features_out).names[1:])
