"""Cutoff planning: the holdout, the window cutoffs and clear errors."""

import pandas as pd
import pytest

from training.split import plan_cutoffs

SETTINGS = {"window_days": 90, "step_days": 14, "max_cutoffs": 26, "min_history_days": 60}


def orders(first: str, last: str) -> pd.DataFrame:
    return pd.DataFrame({"ordered_at": [pd.Timestamp(first), pd.Timestamp(last)]})


def test_holdout_is_the_latest_complete_horizon_and_windows_end_before_each_cutoff():
    plan = plan_cutoffs(orders("2022-07-01", "2026-06-30 18:00"), horizon_days=365, **SETTINGS)
    assert plan.data_end == pd.Timestamp("2026-07-01")
    assert plan.holdout == pd.Timestamp("2025-07-01")
    window = pd.Timedelta(days=90)
    assert max(plan.twin_cutoffs) + window == plan.holdout
    assert max(plan.serving_cutoffs) + window == plan.data_end
    assert len(plan.twin_cutoffs) == len(plan.serving_cutoffs) == 26
    steps = pd.Series(plan.twin_cutoffs).diff().dropna()
    assert (steps == pd.Timedelta(days=14)).all()
    assert "holdout 2025-07-01" in plan.note


def test_short_history_gets_fewer_cutoffs_and_the_window_never_exceeds_the_horizon():
    plan = plan_cutoffs(orders("2024-01-01", "2024-12-31"), horizon_days=182, **SETTINGS)
    assert plan.holdout == pd.Timestamp("2024-07-03")  # 2024 is a leap year
    assert min(plan.twin_cutoffs) >= pd.Timestamp("2024-03-01")
    assert 1 <= len(plan.twin_cutoffs) < len(plan.serving_cutoffs)
    short = plan_cutoffs(orders("2024-01-01", "2024-12-31"), horizon_days=30, **SETTINGS)
    assert short.window_days == 30


def test_horizon_longer_than_the_data_is_explained():
    with pytest.raises(
        ValueError,
        match=r"horizon_days=300 is too long for 366 days of orders .* use --horizon-days 216 "
        r"or less",
    ):
        plan_cutoffs(orders("2024-01-01", "2024-12-31"), horizon_days=300, **SETTINGS)
