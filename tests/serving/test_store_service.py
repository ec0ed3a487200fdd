"""The service answering from a lookup store (SQLite, Redis) exactly as from the Parquet table.

The same batch run is served three ways: its Parquet feature table and scores loaded into the
process (the default without ``CUSTOMER_VALUE_STORE``), its embedded SQLite store, and the
same frames written to a real Redis through :func:`write_lookup_store` (as any producer would
write them). Every answer must be the same.
"""

import asyncio
import dataclasses
import json
import os
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from starlette.responses import JSONResponse

from serving.batch.base_scoring import run as score_base
from serving.lookup_store import StoreView, write_lookup_store
from serving.online.schema import ScoreRequest
from serving.online.service import CustomerValue
from serving.run_files import SCORED_FIELDS, RunStamp, TableMismatch
from training import tracking

UNKNOWN = "nobody"


def history(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            key: value.isoformat() if isinstance(value, pd.Timestamp) else value
            for key, value in record.items()
            if not pd.isna(value)
        }
        for record in frame.drop(columns="customer_id").to_dict("records")
    ]


def score(svc, body: dict) -> list[dict]:
    customers = ScoreRequest.model_validate(body).customers
    return asyncio.run(svc.score(customers=customers)).model_dump()["results"]


def run_frames(scores_path, features_path, names):
    """A batch run's files read back as the store's frames (what any producer hands over)."""
    features = pd.read_parquet(features_path)
    for batch in pq.ParquetFile(scores_path).iter_batches(batch_size=700):
        frame = batch.to_pandas()[["customer_id", *SCORED_FIELDS]]
        yield frame.merge(features[["customer_id", *names]], on="customer_id")


def write_run_to_redis(url: str, config, run_id: str | None = None) -> RunStamp:
    model_names = list(pq.read_schema(config.features_out).names[1:])
    stamp = RunStamp.from_metadata(pq.read_schema(config.out).metadata)
    if run_id is not None:  # the same files published again, as another run
        stamp = dataclasses.replace(stamp, run_id=run_id)
    write_lookup_store(
        url, run_frames(config.out, config.features_out, model_names), stamp, model_names
    )
    return stamp


@pytest.fixture(scope="module")
def body(served_store, latest_scores):
    """Lookups of 200 known customers and an unknown one, and one inline history."""
    _, scores = latest_scores
    known = scores.index[7]
    inline = {
        "customer_id": known,
        "cutoff": str(scores["cutoff"].iloc[0].date()),
        "orders": history(served_store.orders[served_store.orders["customer_id"] == known]),
        "service_events": history(served_store.events[served_store.events["customer_id"] == known]),
    }
    ids = [{"customer_id": i} for i in scores.index[:200]]
    return {"customers": [*ids, {"customer_id": UNKNOWN}, inline]}


@pytest.fixture
def environment(served_store, latest_scores, monkeypatch):
    config, _ = latest_scores
    monkeypatch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
    monkeypatch.setenv("CUSTOMER_VALUE_FEATURES", str(config.features_out))
    monkeypatch.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "0")
    for name in ("CUSTOMER_VALUE_STORE", "CUSTOMER_VALUE_LOOKUPS", "CUSTOMER_VALUE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def parquet_answers(served_store, latest_scores, body):
    """The answers of the in-memory Parquet path (no store)."""
    config, _ = latest_scores
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
        patch.setenv("CUSTOMER_VALUE_FEATURES", str(config.features_out))
        patch.delenv("CUSTOMER_VALUE_STORE", raising=False)
        patch.delenv("CUSTOMER_VALUE_LOOKUPS", raising=False)
        svc = CustomerValue()
        assert svc.served.answers is not None  # the batch answers
        return score(svc, body)


@pytest.fixture
def redis_store(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def test_the_embedded_store_answers_as_the_parquet_table(
    environment, latest_store, body, parquet_answers
):
    environment.setenv("CUSTOMER_VALUE_STORE", latest_store)
    svc = CustomerValue()
    assert isinstance(svc.served.table, StoreView) and svc.served.table.answers
    results = score(svc, body)
    assert results == parquet_answers
    assert results[-2]["status"] == "unknown_customer"
    assert results[-1]["source"] == "inline" and results[-1]["status"] == "ok"


@pytest.mark.server
def test_redis_answers_as_the_parquet_table(
    environment, latest_scores, body, parquet_answers, redis_store
):
    config, _ = latest_scores
    write_run_to_redis(redis_store, config)
    environment.setenv("CUSTOMER_VALUE_STORE", redis_store)
    svc = CustomerValue()
    assert svc.served.table.answers
    assert score(svc, body) == parquet_answers


def test_model_scored_lookups_from_the_store_equal_the_batch(
    environment, latest_store, body, parquet_answers
):
    environment.setenv("CUSTOMER_VALUE_STORE", latest_store)
    environment.setenv("CUSTOMER_VALUE_LOOKUPS", "model")
    svc = CustomerValue()
    assert not svc.served.table.answers
    for computed, stored in zip(score(svc, body), parquet_answers, strict=True):
        assert computed["status"] == stored["status"]
        for name in SCORED_FIELDS:
            if isinstance(stored[name], float):
                assert computed[name] == pytest.approx(stored[name], rel=1e-6, abs=1e-9), name
            else:
                assert computed[name] == stored[name], name


def test_a_store_of_another_tracking_store_stops_the_service(environment, latest_scores, tmp_path):
    config, _ = latest_scores
    model_names = list(pq.read_schema(config.features_out).names[1:])
    stamp = RunStamp.from_metadata(pq.read_schema(config.out).metadata)
    other = tmp_path / "online_store.sqlite"
    elsewhere = dataclasses.replace(stamp, store="sqlite:////elsewhere/mlflow.db")
    write_lookup_store(
        other, run_frames(config.out, config.features_out, model_names), elsewhere, model_names
    )
    environment.setenv("CUSTOMER_VALUE_STORE", str(other))
    with pytest.raises(
        TableMismatch, match=r"sqlite:////elsewhere/mlflow.db.*reads the store sqlite:///"
    ):
        CustomerValue()


def test_a_missing_store_stops_the_service_naming_it(environment, tmp_path):
    missing = tmp_path / "online_store.sqlite"
    environment.setenv("CUSTOMER_VALUE_STORE", str(missing))
    with pytest.raises(FileNotFoundError, match=f"lookup store '{missing}' does not exist"):
        CustomerValue()


@pytest.fixture(scope="module")
def early_run(latest_scores, tmp_path_factory):
    """A second batch run (an earlier cutoff) with its own embedded store."""
    config, _ = latest_scores
    folder = tmp_path_factory.mktemp("early-store")
    early = dataclasses.replace(
        config,
        cutoff="2025-01-01",
        out=folder / "scores.parquet",
        features_out=folder / "online_features.parquet",
        store=str(folder / "online_store.sqlite"),
    )
    score_base(early)
    return early


def test_a_new_sqlite_run_is_served_without_a_restart(
    environment, latest_scores, latest_store, early_run, tmp_path
):
    _, latest = latest_scores
    served = tmp_path / "online_store.sqlite"

    def land(store: str) -> None:
        staged = tmp_path / ".staged"
        shutil.copyfile(store, staged)
        os.replace(staged, served)

    land(early_run.store)
    environment.setenv("CUSTOMER_VALUE_STORE", str(served))
    svc = CustomerValue()
    customer = latest.index[3]
    lookup = {"customers": [{"customer_id": customer}]}
    assert score(svc, lookup)[0]["cutoff"] == "2025-01-01"
    assert asyncio.run(svc.reloader.refresh()) is False  # nothing new yet
    land(latest_store)
    assert asyncio.run(svc.reloader.refresh()) is True
    (result,) = score(svc, lookup)
    assert result["cutoff"] == str(latest.loc[customer, "cutoff"].date())
    assert result["clv"] == latest.loc[customer, "clv"]
    assert result["reasons"] == latest.loc[customer, "reasons"]


@pytest.mark.server
def test_a_new_redis_run_is_served_without_a_restart(
    environment, latest_scores, early_run, redis_store
):
    config, latest = latest_scores
    write_run_to_redis(redis_store, early_run)
    environment.setenv("CUSTOMER_VALUE_STORE", redis_store)
    svc = CustomerValue()
    customer = latest.index[3]
    lookup = {"customers": [{"customer_id": customer}]}
    assert score(svc, lookup)[0]["cutoff"] == "2025-01-01"
    assert asyncio.run(svc.reloader.refresh()) is False
    write_run_to_redis(redis_store, config)

    async def next_request() -> tuple[dict, dict]:
        customers = ScoreRequest.model_validate(lookup).customers
        first = await svc.score(customers=customers)  # notices the flip, answers from the old
        await svc.reloader.settled()
        return first.results[0].model_dump(), (await svc.score(customers=customers)).results[
            0
        ].model_dump()

    first, second = asyncio.run(next_request())
    assert first["cutoff"] == "2025-01-01"
    assert second["cutoff"] == str(latest.loc[customer, "cutoff"].date())
    assert second["clv"] == latest.loc[customer, "clv"]


def test_the_batch_run_writes_the_store_beside_the_table_unless_told(tmp_path):
    from serving.batch.base_scoring import parse_args

    assert parse_args([]).store == "models/scores/online_store.sqlite"
    assert parse_args(["--store", "none"]).store is None
    assert parse_args(["--store", "redis://cache:6379/0"]).store == "redis://cache:6379/0"
    # Scoring another file leaves the live table, and so the live store, alone.
    assert parse_args(["--out", str(tmp_path / "x.parquet")]).store is None
    custom = parse_args(["--features-out", str(tmp_path / "t.parquet")])
    assert custom.store == str(tmp_path / "online_store.sqlite")


def test_the_version_served_from_the_store_is_the_models(environment, latest_store):
    environment.setenv("CUSTOMER_VALUE_STORE", latest_store)
    svc = CustomerValue()
    version = tracking.version_info(os.environ["CUSTOMER_VALUE_MODEL_URI"])["model_version"]
    assert svc.served.info["model_version"] == version == svc.served.table.model_version


# --- a served run the store no longer holds (issue 21 M5, M7) ------------------------------


def call(svc, body: dict):
    """One request in-process: the answer's results and run, or the 503's JSON body."""
    customers = ScoreRequest.model_validate(body).customers
    answer = asyncio.run(svc.score(customers=customers))
    if isinstance(answer, JSONResponse):
        return answer.status_code, json.loads(answer.body)
    return 200, answer.model_dump()


@pytest.mark.server
def test_a_lost_redis_run_is_a_503_and_not_ready_until_a_run_is_current_again(
    environment, latest_scores, early_run, redis_store, caplog
):
    config, latest = latest_scores
    write_run_to_redis(redis_store, config)
    environment.setenv("CUSTOMER_VALUE_STORE", redis_store)
    svc = CustomerValue()
    lookup = {"customers": [{"customer_id": latest.index[3]}]}
    assert call(svc, lookup)[0] == 200
    redis.Redis.from_url(redis_store).flushdb()  # restarted empty
    caplog.clear()
    for _ in range(5):
        status, body = call(svc, lookup)
        assert status == 503, body  # was 200 with unknown_customer for everyone
        assert body["status"] == "store_unavailable" and body["reason"] == "gone"
    assert asyncio.run(svc.__is_ready__()) is False
    loud = [r for r in caplog.records if "cannot answer" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelname == "ERROR"  # once, not once per request
    stamp = write_run_to_redis(redis_store, early_run)  # a batch run publishes again
    status, body = call(svc, lookup)
    assert status == 200 and body["run_id"] == stamp.run_id
    assert body["results"][0]["cutoff"] == "2025-01-01"
    assert asyncio.run(svc.__is_ready__()) is True


@pytest.mark.server
def test_an_idle_worker_never_answers_from_a_retired_redis_run(
    environment, latest_scores, early_run, redis_store
):
    # Two batch runs while the worker had no request: its run was deleted (26-30 wrong
    # unknown_customer answers). It answers from the current run, under that run's stamp.
    config, latest = latest_scores
    write_run_to_redis(redis_store, early_run)
    environment.setenv("CUSTOMER_VALUE_STORE", redis_store)
    environment.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "3600")
    svc = CustomerValue()
    write_run_to_redis(redis_store, config)
    current = write_run_to_redis(redis_store, config, run_id="third")
    customer = latest.index[3]
    status, body = call(svc, {"customers": [{"customer_id": customer}]})
    assert status == 200 and body["run_id"] == current.run_id
    (result,) = body["results"]
    assert result["status"] == "ok" and result["clv"] == latest.loc[customer, "clv"]
    assert result["cutoff"] == str(latest.loc[customer, "cutoff"].date())


def test_a_sqlite_store_copied_in_place_is_answered_from_one_run_with_its_stamp(
    environment, latest_scores, latest_store, early_run, tmp_path
):
    _, latest = latest_scores
    live = tmp_path / "online_store.sqlite"
    shutil.copyfile(latest_store, live)
    environment.setenv("CUSTOMER_VALUE_STORE", str(live))
    environment.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "3600")
    svc = CustomerValue()
    customer = latest.index[3]
    lookup = {"customers": [{"customer_id": customer}]}
    assert call(svc, lookup)[1]["results"][0]["cutoff"] != "2025-01-01"
    shutil.copyfile(early_run.store, live)  # in place: same inode
    status, body = call(svc, lookup)
    early = pd.read_parquet(early_run.out).set_index("customer_id")
    early_id = RunStamp.from_metadata(pq.read_schema(early_run.out).metadata).run_id
    assert status == 200 and body["run_id"] == early_id
    (result,) = body["results"]
    assert result["cutoff"] == "2025-01-01" and result["clv"] == early.loc[customer, "clv"]


def test_a_damaged_sqlite_store_is_a_503_json_not_a_500(environment, latest_store, tmp_path):
    live = tmp_path / "online_store.sqlite"
    shutil.copyfile(latest_store, live)
    environment.setenv("CUSTOMER_VALUE_STORE", str(live))
    environment.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "3600")
    svc = CustomerValue()
    size = live.stat().st_size
    with open(live, "r+b") as target:  # "database disk image is malformed" mid-copy
        target.seek(size // 4)
        target.write(b"\0" * (size // 2))
    status, body = call(svc, {"customers": [{"customer_id": "C0000001"}]})
    assert status == 503 and body["status"] == "store_unavailable", body
    assert body["reason"] in ("unreadable", "changed")
