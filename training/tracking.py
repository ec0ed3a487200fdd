"""MLflow tracking and registry for training and scoring.

The registered model itself is defined in :mod:`training.pyfunc_model`, which MLflow runs when
a version is loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from filelock import FileLock
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from features.database import is_database
from training import pyfunc_model
from training.config import DEMO_MODEL_NAME
from training.model import CustomerValueModel

logger = logging.getLogger(__name__)

#: Versions registered before models-from-code are a cloudpickle of the wrapper by reference to
#: this module's name for it: they unpickle to the current class and load like new ones.
CustomerValuePyfunc = pyfunc_model.CustomerValuePyfunc

#: The demo store's experiment and registered model; a shop's own data gets its own
#: (:func:`training.config.model_name_for`).
EXPERIMENT = DEMO_MODEL_NAME
MODEL_NAME = DEMO_MODEL_NAME
CHAMPION = "champion"
CANDIDATE = "candidate"
#: Inside a registered version: the model that serves and its evaluation twin (see
#: :mod:`training.pyfunc_model`).
SERVING_DIR = pyfunc_model.SERVING_DIR
EVALUATION_DIR = pyfunc_model.EVALUATION_DIR
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The models-from-code definition MLflow logs and runs, and the project packages it imports
#: (``training.model`` needs ``features.spec``, and importing ``features`` runs its
#: ``__init__``): they travel in the version's ``code/`` folder, so the version does not
#: depend on the project being installed where it is loaded.
MODEL_DEFINITION = Path(pyfunc_model.__file__).resolve()
MODEL_CODE = (PROJECT_ROOT / "features", PROJECT_ROOT / "training")
#: Third-party distributions the model's code imports, pinned to the installed versions when a
#: model is logged (tests/training/test_tracking.py checks the list against the imports).
MODEL_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "xgboost-cpu",
    "tqdm",
)
#: The version reported for a model URI that is not in the registry.
UNREGISTERED = "unregistered"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store at ``models/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{PROJECT_ROOT / 'models' / 'mlflow.db'}"


def active_uri() -> str:
    """The tracking URI this process uses now (set by :func:`configure`, else MLflow's)."""
    return mlflow.get_tracking_uri()


def configure(
    uri: str | None = None, experiment: str = EXPERIMENT, *, read_only: bool = False
) -> str:
    """Point MLflow at ``uri`` (default :func:`tracking_uri`) and the experiment; return the URI.

    A new experiment on a local store keeps its artifacts under ``models/mlartifacts``.

    With ``read_only`` (scoring, which only loads registered models) nothing is created or
    written: only the tracking and registry URIs are set, once a local store has been checked
    to be one MLflow reads as it is. MLflow itself would create a missing or empty SQLite file,
    create its tables in a database that is not its own, migrate one of an older schema, and
    reject an empty store directory as a file store "in maintenance mode". Remote stores
    (``http://``, ``postgresql://``, ...) are not checked.

    Raises
    ------
    FileNotFoundError
        A local store that is missing or empty.
    ValueError
        A local file that is not an MLflow store, or a SQLite store whose schema is not the one
        the installed MLflow reads.
    """
    uri = uri or tracking_uri()
    database = _sqlite_path(uri)
    if read_only:
        _check_readable_store(uri)
    elif database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if read_only:
        return uri
    # The first process to open a new SQLite store creates its tables; two doing so at once
    # (`make train` beside `make backtest` on a fresh clone) both try, and all but one fail
    # with "table metrics already exists". A lock file beside the database lets one process at
    # a time open it and create the experiment; the others then find both. Other stores get
    # no lock file: a tracking server (http) sets up its own database, and a database URL
    # may be shared by several machines, which a local file cannot serialise; for them only
    # the experiment's creation is made safe to race (_ensure_experiment).
    with FileLock(f"{database}.lock") if database is not None else nullcontext():
        _ensure_experiment(experiment, database)
    mlflow.set_experiment(experiment)
    return uri


def _ensure_experiment(experiment: str, database: Path | None) -> None:
    """Create ``experiment`` unless it exists (another process may create it meanwhile)."""
    if mlflow.get_experiment_by_name(experiment) is not None:
        return
    location = None
    if database is not None:
        location = (database.parent / "mlartifacts").resolve().as_uri()
    try:
        mlflow.create_experiment(experiment, artifact_location=location)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


#: What to do about a store a read-only process cannot use (the end of every such message).
_STORE_HINT = (
    "run `make train` first, or set MLFLOW_TRACKING_URI to the store that holds the model (a "
    "Bento runs in its own folder, so give it an absolute sqlite:////path/to/mlflow.db)"
)


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other URIs and in-memory SQLite."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file:"):
        # Nothing on disk, or a SQLite URI filename (which MLflow does not write): not checked.
        return None
    return Path(path)


def _check_readable_store(uri: str) -> None:
    """Raise unless a local store at ``uri`` can be read without MLflow writing to it."""
    database = _sqlite_path(uri)
    if database is not None:
        _check_sqlite_store(database)
        return
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        _check_file_store(Path(urllib.request.url2pathname(parsed.path)))
    elif parsed.scheme == "":
        _check_file_store(Path(uri))


def _check_sqlite_store(database: Path) -> None:
    """Refuse a SQLite store that MLflow would create, initialise or migrate."""
    path = database.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no MLflow store at {path}: {_STORE_HINT}")
    if path.stat().st_size == 0:
        raise FileNotFoundError(
            f"no MLflow store at {path}: the file is empty (0 bytes); {_STORE_HINT}"
        )
    tables, revision = _sqlite_tables_and_revision(path)
    if revision is None or not {"experiments", "registered_models"} <= tables:
        raise ValueError(
            f"{path} is not an MLflow store (a SQLite database without MLflow's tables); "
            f"{_STORE_HINT}"
        )
    # The check MLflow makes when it opens a store, made before its create-missing-tables step
    # can migrate a store written by another MLflow version.
    from mlflow.store.db.utils import _get_latest_schema_revision

    expected = _get_latest_schema_revision()
    if revision != expected:
        raise ValueError(
            f"the MLflow store at {path} has schema {revision}, MLflow {mlflow.__version__} "
            f"reads {expected}; scoring does not migrate a store: upgrade it where the model is "
            f"trained (back it up, then `mlflow db upgrade sqlite:///{path}`), or score with the "
            "MLflow version that wrote it"
        )


#: How long the store check waits for another process's write lock on the SQLite store (a
#: training run logging, ``mlflow ui``) before saying the store is locked; SQLite's default.
LOCK_WAIT_SECONDS = 5.0


class StoreLocked(ValueError):
    """The SQLite tracking store is locked by another process's write: retry later."""


def _sqlite_tables_and_revision(path: Path) -> tuple[set[str], str | None]:
    """The tables of a SQLite file and its MLflow (alembic) schema revision, read only."""
    # mode=ro: SQLite itself refuses to write, so looking cannot change the file.
    try:
        connection = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, timeout=LOCK_WAIT_SECONDS
        )
    except sqlite3.Error as err:
        raise ValueError(f"cannot open {path} read-only with SQLite: {err}") from err
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in rows}
        revision = None
        if "alembic_version" in tables:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    except sqlite3.OperationalError as err:
        # A lock is not a verdict on the file: "database is locked" (SQLITE_BUSY) means another
        # connection holds a write transaction, which ends; calling it "not an MLflow store"
        # sent people to re-train.
        if _is_lock_error(err):
            raise StoreLocked(
                f"the MLflow store {path} is locked by another process (SQLite: {err}; waited "
                f"{LOCK_WAIT_SECONDS:g} s), e.g. a training run or `mlflow ui` writing to it; "
                "retry when it has finished"
            ) from err
        raise ValueError(
            f"{path} is not an MLflow store (SQLite cannot read it: {err}); {_STORE_HINT}"
        ) from err
    except sqlite3.DatabaseError as err:
        raise ValueError(
            f"{path} is not an MLflow store (SQLite cannot read it: {err}); {_STORE_HINT}"
        ) from err
    finally:
        connection.close()
    return tables, revision


def _is_lock_error(err: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection holds a lock (busy or locked)."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(err) or "busy" in str(err)


def store_path(uri: str | None = None) -> Path | None:
    """The local file or folder of a tracking store (default :func:`tracking_uri`), resolved.

    A SQLite store's database file or a file store's folder; None for remote stores. Batch
    runs count it among their inputs, so that no output of theirs can replace it.
    """
    uri = uri or tracking_uri()
    database = _sqlite_path(uri)
    if database is not None:
        return database.resolve()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path)).resolve()
    if parsed.scheme == "":
        return Path(uri).resolve()
    return None


def _check_file_store(directory: Path) -> None:
    """Refuse a local directory store that is missing or empty, or a path that is a file."""
    path = directory.resolve()
    if path.is_file():
        raise ValueError(
            f"{path} is a file, not an MLflow store directory; a SQLite store is given as "
            f"sqlite:///{path}"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"no MLflow store at {path} (no such directory): {_STORE_HINT}")
    if not any(path.iterdir()):
        raise FileNotFoundError(
            f"no MLflow store at {path} (the directory is empty): {_STORE_HINT}"
        )


@contextmanager
def start_run(
    name: str, *, nested: bool = False, tags: dict[str, str] | None = None
) -> Iterator[str]:
    """Start an MLflow run and yield its id."""
    with mlflow.start_run(run_name=name, nested=nested, tags=tags) as run:
        yield run.info.run_id


def has_active_run() -> bool:
    """Whether an MLflow run is active (search logs trials only inside one)."""
    return mlflow.active_run() is not None


def log_params(params: dict[str, Any]) -> None:
    """Log params (values stringified, MLflow's limit of 6000 characters respected)."""
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def log_metrics(metrics: dict[str, float], prefix: str = "") -> None:
    """Log finite metrics, prefixed (``holdout.model.clv_gini``); NaN ones are skipped."""
    clean = {f"{prefix}{k}": float(v) for k, v in metrics.items() if pd.notna(v)}
    mlflow.log_metrics(clean)


def log_figure(figure: Any, name: str) -> None:
    """Save a matplotlib figure as a PNG artifact under ``plots/``."""
    mlflow.log_figure(figure, f"plots/{name}.png")


def log_table(frame: pd.DataFrame, name: str) -> None:
    """Log a small table as a CSV artifact under ``tables/``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.csv"
        frame.to_csv(path, index=True)
        mlflow.log_artifact(str(path), "tables")


def log_text(text: str, name: str) -> None:
    """Log a text artifact (e.g. a Markdown report) under the given file name."""
    mlflow.log_text(text, name)


def log_dict(data: dict[str, Any], name: str) -> None:
    """Log a dict as a JSON artifact."""
    mlflow.log_dict(data, name)


def set_tags(tags: dict[str, Any]) -> None:
    """Set tags on the active run."""
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def git_commit() -> str:
    """The project's git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def dataset_fingerprint(orders: pd.DataFrame, events: pd.DataFrame | None) -> dict[str, Any]:
    """Rows, customers, date range and a content hash of the validated inputs."""
    digest = hashlib.sha256()
    for frame in (orders, events):
        if frame is not None:
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return {
        "orders_rows": len(orders),
        "events_rows": 0 if events is None else len(events),
        "customers": int(orders["customer_id"].nunique()),
        "first_order": str(orders["ordered_at"].min()),
        "last_order": str(orders["ordered_at"].max()),
        "content_sha256": digest.hexdigest(),
    }


def dataset_name(orders_path: Path | str) -> str:
    """A short name of a training input for MLflow: its folder and file name."""
    text = str(orders_path).rstrip("/")
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if parts else text


#: Rows the logged training input's schema is inferred from (see :func:`log_dataset`).
SCHEMA_SAMPLE_ROWS = 10_000


def log_dataset(orders: pd.DataFrame, orders_path: Path | str, fingerprint: dict[str, Any]) -> None:
    """Log the validated orders as the run's training input (MLflow's dataset tracking).

    The digest is the content hash of :func:`dataset_fingerprint` (every row), so two runs on
    the same data show the same dataset in the MLflow UI whatever its size; only the schema
    and a profile are stored, never the rows.
    """
    # MLflow resolves no database URL as a source: a database input is kept as a tag.
    source: str | CodeDatasetSource = (
        CodeDatasetSource({"database": str(orders_path)})
        if is_database(orders_path)
        else str(orders_path)
    )
    name, digest = dataset_name(orders_path), str(fingerprint["content_sha256"])[:12]
    dataset = from_pandas(orders, source=source, name=name, digest=digest)
    # MLflow infers the schema from every value of every text column (161 s of a 1M-customer
    # training, bench/RESULTS.md). The validated inputs have fixed dtypes, so the first rows
    # give the same schema (a test checks it against MLflow's inference on every row).
    sample = from_pandas(orders.head(SCHEMA_SAMPLE_ROWS), source=source, name=name, digest=digest)
    dataset.schema = sample.schema  # MLflow caches the property; this is its value
    mlflow.log_input(dataset, context="training")


def describe_version(version: RegisteredVersion, description: str) -> None:
    """Set a registered version's description (what it was trained on, how it was judged)."""
    MlflowClient().update_model_version(version.name, version.version, description=description)


def _requirements() -> list[str]:
    """:data:`MODEL_REQUIREMENTS` pinned to the installed versions (no inference subprocess)."""
    out = []
    for name in MODEL_REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            # Another build of a package (e.g. xgboost instead of xgboost-cpu) provides it here.
            logger.warning("%s is not installed; the logged model does not pin it", name)
    return out


#: MLflow's model loading changes process-wide state: it puts a version's ``code/`` folder first
#: on ``sys.path``, and a models-from-code file hands its model over through a module global.
#: One load at a time (a service reloads in a worker thread while it answers).
_MODEL_LOADING = threading.Lock()


#: MLflow's switch for its download progress bars (documented in mlflow.environment_variables).
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Switch MLflow's download bars off for a block.

    Files are copied one by one, and a bar each would fill a service's log. Someone who set
    the variable gets what they set.
    """
    quiet = _PROGRESS_BAR not in os.environ
    if quiet:
        os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if quiet:
            os.environ.pop(_PROGRESS_BAR, None)


@contextmanager
def _loading_model() -> Iterator[None]:
    """Serialise MLflow model loads; give ``sys.path`` back as it was; no progress bar."""
    with _MODEL_LOADING, _no_progress_bars():
        path = list(sys.path)
        try:
            yield
        finally:
            # Here the project's modules are imported already (this module imports them), so the
            # version's copy of the code is not needed; left first on sys.path it would shadow
            # modules imported later with a snapshot, and grow with every reload.
            sys.path[:] = path


def run_artifacts(run_id: str, paths: Sequence[str]) -> dict[str, bytes]:
    """The bytes of each artifact of ``paths`` that the run has (missing ones left out).

    A run from before a figure existed simply lacks it; the caller shows what there is.
    """
    artifacts: dict[str, bytes] = {}
    client = MlflowClient()
    with _no_progress_bars(), tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            try:
                local = client.download_artifacts(run_id, path, tmp)
            except Exception as err:  # MLflow raises several types for a missing artifact
                logger.info("run %s has no %s (%s)", run_id, path, err)
                continue
            artifacts[path] = Path(local).read_bytes()
    return artifacts


def log_run_artifact(run_id: str, path: str | Path, folder: str) -> None:
    """Add a file to a finished run (e.g. the report to the run that trained the model)."""
    MlflowClient().log_artifact(run_id, str(path), folder)


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version and where its files are."""

    name: str
    version: str
    run_id: str
    model_uri: str


def log_and_register(
    serving: CustomerValueModel,
    evaluation: CustomerValueModel,
    example: pd.DataFrame,
    *,
    name: str = MODEL_NAME,
) -> RegisteredVersion:
    """Log both models as one pyfunc (signature + input example), register it, alias candidate.

    The pyfunc is logged as code (:mod:`training.pyfunc_model`), with the two saved models as
    artifacts, the project packages it imports as code paths and the third-party requirements
    pinned; it loads with ``mlflow.pyfunc.load_model`` without the project installed.

    Returns
    -------
    RegisteredVersion
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run (use start_run)")
    with tempfile.TemporaryDirectory() as tmp:
        serving_dir = serving.save(Path(tmp) / SERVING_DIR)
        evaluation_dir = evaluation.save(Path(tmp) / EVALUATION_DIR)
        signature = infer_signature(example, serving.predict(example))
        # MLflow runs the definition and loads the logged model to check the input example.
        with _loading_model():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_DEFINITION),
                artifacts={SERVING_DIR: str(serving_dir), EVALUATION_DIR: str(evaluation_dir)},
                code_paths=[str(path) for path in MODEL_CODE],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
            )
    version = mlflow.register_model(info.model_uri, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, CANDIDATE, version.version)
    client.set_model_version_tag(name, version.version, "run_id", run.info.run_id)
    return RegisteredVersion(name, str(version.version), run.info.run_id, info.model_uri)


def alias_version(alias: str, name: str = MODEL_NAME) -> RegisteredVersion | None:
    """The version an alias points to, or None when the alias is not set."""
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(name, str(mv.version), mv.run_id or "", f"models:/{name}/{mv.version}")


def set_alias(alias: str, version: str, name: str = MODEL_NAME) -> None:
    """Point ``alias`` at ``version``."""
    MlflowClient().set_registered_model_alias(name, alias, version)


def with_run(version: RegisteredVersion) -> RegisteredVersion:
    """Fill in the run id of a version known only by number."""
    try:
        mv = MlflowClient().get_model_version(version.name, version.version)
    except MlflowException as err:
        raise ValueError(f"{version.name} has no version {version.version!r}") from err
    return RegisteredVersion(version.name, str(mv.version), mv.run_id or "", version.model_uri)


def resolve_version(model_uri: str) -> RegisteredVersion:
    """The registered version (with its run) behind a ``models:/name@alias`` or ``/version`` URI.

    Its ``model_uri`` is pinned to the version (:func:`pinned_uri`), so that what is loaded
    next is what was resolved here even if the alias moves in between.
    """
    info = version_info(model_uri)
    return with_run(
        RegisteredVersion(
            info["model_name"], info["model_version"], "", pinned_uri(model_uri, info)
        )
    )


def run_tags(version: RegisteredVersion) -> dict[str, str]:
    """Tags of the run that produced a version."""
    if not version.run_id:
        return {}
    return dict(MlflowClient().get_run(version.run_id).data.tags)


def tag_version(version: RegisteredVersion, key: str, value: str) -> None:
    """Set a tag on a registered version (e.g. who forced a promotion)."""
    MlflowClient().set_model_version_tag(version.name, version.version, key, value)


def version_metrics(version: RegisteredVersion) -> dict[str, float]:
    """Metrics of the run that produced a version."""
    if not version.run_id:
        return {}
    return dict(MlflowClient().get_run(version.run_id).data.metrics)


def version_params(version: RegisteredVersion) -> dict[str, str]:
    """Parameters of the run that produced a version (``plan.holdout_cutoff``, ...)."""
    if not version.run_id:
        return {}
    return dict(MlflowClient().get_run(version.run_id).data.params)


def load_model(
    model_uri: str, which: str = SERVING_DIR, dst: str | Path | None = None
) -> CustomerValueModel:
    """Load one of a registered version's two models (``models:/customer-value@champion``).

    The version is loaded with ``mlflow.pyfunc.load_model``; the model comes from its python
    model (:class:`training.pyfunc_model.CustomerValuePyfunc`).

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI.
    which : {"serving", "evaluation"}
        The model that serves, or its evaluation twin.
    dst : path, optional
        Where to download the version; by default a temporary directory, removed once the
        model is in memory.

    Returns
    -------
    CustomerValueModel
    """
    if which not in (SERVING_DIR, EVALUATION_DIR):
        raise ValueError(f"which must be {SERVING_DIR!r} or {EVALUATION_DIR!r}; got {which!r}")
    if dst is not None:
        Path(dst).mkdir(parents=True, exist_ok=True)
    # Always a copy, even from a local store: loading in place, MLflow would write a
    # registered_model_meta file into the store's artifacts (and Python its bytecode caches).
    folder = nullcontext(str(dst)) if dst is not None else tempfile.TemporaryDirectory()
    with folder as local, _loading_model():
        loaded = mlflow.pyfunc.load_model(model_uri, dst_path=local)
        python_model = loaded.unwrap_python_model()
        get = getattr(python_model, "customer_value_model", None)
        if get is None:
            raise ValueError(
                f"{model_uri} is not a customer-value model: its python model is "
                f"{type(python_model).__name__}, expected the CustomerValuePyfunc of "
                "training/pyfunc_model.py (log it with `make train`)"
            )
        model = get(which)
    if not isinstance(model, CustomerValueModel):
        raise ValueError(
            f"{model_uri} gave a {type(model).__name__}, expected a CustomerValueModel"
        )
    return model


def open_model(
    model_uri: str, which: str = SERVING_DIR
) -> tuple[CustomerValueModel, dict[str, str]]:
    """Load the model behind ``model_uri`` together with the version that it is.

    An alias (``models:/customer-value@champion``) is resolved to a version once, and exactly
    that version (``models:/customer-value/<version>``) is loaded: a promotion that moves the
    alias meanwhile cannot make a run stamp its output with a version that did not score it
    (loading by the alias, then asking the alias for its version, could).

    Parameters
    ----------
    model_uri : str
        ``models:/name@alias``, ``models:/name/version``, or any other MLflow model URI (not
        in the registry: its version is :data:`UNREGISTERED`).
    which : {"serving", "evaluation"}
        The model that serves, or its evaluation twin (:func:`load_model`).

    Returns
    -------
    model : CustomerValueModel
    info : dict
        ``model_name`` and ``model_version`` of the version loaded.
    """
    info = version_info(model_uri)
    return load_model(pinned_uri(model_uri, info), which=which), info


def version_info(model_uri: str) -> dict[str, str]:
    """Name and version behind a ``models:/name@alias`` or ``models:/name/version`` URI."""
    client = MlflowClient()
    rest = model_uri.removeprefix("models:/")
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in rest:
            name, number = rest.split("/", 1)
            mv = client.get_model_version(name, number)
        else:
            return {"model_name": rest, "model_version": UNREGISTERED}
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        # A user's mistake (a model trained under another name, an alias never set): one
        # line naming what the store does hold, not MLflow's traceback.
        raise ValueError(
            f"{model_uri} is not in the model registry of {active_uri()} ({err.message}); "
            f"{_registered_names(client)}; train one with `make train` or pass --model-uri"
        ) from err
    return {"model_name": name, "model_version": str(mv.version)}


def _registered_names(client: MlflowClient, most: int = 10) -> str:
    """The registered models of the store and their aliases, in words, for an error message."""
    try:
        models = client.search_registered_models(max_results=most)
    except MlflowException:
        return "the registered models could not be listed"
    if not models:
        return "it holds no registered model"
    named = [
        f"{model.name} ({', '.join(f'@{a}' for a in sorted(model.aliases)) or 'no alias'})"
        for model in models
    ]
    return "it holds " + ", ".join(named)


def pinned_uri(model_uri: str, info: dict[str, str]) -> str:
    """``models:/name/version`` for the version :func:`version_info` resolved ``model_uri`` to.

    Loading by the pinned version keeps the model and the version reported together even if
    an alias moves in between; an unregistered URI is returned as it is.
    """
    if info["model_version"] == UNREGISTERED:
        return model_uri
    return f"models:/{info['model_name']}/{info['model_version']}"
