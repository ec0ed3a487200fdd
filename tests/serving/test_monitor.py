"""The monitor: earlier runs against what customers then did, drift, and the retrain verdict."""

import math

import mlflow
import numpy as np
import pandas as pd
import pytest

from features import FeatureSpec, build_labels
from features.io import validate_orders
from features.run_inputs import data_end
from features.season import seasonal_index
from serving.batch.base_scoring import BatchConfig
from serving.batch.base_scoring import run as score_base
from serving.insight import monitor as mon
from serving.insight.run_archive import archive_run, archived_runs
from training.evaluate import expected_calibration_error, normalized_gini, roc_auc

#: The served model's horizon is 180 days and the store's orders end on 2025-06-30: the first
#: run's horizon has passed, the second's is two thirds through.
COMPLETE_CUTOFF = "2024-12-01"
PARTIAL_CUTOFF = "2025-03-01"


@pytest.fixture(scope="module")
def archive(served_store, tmp_path_factory):
    """Two runs of the small model scored and archived (with their features)."""
    root = tmp_path_factory.mktemp("monitor")
    runs = root / "runs"
    for cutoff in (COMPLETE_CUTOFF, PARTIAL_CUTOFF):
        out = root / cutoff / "scores.parquet"
        features = out.with_name("online_features.parquet")
        score_base(
            BatchConfig(
                orders=served_store.orders_path,
                events=served_store.events_path,
                cutoff=cutoff,
                out=out,
                features_out=features,
                store=None,
                model_uri=served_store.model_uri,
                reasons="none",
            )
        )
        archive_run(out, runs, features=features)
    return runs


@pytest.fixture(scope="module")
def orders(served_store):
    return validate_orders(served_store.orders, strict=True).frame


@pytest.fixture(scope="module")
def result(archive, orders):
    return mon.monitor(archived_runs(archive), orders)


def test_a_run_whose_horizon_passed_equals_a_direct_computation(archive, orders, result):
    run = archived_runs(archive)[0]
    predicted = run.answers()
    labels = build_labels(orders, cutoff=run.cutoff, spec=FeatureSpec(horizon_days=180))
    actual = labels.loc[predicted.index]
    row = result.track_record.set_index("run_id").loc[run.run_id]
    assert bool(row["complete"]) and row["elapsed_days"] == 180
    assert row["customers"] == len(predicted)
    assert row["expected_share"] == 1.0
    assert row["actual_revenue"] == pytest.approx(actual["future_value"].sum(), rel=1e-12)
    assert row["expected_revenue"] == pytest.approx(predicted["clv"].sum(), rel=1e-12)
    error = 100 * (predicted["clv"].sum() / actual["future_value"].sum() - 1)
    assert row["revenue_error_pct"] == pytest.approx(error, rel=1e-9)
    assert row["actual_orders"] == actual["future_orders"].sum()
    assert row["expected_orders"] == pytest.approx(predicted["expected_orders"].sum(), rel=1e-12)
    assert row["gini"] == normalized_gini(actual["future_value"], predicted["clv"])
    assert row["churn_auc"] == roc_auc(actual["churned"], predicted["p_churn"])
    assert row["churn_ece"] == expected_calibration_error(actual["churned"], predicted["p_churn"])
    assert 0.5 < row["churn_auc"] <= 1.0 and 0.0 < row["gini"] <= 1.0


def test_a_partly_elapsed_horizon_is_judged_by_how_the_base_spent_a_year_before(
    archive, orders, result
):
    run = archived_runs(archive)[1]
    predicted = run.answers()
    end = data_end(orders)
    elapsed = (end - run.cutoff).days
    assert 0 < elapsed < 180
    labels = build_labels(orders, cutoff=run.cutoff, spec=FeatureSpec(horizon_days=elapsed))
    actual = labels.loc[predicted.index]
    # The base of a year before the run's cutoff, with what was known at the cutoff: the share
    # of its next 180 days' revenue that it spent in the first `elapsed` days.
    known = orders[orders["ordered_at"] < run.cutoff]
    year_before = run.cutoff - pd.Timedelta(days=365)
    spent = [
        build_labels(known, cutoff=year_before, spec=FeatureSpec(horizon_days=days))[
            "future_value"
        ].sum()
        for days in (elapsed, 180)
    ]
    share = spent[0] / spent[1]
    # Front-loaded: an existing base buys more at the start of a horizon than pro rata by days.
    assert share > elapsed / 180
    row = result.track_record.set_index("run_id").loc[run.run_id]
    assert not row["complete"] and row["elapsed_days"] == elapsed
    assert row["expected_share"] == pytest.approx(share, rel=1e-12)
    assert row["expected_revenue"] == pytest.approx(share * predicted["clv"].sum(), rel=1e-12)
    assert row["expected_orders"] == pytest.approx(
        share * predicted["expected_orders"].sum(), rel=1e-12
    )
    assert row["actual_revenue"] == pytest.approx(actual["future_value"].sum(), rel=1e-12)
    assert row["actual_orders"] == actual["future_orders"].sum()
    assert all(math.isnan(row[m]) for m in ("gini", "churn_auc", "churn_ece"))


def test_runs_whose_horizon_has_not_started_are_not_judged(archive, orders):
    cut = orders[orders["ordered_at"] < pd.Timestamp(COMPLETE_CUTOFF)]
    assert mon.judge_runs(archived_runs(archive), cut).empty


def test_drift_finds_a_planted_shift():
    rng = np.random.default_rng(3)
    n = 5000
    before = pd.DataFrame(
        {
            "orders_90d": rng.poisson(2.0, n).astype(float),
            "revenue_365d": rng.lognormal(4.0, 1.0, n),
            "late_delivery_rate_365d": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        }
    )
    now = pd.DataFrame(
        {
            "orders_90d": rng.poisson(2.0, n).astype(float),
            "revenue_365d": rng.lognormal(4.0, 1.0, n) * 1.8,  # the planted shift
            "late_delivery_rate_365d": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        }
    )
    table = mon.drift_table(before, now)
    assert table.index[0] == "revenue_365d"
    assert table["shifted"].tolist() == [True, False, False]
    assert table.loc["orders_90d", "psi"] < 0.02
    assert table.loc["revenue_365d", "ks"] > 0.2
    assert table.loc["late_delivery_rate_365d", "missing_now"] == pytest.approx(0.3, abs=0.03)
    # Missing values are a bin of their own: a feature that goes missing has shifted.
    gone = now.assign(orders_90d=np.nan)
    assert mon.drift_table(before, gone).loc["orders_90d", "shifted"]
    assert mon.population_stability(before["orders_90d"], before["orders_90d"]) == 0.0
    with pytest.raises(ValueError, match="current is empty"):
        mon.population_stability([1.0, 2.0], [])


def test_the_latest_run_is_compared_with_the_previous(archive, result):
    latest, previous = archived_runs(archive)[-2:][::-1]
    assert result.latest.run_id == latest.run_id and result.previous.run_id == previous.run_id
    assert result.feature_drift is not None
    assert set(result.feature_drift.index) == set(latest.features().columns)
    assert list(result.score_drift.index.sort_values()) == ["clv", "expected_orders", "p_churn"]
    before, now = previous.answers(), latest.answers()
    both = before.index.intersection(now.index)
    changed = (before.loc[both, "value_segment"] != now.loc[both, "value_segment"]).mean()
    assert result.tiers["value_tier_changed"] == pytest.approx(changed)
    assert result.tiers["new_customers"] == len(now.index.difference(before.index)) > 0


def test_tier_changes_count_customers_of_both_runs():
    before = pd.DataFrame(
        {"value_segment": ["top", "high", "low"], "risk_segment": ["low", "low", "high"]},
        index=["a", "b", "c"],
    )
    now = pd.DataFrame(
        {"value_segment": ["top", "top", "low"], "risk_segment": ["low", "low", "low"]},
        index=["a", "b", "d"],
    )
    assert mon.tier_changes(before, now) == {
        "customers_compared": 2.0,
        "new_customers": 1.0,
        "gone_customers": 1.0,
        "value_tier_changed": 0.5,
        "risk_tier_changed": 0.0,
    }


def test_retraining_is_recommended_past_the_threshold(archive, orders, result):
    error = abs(result.latest_complete["revenue_error_pct"])
    assert result.retrain == (error > mon.RETRAIN_ERROR_PCT)
    strict = mon.monitor(archived_runs(archive), orders, threshold_pct=error / 2)
    assert strict.retrain and strict.verdict().startswith("retrain recommended")
    lenient = mon.monitor(archived_runs(archive), orders, threshold_pct=error * 2)
    assert not lenient.retrain and lenient.verdict().startswith("no retrain needed")


def test_the_command_prints_logs_and_exits_on_retrain(archive, served_store, capsys):
    argv = ["--runs", str(archive), "--scores", "none", "--orders", str(served_store.orders_path)]
    assert mon.main([*argv, "--threshold", "0.0001"]) == mon.EXIT_RETRAIN
    out = capsys.readouterr().out
    assert COMPLETE_CUTOFF in out and PARTIAL_CUTOFF in out
    assert "retrain recommended" in out
    runs = mlflow.search_runs(
        experiment_names=["customer-value"], filter_string="tags.kind = 'monitor'"
    )
    assert len(runs) >= 1
    assert runs.iloc[0]["tags.retrain_recommended"] == "True"
    assert "metrics.latest_complete.gini" in runs.columns
    assert mon.main([*argv, "--threshold", "1000", "--no-log"]) == 0


def test_no_archived_run_is_a_clear_error(tmp_path, capsys):
    assert mon.main(["--runs", str(tmp_path), "--scores", "none"]) == 2
    assert "no archived runs in" in capsys.readouterr().err


def test_runs_of_another_orders_file_are_not_judged(archive, served_store, tmp_path):
    other = tmp_path / "orders.parquet"
    other.write_bytes(served_store.orders_path.read_bytes())
    config = mon.MonitorConfig(runs_dir=archive, scores=None, orders=other, log=False)
    with pytest.raises(ValueError, match=r"no archived run in .* was scored from .*orders"):
        mon.run(config)


def test_the_report_says_how_last_runs_did(archive, result):
    from serving.insight import report

    scores = pd.read_parquet(archive.parent / PARTIAL_CUTOFF / "scores.parquet")
    built = report.build_report(scores, track_record=result.track_record)
    assert "track_record" in built.figures
    html = built.render()
    assert 'id="track-record"' in html and "How last runs did" in html
    assert "Predicted vs actual revenue of earlier runs" in html
    shown = report.build_report(scores).render()
    assert "No earlier run to judge yet" in shown


def test_make_report_reads_the_run_archive(archive, served_store, tmp_path):
    from serving.insight import report

    out = tmp_path / "report.html"
    scores = archive.parent / PARTIAL_CUTOFF / "scores.parquet"
    argv = ["--scores", str(scores), "--out", str(out), "--no-log", "--runs", str(archive)]
    assert report.main([*argv, "--events", str(served_store.events_path)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "How last runs did" in html and COMPLETE_CUTOFF in html
    assert 'alt="Predicted vs actual revenue of earlier runs"' in html


def test_the_live_scores_are_archived_before_judging(archive, served_store, tmp_path):
    scores = archive.parent / PARTIAL_CUTOFF / "scores.parquet"
    runs = tmp_path / "runs"
    config = mon.MonitorConfig(runs_dir=runs, scores=scores, log=False)
    result = mon.run(config)  # orders: the run's own, from its stamp
    (kept,) = archived_runs(runs)
    assert kept.features() is not None and result.latest.run_id == kept.run_id
    # A CSV run cannot be archived: it is skipped, the archive is judged as it is.
    csv = tmp_path / "scores.csv"
    pd.read_parquet(scores).to_csv(csv, index=False)
    assert mon.run(mon.MonitorConfig(runs_dir=runs, scores=csv, log=False)).latest == kept


def test_without_a_year_of_history_the_share_is_the_seasonal_one(orders):
    cutoff = pd.Timestamp(PARTIAL_CUTOFF)
    recent = orders[orders["ordered_at"] >= cutoff - pd.Timedelta(days=300)]
    share = mon.expected_share(recent, cutoff=cutoff, horizon_days=180, elapsed=60)
    part = 60 * seasonal_index(recent, cutoff=cutoff, horizon_days=60)
    whole = 180 * seasonal_index(recent, cutoff=cutoff, horizon_days=180)
    assert share == pytest.approx(part / whole, rel=1e-12) == pytest.approx(60 / 180)
    assert mon.expected_share(orders, cutoff=cutoff, horizon_days=180, elapsed=180) == 1.0
    assert mon.expected_share(orders, cutoff=cutoff, horizon_days=180, elapsed=0) == 0.0
