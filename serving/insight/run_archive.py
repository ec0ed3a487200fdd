"""The run archive: every batch run's answers, kept compactly with the run's stamp.

The scores file and the online feature table are replaced by each batch run; the monitor
(:mod:`serving.insight.monitor`) needs the answers of earlier runs to see whether they came
true. Each run is kept as one small Parquet file under ``models/runs/`` (the default,
:data:`DEFAULT_RUNS`), named by its cutoff and run id:

- ``customer_id``, ``clv``, ``p_churn``, ``expected_orders`` (float32: seven significant
  digits, far below what the monitor measures, at half the bytes), ``value_segment`` and
  ``risk_segment`` (dictionary-encoded text);
- the run's :class:`serving.run_files.RunStamp` in the Parquet footer, with the horizon and
  when it was archived.

The features the run scored with are kept too, for the newest :data:`FEATURES_KEPT` runs
only: drift compares a run's inputs with the run before it, and a feature table per night is
the bulk of the bytes (about 40 features a customer against 3 answers).

The archive is taken from the published scores file (``archive_run``), so it holds exactly
what the run published, and is idempotent: a run already archived is not written again.
``python -m serving.insight.run_archive`` archives the live scores (``make score`` runs it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.history import as_cutoff
from serving.run_files import DEFAULT_FEATURES_OUT, DEFAULT_OUT, META_PREFIX, RunStamp, atomic_file
from training.config import run_entrypoint

logger = logging.getLogger(__name__)

#: Where runs are kept by default: beside the scores' folder (``models/runs``).
DEFAULT_RUNS = DEFAULT_OUT.parent.parent / "runs"
#: The answers a run is judged on, as numbers (stored float32).
NUMBER_COLUMNS: tuple[str, ...] = ("clv", "p_churn", "expected_orders")
#: The tiers whose changes the monitor counts (stored as dictionary-encoded text).
SEGMENT_COLUMNS: tuple[str, ...] = ("value_segment", "risk_segment")
ARCHIVED_COLUMNS: tuple[str, ...] = ("customer_id", *NUMBER_COLUMNS, *SEGMENT_COLUMNS)
#: How many of the newest runs keep their features (drift needs the latest and the one before).
FEATURES_KEPT = 2
#: Footer keys the archive adds beside the run's stamp.
HORIZON_KEY = f"{META_PREFIX}archive.horizon_days".encode()
CUSTOMERS_KEY = f"{META_PREFIX}archive.customers".encode()
_PREFIX = "run-"
_FEATURES_SUFFIX = ".features.parquet"


@dataclass(frozen=True)
class ArchivedRun:
    """One archived batch run.

    Attributes
    ----------
    path : pathlib.Path
        Its answers file.
    stamp : RunStamp
        The batch run's stamp (run id, cutoff, model, orders file).
    horizon_days : int
        The model's horizon (0 for a run that scored nobody).
    customers : int
        Customers scored.
    """

    path: Path
    stamp: RunStamp
    horizon_days: int
    customers: int

    @property
    def run_id(self) -> str:
        """The batch run's id."""
        return self.stamp.run_id

    @property
    def cutoff(self) -> pd.Timestamp:
        """The run's cutoff."""
        return as_cutoff(self.stamp.cutoff)

    @property
    def features_path(self) -> Path:
        """Where the run's features are kept (only for the newest :data:`FEATURES_KEPT`)."""
        return self.path.with_name(self.path.name.removesuffix(".parquet") + _FEATURES_SUFFIX)

    def answers(self) -> pd.DataFrame:
        """The run's answers indexed by ``customer_id``, numbers as float64."""
        frame = pd.read_parquet(self.path).set_index("customer_id")
        for column in NUMBER_COLUMNS:
            frame[column] = frame[column].astype("float64")
        for column in SEGMENT_COLUMNS:
            frame[column] = frame[column].astype("str")
        return frame

    def features(self) -> pd.DataFrame | None:
        """The features the run scored with, indexed by ``customer_id``; None if not kept."""
        if not self.features_path.is_file():
            return None
        return pd.read_parquet(self.features_path).set_index("customer_id").astype("float64")


def _file_name(stamp: RunStamp) -> str:
    """``run-<cutoff as YYYYMMDDTHHMMSS>-<run id>.parquet``: the cutoff leads the name."""
    return f"{_PREFIX}{as_cutoff(stamp.cutoff):%Y%m%dT%H%M%S}-{stamp.run_id}.parquet"


def _compact(frame: pd.DataFrame) -> pa.Table:
    """The archived columns with float32 numbers and dictionary-encoded tiers."""
    columns: dict[str, pa.Array] = {
        "customer_id": pa.array(frame["customer_id"].astype("str").to_numpy(), pa.string())
    }
    for column in NUMBER_COLUMNS:
        columns[column] = pa.array(frame[column].to_numpy(dtype="float64").astype(np.float32))
    for column in SEGMENT_COLUMNS:
        text = pa.array(frame[column].astype("str").to_numpy(), pa.string())
        columns[column] = text.dictionary_encode()
    return pa.table(columns)


def read_archived_run(path: Path) -> ArchivedRun:
    """An archived run's stamp and sizes, from its footer (no rows are read).

    Raises
    ------
    ValueError
        When the file is not an archived run (no run id or cutoff in its footer).
    """
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"archived run {path} is not a readable Parquet file ({err})") from err
    stamp = RunStamp.from_metadata(metadata)
    if not stamp.run_id or not stamp.cutoff:
        raise ValueError(
            f"{path} has no run id or cutoff in its footer; expected a file written by "
            "serving.insight.run_archive"
        )
    return ArchivedRun(
        path,
        stamp,
        int(metadata.get(HORIZON_KEY, b"0")),
        int(metadata.get(CUSTOMERS_KEY, b"0")),
    )


def archived_runs(runs_dir: Path = DEFAULT_RUNS) -> list[ArchivedRun]:
    """Every run in ``runs_dir``, oldest cutoff first (none when the folder is missing)."""
    if not runs_dir.is_dir():
        return []
    runs = [
        read_archived_run(path)
        for path in sorted(runs_dir.glob(f"{_PREFIX}*.parquet"))
        if not path.name.endswith(_FEATURES_SUFFIX)
    ]
    return sorted(runs, key=lambda run: (run.cutoff, run.path.stat().st_mtime_ns))


def _scores_stamp(scores: Path) -> RunStamp:
    """The stamp of a Parquet scores file; a CSV or an unstamped file is refused."""
    if scores.suffix.lower() != ".parquet":
        raise ValueError(
            f"{scores}: the run archive keeps Parquet scores (their footer holds the run's "
            "stamp); score with --out ending in .parquet"
        )
    if not scores.is_file():
        raise FileNotFoundError(f"no scores file {scores}; run `make score` first")
    try:
        stamp = RunStamp.from_metadata(pq.read_schema(scores).metadata)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"scores file {scores} is not a readable Parquet file ({err})") from err
    if not stamp.run_id or not stamp.cutoff:
        raise ValueError(
            f"scores file {scores} has no run id or cutoff in its footer; expected scores "
            "written by python -m serving.batch"
        )
    return stamp


def archive_run(
    scores: Path,
    runs_dir: Path = DEFAULT_RUNS,
    *,
    features: Path | None = None,
) -> ArchivedRun:
    """Keep a published batch run's answers (and its features) in the archive.

    Parameters
    ----------
    scores : pathlib.Path
        The run's Parquet scores file (its footer names the run).
    runs_dir : pathlib.Path
        The archive folder (created when missing).
    features : pathlib.Path, optional
        The online feature table the same run wrote; kept when its stamp names the same run
        (another run's table is ignored with a warning), and only for the newest
        :data:`FEATURES_KEPT` runs.

    Returns
    -------
    ArchivedRun
        The archived run (the one already there when the run was archived before).

    Raises
    ------
    ValueError
        A CSV or unstamped scores file, or one missing an archived column (named).
    FileNotFoundError
        When ``scores`` does not exist.
    """
    stamp = _scores_stamp(scores)
    target = runs_dir / _file_name(stamp)
    if target.is_file():
        return read_archived_run(target)
    columns = pq.read_schema(scores).names
    missing = [c for c in (*ARCHIVED_COLUMNS, "horizon_days") if c not in columns]
    if missing:
        raise ValueError(
            f"scores file {scores} has no column(s) {missing}; expected scores written by "
            "python -m serving.batch"
        )
    frame = pd.read_parquet(scores, columns=[*ARCHIVED_COLUMNS, "horizon_days"])
    horizon = int(frame["horizon_days"].iloc[0]) if len(frame) else 0
    table = _compact(frame)
    metadata = {
        **stamp.metadata(),
        HORIZON_KEY: str(horizon).encode(),
        CUSTOMERS_KEY: str(len(frame)).encode(),
    }
    runs_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd")
    run = ArchivedRun(target, stamp, horizon, len(frame))
    if features is not None:
        _keep_features(run, features)
    _prune_features(runs_dir)
    logger.info("archived run %s (cutoff %s) to %s", stamp.run_id, stamp.cutoff, target)
    return run


def _keep_features(run: ArchivedRun, features: Path) -> None:
    """Copy the run's feature table (float32) beside its answers, if it is the same run's."""
    if not features.is_file():
        logger.warning("no feature table %s: run %s is kept without features", features, run.run_id)
        return
    table = pq.read_table(features)
    if RunStamp.from_metadata(table.schema.metadata).run_id != run.run_id:
        logger.warning(
            "feature table %s was written by another batch run than %s; the run is kept "
            "without features (no feature drift against it)",
            features,
            run.run_id,
        )
        return
    # float32 like the answers: drift bins and KS statistics do not need more digits.
    schema = pa.schema(
        [
            pa.field(f.name, pa.float32()) if pa.types.is_floating(f.type) else f
            for f in table.schema
        ]
    )
    with atomic_file(run.features_path) as tmp:
        pq.write_table(
            table.cast(schema).replace_schema_metadata(run.stamp.metadata()),
            tmp,
            compression="zstd",
        )


def _prune_features(runs_dir: Path) -> None:
    """Remove the features of all but the newest :data:`FEATURES_KEPT` runs."""
    for run in archived_runs(runs_dir)[:-FEATURES_KEPT]:
        run.features_path.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Archive the live scores (``python -m serving.insight.run_archive``)."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.insight.run_archive",
        description="Keep a batch run's answers (and features) in the run archive.",
    )
    parser.add_argument("--scores", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        help="the run's online feature table (default: the one beside the scores when its "
        "stamp names the same run)",
    )
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="the archive folder")
    args = parser.parse_args(argv)
    features = args.features or args.scores.with_name(DEFAULT_FEATURES_OUT.name)

    def work() -> None:
        run = archive_run(args.scores, args.runs, features=features)
        print(f"run {run.run_id} (cutoff {run.stamp.cutoff}) kept in {run.path}")

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())
