"""Session fixtures: a small synthetic store and a model trained on it in a temp MLflow store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from features.synth import generate, write_tables
from serving.batch import BatchConfig
from serving.batch import run as score_base
from training.config import TrainConfig
from training.train import TrainResult, run


@dataclass
class TrainedStore:
    """A trained model and everything it was trained from."""

    root: Path
    tracking_uri: str
    orders_path: Path
    events_path: Path
    orders: pd.DataFrame
    events: pd.DataFrame
    result: TrainResult

    @property
    def model_uri(self) -> str:
        return f"models:/customer-value/{self.result.version}"


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Train once per session on 2,000 synthetic customers (2.5 years, 180-day horizon).

    The tracking store is a real SQLite MLflow store in a temp dir; MLFLOW_TRACKING_URI points
    at it for the whole session so every test talks to the same registry.
    """
    root = tmp_path_factory.mktemp("store")
    orders, events = generate(customers=2000, seed=11, start="2023-01-01", end="2025-07-01")
    write_tables(orders, events, root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    config = TrainConfig(
        orders=root / "data" / "orders.parquet",
        events=root / "data" / "service_events.parquet",
        horizon_days=180,
        step_days=30,
        max_train_cutoffs=6,
        time_budget=0,
        output_dir=root / "out",
    )
    result = run(config)
    yield TrainedStore(root, uri, config.orders, config.events, orders, events, result)
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def latest_scores(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BatchConfig, pd.DataFrame]:
    """Batch scores of the trained store at the "latest" cutoff, plus the online feature table.

    Returns the batch config (``features_out`` is the table the service reads) and the scores
    indexed by customer_id.
    """
    out = tmp_path_factory.mktemp("latest") / "scores.parquet"
    config = BatchConfig(
        orders=trained_store.orders_path,
        events=trained_store.events_path,
        cutoff="latest",
        out=out,
        features_out=out.with_name("online_features.parquet"),
        model_uri=trained_store.model_uri,
    )
    score_base(config)
    return config, pd.read_parquet(out).set_index("customer_id")


@pytest.fixture
def own_tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test; the session's store is back afterwards.

    Setting the variable is not enough to undo: the code under test points MLflow's own
    process-wide tracking URI at the store, so it is restored too.
    """
    import mlflow

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(previous)
