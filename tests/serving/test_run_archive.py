"""The run archive: each batch run's answers kept compactly with its stamp, features for two."""

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.insight.run_archive import (
    FEATURES_KEPT,
    archive_run,
    archived_runs,
    main,
    read_archived_run,
)
from serving.run_files import RunStamp


def restamped(scores, tmp_path, run_id, cutoff):
    """A copy of a scores file (and its feature table) under another run id and cutoff."""
    folder = tmp_path / run_id
    folder.mkdir()
    for name in ("scores.parquet", "online_features.parquet"):
        table = pq.read_table(scores.with_name(name))
        stamp = RunStamp.from_metadata(table.schema.metadata)
        stamp = RunStamp(run_id, cutoff, stamp.model_name, stamp.model_version)
        meta = {**(table.schema.metadata or {}), **stamp.metadata()}
        pq.write_table(table.replace_schema_metadata(meta), folder / name)
    return folder / "scores.parquet"


def test_a_run_is_kept_compactly_with_its_stamp(latest_scores, tmp_path):
    config, scores = latest_scores
    runs = tmp_path / "runs"
    kept = archive_run(config.out, runs, features=config.features_out)
    stamp = RunStamp.from_metadata(pq.read_schema(config.out).metadata)
    assert kept.stamp == stamp
    assert kept.horizon_days == int(scores["horizon_days"].iloc[0])
    assert kept.customers == len(scores)
    schema = pq.read_schema(kept.path)
    assert schema.field("clv").type == pa.float32()
    assert schema.field("p_churn").type == pa.float32()
    assert pa.types.is_dictionary(schema.field("value_segment").type)
    answers = kept.answers()
    assert answers.index.equals(scores.index)
    for column in ("clv", "p_churn", "expected_orders"):
        pd.testing.assert_series_equal(
            answers[column], scores[column], check_exact=False, rtol=1e-6, check_dtype=False
        )
    assert (answers["value_segment"] == scores["value_segment"]).all()
    features = kept.features()
    assert features is not None and len(features) == len(scores)
    # Far smaller than the scores file it came from (reasons and the profile are not kept).
    assert kept.path.stat().st_size < config.out.stat().st_size / 3


def test_archiving_a_run_twice_keeps_one_copy(latest_scores, tmp_path):
    config, _ = latest_scores
    first = archive_run(config.out, tmp_path)
    second = archive_run(config.out, tmp_path)
    assert first.path == second.path
    assert [r.run_id for r in archived_runs(tmp_path)] == [first.run_id]


def test_features_are_kept_for_the_newest_runs_only(latest_scores, tmp_path):
    config, _ = latest_scores
    runs = tmp_path / "runs"
    cutoffs = ["2025-03-01", "2025-01-01", "2025-02-01"]  # archived out of order on purpose
    for i, cutoff in enumerate(cutoffs):
        scores = restamped(config.out, tmp_path, f"run{i}", cutoff)
        archive_run(scores, runs, features=scores.with_name("online_features.parquet"))
    kept = archived_runs(runs)
    assert [str(r.cutoff.date()) for r in kept] == sorted(cutoffs)
    with_features = [r.features_path.is_file() for r in kept]
    assert with_features == [False] * (len(kept) - FEATURES_KEPT) + [True] * FEATURES_KEPT


def test_a_feature_table_of_another_run_is_not_kept(latest_scores, tmp_path):
    config, _ = latest_scores
    other = restamped(config.out, tmp_path, "other", "2025-01-01")
    kept = archive_run(
        config.out, tmp_path / "runs", features=other.with_name("online_features.parquet")
    )
    assert kept.features() is None


def test_scores_the_archive_cannot_keep_are_refused_naming_the_file(latest_scores, tmp_path):
    config, scores = latest_scores
    csv = tmp_path / "scores.csv"
    scores.reset_index().to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"scores\.csv.*Parquet"):
        archive_run(csv, tmp_path / "runs")
    bare = tmp_path / "bare.parquet"
    shutil.copy(config.out, bare)
    table = pq.read_table(bare).drop(["p_churn"])
    pq.write_table(table.replace_schema_metadata(None), bare)
    with pytest.raises(ValueError, match=r"bare\.parquet has no run id"):
        archive_run(bare, tmp_path / "runs")
    pq.write_table(table.replace_schema_metadata(pq.read_schema(config.out).metadata), bare)
    with pytest.raises(ValueError, match=r"bare\.parquet has no column\(s\) \['p_churn'\]"):
        archive_run(bare, tmp_path / "runs")
    with pytest.raises(ValueError, match="no run id or cutoff"):
        read_archived_run(_unstamped(tmp_path))


def _unstamped(tmp_path):
    path = tmp_path / "run-x.parquet"
    pq.write_table(pa.table({"customer_id": ["a"]}), path)
    return path


def test_the_command_archives_the_live_scores(latest_scores, tmp_path, capsys):
    config, _ = latest_scores
    assert main(["--scores", str(config.out), "--runs", str(tmp_path / "runs")]) == 0
    (kept,) = archived_runs(tmp_path / "runs")
    assert kept.features() is not None  # the table beside the scores is the same run's
    assert kept.run_id in capsys.readouterr().out
