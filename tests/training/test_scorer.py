"""The scorer's fit/predict contract."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from features import FeatureSpec, feature_names
from training.scorer import CustomerValueModel, ModelParams

SPEC = FeatureSpec()
NAMES = feature_names(SPEC)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame(rng.random((n, len(NAMES))), columns=NAMES)
    churned = (rng.random(n) < X["days_since_last_order"]).astype(int)
    value = np.where(churned == 1, 0.0, rng.gamma(2.0, 50.0, n) * (0.2 + X["revenue_365d"]))
    return X, pd.Series(value), pd.Series(churned)


def fitted(data, seed=1):
    X, value, churned = data
    return CustomerValueModel(SPEC, ModelParams(n_estimators=60), seed=seed).fit(
        X[:2000],
        value[:2000],
        churned[:2000],
        early_stopping=(X[2000:2500], value[2000:2500], churned[2000:2500]),
        calibration=(X[2500:], churned[2500:]),
    )


def test_not_fitted_error(data):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        CustomerValueModel(SPEC).predict(data[0])


def test_feature_name_diff_lists_missing_and_unexpected(data):
    model = fitted(data)
    bad = data[0].drop(columns=["T", "frequency"]).assign(shoe_size=1.0)
    with pytest.raises(
        ValueError,
        match=r"Missing features \(2\): \['frequency', 'T'\]\n"
        r"Unexpected features \(1\): \['shoe_size'\]",
    ):
        model.predict(bad)


def test_column_order_does_not_matter_and_outputs_are_in_range(data):
    model = fitted(data)
    X = data[0]
    shuffled = X[list(reversed(NAMES))]
    pd.testing.assert_frame_equal(model.predict(X), model.predict(shuffled))
    pred = model.predict(X)
    assert (pred["clv"] >= 0).all() and pred["p_churn"].between(0, 1).all()
    assert model.calibrator_ is not None


def test_same_seed_same_model_and_save_load_round_trip(data, tmp_path):
    a, b = fitted(data, seed=3), fitted(data, seed=3)
    pd.testing.assert_frame_equal(a.predict(data[0]), b.predict(data[0]))
    loaded = CustomerValueModel.load(a.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(a.predict(data[0]), loaded.predict(data[0]))
    assert loaded.spec == SPEC and loaded.feature_names_in_ == NAMES


def test_contributions_sum_to_the_margin(data):
    model = fitted(data)
    X = data[0][:50]
    contrib = model.contributions(X, approximate=False)
    margin = model.churn_model_.predict(X.to_numpy("float32"), output_margin=True)
    np.testing.assert_allclose(contrib["churn"].sum(axis=1), margin, rtol=1e-4, atol=1e-4)
    assert list(contrib["clv"].columns) == [*NAMES, "bias"]


def test_two_part_clv_is_buy_probability_times_spend(data, tmp_path):
    X, value, churned = data
    model = CustomerValueModel(
        SPEC, ModelParams(n_estimators=40, clv_objective="two_part"), seed=2
    ).fit(X[:2500], value[:2500], churned[:2500], calibration=(X[2500:], churned[2500:]))
    pred = model.predict(X)
    spend = model.clv_model_.predict(X.to_numpy("float32"))
    np.testing.assert_allclose(pred["clv"], (1 - pred["p_churn"]) * spend, rtol=1e-6)
    loaded = CustomerValueModel.load(model.save(tmp_path / "two"))
    pd.testing.assert_frame_equal(loaded.predict(X), pred)
    with pytest.raises(ValueError, match="clv_objective must be 'reg:tweedie' or 'two_part'"):
        CustomerValueModel(SPEC, ModelParams(clv_objective="mse")).fit(X, value, churned)


def test_search_reuses_its_best_model_and_samples_large_fits(data):
    from training.search import Slices, fit_on_slices, search

    X, value, churned = data
    frame = X.assign(
        future_value=value, churned=churned, customer_id=[f"c{i}" for i in range(len(X))]
    )
    slices = Slices(fit=frame[:2000], stop=frame[2000:2500], score=frame[2500:])
    base = ModelParams(n_estimators=30)
    found = search(slices, NAMES, SPEC, time_budget=60, max_trials=2, seed=4, base=base)
    assert found.trials == 2 and found.fit_rows == 2000 and found.model is not None
    refit = fit_on_slices(slices, NAMES, SPEC, found.params, 4)
    pd.testing.assert_frame_equal(found.model.predict(X), refit.predict(X))
    sampled = search(
        slices, NAMES, SPEC, time_budget=60, max_trials=1, seed=4, base=base, max_fit_rows=500
    )
    assert 300 < sampled.fit_rows < 700 and sampled.model is None
