"""End-to-end training through a real SQLite MLflow store, and the model's behaviour."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features import build_features
from training import tracking
from training.config import parse_args
from training.train import main

pytestmark = pytest.mark.slow


def test_run_is_tracked_registered_and_aliased(trained_store):
    result = trained_store.result
    client = MlflowClient(trained_store.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["horizon_days"] == "180"
    assert run.data.params["plan.holdout_cutoff"] == str(result.plan.holdout.date())
    for name in ("model", "simple", "bgnbd", "pareto_nbd", "hybrid", "classical", "boosted"):
        assert f"holdout.{name}.clv_gini" in run.data.metrics
        assert f"holdout.{name}.churn_roc_auc" in run.data.metrics
    for metric in ("clv_gini", "clv_spearman", "clv_rmse", "churn_roc_auc"):
        assert run.data.metrics[f"holdout.se.{metric}"] > 0
    # Two and a half years of history: the counts of buyers are put in the horizon's season,
    # and the factors are logged beside the counts.
    churn_level = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/churn_level.json")
    assert set(churn_level["season"]) == {"served", "learnt", "model", "classical"}
    for name, value in churn_level["season"].items():
        assert run.data.metrics[f"churn_level.season_{name}"] == pytest.approx(value)
    assert run.data.tags["git_commit"]
    assert run.data.tags["family"] == result.family in ("hybrid", "classical", "boosted")
    assert run.data.tags["gate"] in ("promoted", "not promoted")
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {
        "plots/clv_deciles.png",
        "plots/clv_cumulative_gain.png",
        "plots/churn_calibration.png",
        "plots/churn_feature_importance.png",
    } <= artifacts
    tables = {a.path for a in client.list_artifacts(result.run_id, "tables")}
    assert {"tables/gate.csv", "tables/families.csv"} <= tables
    fingerprint = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/dataset_fingerprint.json")
    assert fingerprint["orders_rows"] == len(trained_store.orders)
    assert len(fingerprint["content_sha256"]) == 64
    candidate = client.get_model_version_by_alias("customer-value", "candidate")
    assert str(candidate.version) == result.version
    champion = tracking.alias_version(tracking.CHAMPION)
    assert (champion is not None and champion.version == result.version) == result.promoted


def test_registered_model_round_trip_gives_identical_predictions(trained_store):
    result = trained_store.result
    features = build_features(
        trained_store.orders,
        trained_store.events,
        cutoff=result.plan.data_end,
        spec=result.model.spec,
    )
    expected = result.model.predict(features)
    loaded = tracking.load_model(trained_store.model_uri)
    pd.testing.assert_frame_equal(loaded.predict(features), expected)
    pyfunc = mlflow.pyfunc.load_model(trained_store.model_uri)
    out = pyfunc.predict(features[loaded.feature_names_in_])
    np.testing.assert_array_equal(out["clv"].to_numpy(), expected["clv"].to_numpy())
    twin = tracking.load_model(trained_store.model_uri, which="evaluation")
    assert twin.feature_names_in_ == loaded.feature_names_in_


@pytest.fixture(scope="module")
def holdout_features(trained_store):
    result = trained_store.result
    return build_features(
        trained_store.orders,
        trained_store.events,
        cutoff=result.plan.holdout,
        spec=result.model.spec,
    )


def test_more_recent_last_order_lowers_churn_probability(trained_store, holdout_features):
    model = trained_store.result.model
    before = model.predict(holdout_features)["p_churn"]
    recent = holdout_features.assign(
        days_since_last_order=holdout_features["days_since_last_order"] / 4
    )
    after = model.predict(recent)["p_churn"]
    assert (after <= before + 1e-12).all()
    assert after.mean() < before.mean()


def test_more_recent_history_lowers_churn_on_rebuilt_features(trained_store):
    # The same customers' histories, shifted 60 days later: every order is more recent.
    result = trained_store.result
    cutoff = result.plan.holdout
    orders = trained_store.orders
    past = orders[orders["ordered_at"] < cutoff - pd.Timedelta(days=60)]
    shifted = past.assign(ordered_at=past["ordered_at"] + pd.Timedelta(days=60))
    model = result.model
    old = model.predict(build_features(past, None, cutoff=cutoff, spec=model.spec))
    new = model.predict(build_features(shifted, None, cutoff=cutoff, spec=model.spec))
    assert new["p_churn"].mean() < old["p_churn"].mean()


def test_more_late_deliveries_never_lower_churn_or_raise_value(trained_store, holdout_features):
    model = trained_store.result.model
    before = model.predict(holdout_features)
    worse = holdout_features.assign(
        late_deliveries_365d=holdout_features["late_deliveries_365d"].fillna(0) + 3
    )
    after = model.predict(worse)
    assert (after["p_churn"] >= before["p_churn"] - 1e-12).all()
    assert (after["clv"] <= before["clv"] + 1e-9).all()


def test_relabelling_customer_ids_changes_nothing(trained_store):
    result = trained_store.result
    orders, events = trained_store.orders, trained_store.events
    mapping = {c: f"X-{i:06d}" for i, c in enumerate(orders["customer_id"].unique()[::-1])}
    a = result.model.predict(
        build_features(orders, events, cutoff=result.plan.holdout, spec=result.model.spec)
    )
    b = result.model.predict(
        build_features(
            orders.assign(customer_id=orders["customer_id"].map(mapping)),
            events.assign(customer_id=events["customer_id"].map(mapping)),
            cutoff=result.plan.holdout,
            spec=result.model.spec,
        )
    )
    b.index = b.index.map({v: k for k, v in mapping.items()})
    pd.testing.assert_frame_equal(a, b.loc[a.index], check_names=False, check_index_type=False)


def test_cli_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--horizon", "x"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--learning-rate", "0.1"])
    assert "unrecognized arguments: --learning-rate" in capsys.readouterr().err
    orders = tmp_path / "o.csv"
    orders.write_text("customer_id,ordered_at,amount\na,2024-01-01,1\na,2024-06-01,2\n")
    # The readiness check refuses first, naming the thresholds; --force gets past it to the
    # split, which names the horizon that does not fit.
    assert main(["--orders", str(orders), "--horizon-days", "400"]) == 2
    err = capsys.readouterr().err
    assert "history: 153 days of orders; required at least 180 days" in err
    assert "pass --force to train anyway" in err
    assert main(["--orders", str(orders), "--horizon-days", "400", "--force"]) == 2
    assert "horizon_days=400 is too long for 153 days of orders" in capsys.readouterr().err


def test_read_only_configure_creates_no_experiment(store, tmp_path):
    # Scoring only loads registered models: it must not create experiments in the store.
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    MlflowClient(uri).search_experiments()  # an existing store without that experiment
    try:
        tracking.configure(uri, experiment="never-created", read_only=True)
        assert mlflow.get_tracking_uri() == uri
        assert MlflowClient(uri).get_experiment_by_name("never-created") is None
    finally:
        tracking.configure(store.tracking_uri)


def test_read_only_configure_refuses_a_missing_store(store, tmp_path):
    # A read-only scorer pointed at the wrong place must say so, not create an empty store.
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(FileNotFoundError, match=r"no MLflow store at .*nowhere/mlflow\.db"):
        tracking.configure(f"sqlite:///{missing}", read_only=True)
    assert not missing.exists()
    assert mlflow.get_tracking_uri() == store.tracking_uri
