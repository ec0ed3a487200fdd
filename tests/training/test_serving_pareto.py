"""The serving Pareto/NBD is fit once: training carries it, the backtest reuses it (issue 25).

Training fits Pareto/NBD on the features at the data end for the served level's totals; the
backtest scores the same customers at the same cutoff. Reusing that fit is only right if it
is the fit the backtest would make itself: same features, same seed, same result.
"""

import pandas as pd
import pytest

from demo.generator import generate
from features import FeatureSpec, build_features
from features.io import validate_events, validate_orders
from training.baselines import ParetoNbdGammaGammaBaseline
from training.config import FitSettings
from training.pipeline import train_models

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


def test_without_a_level_no_serving_pareto_is_fit(history):
    orders, events = history
    settings = FitSettings(max_cutoffs=4, seed=3, level_origins=0)

    trained = train_models(orders, events, spec=SPEC, settings=settings)

    assert trained.serving_pareto is None
