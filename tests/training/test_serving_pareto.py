"""What the serving fit carries from training: its Pareto/NBD, and its twin's stack restated.

Training fits Pareto/NBD on the features at the data end for the served level's totals; the
backtest scores the same customers at the same cutoff. Reusing that fit is only right if it
is the fit the backtest would make itself: same features, same seed, same result (issue 25).

The serving model takes the stack its twin learnt, restated in its own purchase model's
figures (docs/experiments.md, entry 34).
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from demo.generator import generate
from features import FeatureSpec, build_features, build_labels
from features.io import validate_events, validate_orders
from training.baselines import ParetoNbdGammaGammaBaseline
from training.config import FitSettings
from training.pipeline import served_stack, train_models

pytestmark = pytest.mark.slow

SPEC = FeatureSpec(horizon_days=120)


@pytest.fixture(scope="module")
def history():
    orders, events = generate(customers=600, seed=23, start="2023-07-01", end="2025-01-01")
    return validate_orders(orders, strict=True).frame, validate_events(events, strict=True).frame


def test_the_carried_serving_pareto_is_the_fit_at_the_data_end(history):
    orders, events = history
    settings = FitSettings(max_cutoffs=4, seed=3, level_origins=1)

    trained = train_models(orders, events, spec=SPEC, settings=settings)

    features = build_features(orders, events, cutoff=trained.plan.data_end, spec=SPEC)
    fresh = ParetoNbdGammaGammaBaseline(random_seed=settings.seed).fit(features)
    carried = trained.serving_pareto
    assert carried is not None
    assert carried.pareto_nbd_params_ == fresh.pareto_nbd_params_
    assert carried.gamma_gamma_params_ == fresh.gamma_gamma_params_
    pd.testing.assert_frame_equal(
        carried.predict(features, SPEC.horizon_days), fresh.predict(features, SPEC.horizon_days)
    )
    assert trained.seconds["pareto_nbd_fit"] > 0
    assert {"twin.window_rows", "serving.window_rows", "level"} <= set(trained.seconds)


@pytest.fixture(scope="module")
def trained_without_level(history):
    """One training without the level's replay, shared by the tests that need no more."""
    orders, events = history
    settings = FitSettings(max_cutoffs=4, seed=3, level_origins=0)
    return train_models(orders, events, spec=SPEC, settings=settings)


def test_without_a_level_no_serving_pareto_is_fit(trained_without_level):
    assert trained_without_level.serving_pareto is None


def test_the_serving_stack_is_the_twins_restated_in_its_own_purchase_model(
    history, trained_without_level
):
    orders, events = history
    trained = trained_without_level
    serving, twin, plan = trained.serving, trained.evaluation, trained.plan
    assert serving.stack_.purchase == serving.purchase_ != twin.purchase_
    # The stack the twin learnt for the serving model, restated over the base at the data end.
    holdout = build_features(orders, events, cutoff=plan.holdout, spec=SPEC).join(
        build_labels(orders, cutoff=plan.holdout, spec=SPEC)
    )
    learnt = served_stack(twin, holdout, trained.family, orders, data_end=plan.data_end, spec=SPEC)
    base = build_features(orders, events, cutoff=plan.data_end, spec=SPEC)
    customers = serving.purchase_history(base[serving.feature_names_in_])
    horizon = float(SPEC.horizon_days)
    assert serving.stack_ == replace(
        learnt.restated(serving.purchase_, customers, horizon),
        level=serving.stack_.level,
        churn_shift=serving.stack_.churn_shift,
    )
    # Over that base, the stack's purchase term has the twin's mean and spread.
    g0, g_purchase, _ = serving.stack_.value
    assert g_purchase > 0  # the purchase model has a say in this shop's value
    own = np.log(np.maximum(serving.purchase_.expected_value(customers, horizon), 1e-2))
    twins = np.log(np.maximum(twin.purchase_.expected_value(customers, horizon), 1e-2))
    term = g0 + g_purchase * own
    expected = learnt.value[0] + learnt.value[1] * twins
    assert term.mean() == pytest.approx(expected.mean(), rel=1e-9)
    assert term.std() == pytest.approx(expected.std(), rel=1e-9)
