"""Whole training runs beyond the session model: a retrain against a champion, a short history."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from demo.generator import generate, write_tables
from training import tracking
from training.config import TrainConfig
from training.promote import main as promote_main
from training.train import main, run

pytestmark = pytest.mark.slow


def test_retrain_on_same_data_is_compared_with_the_champion_and_keeps_it(trained_store, capsys):
    first = trained_store.result
    if not first.promoted:  # tiny data may not beat the baselines: a person forces it
        assert promote_main(["--version", first.version, "--force"]) == 0
    assert tracking.alias_version(tracking.CHAMPION).version == first.version
    config = TrainConfig(
        orders=trained_store.orders_path,
        events=trained_store.events_path,
        horizon_days=180,
        step_days=30,
        max_train_cutoffs=6,
        max_trials=0,
        output_dir=trained_store.root / "out2",
        name="customer-value",
    )
    second = run(config)
    # Same data, same seed: the champion's evaluation twin scores exactly like the candidate's.
    assert not second.promoted
    assert "ties the champion" in " ".join(second.decision.reasons)
    assert "champion" in second.decision.table.columns
    assert tracking.alias_version(tracking.CHAMPION).version == first.version
    assert tracking.alias_version(tracking.CANDIDATE).version == second.version
    metrics = MlflowClient().get_run(second.run_id).data.metrics
    assert metrics["holdout.champion.clv_gini"] == pytest.approx(metrics["holdout.model.clv_gini"])
    capsys.readouterr()
    assert promote_main([]) == 0
    shown = capsys.readouterr().out
    assert f"candidate: customer-value v{second.version}" in shown
    assert "not promoting: re-run with --force" in shown
    # The champion column is the champion judged then, named by its version; the current
    # champion is said apart (it could be this very version by now).
    assert f"champion then (v{first.version})" in shown
    assert f"champion now: v{first.version}\n" in shown
    # The run says what it learnt from: its name, its dataset input, the version's description.
    logged = MlflowClient().get_run(second.run_id)
    assert logged.info.run_name == f"train {tracking.dataset_name(config.orders)} 180d"
    (dataset,) = [i.dataset for i in logged.inputs.dataset_inputs]
    assert dataset.name == tracking.dataset_name(config.orders)
    assert dataset.source and str(config.orders) in dataset.source
    description = MlflowClient().get_model_version("customer-value", second.version).description
    assert description.startswith(f"Trained on {config.orders} (")
    assert "Gate: not promoted: " in description


def test_one_year_with_half_year_horizon_trains_on_a_strict_holdout(
    tmp_path, own_tracking_store, capsys
):
    orders, events = generate(customers=1500, seed=5, start="2024-07-01", end="2025-07-01")
    write_tables(orders, events, tmp_path / "data")
    result = run(
        TrainConfig(
            orders=tmp_path / "data" / "orders.parquet",
            horizon_days=182,
            max_trials=0,
            output_dir=tmp_path / "out",
        )
    )
    # Short windows leave room for a horizon-long holdout after one year of data.
    assert max(result.plan.twin_cutoffs) + pd.Timedelta(days=90) <= result.plan.holdout
    shown = capsys.readouterr().out
    assert "the other half fit the stack" in shown
    # One shop, one model: a shop's file is its own registered model, never the demo's.
    assert "gate: customer-value-data-orders has no champion yet" in shown
    assert MlflowClient().get_model_version("customer-value-data-orders", result.version)
    run_data = MlflowClient().get_run(result.run_id).data
    assert run_data.params["plan.holdout_cutoff"] == str(result.plan.holdout.date())
    assert "holdout.model.clv_gini" in run_data.metrics


def test_a_horizon_the_history_cannot_hold_is_refused_with_the_longest_one_it_can(
    tmp_path, own_tracking_store, capsys
):
    orders, events = generate(customers=300, seed=5, start="2024-07-01", end="2025-03-01")
    write_tables(orders, events, tmp_path / "data")
    code = main(["--orders", str(tmp_path / "data" / "orders.parquet"), "--horizon-days", "365"])
    assert code == 2
    assert "use --horizon-days" in capsys.readouterr().err
