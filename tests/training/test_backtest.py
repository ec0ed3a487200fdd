"""The backtest: trains on the past only, compares with what happened, beside the baselines."""

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from demo.generator import SynthParams, generate, write_tables
from features import FeatureSpec
from features.io import validate_events, validate_orders
from training.backtest import (
    CLASSICAL,
    backtest_cutoff,
    churn_lines,
    floor_verdicts,
    main,
    restrict_to_cohort,
)
from training.config import FitSettings

pytestmark = pytest.mark.slow

CUTOFF = pd.Timestamp("2025-01-01")
SPEC = FeatureSpec(horizon_days=120)
SETTINGS = FitSettings(max_cutoffs=8, seed=3)


@pytest.fixture(scope="module")
def store():
    orders, events = generate(customers=1200, seed=21, start="2023-07-01", end="2025-05-15")
    return validate_orders(orders, strict=True).frame, validate_events(events, strict=True).frame


def test_backtest_scores_every_customer_beside_the_baselines_and_ignores_the_future(store):
    orders, events = store
    result, actual, predictions = backtest_cutoff(
        orders, events, cutoff=CUTOFF, spec=SPEC, settings=SETTINGS
    )
    assert set(predictions) == {"model", "simple", "bgnbd", "pareto_nbd"}
    customers = orders.loc[orders["ordered_at"] < CUTOFF, "customer_id"].nunique()
    assert result.customers == len(actual) == customers
    for name, metrics in result.metrics.items():
        assert 0 < metrics["churn_roc_auc"] <= 1, name
        assert metrics["clv_rmse"] > 0, name
    assert set(result.noise) == {"model", "simple", "bgnbd", "pareto_nbd"}
    assert result.noise["model"]["clv_gini"] > 0
    verdicts = floor_verdicts(result)
    assert set(verdicts) == {
        "clv_spearman",
        "clv_gini",
        "clv_rmse",
        "churn_roc_auc",
        "clv_total_error_pct",
    }
    assert set(verdicts.values()) <= {"ahead", "within noise", "behind", "ok", "off"}
    assert result.family in ("hybrid", "classical", "boosted")

    # The served level: replayed one horizon before the training data's end, every candidate
    # measured there, and the served total is the chosen candidate's.
    level = result.level
    assert level.origins, level.reason
    first = level.origins[0]
    assert first.origin == CUTOFF - pd.Timedelta(days=SPEC.horizon_days)
    # Under two years of history no classical level in season is measured.
    assert set(first.totals) == {"model", "bgnbd", "pareto_nbd", "classical_mean", "blend"}
    assert first.actual > 0
    assert predictions["model"]["clv"].sum() == pytest.approx(level.served[level.source])
    assert level.factor == pytest.approx(level.served[level.source] / level.served["model"])

    # The served churn rate: the geometric mean of the model's own count of buyers and the
    # classical models' at the data end (the cutoff's customers), one logit shift for all.
    count = result.buyers
    blend = (count["own"] * count["bgnbd"] * count["pareto_nbd"]) ** (1 / 3)
    assert count["model"] == pytest.approx(blend, rel=1e-6)
    assert count["actual"] == pytest.approx((1 - actual["churned"]).sum())
    assert (count["model"] > count["own"]) == (result.churn_shift < 0)
    # Under two years of history the season is not measured apart from growth: no season.
    assert result.churn_season == {}
    table = "\n".join(churn_lines([result]))
    assert f"| {CUTOFF.date()} | {count['actual']:,.0f} | " in table
    assert "| none | " in table

    # What happens after the horizon cannot change anything: the fit reads rows before the
    # cutoff only, the labels rows before cutoff + horizon.
    later = orders[orders["ordered_at"] >= CUTOFF + pd.Timedelta(days=SPEC.horizon_days)]
    doubled = pd.concat(
        [orders, later.assign(order_id="again-" + later["order_id"], amount=later["amount"] * 5)],
        ignore_index=True,
    )
    again, _, predictions_again = backtest_cutoff(
        doubled, events, cutoff=CUTOFF, spec=SPEC, settings=SETTINGS
    )
    pd.testing.assert_frame_equal(predictions["model"], predictions_again["model"])
    assert again.metrics["bgnbd"] == result.metrics["bgnbd"]


def test_a_cutoff_whose_outcome_is_unknown_is_refused(store):
    orders, events = store
    with pytest.raises(ValueError, match="ends after the last order .* choose an earlier --cutoff"):
        backtest_cutoff(
            orders, events, cutoff=pd.Timestamp("2025-04-01"), spec=SPEC, settings=SETTINGS
        )


def test_cohort_keeps_only_customers_first_seen_in_it(store):
    orders, events = store
    first = orders.groupby("customer_id")["ordered_at"].min()
    kept, kept_events = restrict_to_cohort(
        orders, events, pd.Timestamp("2023-09-01"), pd.Timestamp("2023-10-31")
    )
    expected = set(first[(first >= "2023-09-01") & (first < "2023-11-01")].index)
    assert set(kept["customer_id"]) == expected
    assert set(kept_events["customer_id"]) <= expected
    with pytest.raises(ValueError, match="no customer's first order is between"):
        restrict_to_cohort(orders, events, pd.Timestamp("2030-01-01"), pd.Timestamp("2030-02-01"))


def test_cli_logs_a_backtest_run_and_writes_the_table(store, tmp_path, own_tracking_store, capsys):
    orders, events = store
    write_tables(orders, events, tmp_path / "data")
    out = tmp_path / "report.md"
    code = main(
        [
            "--orders",
            str(tmp_path / "data" / "orders.parquet"),
            "--events",
            str(tmp_path / "data" / "service_events.parquet"),
            "--cutoff",
            "2025-01-01",
            "--horizon-days",
            "120",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = out.read_text()
    assert "| 2025-01-01 | **model**" in text
    for name in ("simple", "bgnbd", *CLASSICAL):
        assert f"| 2025-01-01 | {name} |" in text
    assert "Bootstrap SE of the model's metrics" in text
    # The level's track record: the totals at the cutoff and at the origin before it.
    assert "| cutoff | served | stack's own | BG/NBD | Pareto/NBD | level served |" in text
    assert "| 2025-01-01 | 2024-09-03 |" in text
    client = MlflowClient()
    runs = mlflow.search_runs(experiment_names=["customer-value"], output_format="list")
    parent = [r for r in runs if r.info.run_name == "backtest"]
    child = [r for r in runs if r.info.run_name == "backtest-2025-01-01"]
    assert parent and child
    assert "model.clv_gini" in child[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(child[0].info.run_id, "plots")}
    assert {"plots/clv_deciles.png", "plots/churn_calibration.png"} <= artifacts
    assert not client.search_registered_models()  # a backtest registers nothing
    assert main(["--orders", "nope.csv", "--cutoff", "2025-01-01"]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_the_spread_over_seeds_is_stated_only_when_more_seeds_ran():
    from training.backtest import CutoffResult, seed_lines

    metrics = {
        "clv_gini": 0.50,
        "clv_spearman": 0.20,
        "clv_rmse": 47.0,
        "clv_total_error_pct": -2.0,
        "churn_roc_auc": 0.68,
        "churn_ece": 0.02,
    }
    result = CutoffResult(CUTOFF, 10, "hybrid", {"model": metrics}, {}, 1.0)
    assert seed_lines([result], seed=7) == []
    result.other_seeds.append({**metrics, "clv_gini": 0.52, "clv_total_error_pct": 3.0})
    lines = seed_lines([result], seed=7)
    row = lines[-1]
    assert row.startswith("| 2025-01-01 | 7, 8 |")
    assert "0.500 / 0.520 (spread 0.020)" in row
    assert "-2.000 / 3.000 (spread 5.000)" in row


def test_with_two_years_each_count_of_buyers_is_put_in_the_horizons_season() -> None:
    # A peak in the served horizon (October to December, 2.5 times as busy) and none in the
    # one before it, the stack's; two and a half years of history.
    params = SynthParams(peak_months=(10, 11, 12), peak_multiplier=2.5)
    orders, _ = generate(
        customers=1200, seed=22, start="2022-04-01", end="2025-04-01", params=params
    )
    orders = validate_orders(orders, strict=True).frame
    cutoff = pd.Timestamp("2024-10-01")
    result, _, _ = backtest_cutoff(
        orders, None, cutoff=cutoff, spec=FeatureSpec(horizon_days=91), settings=SETTINGS
    )
    season = result.churn_season
    assert set(season) == {"served", "learnt", "model", "classical"}
    assert season["served"] > 1.0 > season["learnt"]
    # More buyers in a busier horizon, the model's count moved most (it was learnt off-peak).
    assert season["model"] > season["classical"] > 1.0
    count = result.buyers
    in_season = (
        count["own"]
        * season["model"]
        * count["bgnbd"]
        * season["classical"]
        * count["pareto_nbd"]
        * season["classical"]
    ) ** (1 / 3)
    assert count["model"] == pytest.approx(in_season, rel=1e-6)
    table = "\n".join(churn_lines([result]))
    assert f"x{season['model']:.3f} / x{season['classical']:.3f} (index " in table
    # The classical level in the horizon's season is a candidate: measured at the data end
    # and at every origin, and judged like the others.
    level = result.level
    assert level.served["classical_season"] > 0
    assert level.origins
    for record in level.origins:
        assert record.totals["classical_season"] > 0
    assert "classical_season" in level.table().columns.str.replace("_error_pct", "").tolist()
