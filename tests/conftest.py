"""Session fixtures: one temp MLflow store, a small synthetic store, and models registered in it.

Two models, for two kinds of test:

* ``served_store``: a small model fit directly (a few trees, fixed purchase-model parameters,
  no search and no baselines) and registered like ``make train`` registers one. The serving
  tests (batch, service, reload, real server) need a real registered model, not a good one:
  this takes seconds.
* ``trained_store``: the whole training pipeline (``training.train.run``), for the tests of
  training itself; they are marked ``slow``. A test that asks for it (directly or through another
  fixture) without one of the :data:`FULL_TRAINING_MARKERS` fails.

The two quick tiers split on these fixtures: a test that uses a registered model (the served
model, or the registry tests' own pair) is marked :data:`SERVED_MARKER` here and runs in
``make test-served``; ``make test-fast`` runs the rest and so registers no model.

Heavy modules are imported inside the fixtures, so collecting a fast test imports neither
MLflow nor the training stack.

Every MLflow store of the session (the session's, :func:`own_tracking_store`'s) is a copy of
one empty store MLflow created (:func:`empty_tracking_store`), kept between sessions in pytest's
cache: creating MLflow's tables runs its schema migrations, each a commit synced to disk.

``make test``, ``make test-fast`` and ``make test-served`` run on two pytest-xdist workers
(``--dist loadfile``): each worker process builds its own session fixtures, in its own
temporary folders (``tmp_path_factory``), with its own MLflow store, ``MLFLOW_TRACKING_URI`` and
small served model; the one thing the workers share is the cached empty store, which they only
copy (a worker that makes it renames it into place whole). No test takes a fixed port: every
server, Redis and PostgreSQL a test starts listens on a free one (tests/local_server.py).

The property tests (hypothesis) run each test's own number of examples; the quick tiers
select the :data:`FAST_PROFILE` profile, which caps them at :data:`FAST_EXAMPLES` (a test
declares its count as ``min(n, settings.default.max_examples)``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import settings

#: The markers ``make test-fast`` deselects; a test using ``trained_store`` must carry one.
FULL_TRAINING_MARKERS = ("slow", "server", "browser", "spark")

#: Given to every test that asks for a model fit and registered in MLflow for the session or
#: the module (:data:`REGISTERED_MODEL_FIXTURES`), directly or through another fixture: the
#: tests that score with a model from the registry (batch, service, reload, impact, monitor)
#: and those of the registry itself. ``make test-served`` runs them, ``make test-fast`` leaves
#: them out, so the fast tier registers no model. Set here from the fixtures, not by
#: hand, so a new test on a registered model cannot be missed.
SERVED_MARKER = "served"
#: The fixtures that fit a model and register it: the small served model, and the registry
#: tests' pair of models (tests/training/test_tracking.py).
REGISTERED_MODEL_FIXTURES = ("served_store", "registered")

#: The hypothesis profile of ``make test-fast`` (``--hypothesis-profile=fast``): a few examples
#: per property test; ``make test`` runs the default profile, each test's full count.
FAST_PROFILE = "fast"
FAST_EXAMPLES = 5
settings.register_profile(FAST_PROFILE, max_examples=FAST_EXAMPLES)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark :data:`SERVED_MARKER` on the tests that use a registered model, before ``-m`` selects.

    ``tryfirst``: pytest's own selection by marker runs in this same hook.
    """
    for item in items:
        if set(REGISTERED_MODEL_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(SERVED_MARKER)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail an unmarked test that would run the whole training pipeline, before it does.

    Runs before the fixtures are set up, so the fast tier never pays for the training (minutes
    on a small machine) only to be told.
    """
    uses_training = "trained_store" in getattr(item, "fixturenames", ())
    if uses_training and not any(item.get_closest_marker(m) for m in FULL_TRAINING_MARKERS):
        pytest.fail(
            f"{item.nodeid} uses the trained_store fixture (the whole training pipeline) but is "
            f"marked none of {', '.join(FULL_TRAINING_MARKERS)}; mark it slow, or use the small "
            "served_store model",
            pytrace=False,
        )


@dataclass
class Store:
    """A synthetic store's data on disk and in memory, and the session's tracking store."""

    root: Path
    tracking_uri: str
    orders_path: Path
    events_path: Path
    orders: pd.DataFrame
    events: pd.DataFrame


@dataclass
class ServedStore(Store):
    """The store plus a small registered model."""

    version: str

    @property
    def model_uri(self) -> str:
        return f"models:/customer-value/{self.version}"


@dataclass
class TrainedStore(ServedStore):
    """The store plus a model from the whole training pipeline, and what training returned."""

    result: Any


@pytest.fixture(scope="session")
def empty_tracking_store(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, as MLflow creates it; copy it, never write to it.

    Made once per MLflow version and kept in pytest's cache (``.pytest_cache``), or in the
    session's temporary folder when the cache is off (``-p no:cacheprovider``).
    """
    import mlflow

    cache = getattr(request.config, "cache", None)
    name = f"mlflow-empty-store-{mlflow.__version__}"
    folder = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    database = Path(folder) / "mlflow.db"
    if not database.exists():
        with tempfile.TemporaryDirectory(dir=folder) as work:
            draft = Path(work) / "mlflow.db"
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{draft}").search_experiments()
            os.replace(draft, database)  # whole, even if sessions race
    return database


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, empty_tracking_store: Path) -> Iterator[Store]:
    """2,000 synthetic customers (2.5 years) and a SQLite MLflow store for the whole session.

    MLFLOW_TRACKING_URI points at the store for the session, so every test talks to the same
    registry.
    """
    from demo.generator import generate, write_tables

    root = tmp_path_factory.mktemp("store")
    orders, events = generate(customers=2000, seed=11, start="2023-01-01", end="2025-07-01")
    write_tables(orders, events, root / "data")
    shutil.copyfile(empty_tracking_store, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    data = root / "data"
    yield Store(root, uri, data / "orders.parquet", data / "service_events.parquet", orders, events)
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def served_store(store: Store) -> ServedStore:
    """A small model, fit in seconds on the store and registered (alias ``candidate``)."""
    from features import FeatureSpec, build_features, build_labels, feature_names
    from features.io import validate_events, validate_orders
    from training import tracking
    from training.model import CustomerValueModel, ModelParams
    from training.pipeline import window_snapshots
    from training.purchase import PurchaseModel

    orders = validate_orders(store.orders, strict=True).frame
    events = validate_events(store.events, strict=True).frame
    spec = FeatureSpec(horizon_days=180)
    names = feature_names(spec)
    holdout = pd.Timestamp("2025-01-01")
    cutoffs = [holdout - pd.Timedelta(days=90 + 30 * k) for k in range(4)]
    rows = window_snapshots(orders, events, cutoffs, spec, 90)
    purchase = PurchaseModel(r=1.0, alpha=60.0, a=0.8, b=3.0, p=4.0, q=5.0, v=80.0)
    model = CustomerValueModel(spec, ModelParams(n_estimators=20, max_depth=3), seed=5).fit(
        rows[names],
        rows["window_value"],
        rows["window_churned"],
        purchase=purchase,
        window_days=90,
    )
    features = build_features(orders, events, cutoff=holdout, spec=spec)
    labels = build_labels(orders, cutoff=holdout, spec=spec)
    model.fit_stack(
        features[names],
        labels["future_value"],
        labels["churned"],
        future_orders=labels["future_orders"],
    )
    tracking.configure()
    with tracking.start_run("serving-test-model"):
        version = tracking.log_and_register(model, model, features[names].head(5))
    return ServedStore(**vars(store), version=version.version)


@pytest.fixture(scope="session")
def trained_store(store: Store) -> TrainedStore:
    """The whole training pipeline on the store (180-day horizon, no search)."""
    from training.config import TrainConfig
    from training.train import run

    config = TrainConfig(
        orders=store.orders_path,
        events=store.events_path,
        horizon_days=180,
        step_days=30,
        max_train_cutoffs=6,
        max_trials=0,
        # The serving tests find it under the demo's name (ServedStore.model_uri).
        name="customer-value",
        output_dir=store.root / "out",
    )
    result = run(config)
    return TrainedStore(**vars(store), version=result.version, result=result)


@pytest.fixture(scope="session")
def latest_scores(
    served_store: ServedStore, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, pd.DataFrame]:
    """Batch scores of the store at the "latest" cutoff, plus the online feature table.

    Returns the batch config (``features_out`` is the table the service reads) and the scores
    indexed by customer_id. A 90% interval and a 10% discount rate, not the defaults, so the
    tests see the service answer with the settings of the run whose table it serves. The run
    also writes its embedded lookup store (:func:`latest_store`); the config returned has
    ``store=None``, so a test that reruns it elsewhere (``dataclasses.replace``) never
    overwrites that store.
    """
    from serving.batch.base_scoring import BatchConfig
    from serving.batch.base_scoring import run as score_base

    out = tmp_path_factory.mktemp("latest") / "scores.parquet"
    config = BatchConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        cutoff="latest",
        out=out,
        features_out=out.with_name("online_features.parquet"),
        store=str(out.with_name("online_store.sqlite")),
        model_uri=served_store.model_uri,
        interval=0.9,
        discount_rate=0.1,
    )
    score_base(config)
    return replace(config, store=None), pd.read_parquet(out).set_index("customer_id")


@pytest.fixture(scope="session")
def latest_store(latest_scores: tuple[Any, pd.DataFrame]) -> str:
    """The embedded lookup store the :func:`latest_scores` run wrote beside its table."""
    config, _ = latest_scores
    return str(config.out.with_name("online_store.sqlite"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis-server`` for the session's Redis tests (started on first use, then stopped).

    Fails, never skips, when redis-server cannot be started (``make test`` installs it).
    """
    from redis_server import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def own_tracking_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_tracking_store: Path
) -> Iterator[str]:
    """A fresh SQLite MLflow store for one test; the session's store is back afterwards.

    Setting the variable is not enough to undo: the code under test points MLflow's own
    process-wide tracking and registry URIs at the store, so both are restored too (a left
    registry URI made later tests look for their models in this store).
    """
    import mlflow

    tracking_before, registry_before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    shutil.copyfile(empty_tracking_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(tracking_before)
    mlflow.set_registry_uri(registry_before)
