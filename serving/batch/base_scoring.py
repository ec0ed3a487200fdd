"""Batch scoring: the whole customer base at a cutoff -> scores, online feature table, store."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.database import is_database
from features.history import format_cutoff
from features.io import LoadResult
from features.run_inputs import NoUsableOrders, load_run_inputs
from serving.base_inputs import (
    DEFAULT_MODEL_URI,
    DEMO_EVENTS,
    DEMO_ORDERS,
    add_input_arguments,
    chosen_events,
    chosen_model_uri,
    resolve_cutoff,
)
from serving.batch.chunk_workers import ChunkPaths, ChunkScorer, chosen_workers
from serving.batch.frame_handoff import FrameHandoff
from serving.batch.score_tables import (
    ScoreTable,
    check_not_an_input,
    score_table,
    stage_score_table,
)
from serving.customer_chunks import CustomerChunks
from serving.lookup_store import (
    STORE_NAME,
    StagedStore,
    is_redis,
    stage_lookup_store,
    store_location,
)
from serving.run_files import (
    DEFAULT_FEATURES_OUT,
    DEFAULT_OUT,
    RunFiles,
    RunStamp,
    rejected_path,
    store_label,
    sweep_stale_work,
    with_path,
    work_folder,
    write_feature_table,
    write_scores,
)
from serving.scoring import (
    REASON_MODES,
    SEGMENT_COLUMNS,
    ScoreSettings,
    finish_scores,
)
from serving.segments import Base
from training import tracking
from training.config import check_run_paths, run_entrypoint
from training.model import CustomerValueModel
from training.profile import DEFAULT_LEVEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchConfig:
    """What to score, with which model, and where to write it.

    ``features_out`` is the online feature table (None: none is written). The command line
    writes the live table (:data:`DEFAULT_FEATURES_OUT`) only when the scores go to their
    default place beside it, or when ``--features-out`` asks for it. ``store`` is the lookup
    store (a SQLite file or a ``redis://`` URL; None: none is written); the command line
    writes the embedded one beside the feature table it writes, unless ``--store`` says
    otherwise. ``out`` may be a database URL with ``?table=``
    (:mod:`serving.batch.score_tables`); the inputs may be database locations too
    (:mod:`features.database`).
    """

    orders: Path | str = DEMO_ORDERS
    events: Path | str | None = DEMO_EVENTS
    columns: str = ""
    cutoff: str = "latest"
    out: Path | str = DEFAULT_OUT
    features_out: Path | None = DEFAULT_FEATURES_OUT
    store: str | None = None
    model_uri: str = DEFAULT_MODEL_URI
    chunk_customers: int = 200_000
    #: Processes that build and score the chunks (None: every core for a base of
    #: :data:`serving.batch.chunk_workers.PROCESS_MIN_CUSTOMERS` or more, else this one).
    workers: int | None = None
    reasons: str = "approximate"
    interval: float = DEFAULT_LEVEL
    discount_rate: float = 0.0

    def score_settings(self) -> ScoreSettings:
        """How to score (checked: a bad level or rate raises ValueError naming it)."""
        return ScoreSettings(self.reasons, self.interval, self.discount_rate)

    @property
    def files_out(self) -> Path:
        """What the run's own files are named from (rejected list, quarantines).

        ``out`` itself, or for a score table the default scores folder with the table's
        name (``models/scores/customer_scores.rejected.csv``).
        """
        if isinstance(self.out, Path):
            return self.out
        return DEFAULT_OUT.with_name(f"{score_table(self.out).name}{DEFAULT_OUT.suffix}")

    strict: bool = False


@dataclass
class BatchSummary:
    """What a batch run did; the row counts always add up."""

    cutoff: pd.Timestamp
    model_name: str
    model_version: str
    input_customers: int
    scored: int
    rejected: dict[str, int] = field(default_factory=dict)
    total_clv: float = 0.0
    segments: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    out: Path | None = None
    features_out: Path | None = None
    store: str | None = None
    #: The score table written (:class:`serving.batch.score_tables.ScoreTable`), when ``out``
    #: was a database; ``out`` is then what the run's own files are named from.
    table: str | None = None

    @property
    def rejected_total(self) -> int:
        """Customers not scored, all reasons."""
        return sum(self.rejected.values())

    @property
    def rejected_file(self) -> Path | None:
        """Where the run listed each customer it could not score, with the reason."""
        return rejected_path(self.out) if self.out is not None else None


REJECT_QUARANTINED = "every order row was quarantined"
REJECT_NO_HISTORY = "no order before the cutoff"
REJECT_NO_ORDERS = "service events but no orders"


def _input_customers(
    chunks: CustomerChunks, orders: LoadResult, events: LoadResult | None
) -> tuple[pd.Index, pd.Index]:
    """Every customer id in the input, and the ids that have usable orders.

    Ids are compared as the loader reads them (trimmed, ``7.0`` as ``"7"``), so a customer with
    one clean and one malformed row is one customer; rows without an id are counted as rows
    (quarantine), not as customers. The usable rows' ids are the chunks' own (hashed once).
    """
    everyone = chunks.ids.union(orders.quarantined_customers)
    if events is not None:
        everyone = everyone.union(events.quarantined_customers)
    return everyone, chunks.customers


def _rejected_customers(
    everyone: pd.Index,
    with_orders: pd.Index,
    orders_quarantined: pd.Index,
    first_order: pd.Series,
    cutoff: pd.Timestamp,
) -> pd.DataFrame:
    """Customers that cannot be scored, one row each with the reason."""
    lost = orders_quarantined.difference(with_orders)
    # Seen only in the service events (usable or not): nothing to score, but in the input.
    orderless = everyone.difference(with_orders).difference(lost)
    too_new = first_order.index[first_order.to_numpy() >= cutoff.to_datetime64()]
    return pd.DataFrame(
        {
            "customer_id": [*lost, *orderless, *too_new],
            "reason": [REJECT_QUARANTINED] * len(lost)
            + [REJECT_NO_ORDERS] * len(orderless)
            + [REJECT_NO_HISTORY] * len(too_new),
        },
        dtype="str",
    )


def quarantine_file(out: Path, name: str) -> Path:
    """Where a run writing ``out`` lists an input's unusable rows (``name``: orders, ...)."""
    return out.with_name(f"{out.stem}.{name}.quarantine.csv")


def store_file(store: str | None) -> Path | None:
    """The lookup store's file when it is a SQLite one (None: no store, or Redis)."""
    return Path(store) if store is not None and not is_redis(store) else None


def run_paths(config: BatchConfig) -> tuple[dict[str, Path | str | None], dict[str, Path | None]]:
    """What a run reads and what it writes, named as its user knows them (for the check)."""
    inputs: dict[str, Path | str | None] = {
        "--orders": config.orders,
        "--events": config.events,
        "the MLflow tracking store": tracking.store_path(tracking.active_uri()),
    }
    outputs: dict[str, Path | None] = {
        "--out": config.out if isinstance(config.out, Path) else None,
        "the rejected list (from --out)": rejected_path(config.files_out),
        **{
            f"the {name} quarantine (from --out)": quarantine_file(config.files_out, name)
            for name in ("orders", "service_events")
        },
        "--features-out": config.features_out,
        "--store": store_file(config.store),
    }
    return inputs, outputs


def run(config: BatchConfig) -> BatchSummary:
    """Score every customer with an order before the cutoff; see the module docstring.

    Every output (scores, rejected list, quarantine files, feature table, lookup store) is
    staged first and published together at the end (:class:`serving.run_files.RunFiles`): a
    run that fails leaves all the previous outputs as they were.

    Raises
    ------
    ValueError
        An output path that is an input or another output (before anything is written), no
        usable orders, a bad cutoff or setting.
    """
    settings = config.score_settings()
    chosen_workers(config.workers, customers=0)  # a bad count is refused before any reading
    target: ScoreTable | None = None
    if not isinstance(config.out, Path):
        target = score_table(config.out)
        check_not_an_input(target, {"--orders": config.orders, "--events": config.events})
    files_out = config.files_out
    check_run_paths(*run_paths(config))
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    model, info = tracking.open_model(config.model_uri)
    timings["load_model"] = time.perf_counter() - tick

    tick = time.perf_counter()
    try:
        inputs = load_run_inputs(
            config.orders, config.events, columns=config.columns, strict=config.strict
        )
    except NoUsableOrders as err:
        # Nothing is written: the run's outputs are one unit, and it has no scores.
        raise NoUsableOrders(f"{err}; nothing was written") from err
    orders_result, events_result = inputs.orders, inputs.events
    target_file = store_file(config.store)
    for folder in {
        files_out.parent,
        *([config.features_out.parent] if config.features_out else []),
        *([target_file.parent] if target_file else []),
    }:
        sweep_stale_work(folder)
    orders = orders_result.frame
    cutoff = resolve_cutoff(config.cutoff, orders)
    events = events_result.frame if events_result is not None else None
    chunks = CustomerChunks(orders, events, config.chunk_customers)
    everyone, with_orders = _input_customers(chunks, orders_result, events_result)
    rejects = _rejected_customers(
        everyone, with_orders, orders_result.quarantined_customers, chunks.first_orders(), cutoff
    )
    rejected = {str(k): int(v) for k, v in rejects["reason"].value_counts().items()}
    timings["load_data"] = time.perf_counter() - tick

    # Counted from the ids' one numbering, apart from the chunks' iteration, the scoring and
    # the rejections, so the check at the end means something: every id in the input is
    # scored or rejected exactly once (a customer a chunk or the scoring lost fails the run).
    input_customers = len(everyone)
    workers = chosen_workers(config.workers, len(with_orders))
    with contextlib.ExitStack() as stack:
        # Started before the chunks are cut: the workers start up meanwhile.
        scorer = stack.enter_context(ChunkScorer(model, workers))
        chunks.cut(config.chunk_customers, min_chunks=scorer.min_chunks())
        timings["chunk"] = time.perf_counter() - tick - timings["load_data"]
        work = stack.enter_context(work_folder(files_out.parent))
        files = stack.enter_context(RunFiles())
        for name, result in (("orders", orders_result), ("service_events", events_result)):
            final = quarantine_file(files_out, name)
            if result is None or result.quarantine.empty:
                files.drop(final)  # an earlier run's list would be taken for this run's
                continue
            with files.stage(final) as staged:
                result.quarantine.to_csv(staged, index=False)
            logger.warning("%d %s row(s) quarantined to %s", len(result.quarantine), name, final)
        parts: list[Path] = []
        feature_parts: list[Path] = []
        keep_features = config.features_out is not None or config.store is not None
        places = [
            ChunkPaths(
                work / f"part-{i:05d}.parquet",
                work / f"features-{i:05d}.parquet" if keep_features else None,
            )
            for i in range(len(chunks))
        ]
        clv_all = []
        # Summed over the chunks (with worker processes: over the workers, so they can add up
        # to more than the wall clock); "scoring" is the wall clock of the whole pass.
        seconds = {"features": 0.0, "predict": 0.0}
        tick = time.perf_counter()
        progress = tqdm(total=len(chunks), desc="scoring", unit="chunk")
        for done, where in zip(scorer.score(chunks, cutoff, settings, places), places, strict=True):
            progress.update()
            seconds["features"] += done.features_seconds
            seconds["predict"] += done.predict_seconds
            if not done.written:  # every customer of this chunk starts after the cutoff
                continue
            clv_all.append(done.clv)
            parts.append(where.scores)
            if where.features is not None:
                feature_parts.append(where.features)
        progress.close()
        scorer.release()  # the workers exit (and give their memory back) during the writes
        timings.update(seconds)
        timings["scoring"] = time.perf_counter() - tick
        scored_count = int(sum(len(c) for c in clv_all))
        if rejects.empty:
            files.drop(rejected_path(files_out))  # not this run's list
        else:
            with files.stage(rejected_path(files_out)) as staged:
                rejects.to_csv(staged, index=False)

        tick = time.perf_counter()
        base = Base.of(np.concatenate(clv_all) if clv_all else np.array([]))
        summary = BatchSummary(
            cutoff,
            info["model_name"],
            info["model_version"],
            input_customers,
            scored_count,
            rejected,
        )
        stamp = RunStamp(
            run_id=files.run_id,
            cutoff=str(cutoff),
            model_name=info["model_name"],
            model_version=info["model_version"],
            store=store_label(tracking.active_uri()),
            orders=str(config.orders)
            if is_database(config.orders)
            else str(Path(config.orders).resolve()),
            interval=f"{settings.interval:g}",
            discount_rate=f"{settings.discount_rate:g}",
        )
        store_stamp = replace(stamp, reasons=settings.reasons)
        built: Future[tuple[StagedStore, float]] | None = None
        frames = _final_frames(parts, base, cutoff, model, info, summary)
        if config.store is not None:
            # The lookup store is built in a thread beside the scores and feature writes:
            # its SQLite inserts and Arrow packing release the GIL, as the Parquet writes do
            # (2-3 s of a 1M run's 60 off the wall clock; bench/RESULTS.md). It takes each
            # final frame as the score writes make it (computed once, not once per output).
            handoff = FrameHandoff()
            pool = stack.enter_context(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookup-store")
            )
            built = pool.submit(
                _build_store,
                config.store,
                _store_frames(handoff.frames(), feature_parts, model.feature_names_in_),
                store_stamp,
                model.feature_names_in_,
                handoff.stop_consuming,
            )
            # Unwound first if the writes fail: waits for the store and discards it; before
            # that, a store still waiting for frames is told none will come.
            stack.callback(_discard_unclaimed, built)
            stack.callback(handoff.abort)
            frames = handoff.passing(frames)
        staged_scores = None
        if target is None:
            assert isinstance(config.out, Path)
            write_scores(frames, config.out, store_stamp, files=files)
        else:
            staged_scores = stack.enter_context(stage_score_table(target, store_stamp))
            staged_scores.write(frames)
        if config.features_out is not None:
            write_feature_table(
                feature_parts, model.feature_names_in_, config.features_out, stamp, files=files
            )
        timings["write"] = time.perf_counter() - tick
        staged_store = None
        if built is not None:
            tick = time.perf_counter()
            store_run, timings["store"] = built.result()
            staged_store = stack.enter_context(store_run)
            timings["store_wait"] = time.perf_counter() - tick
        if summary.scored + summary.rejected_total != input_customers:
            raise RuntimeError(
                f"row accounting failed: {summary.scored} scored + {summary.rejected_total} "
                f"rejected != {input_customers} input customers; nothing was written"
            )
        tick = time.perf_counter()
        if staged_scores is not None:
            # The database first: its swap is the step most likely to fail (a network), and a
            # failure there leaves every output, files included, as the previous run left them.
            staged_scores.publish()
        files.publish(staged_store, target_file)
        timings["publish"] = time.perf_counter() - tick
    summary.seconds = timings
    summary.out = files_out
    summary.table = str(target) if target is not None else None
    summary.features_out = config.features_out
    summary.store = config.store
    return summary


def _build_store(
    store: str,
    frames: Iterator[pd.DataFrame],
    stamp: RunStamp,
    feature_names: list[str],
    done: Callable[[], None],
) -> tuple[StagedStore, float]:
    """The staged lookup store and the seconds it took (run in the store's thread).

    ``done`` is called when the store stops taking frames, built or failed.
    """
    tick = time.perf_counter()
    try:
        staged = stage_lookup_store(store, frames, stamp, feature_names)
    except OSError as err:
        raise with_path(err, store_location(store)) from err
    finally:
        done()
    return staged, time.perf_counter() - tick


def _discard_unclaimed(built: Future[tuple[StagedStore, float]]) -> None:
    """At the run's end: wait for the store's thread; a store not published is discarded."""
    try:
        staged, _ = built.result()
    except Exception:  # the run's own error is the one raised
        return
    staged.discard()  # a no-op once the run entered it and published or discarded it


def _final_frames(
    parts: list[Path],
    base: Base,
    cutoff: pd.Timestamp,
    model: CustomerValueModel,
    info: dict[str, str],
    summary: BatchSummary,
) -> Iterator[pd.DataFrame]:
    """Second pass over the scored parts: what needs the whole base, and the run's columns.

    Segments and percentiles rank each customer in the whole base; the next-order date is
    the cutoff plus the model's median wait.

    Adds each part's CLV and segment counts to ``summary`` as it goes.
    """
    summary.segments = {name: {} for name in SEGMENT_COLUMNS}
    for part in parts:
        frame = finish_scores(pd.read_parquet(part), base, cutoff, model.spec.horizon_days, info)
        summary.total_clv += float(frame["clv"].sum())
        for column, counts in summary.segments.items():
            for key, count in frame[column].value_counts().items():
                counts[key] = counts.get(key, 0) + int(count)
        yield frame


def _store_frames(
    finals: Iterator[pd.DataFrame], feature_parts: list[Path], feature_names: list[str]
) -> Iterator[pd.DataFrame]:
    """The lookup store's frames: each part's final scores beside its customers' features."""
    for frame, feature_part in zip(finals, feature_parts, strict=True):
        features = pd.read_parquet(feature_part, columns=["customer_id", *feature_names])
        ids = frame["customer_id"]
        if ids.is_unique and ids.reset_index(drop=True).equals(features["customer_id"]):
            # Both parts hold the chunk's customers in the same order (the scores are the
            # features' rows): the merge would pair row i with row i.
            yield pd.concat(
                [frame.reset_index(drop=True), features.drop(columns="customer_id")], axis=1
            )
        else:
            yield frame.merge(features, on="customer_id", how="inner", validate="one_to_one")


def parse_args(argv: list[str] | None = None) -> BatchConfig:
    """Build a :class:`BatchConfig` from flags (defaults score the demo data)."""
    d = BatchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m serving.batch", description="Score the whole customer base at a cutoff."
    )
    add_input_arguments(parser, strict=True)
    parser.add_argument(
        "--out",
        type=_out_location,
        default=d.out,
        help=".parquet (default) or .csv, or a database table: sqlite:///scores.db?table=scores, "
        "postgresql://user@host/shop?table=customer_scores (swapped in whole with its run "
        "stamp in <table>_runs; the rejected list and quarantines go to models/scores/<table>.*)",
    )
    parser.add_argument(
        "--features-out",
        default=None,
        help=f"online feature table for the service, or 'none' (default: {DEFAULT_FEATURES_OUT} "
        f"when --out is the default {DEFAULT_OUT}, else none, so scoring another file never "
        "replaces the table a running service answers from)",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="lookup store the service can answer from, shared by its workers: a SQLite file "
        f"or redis://host:port/db, or 'none' (default: {STORE_NAME} beside the online feature "
        "table when one is written, else none)",
    )
    parser.add_argument("--chunk-customers", type=int, default=d.chunk_customers)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that build and score the chunks (default: every core for a base of "
        "100,000 customers or more, else 1); the scores are the same for any number",
    )
    parser.add_argument(
        "--reasons",
        choices=REASON_MODES,
        default=d.reasons,
        help="drivers per customer: approximate contributions (default), exact TreeSHAP "
        "(about 90x slower), or none",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=d.interval,
        help="level of the clv_low-clv_high range (default 0.8: the customer's value over the "
        "horizon falls inside it for about 80%% of the customers at the same risk)",
    )
    parser.add_argument(
        "--discount-rate",
        type=float,
        default=d.discount_rate,
        help="yearly discount rate for clv_discounted (default 0: clv_discounted = clv)",
    )
    args = parser.parse_args(argv)
    features_out = _features_out(args.features_out, args.out)
    return BatchConfig(
        orders=args.orders,
        events=chosen_events(args),
        columns=args.columns,
        cutoff=args.cutoff,
        out=args.out,
        features_out=features_out,
        store=_store(args.store, features_out),
        model_uri=chosen_model_uri(args),
        chunk_customers=args.chunk_customers,
        workers=args.workers,
        reasons=args.reasons,
        interval=args.interval,
        discount_rate=args.discount_rate,
        strict=args.strict,
    )


def _out_location(text: str) -> Path | str:
    """``--out``: a file, or a database URL naming the score table."""
    return text if is_database(text) else Path(text)


def _features_out(flag: str | None, out: Path | str) -> Path | None:
    """The online feature table a run writes: asked for, or the live one beside the scores.

    Without ``--features-out``, only a run whose scores go to the default place (the nightly
    ``make score``) replaces the live table; any other run (another file, another ``--out``)
    leaves it alone: the service would otherwise reload it and answer from other customers.
    """
    if flag is None:
        default = isinstance(out, Path) and out.resolve() == DEFAULT_OUT.resolve()
        return DEFAULT_FEATURES_OUT if default else None
    return None if flag.lower() == "none" else Path(flag)


def _store(flag: str | None, features_out: Path | None) -> str | None:
    """The lookup store a run writes: asked for, or the embedded one beside its feature table.

    A run that leaves the live feature table alone leaves the live store alone too.
    """
    if flag is None:
        return None if features_out is None else str(features_out.with_name(STORE_NAME))
    return None if flag.lower() == "none" else flag


def print_summary(summary: BatchSummary) -> None:
    """Human-readable summary of a batch run."""
    print(
        f"scored {summary.scored:,} of {summary.input_customers:,} customers at cutoff "
        f"{format_cutoff(summary.cutoff)} with {summary.model_name} v{summary.model_version}"
    )
    for reason, count in summary.rejected.items():
        print(f"  rejected {count:,}: {reason}")
    if summary.rejected and summary.rejected_file is not None:
        print(f"  (each rejected customer and its reason: {summary.rejected_file})")
    print(f"total predicted value over the horizon: {summary.total_clv:,.0f}")
    for column, counts in summary.segments.items():
        print(f"  {column}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()))
    print(f"wrote the scores to {summary.table}" if summary.table else f"wrote {summary.out}")
    if summary.features_out is not None:
        print(f"wrote the online feature table {summary.features_out}")
    else:
        print(
            "no online feature table written (the live one is left as it was); pass "
            "--features-out PATH to write one"
        )
    if summary.store is not None:
        print(f"wrote the lookup store {store_location(summary.store)}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m serving.batch``)."""
    config = parse_args(argv)

    def work() -> None:
        tracking.configure(read_only=True)
        print_summary(run(config))

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())
