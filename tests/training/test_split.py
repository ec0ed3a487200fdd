"""Cutoff planning: the gap rule, short histories and clear errors."""

import pandas as pd
import pytest

from training.split import temporal_split


def test_strict_plan_keeps_every_training_label_window_before_the_holdout():
    plan = temporal_split(
        pd.Timestamp("2022-07-01"), pd.Timestamp("2026-06-30 18:00"), horizon_days=365
    )
    assert plan.strict
    assert plan.data_end == pd.Timestamp("2026-07-01")
    assert plan.holdout_cutoff == pd.Timestamp("2025-07-01")
    horizon = pd.Timedelta(days=365)
    assert all(c + horizon <= plan.holdout_cutoff for c in plan.training_cutoffs)
    assert plan.valid_cutoff == max(plan.training_cutoffs)
    assert len(plan.training_cutoffs) == 12
    assert plan.all_cutoffs[-1] == plan.holdout_cutoff


def test_short_history_still_trains_and_says_the_holdout_is_not_strict():
    plan = temporal_split(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31"), horizon_days=182)
    assert not plan.strict
    assert "NOT a strict holdout" in plan.note
    assert all(c < plan.holdout_cutoff for c in plan.training_cutoffs)
    assert len(plan.training_cutoffs) >= 2


def test_horizon_longer_than_the_data_is_explained():
    with pytest.raises(ValueError, match=r"horizon_days=400 is too long for 366 days of orders"):
        temporal_split(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31"), horizon_days=400)
