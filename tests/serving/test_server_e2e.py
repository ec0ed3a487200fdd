"""The real server: `bentoml serve` in a subprocess, spoken to over loopback HTTP."""

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from local_server import PROJECT_ROOT, SERVICE, local_server

from serving.batch.base_scoring import run as score_base

pytestmark = pytest.mark.server

API_KEY = "e2e-key"
READY_TIMEOUT = 90.0


def history(frame: pd.DataFrame) -> list[dict]:
    """Rows of a canonical orders/events frame as JSON-ready dicts (no customer_id, no nulls)."""
    return [
        {
            key: value.isoformat() if isinstance(value, pd.Timestamp) else value
            for key, value in record.items()
            if not pd.isna(value)
        }
        for record in frame.drop(columns="customer_id").to_dict("records")
    ]


@pytest.fixture(scope="module")
def scored(latest_scores):
    """Batch scores and the online feature table of the trained store."""
    return latest_scores


@contextlib.contextmanager
def running_server(
    served_store,
    features: Path,
    home: Path,
    log_path: Path,
    *,
    target: str = SERVICE,
    cwd: Path = PROJECT_ROOT,
    **env_extra: str,
) -> Iterator[httpx.Client]:
    """`bentoml serve <target>` (the service, or a built Bento) on a free loopback port.

    Always stopped, also when the test fails.
    """
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": served_store.tracking_uri,
        "CUSTOMER_VALUE_MODEL_URI": served_store.model_uri,
        "CUSTOMER_VALUE_FEATURES": str(features),
        "CUSTOMER_VALUE_API_KEY": API_KEY,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        **env_extra,
    }
    with local_server(
        target, env=env, log_path=log_path, cwd=cwd, ready_timeout=READY_TIMEOUT
    ) as server:
        with httpx.Client(
            base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            yield client


@pytest.fixture(scope="module")
def server(served_store, scored, tmp_path_factory):
    """The service as deployed by default: lookups answered from the batch scores."""
    config, _ = scored
    folder = tmp_path_factory.mktemp("server")
    with running_server(
        served_store, config.features_out, folder / "bentoml", folder / "server.log"
    ) as client:
        yield client


@pytest.fixture(scope="module")
def model_server(served_store, scored, tmp_path_factory):
    """The service with ``CUSTOMER_VALUE_LOOKUPS=model``: the model scores every lookup."""
    config, _ = scored
    folder = tmp_path_factory.mktemp("model-server")
    with running_server(
        served_store,
        config.features_out,
        folder / "bentoml",
        folder / "server.log",
        CUSTOMER_VALUE_LOOKUPS="model",
    ) as client:
        yield client


def test_lookup_inline_and_unknown(server, scored, served_store):
    _, scores = scored
    known = scores.index[2]
    orders = served_store.orders[served_store.orders["customer_id"] == known]
    events = served_store.events[served_store.events["customer_id"] == known]
    inline = {
        "customer_id": known,
        "cutoff": str(scores["cutoff"].iloc[0].date()),
        "orders": history(orders),
        "service_events": history(events),
    }
    body = {"customers": [{"customer_id": known}, inline, {"customer_id": "nobody"}]}
    response = server.post("/score", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == scores["model_version"].iloc[0]
    lookup, built, unknown = answer["results"]
    expected = scores.loc[known]
    for result, source in ((lookup, "feature_table"), (built, "inline")):
        assert result["status"] == "ok" and result["source"] == source
        assert result["clv"] == pytest.approx(expected["clv"], rel=1e-6, abs=1e-9)
        assert result["p_churn"] == pytest.approx(expected["p_churn"], rel=1e-6, abs=1e-9)
        assert result["reasons"] == expected["reasons"]
        assert result["value_segment"] == expected["value_segment"]
    assert unknown["status"] == "unknown_customer" and unknown["clv"] is None


def test_invalid_inline_rows_are_per_customer(server):
    body = {
        "customers": [
            {
                "customer_id": "x",
                "cutoff": "2025-01-01",
                "orders": [{"ordered_at": "2024-05-01", "amount": -3}],
            }
        ]
    }
    response = server.post("/score", json=body)
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "invalid"
    assert "column 'amount' has 1 negative values" in result["error"]


def test_malformed_requests_are_400_naming_the_field_and_oversized_413(server):
    bogus = server.post("/score", json={"customers": [{"customer_id": "a", "bogus": 1}]})
    assert bogus.status_code == 400
    assert ["customers", 0, "bogus"] in [e["loc"] for e in bogus.json()["detail"]]
    many = server.post("/score", json={"customers": [{"customer_id": "a"}] * 1001})
    assert many.status_code == 400
    assert ["customers"] in [e["loc"] for e in many.json()["detail"]]
    # A chunked body declares no length; it is bounded while it is read.
    good = json.dumps({"customers": [{"customer_id": "a"}]}).encode()
    json_type = {"content-type": "application/json"}
    chunked = server.post("/score", content=iter([good[:10], good[10:]]), headers=json_type)
    assert chunked.status_code == 200, chunked.text
    huge = server.post("/score", content=(b" " * 1024 * 1024 for _ in range(40)), headers=json_type)
    assert huge.status_code == 413
    assert "expected at most" in huge.json()["error"]


def test_api_key_is_required_except_on_probes(server, scored):
    body = {"customers": [{"customer_id": scored[1].index[0]}]}
    url = str(server.base_url)
    missing = httpx.post(f"{url}/score", json=body, timeout=30)
    assert missing.status_code == 401
    assert "API key" in missing.json()["error"]
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{url}/score", json=body, headers=bearer, timeout=30).status_code == 200
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path


def test_concurrent_requests_are_batched_and_metrics_show_it(model_server, scored):
    # With CUSTOMER_VALUE_LOOKUPS=model every lookup goes through the model's adaptive
    # batching; the answers must still be the batch scores.
    server = model_server
    _, scores = scored
    ids = list(scores.index[:120])
    url = str(server.base_url)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers={"X-API-Key": API_KEY}, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{url}/score", json={"customers": [{"customer_id": i}]})
                    for i in ids
                )
            )

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(ids)
    for customer_id, response in zip(ids, responses, strict=True):
        (result,) = response.json()["results"]
        expected = scores.loc[customer_id]
        assert result["customer_id"] == customer_id
        assert result["clv"] == pytest.approx(expected["clv"], rel=1e-6, abs=1e-9)
        assert result["reasons"] == expected["reasons"]
    metrics = server.get("/metrics").text
    assert "bentoml_service_request_total" in metrics
    batches = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("customer_value_model_batch_rows_count")
    )
    rows = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("customer_value_model_batch_rows_sum")
    )
    assert rows >= len(ids)
    assert 0 < batches < rows  # some batch held more than one request's rows


def test_the_built_bento_serves_the_batch_answers(served_store, scored, tmp_path):
    # `make bento` then `bentoml serve customer-value:latest`: the Bento runs from its own
    # folder (here started from an unrelated one), given the store and table by absolute path.
    config, scores = scored
    home = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).with_name("bentoml")
    build = subprocess.run(
        [str(bentoml), "build"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with running_server(
        served_store,
        config.features_out,
        home,
        tmp_path / "bento.log",
        target="customer-value:latest",
        cwd=elsewhere,
    ) as client:
        known = scores.index[0]
        response = client.post("/score", json={"customers": [{"customer_id": known}]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["status"] == "ok"
    assert result["clv"] == pytest.approx(scores.loc[known, "clv"], rel=1e-6, abs=1e-9)
    assert result["reasons"] == scores.loc[known, "reasons"]


def test_the_running_server_picks_up_the_next_batch_run(
    served_store, scored, tmp_path, tmp_path_factory
):
    # The nightly loop: the server answers from one run; the next run's files are renamed
    # into place; without a restart the answers move to the new run.
    latest_config, latest = scored
    early = tmp_path_factory.mktemp("early-run")
    early_config = dataclasses.replace(
        latest_config,
        cutoff="2025-01-01",
        out=early / "scores.parquet",
        features_out=early / "online_features.parquet",
    )
    score_base(early_config)
    served = tmp_path / "served"
    served.mkdir()

    def land(config) -> None:
        for source in (config.out, config.features_out):
            staged = served / f".{source.name}.staged"
            shutil.copyfile(source, staged)
            os.replace(staged, served / source.name)

    land(early_config)
    customer = pd.read_parquet(early_config.out)["customer_id"].iloc[0]
    body = {"customers": [{"customer_id": customer}]}
    with running_server(
        served_store,
        served / "online_features.parquet",
        tmp_path / "bentoml",
        tmp_path / "server.log",
        CUSTOMER_VALUE_RELOAD_SECONDS="0.2",
    ) as client:
        assert client.post("/score", json=body).json()["results"][0]["cutoff"] == "2025-01-01"
        land(latest_config)
        new_cutoff = str(latest.loc[customer, "cutoff"].date())
        deadline = time.monotonic() + 60
        results = []
        # Each worker reloads on its own: ask over new connections (which the workers share
        # out among themselves) until several answers in a row come from the new run.
        url, headers = f"{client.base_url}/score", {"X-API-Key": API_KEY}
        while time.monotonic() < deadline and results[-6:] != [new_cutoff] * 6:
            response = httpx.post(url, json=body, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            (result,) = response.json()["results"]
            results.append(result["cutoff"])
            time.sleep(0.1)
        assert results[-6:] == [new_cutoff] * 6, results
    # The last answer of the loop: a kept-alive connection (the client's) may still reach a
    # worker that has not reloaded yet, so the answer to compare is one from the new run.
    assert result["cutoff"] == new_cutoff
    assert result["clv"] == pytest.approx(latest.loc[customer, "clv"], rel=1e-6, abs=1e-9)
    assert result["reasons"] == latest.loc[customer, "reasons"]
