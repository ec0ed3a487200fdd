"""The nightly job: steps in order, one line each, a status per failed step, and one at a time."""

import dataclasses
import sqlite3

import pandas as pd
import pyarrow.parquet as pq
import pytest

from serving import nightly
from serving.insight.run_archive import archived_runs
from serving.lookup_store import open_lookup_store
from serving.run_files import RunStamp


def night_config(served_store, root, orders):
    scores = root / "scores" / "scores.parquet"
    return nightly.NightlyConfig(
        orders=orders,
        events=served_store.events_path,
        model_uri=served_store.model_uri,
        out=scores,
        runs_dir=root / "runs",
        report_out=scores.with_name("report.html"),
        lock=root / "nightly.lock",
        horizon_days=180,
    )


def stamp_of(path):
    return RunStamp.from_metadata(pq.read_schema(path).metadata)


@pytest.mark.slow
def test_a_second_night_with_one_more_day_replaces_the_first_everywhere(served_store, tmp_path):
    orders = tmp_path / "orders.parquet"
    full = pd.read_parquet(served_store.orders_path)
    last_day = full["ordered_at"].max().normalize()
    # The shop's export, one day short; the next night the same file has one more day.
    full[full["ordered_at"] < last_day].to_parquet(orders)
    crm = tmp_path / "crm.db"
    config = dataclasses.replace(
        night_config(served_store, tmp_path, orders),
        scores_table=f"sqlite:///{crm}?table=customer_scores",
    )
    lines: list[str] = []

    first = nightly.run(config, echo=lines.append)
    assert [s.status for s in first.steps] == ["ok"] * len(nightly.STEPS), lines
    assert first.exit_status in (0, nightly.EXIT_RETRAIN)
    assert [line.split()[0] for line in lines] == list(nightly.STEPS)
    first_stamp = stamp_of(config.out)
    assert pd.Timestamp(first_stamp.cutoff) == last_day

    full.to_parquet(orders)
    second = nightly.run(config, echo=lines.append)
    assert [s.status for s in second.steps] == ["ok"] * len(nightly.STEPS), lines
    stamp = stamp_of(config.out)
    assert stamp.run_id != first_stamp.run_id
    assert pd.Timestamp(stamp.cutoff) == last_day + pd.Timedelta(days=1)
    # Scores, feature table and lookup store are all the second run's.
    assert stamp_of(config.features_out).run_id == stamp.run_id
    store = open_lookup_store(config.out.with_name("online_store.sqlite"))
    assert store.run_id == stamp.run_id
    scores = pd.read_parquet(config.out)
    assert (scores["cutoff"] == last_day + pd.Timedelta(days=1)).all()
    # The archive has both runs, oldest first, and the first is judged on its one day.
    assert [r.run_id for r in archived_runs(config.runs_dir)] == [first_stamp.run_id, stamp.run_id]
    assert "1 runs judged (0 complete)" in second.step("monitor").summary
    html = config.report_out.read_text(encoding="utf-8")
    assert f"{last_day + pd.Timedelta(days=1):%Y-%m-%d}" in html
    assert 'alt="Predicted vs actual revenue of earlier runs"' in html
    # The CRM's table holds the second run only; its runs table names both.
    with sqlite3.connect(crm) as db:
        ids = db.execute("SELECT DISTINCT run_id FROM customer_scores").fetchall()
        rows = db.execute("SELECT COUNT(*) FROM customer_scores").fetchone()[0]
        runs = db.execute("SELECT run_id FROM customer_scores_runs ORDER BY published_at")
        published = [r[0] for r in runs.fetchall()]
    assert ids == [(stamp.run_id,)] and rows == len(scores)
    assert published == [first_stamp.run_id, stamp.run_id]


def test_an_overlapping_night_is_refused_and_does_nothing(served_store, tmp_path, capsys):
    config = night_config(served_store, tmp_path, served_store.orders_path)
    argv = [
        "--orders",
        str(served_store.orders_path),
        "--out",
        str(config.out),
        "--runs",
        str(config.runs_dir),
        "--lock",
        str(config.lock),
        "--model-uri",
        served_store.model_uri,
    ]
    with nightly.nightly_lock(config.lock):
        assert nightly.main(argv) == nightly.EXIT_LOCKED
    err = capsys.readouterr().err
    assert f"another nightly run holds the lock {config.lock}" in err
    assert "this run did nothing" in err and "pid " in err
    assert not config.out.parent.exists() and not config.runs_dir.exists()
    with pytest.raises(nightly.NightlyLocked), nightly.nightly_lock(config.lock):
        with nightly.nightly_lock(config.lock):
            pass


def test_the_exit_status_names_the_step_that_failed(served_store, tmp_path):
    missing = tmp_path / "no-such-orders.parquet"
    config = night_config(served_store, tmp_path, missing)
    lines: list[str] = []
    night = nightly.run(config, echo=lines.append)
    assert night.exit_status == nightly.STEP_EXIT["check-data"]
    assert [s.status for s in night.steps] == ["failed"] + ["skipped"] * 4
    assert "no-such-orders.parquet" in lines[0]
    assert len(lines) == len(nightly.STEPS)
    assert nightly.verdict(night) == "nightly: failed at check-data (exit status 10)"
    assert not config.out.exists()
    # The lock is free again once the night ends, however it ended.
    with nightly.nightly_lock(config.lock):
        pass


def test_not_enough_data_stops_the_night_before_scoring(served_store, tmp_path):
    orders = tmp_path / "orders.parquet"
    full = pd.read_parquet(served_store.orders_path)
    full.head(300).to_parquet(orders)
    config = night_config(served_store, tmp_path, orders)
    night = nightly.run(config, echo=lambda line: None)
    step = night.step("check-data")
    assert step.status == "failed" and "not enough data" in step.summary
    assert night.exit_status == nightly.STEP_EXIT["check-data"]
    assert not config.out.exists()


def test_a_scores_table_the_night_cannot_write_is_refused_before_scoring(served_store, tmp_path):
    config = dataclasses.replace(
        night_config(served_store, tmp_path, served_store.orders_path),
        scores_table="mysql://shop@db/crm?table=customer_scores",
    )
    night = nightly.run(config, echo=lambda line: None)
    step = night.step("score")
    assert step.status == "failed" and "postgresql or sqlite only" in step.summary
    assert night.exit_status == nightly.STEP_EXIT["score"]
    assert not config.out.exists()
