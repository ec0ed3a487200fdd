"""Logging the model as code, loading it back, and read-only scoring that never writes a store."""

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from import_closure import third_party
from mlflow.models import Model

from demo.generator import generate
from features import FeatureSpec, build_features, build_labels, feature_names
from features.io import validate_events, validate_orders
from training import pyfunc_model, tracking
from training.config import run_entrypoint
from training.model import CustomerValueModel, ModelParams
from training.pipeline import window_snapshots
from training.purchase import PurchaseModel

ROOT = Path(__file__).resolve().parents[2]


#: The module's own registered model, in the session's store: the aliases of customer-value,
#: which other tests move, are left alone.
NAME = "customer-value-tracking-test"


@dataclass
class Logged:
    """One registered version of two small models (serving and evaluation twin)."""

    root: Path
    uri: str
    serving: CustomerValueModel
    evaluation: CustomerValueModel
    features: pd.DataFrame
    version: str

    @property
    def database(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def model_uri(self) -> str:
        return f"models:/{NAME}/{self.version}"

    def store_files(self) -> dict[str, tuple[int, int]]:
        """The store's database and artifact files (not the session's data folder)."""
        return {**files(self.database.parent, "mlflow.db*"), **files(self.root / "mlartifacts")}


def fit(orders, events, seed: int) -> tuple[CustomerValueModel, pd.DataFrame]:
    """A model of a few shallow trees (well under a second), and the features it scores."""
    spec = FeatureSpec(horizon_days=180)
    names = feature_names(spec)
    holdout = pd.Timestamp("2025-01-01")
    cutoffs = [holdout - pd.Timedelta(days=90 + 30 * k) for k in range(3)]
    rows = window_snapshots(orders, events, cutoffs, spec, 90)
    purchase = PurchaseModel(r=1.0, alpha=60.0, a=0.8, b=3.0, p=4.0, q=5.0, v=80.0)
    model = CustomerValueModel(spec, ModelParams(n_estimators=10, max_depth=2), seed=seed)
    model.fit(
        rows[names], rows["window_value"], rows["window_churned"], purchase=purchase, window_days=90
    )
    features = build_features(orders, events, cutoff=holdout, spec=spec)
    labels = build_labels(orders, cutoff=holdout, spec=spec)
    model.fit_stack(features[names], labels["future_value"], labels["churned"])
    return model, features[names]


@pytest.fixture(scope="module")
def registered(store):
    """Two small models (different seeds) logged and registered like `make train` does."""
    orders, events = generate(customers=400, seed=3, start="2023-01-01", end="2025-07-01")
    orders = validate_orders(orders, strict=True).frame
    events = validate_events(events, strict=True).frame
    serving, features = fit(orders, events, seed=5)
    evaluation, _ = fit(orders, events, seed=6)
    # After `store`, which set MLFLOW_TRACKING_URI: see restore_uris.
    variable = os.environ["MLFLOW_TRACKING_URI"]
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    tracking.configure(store.tracking_uri)
    with tracking.start_run("tracking-test"):
        version = tracking.log_and_register(serving, evaluation, features.head(5), name=NAME)
    yield Logged(store.root, store.tracking_uri, serving, evaluation, features, version.version)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])
    os.environ["MLFLOW_TRACKING_URI"] = variable


@pytest.fixture
def restore_uris(store, monkeypatch):
    """configure() points MLflow's process-wide tracking and registry URIs; put both back.

    On the session's store (``store``): mlflow.set_tracking_uri also writes
    MLFLOW_TRACKING_URI, so restoring a URI taken before the session store was set would pin
    every later test to MLflow's default store in the working directory. The variable itself
    is put back by monkeypatch.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield previous
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def files(folder: Path, pattern: str = "*") -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (matching ``pattern``) with its size and modification time."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob(pattern))
        if path.is_file()
    }


def aged(path: Path) -> Path:
    """Set a file's mtime far in the past, so that any write shows."""
    os.utime(path, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    return path


# -- read-only stores --------------------------------------------------------------------------


def test_read_only_refuses_a_missing_sqlite_store_and_creates_nothing(tmp_path, restore_uris):
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(FileNotFoundError, match=r"no MLflow store at .*nowhere/mlflow\.db") as err:
        tracking.configure(f"sqlite:///{missing}", read_only=True)
    assert "make train" in str(err.value) and "MLFLOW_TRACKING_URI" in str(err.value)
    assert not missing.parent.exists()
    assert mlflow.get_tracking_uri() == restore_uris[0]


def test_read_only_refuses_an_empty_sqlite_file_and_leaves_it_empty(tmp_path, restore_uris):
    # MLflow would create its tables in it: the "store" scoring was pointed at would change.
    empty = tmp_path / "mlflow.db"
    empty.touch()
    aged(empty)
    before = files(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no MLflow store at .*mlflow\.db: .*0 bytes"):
        tracking.configure(f"sqlite:///{empty}", read_only=True)
    assert files(tmp_path) == before
    assert mlflow.get_tracking_uri() == restore_uris[0]


def write_other_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (customer_id TEXT, amount REAL)")
    connection.close()


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda path: path.write_text("customer_id,amount\na,1\n"), id="not-sqlite"),
        pytest.param(write_other_database, id="another-sqlite-database"),
    ],
)
def test_read_only_refuses_a_file_that_is_not_an_mlflow_store(write, tmp_path, restore_uris):
    database = tmp_path / "mlflow.db"
    write(database)
    aged(database)
    before = files(tmp_path)
    with pytest.raises(ValueError, match=r"mlflow\.db is not an MLflow store .*make train"):
        tracking.configure(f"sqlite:///{database}", read_only=True)
    assert files(tmp_path) == before
    assert mlflow.get_tracking_uri() == restore_uris[0]


def test_read_only_refuses_a_store_of_another_schema_without_migrating_it(
    registered, tmp_path, restore_uris
):
    # An older store: MLflow would create the tables it lacks and migrate it.
    database = tmp_path / "mlflow.db"
    shutil.copyfile(registered.database, database)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0123456789ab'")
    connection.close()
    aged(database)
    before = files(tmp_path)
    with pytest.raises(ValueError, match=r"has schema 0123456789ab.*mlflow db upgrade"):
        tracking.configure(f"sqlite:///{database}", read_only=True)
    assert files(tmp_path) == before


@pytest.mark.parametrize("form", ["file-uri", "path"])
@pytest.mark.parametrize("state", ["empty", "missing"])
def test_read_only_refuses_an_empty_or_missing_store_directory(form, state, tmp_path, restore_uris):
    # MLflow's own message would be that the file store is "in maintenance mode".
    folder = tmp_path / "mlruns"
    if state == "empty":
        folder.mkdir()
    uri = folder.as_uri() if form == "file-uri" else str(folder)
    with pytest.raises(FileNotFoundError, match=r"no MLflow store at .*mlruns .*make train"):
        tracking.configure(uri, read_only=True)
    assert folder.exists() == (state == "empty")
    assert files(tmp_path) == {}
    assert mlflow.get_tracking_uri() == restore_uris[0]


def test_read_only_says_how_to_name_a_sqlite_file_given_as_a_path(tmp_path, restore_uris):
    database = tmp_path / "mlflow.db"
    write_other_database(database)
    with pytest.raises(ValueError, match=rf"a SQLite store is given as sqlite:///{database}"):
        tracking.configure(str(database), read_only=True)


@pytest.mark.parametrize(
    "uri", ["http://mlflow.internal:5000", "postgresql://scorer@db.internal/mlflow"]
)
def test_read_only_passes_remote_stores_through(uri, restore_uris):
    assert tracking.configure(uri, read_only=True) == uri
    assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_registry_uri() == uri


def test_read_only_scoring_leaves_the_store_untouched(registered, restore_uris):
    # Loading a registered version in place would write a registered_model_meta file into the
    # store's artifacts; the database must not be migrated or written either.
    before = registered.store_files()
    tracking.configure(registered.uri, read_only=True)
    uri = f"models:/{NAME}@candidate"
    info = tracking.version_info(uri)
    tracking.load_model(tracking.pinned_uri(uri, info))
    tracking.load_model(uri, which=tracking.EVALUATION_DIR)
    assert info["model_version"] == registered.version
    assert registered.store_files() == before


# -- the model, logged as code -----------------------------------------------------------------


def test_logged_model_loads_by_alias_with_identical_predictions(registered, restore_uris):
    tracking.configure(registered.uri, read_only=True)
    path = list(sys.path)
    serving = tracking.load_model(f"models:/{NAME}@candidate")
    evaluation = tracking.load_model(f"models:/{NAME}@candidate", which="evaluation")
    assert isinstance(serving, CustomerValueModel) and isinstance(evaluation, CustomerValueModel)
    pd.testing.assert_frame_equal(
        serving.predict(registered.features), registered.serving.predict(registered.features)
    )
    pd.testing.assert_frame_equal(
        evaluation.predict(registered.features), registered.evaluation.predict(registered.features)
    )
    # The version's copy of the code does not stay in front of the project's.
    assert sys.path == path
    pyfunc = mlflow.pyfunc.load_model(registered.model_uri)
    pd.testing.assert_frame_equal(
        pyfunc.predict(registered.features), registered.serving.predict(registered.features)
    )


def test_logged_model_is_code_with_its_packages_not_a_pickle(registered, tmp_path, restore_uris):
    tracking.configure(registered.uri, read_only=True)
    uri = registered.model_uri
    flavor = Model.load(uri).flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert Path(flavor["model_code_path"]).name == "pyfunc_model.py"
    assert "python_model" not in flavor  # the cloudpickled wrapper's entry
    assert flavor["code"] == "code"
    assert set(flavor["artifacts"]) == {"serving", "evaluation"}
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    assert not list(local.rglob("*.pkl"))
    assert (local / "pyfunc_model.py").is_file()
    code = local / "code"
    assert (code / "training" / "model.py").is_file()
    assert (code / "features" / "spec.py").is_file()
    assert not (code / "serving").exists()
    assert not list(code.rglob("__pycache__"))
    requirements = (local / "requirements.txt").read_text().split()
    assert not [line for line in requirements if line.startswith("customer-value")]
    assert f"xgboost-cpu=={metadata.version('xgboost-cpu')}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements


ISOLATED = """
import importlib.util, json, sys
# Hide the project: its editable install's finder, and the project folder on sys.path.
sys.meta_path[:] = [
    f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))
]
sys.path[:] = [p for p in sys.path if p not in ("", {root!r})]
for name in ("features", "training", "serving"):
    spec = importlib.util.find_spec(name)
    assert spec is None, f"{{name}} is importable: {{spec}}"
import mlflow
mlflow.set_tracking_uri({uri!r})
mlflow.set_registry_uri({uri!r})
model = mlflow.pyfunc.load_model({model_uri!r}, dst_path={dst!r})
out = model.predict(model.input_example)
print(json.dumps({{"clv": out["clv"].tolist(), "training": sys.modules["training"].__file__}}))
"""


@pytest.mark.slow  # a fresh interpreter importing MLflow: 10 to 20 seconds
def test_logged_model_loads_where_the_project_is_not_installed(registered, tmp_path):
    # The version carries its own code: MLflow alone (a fresh interpreter with the third-party
    # requirements, no project) loads and runs it.
    dst = tmp_path / "model"
    dst.mkdir()
    script = ISOLATED.format(
        root=str(ROOT),
        uri=registered.uri,
        model_uri=registered.model_uri,
        dst=str(dst),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["training"]).is_relative_to(dst / "code")
    expected = registered.serving.predict(registered.features.head(5))["clv"].tolist()
    assert result["clv"] == expected


def test_versions_logged_as_a_pickle_still_find_their_class():
    # Versions registered before models-from-code hold a cloudpickle that names the wrapper as
    # training.tracking.CustomerValuePyfunc.
    current = pickle.dumps(pyfunc_model.CustomerValuePyfunc(), protocol=0)
    legacy = current.replace(b"training.pyfunc_model\n", b"training.tracking\n")
    assert legacy != current
    assert isinstance(pickle.loads(legacy), pyfunc_model.CustomerValuePyfunc)


class Echo(mlflow.pyfunc.PythonModel):
    """Another project's pyfunc."""

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return model_input


def test_a_model_that_is_not_this_projects_is_refused_by_name(tmp_path, restore_uris):
    path = tmp_path / "other"
    # Explicit requirements: inferring them would start a process that loads the model.
    mlflow.pyfunc.save_model(
        path, python_model=Echo(), pip_requirements=[f"mlflow=={mlflow.__version__}"]
    )
    with pytest.raises(ValueError, match=rf"{path} is not a customer-value model.* Echo"):
        tracking.load_model(str(path))


def test_model_requirements_cover_the_model_code_imports():
    imported = third_party("training.pyfunc_model")
    assert {"xgboost", "mlflow", "pandas"} <= imported
    distributions = metadata.packages_distributions()
    unpinned = {
        name: distributions.get(name, [])
        for name in imported
        if not set(distributions.get(name, [])) & set(tracking.MODEL_REQUIREMENTS)
    }
    assert not unpinned, (
        f"the model's code imports these, tracking.MODEL_REQUIREMENTS lacks them: {unpinned}"
    )


def test_a_locked_store_is_reported_as_locked_not_as_foreign(
    registered, tmp_path, restore_uris, monkeypatch
):
    # sqlite3 models/mlflow.db 'BEGIN EXCLUSIVE' held by another process: was "not an MLflow
    # store ... run `make train` first".
    database = tmp_path / "mlflow.db"
    shutil.copyfile(registered.database, database)
    monkeypatch.setattr(tracking, "LOCK_WAIT_SECONDS", 0.0, raising=False)
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ValueError, match="is locked by another process") as info:
            tracking.configure(f"sqlite:///{database}", read_only=True)
        assert "retry when it has finished" in str(info.value)
        assert "not an MLflow store" not in str(info.value)
    finally:
        holder.close()
    tracking.configure(f"sqlite:///{database}", read_only=True)  # released: read as a store


def test_a_read_only_tracking_store_is_one_line_naming_it(
    registered, tmp_path, restore_uris, capsys, monkeypatch
):
    # MLflow makes a folder named after the URI ("file:/tmp/...") in the working directory:
    # in the test's own, not in the project's.
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "mlflow.db"
    shutil.copyfile(registered.database, database)
    # SQLite opened read-only: every write MLflow tries fails as on a read-only file.
    uri = f"sqlite:///file:{database}?mode=ro&uri=true"
    assert run_entrypoint(lambda: tracking.configure(uri, experiment="another")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert f"the MLflow tracking store {uri} cannot be written" in line
    assert "attempt to write a readonly database" in line
    assert "make the file and its folder writable" in line


def test_open_model_loads_exactly_the_version_it_resolved(monkeypatch):
    # The alias is resolved once; moving it afterwards must not change what is loaded, so the
    # version a run stamps is the version that scored.
    resolved = {"model_name": "shop", "model_version": "3"}
    calls: list[str] = []
    sentinel = object()

    def version_info(uri):
        calls.append(f"resolve {uri}")
        if uri.startswith("models:/"):
            return dict(resolved)
        return {"model_name": uri, "model_version": tracking.UNREGISTERED}

    def load_model(uri, which=tracking.SERVING_DIR):
        calls.append(f"load {uri}")
        return sentinel

    monkeypatch.setattr(tracking, "version_info", version_info)
    monkeypatch.setattr(tracking, "load_model", load_model)
    model, info = tracking.open_model("models:/shop@champion")
    assert model is sentinel and info == resolved
    assert calls == ["resolve models:/shop@champion", "load models:/shop/3"]
    calls.clear()
    tracking.open_model("runs:/abc/model")  # unregistered: loaded as given
    assert calls[-1] == "load runs:/abc/model"


def test_the_logged_training_input_has_the_schema_of_every_row(store, monkeypatch, restore_uris):
    # The schema comes from the first rows (MLflow's inference over every text value took
    # 161 s at 1M customers); on validated inputs it equals the inference over every row,
    # even where the first rows leave a column empty.
    from mlflow.data.pandas_dataset import from_pandas

    orders, _ = generate(customers=300, seed=4, start="2024-01-01", end="2025-01-01")
    orders = validate_orders(orders, strict=True).frame
    assert orders["delivered_at"].isna().any() and orders["delivered_at"].notna().any()
    orders = orders.sort_values("delivered_at", na_position="first", kind="stable")
    monkeypatch.setattr(tracking, "SCHEMA_SAMPLE_ROWS", int(orders["delivered_at"].isna().sum()))
    fingerprint = tracking.dataset_fingerprint(orders, None)
    tracking.configure(store.tracking_uri)
    with tracking.start_run("schema-test") as run_id:
        tracking.log_dataset(orders, "/data/shop/orders.parquet", fingerprint)
    (logged,) = mlflow.get_run(run_id).inputs.dataset_inputs
    every_row = from_pandas(orders, source="/data/shop/orders.parquet").schema
    assert json.loads(logged.dataset.schema) == {"mlflow_colspec": every_row.to_dict()}
    assert json.loads(logged.dataset.profile) == {
        "num_rows": len(orders),
        "num_elements": int(orders.size),
    }
    assert logged.dataset.digest == fingerprint["content_sha256"][:12]
    assert logged.dataset.name == "shop/orders.parquet"


def test_a_model_the_registry_does_not_hold_is_one_line_naming_what_it_holds(
    registered, restore_uris
):
    # A model trained under another name (the default name follows the orders file) ended
    # `python -m serving.batch` in MLflow's traceback.
    tracking.configure(registered.uri)
    for uri in ("models:/no-such-model@champion", f"models:/{NAME}@no-such-alias"):
        with pytest.raises(ValueError, match=r"is not in the model registry of sqlite:") as err:
            tracking.open_model(uri)
        assert uri in str(err.value)
        assert f"{NAME} (" in str(err.value)  # what the store does hold
        assert "make train" in str(err.value)


#: A process that opens the store at ``argv[1]`` for writing once ``argv[2]`` exists, after
#: writing ``argv[3]`` to say it is ready: so that every process opens it at the same moment.
_OPEN_AT_ONCE = """
import pathlib, sys, time
from training import tracking
pathlib.Path(sys.argv[3]).touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.001)
tracking.configure(sys.argv[1])
"""


@pytest.mark.slow  # four fresh interpreters importing MLflow: 10 to 30 seconds
def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    # `make train` beside `make backtest` on a fresh clone: each created the SQLite store's
    # tables and all but one failed with "table metrics already exists" (10 of 12 processes
    # in three rounds of four before the lock).
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    go = tmp_path / "go"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("MLFLOW_TRACKING_URI", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, uri, str(go), str(tmp_path / f"ready{k}")],
            env=environment,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    try:
        while not all((tmp_path / f"ready{k}").exists() for k in range(4)):
            assert all(p.poll() is None for p in processes), "a process ended before the start"
        go.touch()
        errors = [p.communicate(timeout=300)[1] for p in processes]
    finally:
        for p in processes:
            p.kill()
    failed = [e for p, e in zip(processes, errors, strict=True) if p.returncode != 0]
    assert not failed, failed[0][-2000:]
    mlflow_client = mlflow.MlflowClient(uri)
    experiments = [e.name for e in mlflow_client.search_experiments()]
    assert experiments.count(tracking.EXPERIMENT) == 1
