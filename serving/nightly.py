"""The nightly job: check the data, score the whole base, keep and judge the runs, report.

``python -m serving.nightly`` (``make nightly``) runs, in order and under one lock:

1. ``check-data``: the orders and events are loaded and judged as ``make check-data`` judges
   them (:mod:`training.readiness`). Files that cannot be read, or a verdict of *not enough
   data*, stop the night: a truncated export looks like that, and scoring it would replace
   good answers with bad ones;
2. ``score``: the whole base at the data end, as ``make score`` (scores, online feature table,
   lookup store, published together; :mod:`serving.batch.base_scoring`), and, with
   ``--scores-table``, the same scores swapped into a database table with the run's stamp
   (:mod:`serving.batch.score_tables`) for the CRM to read;
3. ``archive``: the run's answers into the run archive (:mod:`serving.insight.run_archive`);
4. ``monitor``: earlier runs against what customers did, drift since the last run
   (:mod:`serving.insight.monitor`), logged to MLflow;
5. ``report``: the HTML report with "How last runs did" (:mod:`serving.insight.report`).

It prints one line per step (status, seconds, what it did). A failed step stops the night,
the later steps are skipped and the exit status names the failed step
(:data:`STEP_EXIT`); with every step done, the status is 0, or
:data:`serving.insight.monitor.EXIT_RETRAIN` when the monitor recommends retraining. A
second run while one holds the lock file exits at once with :data:`EXIT_LOCKED`, having done
nothing. The lock is an ``fcntl`` lock on an open file: the system releases it when the
holder ends, however it ends, so a killed night never blocks the next one.

The run is archived here, after the run is published, rather than inside batch scoring: the
archive keeps the live base's runs, and batch scoring also serves ad-hoc runs (another file,
another ``--out``) that are no run of the live base; ``make score`` archives its default run
with :mod:`serving.insight.run_archive`'s command, so both ways of scoring the live base keep it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from features.run_inputs import load_run_inputs
from serving.base_inputs import (
    DEFAULT_MODEL_URI,
    DEMO_EVENTS,
    DEMO_ORDERS,
    add_input_arguments,
    chosen_events,
    chosen_model_uri,
)
from serving.batch.base_scoring import BatchConfig
from serving.batch.base_scoring import run as score_base
from serving.batch.score_tables import (
    ScoreTable,
    check_not_an_input,
    score_table,
    stage_score_table,
)
from serving.insight import report
from serving.insight.monitor import EXIT_RETRAIN, RETRAIN_ERROR_PCT, MonitorConfig
from serving.insight.monitor import run as run_monitor
from serving.insight.run_archive import DEFAULT_RUNS, archive_run, archived_runs
from serving.lookup_store import STORE_NAME
from serving.run_files import DEFAULT_FEATURES_OUT, DEFAULT_OUT, RunStamp
from training import tracking
from training.config import environment_error, positive_int
from training.readiness import NOT_ENOUGH_DATA, assess

logger = logging.getLogger(__name__)

#: The lock file two nightly runs share (beside the tracking store and the scores).
DEFAULT_LOCK = Path("models/nightly.lock")
#: The steps, in order.
STEPS: tuple[str, ...] = ("check-data", "score", "archive", "monitor", "report")
#: Exit status of a night that failed at each step (above the commands' own 1-4).
STEP_EXIT: dict[str, int] = {name: 10 + i for i, name in enumerate(STEPS)}
#: Exit status of a run refused because another holds the lock (sysexits' EX_TEMPFAIL: try
#: again later).
EXIT_LOCKED = 75


@dataclass(frozen=True)
class NightlyConfig:
    """What the night reads, where it writes, and the lock it holds.

    The online feature table and the embedded lookup store are written beside ``out``
    (``online_features.parquet``, ``online_store.sqlite``) unless ``store`` names another
    store (a SQLite path or ``redis://...``); the report is ``report_out``. ``scores_table``
    (a database URL with ``?table=``, as ``serving.batch --out`` takes) also receives the
    scores.
    """

    orders: Path | str = DEMO_ORDERS
    events: Path | str | None = DEMO_EVENTS
    columns: str = ""
    cutoff: str = "latest"
    model_uri: str = DEFAULT_MODEL_URI
    out: Path = DEFAULT_OUT
    store: str | None = None
    scores_table: str | None = None
    runs_dir: Path = DEFAULT_RUNS
    report_out: Path = report.DEFAULT_REPORT
    lock: Path = DEFAULT_LOCK
    horizon_days: int = 365
    threshold_pct: float = RETRAIN_ERROR_PCT

    @property
    def features_out(self) -> Path:
        """The online feature table the night writes (beside the scores)."""
        return self.out.with_name(DEFAULT_FEATURES_OUT.name)


@dataclass
class Step:
    """One step's outcome: ``ok``, ``failed`` or ``skipped``, how long, and what it did."""

    name: str
    status: str = "skipped"
    seconds: float = 0.0
    summary: str = ""

    def line(self) -> str:
        """The step's one line in the night's log."""
        return f"{self.name:<10} {self.status:<7} {self.seconds:7.1f} s  {self.summary}".rstrip()


@dataclass
class Night:
    """The night's steps and its exit status."""

    steps: list[Step]
    exit_status: int = 0
    retrain: bool = False

    def step(self, name: str) -> Step:
        """A step by name."""
        return next(s for s in self.steps if s.name == name)


class NightlyLocked(RuntimeError):
    """Another nightly run holds the lock."""


@contextlib.contextmanager
def nightly_lock(path: Path) -> Iterator[None]:
    """Hold the nightly lock (``fcntl.flock`` on ``path``) for the ``with`` block.

    The file says who holds it (process id and start time, for the refusal's message); it is
    never removed, as removing a lock file lets two runs lock two different files.

    Raises
    ------
    NightlyLocked
        When another process holds it; nothing else is done.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "holder unknown"
            raise NightlyLocked(
                f"another nightly run holds the lock {path} ({holder}); this run did nothing "
                "and exits: let that one finish (or run this one later)"
            ) from err
        handle.seek(0)
        handle.truncate()
        # When the holder started: infrastructure for the refusal's message, no feature reads it.
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"pid {os.getpid()} since {started}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- the steps -------------------------------------------------------------------------------


def check_data(config: NightlyConfig) -> str:
    """Load and judge the inputs; refuse *not enough data* (ValueError naming the failures)."""
    inputs = load_run_inputs(config.orders, config.events, columns=config.columns)
    events = inputs.events
    readiness = assess(
        inputs.orders.frame,
        events.frame if events is not None else None,
        horizon_days=config.horizon_days,
        quarantined=inputs.quarantined,
        problems=inputs.orders.problems + (events.problems if events is not None else []),
    )
    counts = f"{inputs.orders.rows_loaded:,} orders, {inputs.orders.rows_quarantined:,} quarantined"
    if readiness.verdict == NOT_ENOUGH_DATA:
        raise ValueError(
            f"{config.orders}: not enough data ({counts}): " + "; ".join(readiness.failures)
        )
    caveats = f" ({len(readiness.caveats)} caveat(s))" if readiness.caveats else ""
    return f"{readiness.verdict}{caveats}; {counts}"


def score(config: NightlyConfig) -> str:
    """Score the whole base as ``make score`` does (scores, feature table, lookup store)."""
    target = None
    if config.scores_table:
        # Refused before anything is scored: a bad table must not leave the files replaced.
        target = score_table(config.scores_table)
        check_not_an_input(target, {"--orders": config.orders, "--events": config.events})
    tracking.configure(read_only=True)
    summary = score_base(
        BatchConfig(
            orders=config.orders,
            events=config.events,
            columns=config.columns,
            cutoff=config.cutoff,
            out=config.out,
            features_out=config.features_out,
            store=config.store or str(config.out.with_name(STORE_NAME)),
            model_uri=config.model_uri,
        )
    )
    rejected = f", {summary.rejected_total:,} rejected" if summary.rejected_total else ""
    said = (
        f"{summary.scored:,} customers{rejected} at {summary.cutoff:%Y-%m-%d} with "
        f"{summary.model_name} v{summary.model_version}; total {summary.total_clv:,.0f}"
    )
    if target is not None:
        said += f"; {export_scores(config.out, target)}"
    return said


#: Rows read from the scores file per insert batch of the database export.
_EXPORT_ROWS = 100_000


def export_scores(out: Path, target: ScoreTable) -> str:
    """Swap the published scores file ``out`` into ``target`` with its stamp.

    The files are published first (the service and the archive read them); a database that
    fails here keeps its previous run, and the step fails saying so.
    """
    scores = pq.ParquetFile(out)
    stamp = RunStamp.from_metadata(scores.schema_arrow.metadata)
    with stage_score_table(target, stamp) as staged:
        staged.write(batch.to_pandas() for batch in scores.iter_batches(batch_size=_EXPORT_ROWS))
        staged.publish()
    return f"{staged.rows:,} rows to {target}"


def archive(config: NightlyConfig) -> str:
    """Keep the published run's answers (and features) in the run archive."""
    run = archive_run(config.out, config.runs_dir, features=config.features_out)
    kept = len(archived_runs(config.runs_dir))
    return f"run {run.run_id[:12]} kept in {config.runs_dir} ({kept} runs)"


def monitor(config: NightlyConfig, night: Night) -> str:
    """Judge the archived runs, log it to MLflow; note a retrain recommendation on ``night``."""
    result = run_monitor(
        MonitorConfig(
            runs_dir=config.runs_dir,
            scores=None,  # archived by the step before
            orders=config.orders,
            columns=config.columns,
            threshold_pct=config.threshold_pct,
        )
    )
    night.retrain = result.retrain
    judged = len(result.track_record)
    complete = int(result.track_record["complete"].sum()) if judged else 0
    return f"{judged} runs judged ({complete} complete); {result.verdict()}"


def write_report(config: NightlyConfig) -> str:
    """The HTML report on the night's scores, with how earlier runs did."""
    argv = [
        "--scores",
        str(config.out),
        "--out",
        str(config.report_out),
        "--runs",
        str(config.runs_dir),
        "--orders",
        str(config.orders),
        "--events",
        str(config.events) if config.events is not None else "none",
    ]
    if config.columns:
        argv += ["--columns", config.columns]
    # The report's own lines (where it wrote, where it logged) go to the log: the night
    # prints one line per step.
    with contextlib.redirect_stdout(io.StringIO()) as said:
        status = report.main(argv)
    logger.info("report: %s", said.getvalue().strip())
    if status != 0:
        raise RuntimeError(f"the report ended with status {status}")
    return str(config.report_out)


def _one_line(err: BaseException) -> str:
    """An error as one line: the environment's advice, else its message's first line."""
    message = environment_error(err) or str(err) or type(err).__name__
    return message.splitlines()[0]


def run(config: NightlyConfig, echo: Callable[[str], None] = print) -> Night:
    """Run the night's steps under the lock; ``echo`` gets each step's line as it ends.

    Raises
    ------
    NightlyLocked
        When another nightly run holds the lock (nothing was done).
    """
    night = Night([Step(name) for name in STEPS])
    work: dict[str, Callable[[], str]] = {
        "check-data": lambda: check_data(config),
        "score": lambda: score(config),
        "archive": lambda: archive(config),
        "monitor": lambda: monitor(config, night),
        "report": lambda: write_report(config),
    }
    with nightly_lock(config.lock):
        for step in night.steps:
            if night.exit_status:
                echo(step.line())
                continue
            tick = time.perf_counter()
            try:
                step.summary = work[step.name]()
                step.status = "ok"
            except Exception as err:
                # The night goes on to say what failed and exit with its status; anything
                # not an input or environment error keeps its traceback in the log.
                if not isinstance(err, ValueError | FileNotFoundError | OSError):
                    logger.exception("nightly step %s failed", step.name)
                step.status = "failed"
                step.summary = _one_line(err)
                night.exit_status = STEP_EXIT[step.name]
            step.seconds = time.perf_counter() - tick
            echo(step.line())
    if not night.exit_status and night.retrain:
        night.exit_status = EXIT_RETRAIN
    return night


def verdict(night: Night) -> str:
    """The night's last line."""
    failed = [s.name for s in night.steps if s.status == "failed"]
    if failed:
        return f"nightly: failed at {failed[0]} (exit status {night.exit_status})"
    if night.retrain:
        return f"nightly: done; retrain recommended (exit status {night.exit_status})"
    return "nightly: done"


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> NightlyConfig:
    """Build a :class:`NightlyConfig` from flags (defaults: the demo store, the live files)."""
    d = NightlyConfig()
    parser = argparse.ArgumentParser(
        prog="python -m serving.nightly",
        description="Check the data, score the whole base, keep and judge the runs, write the "
        f"report, under a lock. Exit status: 0 done, {EXIT_RETRAIN} done and retrain "
        f"recommended, {', '.join(f'{v} {k} failed' for k, v in STEP_EXIT.items())}, "
        f"{EXIT_LOCKED} another run holds the lock.",
    )
    add_input_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=d.out,
        help="the scores (Parquet); the online feature table and lookup store go beside it",
    )
    parser.add_argument("--store", default=None, help="lookup store (default: beside --out)")
    parser.add_argument(
        "--scores-table",
        default=None,
        help="also swap the scores into this database table, with the run's stamp in "
        "<table>_runs (sqlite:///crm.db?table=customer_scores, postgresql://user@host/crm?"
        "table=customer_scores)",
    )
    parser.add_argument("--runs", type=Path, default=d.runs_dir, help="the run archive")
    parser.add_argument("--report-out", type=Path, default=d.report_out)
    parser.add_argument("--lock", type=Path, default=d.lock, help="the lock file")
    parser.add_argument(
        "--horizon-days",
        type=positive_int,
        default=d.horizon_days,
        help="the horizon check-data judges the data for (as make check-data)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=d.threshold_pct,
        help="revenue error, %% either way, past which the monitor recommends retraining",
    )
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".parquet":
        parser.error(
            f"--out must be a .parquet file (the run archive reads its stamp); got {args.out}"
        )
    return NightlyConfig(
        orders=args.orders,
        events=chosen_events(args),
        columns=args.columns,
        cutoff=args.cutoff,
        model_uri=chosen_model_uri(args),
        out=args.out,
        store=args.store,
        scores_table=args.scores_table,
        runs_dir=args.runs,
        report_out=args.report_out,
        lock=args.lock,
        horizon_days=args.horizon_days,
        threshold_pct=args.threshold,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``make nightly``)."""
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        night = run(config, echo=lambda line: print(line, flush=True))
    except NightlyLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    print(verdict(night), flush=True)
    return night.exit_status


if __name__ == "__main__":
    sys.exit(main())
