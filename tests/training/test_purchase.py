"""The purchase model's closed forms equal pymc-marketing's own predictions."""

import numpy as np
import pytest
from test_baselines import simulate  # tests/training is on sys.path (pytest prepend mode)

from training.baselines import BgNbdGammaGammaBaseline, _bgnbd_summary, _point, _spend_mask
from training.purchase import PURCHASE_COLUMNS, PurchaseHistory, PurchaseModel

PARAMS = {"r": 0.6, "alpha": 80.0, "a": 0.7, "b": 2.0, "p": 5.0, "q": 4.0, "v": 20.0}


def history(frame) -> PurchaseHistory:
    return PurchaseHistory.from_columns(
        {c: frame[c].to_numpy(dtype="float64") for c in PURCHASE_COLUMNS}
    )


@pytest.fixture(scope="module")
def fitted():
    frame = simulate(1500, seed=3)
    return frame, BgNbdGammaGammaBaseline(random_seed=1).fit(frame)


@pytest.mark.slow
def test_closed_forms_equal_pymc_marketing(fitted):
    frame, baseline = fitted
    model = PurchaseModel(**baseline.bgnbd_params_, **baseline.gamma_gamma_params_)
    h = history(frame)
    parts = baseline.predict_components(frame, 120.0)
    np.testing.assert_allclose(model.expected_orders(h, 120.0), parts["purchases"], rtol=1e-8)
    np.testing.assert_allclose(model.p_no_order(h, 120.0), parts["p_churn"], rtol=1e-8)
    np.testing.assert_allclose(model.expected_spend(h), parts["spend"], rtol=1e-8)
    summary = _bgnbd_summary(frame)
    alive = baseline.bgnbd_model_.expected_probability_alive(
        summary[["customer_id", "frequency", "recency", "T"]]
    )
    np.testing.assert_allclose(
        model.p_alive(h), _point(alive, summary["customer_id"].to_numpy()), rtol=1e-8
    )
    # The baselines predict spend with the same closed form, so it is pinned to the library's
    # own conditional expectation here, on the library's fit.
    known = _spend_mask(summary)
    repeat = summary.loc[known, ["customer_id", "frequency", "monetary_value"]]
    own = baseline.gamma_gamma_model_.expected_customer_spend(repeat)
    np.testing.assert_allclose(
        model.expected_spend(h)[known], _point(own, repeat["customer_id"].to_numpy()), rtol=1e-8
    )


def test_longer_silence_lowers_p_alive_and_raises_p_no_order():
    model = PurchaseModel(**PARAMS)
    quiet = PurchaseHistory(
        x=np.array([4.0, 4.0, 4.0, 0.0, 0.0]),
        t_x=np.array([200.0, 200.0, 200.0, 0.0, 0.0]),
        T=np.array([210.0, 300.0, 500.0, 100.0, 400.0]),
        spend=np.array([50.0, 50.0, 50.0, np.nan, np.nan]),
    )
    alive = model.p_alive(quiet)
    none = model.p_no_order(quiet, 90.0)
    assert alive[0] > alive[1] > alive[2] and alive[3] == alive[4] == 1.0
    assert none[0] < none[1] < none[2] and none[3] < none[4]
    assert (model.expected_orders(quiet, 90.0) >= 0).all()
    assert model.expected_spend(quiet)[3] == pytest.approx(
        PARAMS["p"] * PARAMS["v"] / (PARAMS["q"] - 1)
    )


def test_only_cancelled_orders_count_as_a_one_time_buyer_of_that_age():
    h = PurchaseHistory.from_columns(
        {
            "frequency": np.array([np.nan]),
            "recency": np.array([np.nan]),
            "T": np.array([np.nan]),
            "days_since_first_order": np.array([30.0]),
            "repeat_order_value_mean": np.array([np.nan]),
        }
    )
    assert h.x[0] == 0 and h.T[0] == 30 and h.t_x[0] == 0


def test_parameters_are_checked_and_round_trip():
    model = PurchaseModel(**PARAMS)
    assert PurchaseModel.from_dict(model.to_dict()) == model
    with pytest.raises(ValueError, match=r"must be finite and > 0; got \{'alpha': -1.0\}"):
        PurchaseModel(**{**PARAMS, "alpha": -1.0})
    with pytest.raises(ValueError, match="Gamma-Gamma q must be > 1"):
        PurchaseModel(**{**PARAMS, "q": 0.5})


def test_activity_agrees_with_the_served_churn_and_reads_silence_as_departure():
    model = PurchaseModel(**PARAMS)
    # One-time buyers silent 30 and 683 days, a regular buyer, and a buyer the served model
    # expects to buy more than their rate says.
    h = PurchaseHistory(
        x=np.array([0.0, 0.0, 8.0, 2.0]),
        t_x=np.array([0.0, 0.0, 300.0, 100.0]),
        T=np.array([30.0, 683.0, 310.0, 400.0]),
        spend=np.array([np.nan, np.nan, 50.0, 40.0]),
    )
    p_churn = np.array([0.6, 0.6, 0.2, 0.01])
    activity = model.activity(h, p_churn, 180.0)
    # P(order in the horizon) is exactly the served 1 - p_churn, for every customer.
    assert np.allclose(activity.p_order_by(180.0), 1 - p_churn)
    assert (activity.p_active >= 1 - p_churn - 1e-12).all()
    assert (activity.p_active <= 1).all()
    # BG/NBD calls every one-time buyer alive (P(alive) = 1); with the same served churn, the
    # silence does not make a customer surely active here.
    assert model.p_alive(h)[:2].tolist() == [1.0, 1.0]
    assert activity.p_active[1] < 1.0
    # A customer the served model thinks buys more than their rate: surely active, faster rate.
    assert activity.p_active[3] == 1.0
    # Even odds of an order within the horizon exactly when p_churn <= 1/2.
    days = activity.days_to_even_odds()
    assert (days[:2] > 180.0).all()
    assert (days[2:] <= 180.0).all()
    assert np.isnan(model.activity(h, np.full(4, 0.95), 180.0).days_to_even_odds()[:2]).all()
    assert np.allclose(activity.p_order_by(days), 0.5)


def test_a_dropout_chance_without_spread_gives_finite_expected_orders():
    # A BG/NBD fit on a 20,000-customer demo store gave a = 1.1e19, b = 1.0e20 (the dropout
    # chance a / (a + b) the same for everyone); scipy's hyp2f1 then returned NaN for
    # new customers (z near 0.9), and the stack refused the NaN.
    h = PurchaseHistory.from_columns(
        {
            "frequency": np.array([0.0, 0.0, 3.0, 20.0]),
            "recency": np.array([0.0, 0.0, 7.0, 300.0]),
            "T": np.array([15.0, 7.0, 14.0, 400.0]),
            "days_since_first_order": np.array([15.0, 7.0, 14.0, 400.0]),
            "repeat_order_value_mean": np.array([np.nan, np.nan, 87.0, 40.0]),
        }
    )
    flat = PurchaseModel(r=1.39, alpha=24.2, a=1.12e19, b=1.03e20, p=1.94, q=3.31, v=77.0)
    orders = flat.expected_orders(h, 365.0)
    assert np.isfinite(orders).all() and (orders > 0).all()
    # Continuous with the series where scipy still computes it: a large but finite spread.
    near = PurchaseModel(r=1.39, alpha=24.2, a=1.12e6, b=1.03e7, p=1.94, q=3.31, v=77.0)
    np.testing.assert_allclose(near.expected_orders(h, 365.0), orders, rtol=1e-5)


@pytest.mark.slow
def test_the_bgnbd_baseline_uses_the_closed_forms_where_the_library_gives_nan(fitted, caplog):
    import copy

    import arviz as az

    frame, baseline = fitted
    flat = {"r": 1.39, "alpha": 24.2, "a": 1.12e19, "b": 1.03e20}
    degenerate = copy.copy(baseline)
    degenerate.bgnbd_model_ = copy.copy(baseline.bgnbd_model_)
    degenerate.bgnbd_model_.idata = None  # the copy's own fit (the fixture's stays as it is)
    degenerate.bgnbd_model_.fit_result = az.from_dict(
        posterior={name: np.array([[value]]) for name, value in flat.items()}
    )
    degenerate.bgnbd_params_ = flat
    # New customers (a week or two old), where the library's series has no finite value.
    new = frame.head(50).assign(frequency=0.0, recency=0.0, T=10.0, days_since_first_order=10.0)
    parts = degenerate.predict_components(new, 365.0)
    assert np.isfinite(parts.to_numpy()).all()
    assert "gave no finite figure for 50 of 50 customers" in caplog.text
    model = PurchaseModel(**flat, **baseline.gamma_gamma_params_)
    np.testing.assert_allclose(parts["purchases"], model.expected_orders(history(new), 365.0))
