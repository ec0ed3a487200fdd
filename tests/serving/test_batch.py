"""Batch scoring: every customer scored or rejected with a reason, atomic output, both formats."""

import dataclasses
import errno
import os
import signal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import build_features
from serving.batch import chunk_workers
from serving.batch.base_scoring import BatchConfig, main, parse_args, print_summary, run
from serving.batch.chunk_workers import (
    PROCESS_MIN_CUSTOMERS,
    ChunkPaths,
    ChunkScorer,
    _hand_over,
    _taken,
    available_cores,
    chosen_workers,
)
from serving.customer_chunks import CustomerChunks
from serving.run_files import (
    DEFAULT_FEATURES_OUT,
    SCORE_COLUMNS,
    RunStamp,
    rejected_path,
    store_label,
)
from serving.scoring import ScoreSettings
from training import tracking


@pytest.fixture(scope="module")
def scored(served_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "scores.parquet"
    config = BatchConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        cutoff="2025-01-01",
        out=out,
        features_out=out.with_name("online_features.parquet"),
        model_uri=served_store.model_uri,
        chunk_customers=300,  # several chunks on purpose
    )
    return config, run(config)


def score_latest(served_store, orders, events, out):
    """Batch-score ``orders``/``events`` with the trained model at "latest" into ``out``."""
    return run(
        BatchConfig(
            orders=orders,
            events=events,
            cutoff="latest",
            out=out,
            features_out=None,
            model_uri=served_store.model_uri,
        )
    )


def test_every_customer_is_scored_or_rejected(served_store, scored):
    config, summary = scored
    frame = pd.read_parquet(config.out)
    assert list(frame.columns) == list(SCORE_COLUMNS)
    assert frame["customer_id"].is_unique
    rejected = pd.read_csv(config.out.with_name("scores.rejected.csv"), dtype=str)
    customers = served_store.orders["customer_id"].nunique()
    assert len(frame) == summary.scored
    assert summary.scored + len(rejected) == customers == summary.input_customers
    assert set(rejected["reason"]) == {"no order before the cutoff"}
    assert summary.rejected == {"no order before the cutoff": len(rejected)}
    assert frame["clv"].sum() == pytest.approx(summary.total_clv)
    assert (frame["model_version"] == served_store.version).all()
    assert frame["reasons"].str.count(";").eq(2).all()


def test_chunked_scores_equal_one_shot_scores(served_store, scored):
    config, _ = scored
    frame = pd.read_parquet(config.out).set_index("customer_id")
    model = tracking.load_model(served_store.model_uri)
    features = build_features(
        served_store.orders,
        served_store.events,
        cutoff=pd.Timestamp("2025-01-01"),
        spec=model.spec,
    )
    expected = model.predict(features)
    pd.testing.assert_series_equal(
        frame.loc[expected.index, "clv"], expected["clv"], check_names=False, rtol=1e-6
    )


def test_online_feature_table_records_cutoff_and_version(served_store, scored):
    config, summary = scored
    table = pq.read_table(config.features_out)
    meta = table.schema.metadata
    assert meta[b"customer_value.cutoff"].startswith(b"2025-01-01")
    assert meta[b"customer_value.model_version"] == served_store.version.encode()
    assert table.num_rows == summary.scored
    # The scores carry the same run id, and the reasons mode they were computed with.
    scores_meta = pq.read_schema(config.out).metadata
    assert len(meta[b"customer_value.run_id"]) == 32
    assert scores_meta[b"customer_value.run_id"] == meta[b"customer_value.run_id"]
    assert scores_meta[b"customer_value.reasons"] == b"approximate"


def test_customers_with_only_service_events_are_rejected_not_dropped(served_store, tmp_path):
    events = pd.read_parquet(served_store.events_path)
    extra = events.iloc[:2].assign(customer_id="events-only")
    path = tmp_path / "events.parquet"
    pd.concat([events, extra]).to_parquet(path)
    out = tmp_path / "scores.parquet"
    summary = score_latest(served_store, served_store.orders_path, path, out)
    assert summary.rejected["service events but no orders"] == 1
    assert summary.scored + summary.rejected_total == summary.input_customers
    rejected = pd.read_csv(out.with_name("scores.rejected.csv"), dtype=str)
    assert rejected.set_index("customer_id").loc["events-only", "reason"] == (
        "service events but no orders"
    )


def test_customers_are_counted_by_id_as_the_loader_reads_it(served_store, tmp_path):
    # Quarantined rows keep their ids as written; a padded id of a scored customer, a blank
    # id and an id in both the bad orders and the events must each count right, once.
    orders = pd.read_parquet(served_store.orders_path)
    events = pd.read_parquet(served_store.events_path)
    scored_id = orders["customer_id"].iloc[0]
    bad = orders.iloc[:3].assign(
        customer_id=[f" {scored_id} ", "  ", " ghost2"], amount=-1.0, order_id=["b1", "b2", "b3"]
    )
    ghost_events = events.iloc[:2].assign(customer_id="ghost2")
    orders_path, events_path = tmp_path / "orders.parquet", tmp_path / "events.parquet"
    pd.concat([orders, bad]).to_parquet(orders_path)
    pd.concat([events, ghost_events]).to_parquet(events_path)
    out = tmp_path / "scores.parquet"
    summary = score_latest(served_store, orders_path, events_path, out)
    ids = set(orders["customer_id"]) | set(events["customer_id"]) | {"ghost2"}
    assert summary.input_customers == len(ids)
    assert summary.rejected == {"every order row was quarantined": 1}
    rejected = pd.read_csv(out.with_name("scores.rejected.csv"), dtype=str)
    assert rejected["customer_id"].tolist() == ["ghost2"]
    assert scored_id in set(pd.read_parquet(out)["customer_id"])


def test_a_run_with_nobody_to_score_still_replaces_the_feature_table(served_store, tmp_path):
    config = BatchConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        cutoff="latest",
        out=tmp_path / "scores.parquet",
        features_out=tmp_path / "online_features.parquet",
        model_uri=served_store.model_uri,
    )
    run(config)
    before = pq.read_table(config.features_out)
    assert before.num_rows > 0
    # Before the first order nobody can be scored: the table of the earlier run must not
    # stay behind as if it were this run's.
    summary = run(dataclasses.replace(config, cutoff="1990-01-01"))
    assert summary.scored == 0 and summary.rejected_total == summary.input_customers
    after = pq.read_table(config.features_out)
    assert after.num_rows == 0
    assert after.column_names == before.column_names
    assert after.schema.metadata[b"customer_value.cutoff"].startswith(b"1990-01-01")
    assert pd.read_parquet(config.out).empty


def test_quarantined_customers_are_rejected_and_csv_output(served_store, tmp_path):
    orders = pd.read_parquet(served_store.orders_path)
    bad = orders.iloc[:3].assign(customer_id="ghost", amount=-1.0, order_id=["g1", "g2", "g3"])
    path = tmp_path / "orders.parquet"
    pd.concat([orders, bad]).to_parquet(path)
    out = tmp_path / "out" / "scores.csv"
    summary = score_latest(served_store, path, None, out)
    assert summary.rejected["every order row was quarantined"] == 1
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert len(frame) == summary.scored
    assert summary.scored + summary.rejected_total == summary.input_customers
    quarantine = pd.read_csv(out.with_name("scores.orders.quarantine.csv"), dtype=str)
    assert len(quarantine) == 3 and set(quarantine["reason"]) == {"negative amount"}
    assert not list(out.parent.glob(".*tmp")) and not list(out.parent.glob(".scoring-*"))


def test_chunks_keep_each_customer_whole(served_store):
    chunks = CustomerChunks(served_store.orders, served_store.events, size=500)
    seen = []
    for orders, events in chunks:
        ids = set(orders["customer_id"])
        seen.append(ids)
        assert set(events["customer_id"]) <= ids
    assert sum(len(s) for s in seen) == served_store.orders["customer_id"].nunique()
    assert len(chunks) == len(seen)


def test_chunks_can_be_asked_to_be_more_never_larger(served_store):
    customers = served_store.orders["customer_id"].nunique()
    more = CustomerChunks(served_store.orders, served_store.events, size=500, min_chunks=7)
    assert len(more) == 7
    assert sum(orders["customer_id"].nunique() for orders, _ in more) == customers
    # A size smaller than min_chunks asks for wins: chunks are never larger than `size`.
    capped = CustomerChunks(served_store.orders, served_store.events, size=100, min_chunks=2)
    assert len(capped) == -(-customers // 100)
    with pytest.raises(ValueError, match="min_chunks must be > 0"):
        CustomerChunks(served_store.orders, served_store.events, size=100, min_chunks=0)


def test_worker_processes_give_the_same_outputs_as_one_process(served_store, scored, tmp_path):
    config, summary = scored
    out = tmp_path / "scores.parquet"
    in_workers = dataclasses.replace(
        config,
        out=out,
        features_out=tmp_path / "online_features.parquet",
        store=str(tmp_path / "online_store.sqlite"),
        workers=2,
    )
    again = run(in_workers)
    assert again.scored == summary.scored and again.rejected == summary.rejected
    # The same rows to the bit; only the total's sum runs over other parts.
    assert again.total_clv == pytest.approx(summary.total_clv, rel=1e-12)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), pd.read_parquet(config.out), check_exact=True
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(in_workers.features_out),
        pd.read_parquet(config.features_out),
        check_exact=True,
    )
    # Worker timings are summed over the chunks; the pass itself has its own wall clock.
    assert {"features", "predict", "scoring"} <= set(again.seconds)
    assert not list(tmp_path.glob(".scoring-*"))


def test_a_chunk_handed_to_a_worker_arrives_as_the_same_frame_and_its_file_goes(
    served_store, tmp_path
):
    chunks = CustomerChunks(served_store.orders, served_store.events, size=500)
    orders, events = next(iter(chunks))
    assert events is not None
    where = ChunkPaths(tmp_path / "part-00003.parquet", None)
    for frame, name in ((orders, "orders"), (events, "events")):
        # A chunk's rows keep their labels in the whole input: the index must travel too.
        assert not frame.index.equals(pd.RangeIndex(len(frame)))
        handed = _hand_over(frame, where.handed(name))
        assert handed == tmp_path / f"part-00003.{name}.arrow"
        pd.testing.assert_frame_equal(_taken(handed), frame, check_exact=True)
        assert not handed.exists()


def test_a_full_disk_while_handing_a_chunk_over_names_the_file(monkeypatch, tmp_path):
    def full(*args, **kwargs):
        # How pyarrow reports it: no errno, no file name, the errno in the text.
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(chunk_workers.feather, "write_feather", full)
    where = tmp_path / "part-00000.orders.arrow"
    with pytest.raises(OSError) as raised:
        _hand_over(pd.DataFrame({"customer_id": ["c1"]}), where)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(where)


def test_a_killed_worker_fails_the_run_with_a_way_out(served_store, tmp_path):
    model = tracking.load_model(served_store.model_uri)
    chunks = CustomerChunks(served_store.orders, served_store.events, size=500)
    places = [ChunkPaths(tmp_path / f"part-{i}.parquet", None) for i in range(len(chunks))]
    with ChunkScorer(model, workers=2) as scorer:
        # As the kernel's out-of-memory killer would: SIGKILL, no chance to clean up.
        assert scorer._pool is not None
        for process in list(scorer._pool._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"worker process died while scoring chunk 1 of"):
            list(scorer.score(chunks, pd.Timestamp("2025-01-01"), ScoreSettings(), places))
        model_file = scorer._model_file
        assert model_file is not None and model_file.exists()
    # The model's copy for the workers goes with them, a failed run's too.
    assert not model_file.exists()


def test_worker_count_is_every_core_for_a_large_base_unless_given():
    assert chosen_workers(3, customers=10) == 3
    assert chosen_workers(None, customers=PROCESS_MIN_CUSTOMERS - 1) == 1
    assert chosen_workers(None, customers=PROCESS_MIN_CUSTOMERS) == available_cores()


def test_a_bad_worker_count_is_refused_before_anything_is_read(served_store, tmp_path):
    config = BatchConfig(
        orders=tmp_path / "missing.csv",
        events=None,
        out=tmp_path / "scores.parquet",
        features_out=None,
        model_uri=served_store.model_uri,
        workers=0,
    )
    with pytest.raises(ValueError, match="--workers must be at least 1; got 0"):
        run(config)
    assert parse_args(["--workers", "3"]).workers == 3
    assert parse_args([]).workers is None


def test_summary_says_what_was_scored_and_where_the_rejected_are(scored, capsys):
    config, summary = scored
    print_summary(summary)
    out = capsys.readouterr().out
    assert f"scored {summary.scored:,} of {summary.input_customers:,} customers" in out
    assert "at cutoff 2025-01-01 with customer-value v" in out
    rejected = summary.rejected["no order before the cutoff"]
    assert f"rejected {rejected:,}: no order before the cutoff" in out
    assert f"(each rejected customer and its reason: {rejected_path(config.out)})" in out
    assert f"wrote {config.out}" in out


# -- the live feature table and a run's files -----------------------------------------------


def test_scoring_another_file_leaves_the_live_feature_table_alone(
    served_store, tmp_path, monkeypatch
):
    # `python -m serving.batch --orders other.csv --out elsewhere.parquet` used to overwrite
    # the live table a running service reloads (its customers then became unknown).
    monkeypatch.chdir(tmp_path)
    live = tmp_path / DEFAULT_FEATURES_OUT
    live.parent.mkdir(parents=True)
    live.write_bytes(b"the live table")
    argv = [
        "--orders",
        str(served_store.orders_path),
        "--events",
        str(served_store.events_path),
        "--model-uri",
        served_store.model_uri,
        "--out",
        str(tmp_path / "elsewhere.parquet"),
    ]
    config = parse_args(argv)
    assert config.features_out is None
    assert main(argv) == 0
    assert live.read_bytes() == b"the live table"
    assert (tmp_path / "elsewhere.parquet").exists()
    # Asked for, a table is written where it was asked; the default run writes the live one.
    asked = parse_args([*argv, "--features-out", str(tmp_path / "mine.parquet")])
    assert asked.features_out == tmp_path / "mine.parquet"
    assert parse_args([*argv[:-2]]).features_out == DEFAULT_FEATURES_OUT
    assert parse_args([*argv[:-2], "--features-out", "none"]).features_out is None


def test_feature_table_records_the_store_model_and_orders_it_came_from(served_store, scored):
    config, _ = scored
    stamp = RunStamp.from_metadata(pq.read_schema(config.features_out).metadata)
    assert stamp.store == store_label(served_store.tracking_uri)
    assert stamp.orders == str(served_store.orders_path.resolve())
    assert (stamp.model_name, stamp.model_version) == ("customer-value", served_store.version)
    scores_stamp = RunStamp.from_metadata(pq.read_schema(config.out).metadata)
    assert scores_stamp == dataclasses.replace(stamp, reasons="approximate")


def test_store_label_drops_credentials_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_label("sqlite:///models/mlflow.db") == f"sqlite:///{tmp_path}/models/mlflow.db"
    assert store_label("https://bob:secret@mlflow.example:8443/x") == (
        "https://mlflow.example:8443/x"
    )
    assert "secret" not in store_label("postgresql://bob:secret@db/mlflow")


def test_a_killed_runs_work_files_are_removed_by_the_next_run(served_store, tmp_path):
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    assert not Path(f"/proc/{dead}").exists()
    left = [
        tmp_path / f".scoring-{dead}-abc",
        tmp_path / ".scoring-k3j4h5",  # named before process ids were in the names
    ]
    for folder in left:
        folder.mkdir()
        (folder / "part-00000.parquet").write_bytes(b"x" * 1000)
    stale_tmp = tmp_path / f".scoring-{dead}-scores.parquet.tmp"
    stale_tmp.write_bytes(b"half")
    running = tmp_path / f".scoring-{os.getpid()}-busy"
    running.mkdir()
    score_latest(served_store, served_store.orders_path, None, tmp_path / "scores.parquet")
    assert not any(path.exists() for path in [*left, stale_tmp])
    assert running.exists()  # a run still going keeps its work folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [running.name]


def test_a_header_only_file_is_refused_without_pointing_at_a_missing_file(
    served_store, tmp_path, capsys
):
    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,ordered_at,amount\n")
    argv = ["--orders", str(orders), "--model-uri", served_store.model_uri]
    assert main([*argv, "--out", str(tmp_path / "scores.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no usable orders" in err and "0 rows read" in err and "no data rows" in err
    assert "quarantine" not in err
    assert not list(tmp_path.glob("*.quarantine.csv"))
