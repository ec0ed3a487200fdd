"""MLflow tracking and registry: the only module that imports mlflow."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from training.model import CustomerValueModel

logger = logging.getLogger(__name__)

EXPERIMENT = "customer-value"
MODEL_NAME = "customer-value"
CHAMPION = "champion"
CANDIDATE = "candidate"
#: Inside a registered version: the model that serves (refit on every complete cutoff) and its
#: evaluation twin (same recipe, trained only on cutoffs before the holdout), which the
#: promotion gate scores so that every version is judged on data it never saw.
SERVING_DIR = "serving"
EVALUATION_DIR = "evaluation"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The version reported for a model URI that is not in the registry.
UNREGISTERED = "unregistered"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store at ``models/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    path = PROJECT_ROOT / "models" / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def configure(
    uri: str | None = None, experiment: str = EXPERIMENT, *, read_only: bool = False
) -> str:
    """Point MLflow at ``uri`` (default :func:`tracking_uri`) and the experiment; return the URI.

    A new experiment on a local store keeps its artifacts under ``models/mlartifacts``. With
    ``read_only`` (scoring, which only loads registered models) nothing is created or written:
    only the tracking and registry URIs are set, and a local SQLite store must already exist
    (``FileNotFoundError`` otherwise).
    """
    uri = uri or tracking_uri()
    if read_only and uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.is_file():
            # MLflow would create an empty store here (and two server workers starting at once
            # would race to migrate it), then fail later with "model not found".
            raise FileNotFoundError(
                f"no MLflow store at {database.resolve()}: run `make train` first, or set "
                "MLFLOW_TRACKING_URI to the store that holds the model (a Bento runs in its own "
                "folder, so give it an absolute sqlite:////path/to/mlflow.db)"
            )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if read_only:
        return uri
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///")).parent
            location = (store / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return uri


class CustomerValuePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: feature frame in, ``clv`` and ``p_churn`` out."""

    def load_context(self, context: Any) -> None:
        """Load the serving model from the logged artifacts."""
        self.model = CustomerValueModel.load(context.artifacts[SERVING_DIR])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Predict ``clv`` and ``p_churn`` for a feature frame."""
        return self.model.predict(model_input)


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


def _requirements() -> list[str]:
    """Pinned requirements of the packaged model (explicit: no slow inference subprocess)."""
    names = ["customer-value", "xgboost-cpu", "pandas", "numpy", "scikit-learn", "mlflow"]
    out = []
    for name in names:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        out.append(f"{name}=={version}")
    return out


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
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=CustomerValuePyfunc(),
            artifacts={SERVING_DIR: str(serving_dir), EVALUATION_DIR: str(evaluation_dir)},
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


def load_model(
    model_uri: str, which: str = SERVING_DIR, dst: str | Path | None = None
) -> CustomerValueModel:
    """Download a registered model (``models:/customer-value@champion``) and load one of its two.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI.
    which : {"serving", "evaluation"}
        The model that serves, or its evaluation twin.
    dst : path, optional
        Where to download; a temp directory by default.
    """
    if which not in (SERVING_DIR, EVALUATION_DIR):
        raise ValueError(f"which must be {SERVING_DIR!r} or {EVALUATION_DIR!r}; got {which!r}")
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dst) if dst else None))
    candidates = list(local.glob(f"**/artifacts/{which}/model.json"))
    if not candidates:
        raise FileNotFoundError(
            f"{model_uri} has no {which!r} model (looked under {local}); was it logged by "
            "`make train`?"
        )
    return CustomerValueModel.load(candidates[0].parent)


def version_info(model_uri: str) -> dict[str, str]:
    """Name and version behind a ``models:/name@alias`` or ``models:/name/version`` URI."""
    client = MlflowClient()
    rest = model_uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    elif "/" in rest:
        name, number = rest.split("/", 1)
        mv = client.get_model_version(name, number)
    else:
        return {"model_name": rest, "model_version": UNREGISTERED}
    return {"model_name": name, "model_version": str(mv.version)}


def pinned_uri(model_uri: str, info: dict[str, str]) -> str:
    """``models:/name/version`` for the version :func:`version_info` resolved ``model_uri`` to.

    Loading by the pinned version keeps the model and the version reported together even if
    an alias moves in between; an unregistered URI is returned as it is.
    """
    if info["model_version"] == UNREGISTERED:
        return model_uri
    return f"models:/{info['model_name']}/{info['model_version']}"
