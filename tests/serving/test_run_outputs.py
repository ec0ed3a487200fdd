"""A batch run's outputs: never one of its inputs or each other, and published as one unit.

Issue 21, M8 (an output path equal to an input or another output destroyed it, exit 0) and M9
(a failed or killed run left the outputs of two runs side by side), and the model version a
run stamps (loaded by alias, then asked for the version: a promotion in between stamped a
version that did not score).
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import build_features
from serving.batch import base_scoring as batch
from serving.batch import spark
from serving.insight import impact, report
from serving.run_files import RunStamp, sweep_stale_work
from training import backtest, tracking
from training import config as training_config

CUTOFF = "2025-01-01"


@pytest.fixture(scope="module")
def orders_csv_text(served_store) -> str:
    """The store's orders as CSV text, with one unusable row (so there is a quarantine)."""
    orders = served_store.orders.copy()
    orders["ordered_at"] = orders["ordered_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    orders = orders[["customer_id", "ordered_at", "amount"]].astype("object")
    bad = pd.DataFrame({"customer_id": ["Z-bad"], "ordered_at": ["not a date"], "amount": ["1"]})
    return pd.concat([orders, bad], ignore_index=True).to_csv(index=False)


@pytest.fixture
def orders_csv(orders_csv_text, tmp_path):
    """That CSV as this test's own file (made once per module, written for each test)."""
    path = tmp_path / "in" / "orders.csv"
    path.parent.mkdir()
    path.write_text(orders_csv_text, encoding="utf-8", newline="")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def argv(served_store, orders: Path, *extra: str) -> list[str]:
    return [
        "--orders",
        str(orders),
        "--events",
        str(served_store.events_path),
        "--cutoff",
        CUTOFF,
        "--model-uri",
        served_store.model_uri,
        *extra,
    ]


# --- M8: an output is never an input or another output ------------------------------------


def _same_as_orders(orders: Path, out: Path, how: str) -> Path:
    if how == "symlink":
        out.symlink_to(orders)
    elif how == "hard link":
        os.link(orders, out)
    return orders if how == "path" else out


@pytest.mark.parametrize("how", ["path", "symlink", "hard link"])
def test_scores_over_the_orders_file_are_refused_and_the_orders_kept(
    served_store, orders_csv, tmp_path, capsys, how
):
    out = _same_as_orders(orders_csv, tmp_path / "scores.csv", how)
    before = digest(orders_csv)
    assert batch.main(argv(served_store, orders_csv, "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is the input --orders" in err
    assert "expected an output path that is none of the run's inputs" in err
    assert digest(orders_csv) == before
    assert sorted(p.name for p in orders_csv.parent.iterdir()) == ["orders.csv"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--features-out", "{out}"], "--features-out {out} is the same path as --out"),
        (["--features-out", "{tmp}/f.parquet", "--store", "{orders}"], "--store {orders} is the"),
        (["--store", "{tmp}/scores.rejected.csv"], "is the same path as the rejected list"),
        (["--features-out", "{tmp}/scores.orders.quarantine.csv"], "the orders quarantine"),
        (["--store", "{mlflow}"], "is the input the MLflow tracking store"),
        (["--features-out", "{orders_dir}/f.parquet"], "is inside the input folder --orders"),
    ],
)
def test_outputs_that_clash_are_refused_before_anything_is_written(
    served_store, orders_csv, tmp_path, capsys, flags, message
):
    out = tmp_path / "scores.parquet"
    names = {
        "out": out,
        "tmp": tmp_path,
        "orders": orders_csv,
        "mlflow": served_store.tracking_uri.removeprefix("sqlite:///"),
        "orders_dir": tmp_path / "parts",
    }
    orders = orders_csv
    if "{orders_dir}" in " ".join(flags):  # a Parquet folder as the orders
        names["orders_dir"].mkdir()
        orders = names["orders_dir"]
        served_store.orders.to_parquet(orders / "part-0.parquet")
    inputs = {p: digest(p) for p in [orders_csv, Path(str(names["mlflow"]))]}
    before = sorted(tmp_path.rglob("*"))
    extra = [flag.format(**names) for flag in flags]
    assert batch.main(argv(served_store, orders, "--out", str(out), *extra)) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing swept
    assert {p: digest(p) for p in inputs} == inputs


def test_impact_spark_report_and_backtest_refuse_an_output_that_is_an_input(
    served_store, orders_csv, tmp_path, capsys
):
    before = digest(orders_csv)
    assert impact.main(argv(served_store, orders_csv, "--out", str(orders_csv))) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--features-out .* is the input --orders"):
        spark.run(
            spark.SparkConfig(
                orders=orders_csv,
                events=None,
                out=tmp_path / "spark_scores",
                features_out=orders_csv,
                model_uri=served_store.model_uri,
            )
        )
    with pytest.raises(ValueError, match=r"--features-out .* is nested with --out"):
        spark.run(
            spark.SparkConfig(
                orders=orders_csv,
                events=None,
                out=tmp_path / "spark_scores",
                features_out=tmp_path / "spark_scores" / "online_features.parquet",
                model_uri=served_store.model_uri,
            )
        )
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--scores", str(orders_csv), "--out", str(orders_csv), "--no-log"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("customer_id,ordered_at,amount\na,2024-01-01,5\n")
    config = backtest.parse_args(
        ["--orders", str(tiny), "--cutoff", "2024-06-01", "--out", str(tiny)]
    )
    with pytest.raises(ValueError, match=r"--out .* is the input --orders"):
        backtest.run(config)
    assert digest(orders_csv) == before


def test_events_none_means_no_events_like_the_other_none_flags(tmp_path):
    # The demo orders bring the demo events; 'none' is how to score them without.
    assert batch.parse_args(["--events", "none"]).events is None
    assert batch.parse_args(["--events", "NONE", "--store", "none"]).store is None
    mine = tmp_path / "orders.csv"
    assert batch.parse_args(["--orders", str(mine), "--events", "none"]).events is None
    assert batch.parse_args(["--events", "./none"]).events == Path("none")
    assert training_config.parse_args(["--orders", str(mine), "--events", "none"]).events is None


# --- M9: the outputs are one unit -----------------------------------------------------------


def outputs(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` (a run's outputs) by name, with its content's digest."""
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


def visible(folder: Path) -> dict[str, str]:
    """The outputs a reader sees (a run's staged files and journals left out)."""
    return {k: v for k, v in outputs(folder).items() if not k.startswith(".scoring-")}


def store_run_id(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        (stamp,) = connection.execute("SELECT value FROM meta WHERE key = 'stamp'").fetchone()
    finally:
        connection.close()
    return json.loads(stamp)["run_id"]


def run_ids(folder: Path) -> set[str]:
    """The run ids of the scores, the feature table and the lookup store in ``folder``."""
    return {
        RunStamp.from_metadata(pq.read_schema(folder / "scores.parquet").metadata).run_id,
        RunStamp.from_metadata(pq.read_schema(folder / "online_features.parquet").metadata).run_id,
        store_run_id(folder / "online_store.sqlite"),
    }


@pytest.fixture
def previous(served_store, orders_csv, tmp_path):
    """A completed run's outputs in ``out/``: scores, rejected, quarantine, table, store."""
    folder = tmp_path / "out"
    assert batch.main(run_argv(served_store, orders_csv, folder)) == 0
    files = outputs(folder)
    assert set(files) == {
        "scores.parquet",
        "scores.rejected.csv",
        "scores.orders.quarantine.csv",
        "online_features.parquet",
        "online_store.sqlite",
    }
    assert len(run_ids(folder)) == 1
    return folder, files


def run_argv(served_store, orders, folder: Path, cutoff: str = CUTOFF) -> list[str]:
    return [
        *argv(served_store, orders, "--out", str(folder / "scores.parquet")),
        "--cutoff",
        cutoff,
        "--features-out",
        str(folder / "online_features.parquet"),
        "--store",
        str(folder / "online_store.sqlite"),
    ]


def test_a_failed_store_write_leaves_every_previous_output(
    served_store, orders_csv, previous, monkeypatch, capsys
):
    folder, files = previous
    real = batch._store_frames

    def full_disk(*args, **kwargs):
        yield from list(real(*args, **kwargs))[:1]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch, "_store_frames", full_disk)
    assert batch.main(run_argv(served_store, orders_csv, folder, "2024-10-01")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: No space left on device ({folder / 'online_store.sqlite'}")
    assert "free space on that disk, or write the outputs elsewhere" in line
    assert outputs(folder) == files  # nothing replaced, nothing staged left behind


def test_a_full_disk_while_writing_the_scores_names_the_file(
    served_store, orders_csv, previous, monkeypatch, capsys
):
    folder, files = previous

    def arrow_full_disk(*args, **kwargs):
        # How pyarrow reports it: no errno, no file name, the errno in the text.
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        yield

    monkeypatch.setattr(batch, "_final_frames", arrow_full_disk)
    assert batch.main(run_argv(served_store, orders_csv, folder, "2024-10-01")) == 1
    err = capsys.readouterr().err
    assert f"error: No space left on device ({folder / 'scores.parquet'})" in err
    assert outputs(folder) == files


def test_a_failed_write_discards_the_store_built_beside_it(
    served_store, orders_csv, previous, monkeypatch, capsys
):
    # The lookup store is built in a thread while the scores and the feature table are
    # written: when a write fails, the store staged meanwhile goes too, whole.
    folder, files = previous
    built = threading.Event()
    real = batch._build_store

    def build_then_signal(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        finally:
            built.set()

    def full_disk(*args, **kwargs):
        assert built.wait(60)  # the store is complete before the write fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch, "_build_store", build_then_signal)
    monkeypatch.setattr(batch, "write_feature_table", full_disk)
    assert batch.main(run_argv(served_store, orders_csv, folder, "2024-10-01")) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert outputs(folder) == files  # nothing replaced, no staged store left behind


KILLER = """
import os, signal, sys
import serving.batch.base_scoring as batch
import serving.run_files as run_files
where = sys.argv.pop(1)
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
    yield
if where == "store":  # while the lookup store is written (the scores and table are done)
    batch._store_frames = die
else:  # the worst moment: the run is committed, nothing is in place yet
    run_files._commit_hook = lambda files: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(batch.main(sys.argv[1:]))
"""


def killed_run(served_store, orders, folder: Path, where: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            where,
            *run_argv(served_store, orders, folder, "2024-10-01"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": served_store.tracking_uri},
    )


# The two killed runs start a fresh interpreter each (SIGKILL needs a process of its own): its
# imports alone take 10-15 s on 2 busy cores, so they run in `make test`, not the fast tier.
@pytest.mark.slow
def test_a_run_killed_while_writing_the_store_leaves_every_previous_output(
    served_store, orders_csv, previous
):
    folder, files = previous
    done = killed_run(served_store, orders_csv, folder, "store")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert visible(folder) == files
    sweep_stale_work(folder)  # the next run's first step: the killed run's files go
    assert outputs(folder) == files
    assert not [p for p in folder.iterdir() if p.name.startswith(".scoring-")]


@pytest.mark.slow
def test_a_run_killed_once_committed_is_rolled_forward_whole(served_store, orders_csv, previous):
    folder, files = previous
    (old_id,) = run_ids(folder)
    clean = orders_csv.with_name("clean.csv")  # no unusable row: no quarantine this time
    pd.read_csv(orders_csv, dtype=str).iloc[:-1].to_csv(clean, index=False)
    done = killed_run(served_store, clean, folder, "commit")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert visible(folder) == files  # killed before the renames: still the previous run
    assert [p.name for p in folder.glob(".scoring-*.commit.json")]
    sweep_stale_work(folder)
    after = outputs(folder)
    assert set(after) == {
        "scores.parquet",
        "scores.rejected.csv",
        "online_features.parquet",
        "online_store.sqlite",
    }  # the quarantine of the previous run is gone: this run had none
    (new_id,) = run_ids(folder)  # scores, table and store all of the killed run
    assert new_id != old_id
    assert all(after[name] != files[name] for name in after)


# --- the version that scored is the version stamped ----------------------------------------

RACE = "alias-race"


@pytest.fixture(scope="module")
def two_versions(served_store):
    """Two versions of one registered model with different answers (v2's CLV doubled)."""
    model = tracking.load_model(served_store.model_uri)
    other = copy.deepcopy(model)
    other.season_ = 2 * model.season_
    example = build_features(
        served_store.orders, served_store.events, cutoff=pd.Timestamp(CUTOFF), spec=model.spec
    )[model.feature_names_in_].head(5)
    tracking.configure(served_store.tracking_uri)
    versions = []
    for fitted in (model, other):
        with tracking.start_run("alias-race"):
            versions.append(tracking.log_and_register(fitted, fitted, example, name=RACE).version)
    return versions


def test_a_promotion_between_resolving_and_loading_never_mislabels_the_scores(
    served_store, two_versions, tmp_path, monkeypatch
):
    first, second = two_versions
    tracking.set_alias("champion", first, RACE)
    real_info, real_load = tracking.version_info, tracking.load_model
    moved = []

    def promote_after(call):
        # A promotion lands right after the run's first registry call, whichever it is.
        def wrapped(*args, **kwargs):
            result = call(*args, **kwargs)
            if not moved:
                tracking.set_alias("champion", second, RACE)
                moved.append(True)
            return result

        return wrapped

    monkeypatch.setattr(tracking, "version_info", promote_after(real_info))
    monkeypatch.setattr(tracking, "load_model", promote_after(real_load))

    def score(uri: str, out: Path) -> pd.DataFrame:
        config = batch.BatchConfig(
            orders=served_store.orders_path,
            events=served_store.events_path,
            cutoff=CUTOFF,
            out=out,
            features_out=None,
            model_uri=uri,
        )
        batch.run(config)
        return pd.read_parquet(out).set_index("customer_id")

    raced = score(f"models:/{RACE}@champion", tmp_path / "raced.parquet")
    assert moved
    (stamped,) = raced["model_version"].unique()
    pinned = score(f"models:/{RACE}/{stamped}", tmp_path / "pinned.parquet")
    pd.testing.assert_series_equal(raced["clv"], pinned["clv"])  # stamped = what scored
    stamp = RunStamp.from_metadata(pq.read_schema(tmp_path / "raced.parquet").metadata)
    assert stamp.model_version == stamped


@pytest.mark.server
def test_a_redis_run_whose_publish_is_refused_publishes_no_file_either(
    served_store, orders_csv, tmp_path, redis_url, monkeypatch, capsys
):
    # With Redis, the store's compare-and-set is the commit point: it refuses a run whose
    # writing marker was lost (a stalled writer, a restarted Redis). The files must then stay
    # the previous run's too (they were replaced before the store was written).
    import redis

    from serving import lookup_store

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    folder = tmp_path / "out"
    flags = ["--features-out", str(folder / "online_features.parquet"), "--store", redis_url]
    first = [*argv(served_store, orders_csv, "--out", str(folder / "scores.parquet")), *flags]
    assert batch.main(first) == 0
    files = outputs(folder)
    current = client.get(lookup_store.REDIS_CURRENT)

    def lost(self):
        raise ValueError(f"run {self.run_id} was lost while it was written (marker expired)")

    monkeypatch.setattr(lookup_store.StagedStore, "publish", lost)
    assert batch.main([*first, "--cutoff", "2024-10-01"]) == 2
    assert "was lost while it was written" in capsys.readouterr().err
    assert outputs(folder) == files
    assert client.get(lookup_store.REDIS_CURRENT) == current
