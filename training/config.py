"""Training configuration: one frozen dataclass built from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from features.files import input_location
from training.model import ModelParams

DEMO_DIR = Path("data/demo")


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
    params : ModelParams
        XGBoost defaults (the search starts from them).
    """

    window_days: int = 90
    step_days: int = 14
    max_cutoffs: int = 26
    min_history_days: int = 60
    max_fit_rows: int = 400_000
    time_budget: float = 0.0
    max_trials: int = 0
    seed: int = 7
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
    refit : bool
        Fit the registered model on the history up to the data end after evaluation (else the
        evaluation model is registered); see README "What gets registered".
    strict : bool
        Fail on unusable input rows instead of quarantining them.
    force : bool
        Train even when the data fails a hard readiness threshold (``features.readiness``).
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
    """

    orders: Path | str | None = None
    events: Path | str | None = None
    columns: str = ""
    horizon_days: int = 365
    window_days: int = 90
    step_days: int = 14
    max_train_cutoffs: int = 26
    time_budget: float = 0.0
    max_trials: int = 4
    seed: int = 7
    refit: bool = True
    strict: bool = False
    force: bool = False
    demo_customers: int = 50_000
    output_dir: Path = Path("models")
    spark: bool = False
    spark_master: str | None = None
    sample_customers: int | None = None

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
        )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from command-line flags (unknown flags are an error)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the CLV and churn models, evaluate against baselines on a time-based "
        "holdout, track in MLflow, register and promote.",
    )
    parser.add_argument(
        "--orders", type=input_location, help="orders CSV/Parquet (default: demo data)"
    )
    parser.add_argument(
        "--events", type=input_location, help="service events CSV/Parquet (optional)"
    )
    parser.add_argument(
        "--columns", default="", help="column mapping, e.g. customer_id=cust,ordered_at=date"
    )
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
        "--no-refit",
        dest="refit",
        action="store_false",
        help="register the evaluation model instead of fitting again up to the data end",
    )
    parser.add_argument("--strict", action="store_true", help="fail on any unusable input row")
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
    args = parser.parse_args(argv)
    if (args.spark_master or args.sample_customers) and not args.spark:
        parser.error("--spark-master and --sample-customers need --spark")
    if args.events is not None and args.orders is None:
        parser.error("--events needs --orders (the demo data brings its own events)")
    if args.time_budget < 0:
        parser.error(f"--time-budget must be >= 0 seconds; got {args.time_budget}")
    return TrainConfig(**vars(args))


def run_entrypoint(work: Callable[[], object]) -> int:
    """Run a command's ``work`` with logging set up; a bad input is exit code 2, not a trace.

    Shared by the commands (``training.train``, ``training.backtest``, ``serving.batch``,
    ``serving.impact``): the logging
    of an entrypoint, the libraries that log too much held at WARNING, and errors that name
    what was wrong (:class:`ValueError`, :class:`FileNotFoundError`) printed as one line.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "pymc", "pytensor", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        work()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
