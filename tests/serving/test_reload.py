"""A running service picks up the next batch run (table, answers, champion) without a restart."""

import asyncio
import logging
import os
import shutil

import pandas as pd
import pytest
from mlflow import MlflowClient

from serving.batch.base_scoring import BatchConfig
from serving.batch.base_scoring import run as score_base
from serving.online.schema import ScoreRequest
from serving.online.service import CustomerValue
from serving.online.settings import OnlineConfig

RUNS = {"early": "2025-01-01", "late": "latest"}


@pytest.fixture(scope="module")
def runs(served_store, tmp_path_factory):
    """Two batch runs of the trained store (two cutoffs), each with its table and scores."""
    folders = {}
    for name, cutoff in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        score_base(
            BatchConfig(
                orders=served_store.orders_path,
                events=served_store.events_path,
                cutoff=cutoff,
                out=folder / "scores.parquet",
                features_out=folder / "online_features.parquet",
                model_uri=served_store.model_uri,
            )
        )
        folders[name] = folder
    return folders


def land(run_folder, served_folder) -> None:
    """Put a batch run's files where the service reads them, each by an atomic rename."""
    for name in ("scores.parquet", "online_features.parquet"):
        staged = served_folder / f".{name}.staged"
        shutil.copyfile(run_folder / name, staged)
        os.replace(staged, served_folder / name)


@pytest.fixture
def service(runs, served_store, tmp_path, monkeypatch):
    """A service on the early run, checking for a new run on every request."""
    land(runs["early"], tmp_path)
    monkeypatch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
    monkeypatch.setenv("CUSTOMER_VALUE_FEATURES", str(tmp_path / "online_features.parquet"))
    monkeypatch.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "0")
    monkeypatch.delenv("CUSTOMER_VALUE_LOOKUPS", raising=False)
    return CustomerValue()


async def lookup(svc, customer_id: str) -> dict:
    customers = ScoreRequest.model_validate({"customers": [{"customer_id": customer_id}]})
    (result,) = (await svc.score(customers=customers.customers)).model_dump()["results"]
    return result


def known_in_both(runs) -> tuple[str, pd.DataFrame]:
    late = pd.read_parquet(runs["late"] / "scores.parquet").set_index("customer_id")
    early = pd.read_parquet(runs["early"] / "scores.parquet").set_index("customer_id")
    return early.index.intersection(late.index)[0], late


def test_a_new_batch_run_is_served_without_a_restart(service, runs, tmp_path):
    customer_id, late = known_in_both(runs)
    assert asyncio.run(lookup(service, customer_id))["cutoff"] == "2025-01-01"
    assert asyncio.run(service.reloader.refresh()) is False  # nothing changed yet

    land(runs["late"], tmp_path)
    assert asyncio.run(service.reloader.refresh()) is True
    result = asyncio.run(lookup(service, customer_id))
    assert result["cutoff"] == str(late.loc[customer_id, "cutoff"].date())
    assert result["clv"] == pytest.approx(late.loc[customer_id, "clv"], rel=1e-6)
    assert result["reasons"] == late.loc[customer_id, "reasons"]
    assert service.served.answers is not None  # the new run's answers, not the model
    assert service.reloader.reloads == 1


def test_a_request_starts_the_reload_in_the_background(service, runs, tmp_path):
    customer_id, late = known_in_both(runs)
    land(runs["late"], tmp_path)

    async def two_requests() -> tuple[dict, dict]:
        first = await lookup(service, customer_id)  # starts the reload, answers from the old
        await service.reloader.settled()
        return first, await lookup(service, customer_id)

    first, second = asyncio.run(two_requests())
    assert first["cutoff"] == "2025-01-01"
    assert second["cutoff"] == str(late.loc[customer_id, "cutoff"].date())


def test_a_request_in_flight_during_the_swap_finishes_on_its_own_run(
    service, runs, tmp_path, monkeypatch
):
    # Model-scored lookups wait in the batcher: swap the state while one waits there.
    monkeypatch.setenv("CUSTOMER_VALUE_LOOKUPS", "model")
    monkeypatch.setenv("CUSTOMER_VALUE_RELOAD_SECONDS", "-1")  # only this test swaps
    svc = CustomerValue()
    customer_id, late = known_in_both(runs)
    old = svc.served
    land(runs["late"], tmp_path)

    async def swap_during_a_request() -> dict:
        request = asyncio.create_task(lookup(svc, customer_id))
        while old.batcher.in_flight == 0:  # the request is waiting for its model batch
            await asyncio.sleep(0)
        assert await svc.reloader.refresh() is True
        return await request

    result = asyncio.run(swap_during_a_request())
    assert result["status"] == "ok" and result["cutoff"] == "2025-01-01"
    assert old.batcher.closed and old.batcher.in_flight == 0
    assert svc.served is not old and svc.served.model is old.model  # same version: reused
    assert asyncio.run(lookup(svc, customer_id))["cutoff"] == str(
        late.loc[customer_id, "cutoff"].date()
    )


def test_the_new_champion_comes_with_the_next_run(runs, served_store, tmp_path, monkeypatch):
    # A retrain promotes a new version; the service follows the alias at the next run.
    client = MlflowClient()
    name, first = "customer-value", served_store.version
    source = client.get_model_version(name, first)
    second = str(client.create_model_version(name, source.source, run_id=source.run_id).version)
    alias = "reload-test"
    client.set_registered_model_alias(name, alias, first)
    try:
        land(runs["early"], tmp_path)
        monkeypatch.setenv("CUSTOMER_VALUE_MODEL_URI", f"models:/{name}@{alias}")
        monkeypatch.setenv("CUSTOMER_VALUE_FEATURES", str(tmp_path / "online_features.parquet"))
        svc = CustomerValue()
        assert svc.served.info["model_version"] == first
        first_model = svc.served.model
        client.set_registered_model_alias(name, alias, second)
        land(runs["late"], tmp_path)
        assert asyncio.run(svc.reloader.refresh()) is True
        assert svc.served.info["model_version"] == second
        assert svc.served.model is not first_model  # loaded for the new version
        # The table was scored by the first version: its answers are not served as the
        # second's; the model scores lookups.
        assert svc.served.answers is None
    finally:
        client.delete_registered_model_alias(name, alias)
        client.delete_model_version(name, second)


def test_a_failed_reload_keeps_serving_the_old_run(service, runs, tmp_path, caplog):
    customer_id, _ = known_in_both(runs)
    table = tmp_path / "online_features.parquet"
    broken = tmp_path / ".broken"
    broken.write_bytes(b"not parquet")
    os.replace(broken, table)
    with caplog.at_level(logging.ERROR, logger="serving.online.reload"):
        assert asyncio.run(service.reloader.refresh()) is False
        assert asyncio.run(service.reloader.refresh()) is False  # not retried until it changes
    assert len([r for r in caplog.records if r.name == "serving.online.reload"]) == 1
    assert "still serving the table of cutoff 2025-01-01" in caplog.text
    assert asyncio.run(lookup(service, customer_id))["status"] == "ok"

    land(runs["late"], tmp_path)
    assert asyncio.run(service.reloader.refresh()) is True


def test_reload_interval_comes_from_the_environment():
    assert OnlineConfig.from_env({}).reload_seconds == 30.0
    assert OnlineConfig.from_env({"CUSTOMER_VALUE_RELOAD_SECONDS": "0"}).reload_seconds == 0.0
    with pytest.raises(ValueError, match="CUSTOMER_VALUE_RELOAD_SECONDS='soon'"):
        OnlineConfig.from_env({"CUSTOMER_VALUE_RELOAD_SECONDS": "soon"})


def test_an_api_key_with_surrounding_whitespace_is_stripped_and_said(caplog):
    # Issue 21: CUSTOMER_VALUE_API_KEY=$'abc\n' made every caller 401 with nothing logged.
    with caplog.at_level("WARNING", logger="serving.online.settings"):
        config = OnlineConfig.from_env({"CUSTOMER_VALUE_API_KEY": "abc\n"})
    assert config.api_key == "abc"
    (record,) = caplog.records
    assert "CUSTOMER_VALUE_API_KEY had surrounding whitespace" in record.getMessage()
    assert "abc" not in record.getMessage()  # the key itself never reaches a log
    with pytest.raises(ValueError, match="CUSTOMER_VALUE_API_KEY is set but holds only"):
        OnlineConfig.from_env({"CUSTOMER_VALUE_API_KEY": " \n"})


def test_the_store_timeout_comes_from_the_environment():
    assert OnlineConfig.from_env({}).store_timeout == 0.5
    assert OnlineConfig.from_env({"CUSTOMER_VALUE_STORE_TIMEOUT": "0.2"}).store_timeout == 0.2
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ValueError, match=f"CUSTOMER_VALUE_STORE_TIMEOUT='{bad}'; expected"):
            OnlineConfig.from_env({"CUSTOMER_VALUE_STORE_TIMEOUT": bad})
