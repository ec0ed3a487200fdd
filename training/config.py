"""Training configuration: one frozen dataclass built from the command line."""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from features.arrow_memory import use_system_allocator
from features.database import database_input, is_database
from features.run_inputs import add_input_arguments, given_events
from training.model import ModelParams

DEMO_DIR = Path("data/demo")
#: The registered model (and MLflow experiment) of the demo store.
DEMO_MODEL_NAME = "customer-value"
#: What MLflow's registry accepts in a model name, kept to what reads well in a URI.
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
#: Longest model name made from a file (MLflow allows more; a URI stays readable).
MAX_NAME_LENGTH = 80


def model_name_for(orders: Path | str | None, name: str | None = None) -> str:
    """The registered model (and experiment) of one shop's data: one shop, one model.

    ``name`` when given (``--name``); the demo store's :data:`DEMO_MODEL_NAME` for the demo
    data (no orders file, or the demo's own); otherwise ``customer-value-`` and the orders
    file's folder and name (``transactions.csv`` in ``rfmr_retail_orders/`` gives
    ``customer-value-rfmr_retail_orders-transactions``), so a shop's file trained in the same
    checkout never becomes a version of the demo's model nor is judged against its champion.
    A database table gives the database's and the table's names
    (``sqlite:///shop.db?table=orders_eu``: ``customer-value-shop-orders_eu``), so two tables
    of one database are two models; a query gives ``query-`` and a hash of its text (name the
    model with ``--name`` rather than let an edit of the query start a new one). Training and
    scoring derive the same name from the same ``--orders``.

    Raises
    ------
    ValueError
        When ``name`` has characters other than letters, digits, ``.``, ``_`` and ``-``.
    """
    if name:
        if _NAME_CHARACTERS.search(name) or len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"--name {name!r}: expected letters, digits, '.', '_' or '-' "
                f"(at most {MAX_NAME_LENGTH} characters), e.g. 'customer-value-shop'"
            )
        return name
    if orders is None:
        return DEMO_MODEL_NAME
    if is_database(orders):
        return _database_model_name(str(orders))
    text = str(orders).rstrip("/")
    if "://" not in text and Path(text).resolve() == (DEMO_DIR / "orders.parquet").resolve():
        return DEMO_MODEL_NAME
    parts = [p for p in text.replace("\\", "/").split("/") if p and ":" not in p]
    stem = Path(parts[-1]).name.split(".")[0] if parts else "orders"
    words = [*parts[-2:-1], stem]
    slug = _NAME_CHARACTERS.sub("_", "-".join(words)).strip("._-") or "orders"
    return f"{DEMO_MODEL_NAME}-{slug}"[:MAX_NAME_LENGTH]


def _database_model_name(location: str) -> str:
    """:func:`model_name_for` of a database input: the database, then the table or query."""
    try:
        source = database_input(location)
    except ValueError:
        return f"{DEMO_MODEL_NAME}-database"  # the loader refuses it, naming why
    database = Path(source.url.database or source.url.host or "database").name.split(".")[0]
    if source.table is not None:
        what = source.table
    else:
        what = "query-" + hashlib.sha256((source.query or "").encode()).hexdigest()[:8]
    slug = _NAME_CHARACTERS.sub("_", f"{database}-{what}").strip("._-") or "database"
    return f"{DEMO_MODEL_NAME}-{slug}"[:MAX_NAME_LENGTH]


def champion_uri(name: str) -> str:
    """``models:/<name>@champion``: the model a shop's scoring uses by default."""
    return f"models:/{name}@champion"


@dataclass(frozen=True)
class FitSettings:
    """How the parts are fit; one per training run, logged with it.

    Parameters
    ----------
    window_days : int
        Short label window of the boosted parts (capped at the horizon).
    step_days : int
        Spacing of the window cutoffs.
    max_cutoffs : int
        At most this many window cutoffs (the latest), bounding time and memory.
    min_history_days : int
        The earliest window cutoff is at least this long after the first order.
    max_fit_rows : int
        Boosted parts fit on at most this many rows (a seeded sample of whole customers).
    time_budget : float
        An extra bound in seconds on the hyperparameter search (0 = none: the trials bound
        it, and the result does not depend on the machine's load).
    max_trials : int
        Trials of the hyperparameter search of the twin's parts (0 = default parameters).
    seed : int
        Seeds the search, the models, the samples and the holdout halves.
    level_origins : int
        Earlier origins at which the serving model's base total is replayed against what
        happened, beside the classical models', to choose the served level
        (:mod:`training.level`); each costs one more fit of the parts. 0: the stack's own
        level, unvalidated.
    params : ModelParams
        XGBoost defaults (the search starts from them).
    """

    # The cutoff plan (training.split.plan_cutoffs): training.readiness and TrainConfig take
    # these defaults from here.
    window_days: int = 90
    step_days: int = 14
    max_cutoffs: int = 26
    min_history_days: int = 60
    max_fit_rows: int = 400_000
    time_budget: float = 0.0
    max_trials: int = 0
    seed: int = 7
    level_origins: int = 2
    params: ModelParams = field(default_factory=ModelParams)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; logged to MLflow field by field.

    Parameters
    ----------
    orders, events : Path or None
        Input files. ``orders=None`` trains on the synthetic demo data (generated if absent).
    columns : str
        Column mapping ``canonical=yours,...`` for both files.
    horizon_days : int
        Label window: CLV and churn over ``[cutoff, cutoff + horizon)``.
    window_days : int
        Short label window the boosted parts learn from (see ``training.model``).
    step_days : int
        Spacing of the window cutoffs.
    max_train_cutoffs : int
        The most recent this-many window cutoffs are used.
    time_budget : float
        An extra bound in seconds on the hyperparameter search (0 = none, the default: a
        run is then reproducible to the digit, whatever the machine's load).
    max_trials : int
        Trials of the hyperparameter search (0 = no search, default parameters).
    seed : int
        Seeds the search, the model and the data split.
    level_origins : int
        Earlier origins that judge the served level (``FitSettings.level_origins``).
    refit : bool
        Fit the registered model on the history up to the data end after evaluation (else the
        evaluation model is registered); see README "What gets registered".
    strict : bool
        Fail on unusable input rows instead of quarantining them.
    force : bool
        Train even when the data fails a hard readiness threshold (``training.readiness``).
    demo_customers : int
        Customers in the generated demo data.
    output_dir : Path
        Where quarantine files and other run outputs go.
    spark : bool
        Read, validate and sample the history and build the window snapshots on Apache Spark
        (:mod:`training.spark_snapshots`; needs the spark extra).
    spark_master : str or None
        Spark master URL (None: spark-submit's, or ``local[*]``).
    sample_customers : int or None
        With ``spark``: train on a seeded sample of about this many whole customers (None:
        every customer).
    name : str
        The registered model and experiment (empty: :func:`model_name_for` the orders).
    """

    orders: Path | str | None = None
    events: Path | str | None = None
    columns: str = ""
    horizon_days: int = 365
    # The cutoff plan and the fit's defaults are FitSettings' (one source; the run logs them
    # under these names, max_train_cutoffs for FitSettings.max_cutoffs).
    window_days: int = FitSettings.window_days
    step_days: int = FitSettings.step_days
    max_train_cutoffs: int = FitSettings.max_cutoffs
    time_budget: float = FitSettings.time_budget
    max_trials: int = 4
    seed: int = FitSettings.seed
    level_origins: int = FitSettings.level_origins
    refit: bool = True
    strict: bool = False
    force: bool = False
    demo_customers: int = 50_000
    output_dir: Path = Path("models")
    spark: bool = False
    spark_master: str | None = None
    sample_customers: int | None = None
    name: str = ""

    @property
    def model_name(self) -> str:
        """The registered model this run's version joins (:func:`model_name_for`)."""
        return model_name_for(self.orders, self.name or None)

    def to_params(self) -> dict[str, Any]:
        """Flat dict for MLflow params."""
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}

    def fit_settings(self) -> FitSettings:
        """The part of the configuration the model fit depends on."""
        return FitSettings(
            window_days=self.window_days,
            step_days=self.step_days,
            max_cutoffs=self.max_train_cutoffs,
            time_budget=self.time_budget,
            max_trials=self.max_trials,
            seed=self.seed,
            level_origins=self.level_origins,
        )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from command-line flags (unknown flags are an error)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the CLV and churn models, evaluate against baselines on a time-based "
        "holdout, track in MLflow, register and promote.",
    )
    add_input_arguments(parser, orders_help="orders CSV/TSV/Parquet (default: demo data)")
    parser.add_argument("--horizon-days", type=positive_int, default=defaults.horizon_days)
    parser.add_argument(
        "--window-days",
        type=positive_int,
        default=defaults.window_days,
        help="short label window the boosted parts learn from (capped at the horizon)",
    )
    parser.add_argument("--step-days", type=positive_int, default=defaults.step_days)
    parser.add_argument(
        "--max-train-cutoffs", type=positive_int, default=defaults.max_train_cutoffs
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=defaults.time_budget,
        help="an extra bound in seconds on the hyperparameter search (default 0: none; a "
        "bound makes the model depend on the machine's load)",
    )
    parser.add_argument(
        "--max-trials",
        type=non_negative_int,
        default=defaults.max_trials,
        help="trials of the seeded hyperparameter search (0 skips it; default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--level-origins",
        type=non_negative_int,
        default=defaults.level_origins,
        help="earlier origins at which the served level's track record is measured and the "
        "level chosen (0: the stack's own level; default %(default)s)",
    )
    parser.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="register the evaluation model instead of fitting again up to the data end",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even below the data readiness hard thresholds (see make check-data)",
    )
    parser.add_argument("--demo-customers", type=positive_int, default=defaults.demo_customers)
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    parser.add_argument(
        "--spark",
        action="store_true",
        help="read the history and build the training snapshots on Apache Spark",
    )
    parser.add_argument("--spark-master", default=None, help="Spark master URL (with --spark)")
    parser.add_argument(
        "--sample-customers",
        type=positive_int,
        default=None,
        help="with --spark: train on a seeded sample of about this many whole customers",
    )
    add_name_argument(parser)
    args = parser.parse_args(argv)
    if (args.spark_master or args.sample_customers) and not args.spark:
        parser.error("--spark-master and --sample-customers need --spark")
    args.events = given_events(args.events)
    if args.events is not None and args.orders is None:
        parser.error("--events needs --orders (the demo data brings its own events)")
    if args.time_budget < 0:
        parser.error(f"--time-budget must be >= 0 seconds; got {args.time_budget}")
    try:
        model_name_for(args.orders, args.name or None)
    except ValueError as err:
        parser.error(str(err))
    return TrainConfig(**vars(args))


def _is_uri(location: str | Path) -> bool:
    """A ``redis://`` store or an ``s3a://`` input: not a local path, nothing to compare."""
    return "://" in str(location)


def _relation(a: Path, b: Path) -> str | None:
    """How two local paths overlap: ``same``, ``inside`` (a in b), ``contains`` (b in a), or None.

    Compared resolved (``..``, relative paths and symlinks followed as far as the path exists)
    and, when both exist, by device and inode, so a hard link to a file is that file.
    """
    ra, rb = a.resolve(), b.resolve()
    if ra == rb:
        return "same"
    try:
        if os.path.samefile(ra, rb):
            return "same"
    except OSError:
        pass  # one of them does not exist yet: its resolved path is all there is to compare
    if rb in ra.parents:
        return "inside"
    if ra in rb.parents:
        return "contains"
    return None


def check_run_paths(
    inputs: Mapping[str, str | Path | None], outputs: Mapping[str, str | Path | None]
) -> None:
    """Refuse a run one of whose outputs is one of its inputs or another of its outputs.

    Called by every command that writes files before it writes anything: an ``--out`` equal to
    the orders file would replace the orders with the scores, an ``--features-out`` equal to
    ``--out`` would leave only one of the two, a ``--store`` equal to an input would turn it
    into a SQLite file, and each of these used to succeed.

    Two paths clash when they are the same file (resolved, through symlinks and, where both
    exist, hard links), or when one is inside the other: an output inside an input folder (a
    Parquet folder) would be read as one of its parts by the next run, and an output folder
    (a Spark dataset, replaced whole) would delete an input or output inside it.

    Parameters
    ----------
    inputs, outputs : mapping of str to path
        What the run reads and what it writes, each under the name its user knows it by: a flag
        (``--orders``) or a file derived from one (``the rejected list (from --out)``). None
        (not used by this run) and URIs (``redis://``, ``s3a://``) are left out.

    Raises
    ------
    ValueError
        Naming the two flags and the path.
    """
    ins = [(n, Path(p)) for n, p in inputs.items() if p is not None and not _is_uri(p)]
    outs = [(n, Path(p)) for n, p in outputs.items() if p is not None and not _is_uri(p)]
    for i, (name, path) in enumerate(outs):
        for other, other_path in ins:
            how = _relation(path, other_path)
            if how == "same":
                raise ValueError(
                    f"{name} {path} is the input {other} ({other_path}): writing it would "
                    "replace the input; expected an output path that is none of the run's inputs"
                )
            if how == "inside":
                raise ValueError(
                    f"{name} {path} is inside the input folder {other} ({other_path}): a later "
                    "read of that folder would take it for a part of the input; expected "
                    "outputs outside the input folders"
                )
            if how == "contains":
                raise ValueError(
                    f"{name} {path} would be written as a folder holding the input {other} "
                    f"({other_path}), which would be deleted; expected an output path that "
                    "does not contain the run's inputs"
                )
        for other, other_path in outs[:i]:
            how = _relation(path, other_path)
            if how is not None:
                where = "the same path as" if how == "same" else "nested with"
                raise ValueError(
                    f"{name} {path} is {where} {other} ({other_path}): one output would "
                    "overwrite the other; expected a separate path for each output of a run"
                )


#: Exit code of a command stopped by a bad input or flag (the user's to fix).
EXIT_BAD_INPUT = 2
#: Exit code of a command stopped by its machine: a full disk, a read-only or forbidden path.
EXIT_ENVIRONMENT = 1

#: What to do when writing failed, by errno.
_OS_ADVICE = {
    errno.ENOSPC: "free space on that disk, or write the outputs elsewhere (--out, "
    "--features-out, --store)",
    errno.EDQUOT: "free space within your quota, or write the outputs elsewhere",
    errno.EROFS: "the file system is mounted read-only; write the outputs elsewhere, or "
    "remount it read-write",
    errno.EACCES: "this user may not use that path; change its permissions or use another path",
    errno.EPERM: "this user may not use that path; change its permissions or use another path",
}
#: SQLite's result code of a write to a database it can only read.
_SQLITE_READONLY = 8


def _chain(err: BaseException) -> list[BaseException]:
    """An error and the errors it came from (``raise ... from``, SQLAlchemy's ``orig``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        todo += [
            current.__cause__,
            current.__context__,
            orig if isinstance(orig, BaseException) else None,
        ]
    return seen


def environment_error(err: BaseException) -> str | None:
    """One line saying what about the machine stopped a command, and what to do; else None.

    A full disk, a read-only file system, a path without permission (any :class:`OSError`
    of those, named by its path) and a tracking store SQLite cannot write. These ended in
    tracebacks that named no file.
    """
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in _OS_ADVICE:
            where = f" ({cause.filename})" if cause.filename else ""
            return f"{os.strerror(cause.errno)}{where}: {_OS_ADVICE[cause.errno]}"
        if isinstance(cause, sqlite3.Error) and (
            getattr(cause, "sqlite_errorcode", 0) & 0xFF == _SQLITE_READONLY
            or "readonly database" in str(cause)
        ):
            from training.tracking import active_uri  # MLflow only once a store failed

            return (
                f"the MLflow tracking store {active_uri()} cannot be written (SQLite: "
                f"{cause}); make the file and its folder writable for this user, or set "
                "MLFLOW_TRACKING_URI to a writable store"
            )
    return None


def run_entrypoint(work: Callable[[], object]) -> int:
    """Run a command's ``work`` with logging set up; errors are one line and a code, not a trace.

    Shared by the commands (``training.train``, ``training.backtest``, ``serving.batch``,
    ``serving.spark``, ``serving.impact``, ``serving.report``): the logging of an
    entrypoint, the libraries that log too much held at WARNING, and errors printed as one
    line: those that name what was wrong (:class:`ValueError`, :class:`FileNotFoundError`),
    exit code :data:`EXIT_BAD_INPUT`; a full disk, a read-only or forbidden path or tracking
    store (:func:`environment_error`), exit code :data:`EXIT_ENVIRONMENT`.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "pymc", "pytensor", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow logs every database error with its traceback, then raises it again: the error
    # still reaches the handler below (one line, or the traceback if it is not ours to name).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    use_system_allocator()
    try:
        work()
    except Exception as err:
        message = environment_error(err)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(err, ValueError | FileNotFoundError):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    return 0


def positive_int(text: str) -> int:
    """Parse a command-line whole number > 0 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from err
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse a command-line whole number >= 0 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {value}")
    return value


def add_name_argument(parser: argparse.ArgumentParser) -> None:
    """``--name``: the registered model of the shop (default: derived from ``--orders``)."""
    parser.add_argument(
        "--name",
        default="",
        help="registered model and experiment name (default: customer-value-<folder>-<file> "
        "of --orders; customer-value for the demo data)",
    )
