"""The customer profile: calibrated intervals, activity consistent with churn, discounting."""

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from synthetic_rows import customer_rows

from features import FeatureSpec, feature_names
from training.evaluate import profile_metrics
from training.model import CustomerValueModel, ModelParams
from training.profile import (
    LEVEL_GRID,
    RISK_GROUPS,
    Profile,
    check_level,
    discount_factor,
    orders_scale,
)
from training.purchase import PurchaseHistory, PurchaseModel

SPEC = FeatureSpec(horizon_days=180)
NAMES = feature_names(SPEC)
PURCHASE = PurchaseModel(r=0.6, alpha=80.0, a=0.7, b=2.0, p=5.0, q=4.0, v=20.0)


def zero_inflated(rng, n):
    """Revenue that is zero with probability p, else lognormal around a known mean."""
    p = rng.uniform(0.05, 0.95, n)
    mean = rng.gamma(2.0, 50.0, n)
    buys = rng.random(n) >= p
    value = np.where(buys, mean * np.exp(rng.normal(-0.18, 0.6, n)), 0.0)
    orders = np.where(buys, 1 + rng.poisson(1.5, n), 0)
    return p, mean * (1 - p), value, orders


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9])
def test_each_risk_group_is_inside_its_ranges_at_the_level(level):
    rng = np.random.default_rng(3)
    p, clv, value, orders = zero_inflated(rng, 20_000)
    profile = Profile.fit(clv, p, np.full(len(p), 1.0), value, orders)
    p2, clv2, value2, _ = zero_inflated(rng, 20_000)
    low, high = profile.interval(clv2, p2, level)
    assert (low <= high).all() and (low >= 0).all()
    covered = (value2 >= low) & (value2 <= high)
    assert len(profile.risk_edges) == RISK_GROUPS - 1
    group = np.searchsorted(profile.risk_edges, p2, side="right")
    tau = profile.customer_levels(p2, level)
    for g in range(RISK_GROUPS):
        rows = group == g
        # One level per group.
        assert np.unique(tau[rows]).size == 1
        share = covered[rows].mean()
        if tau[rows][0] > LEVEL_GRID[0]:
            # Calibrated on its own: likely buyers are not traded for likely churners.
            assert share == pytest.approx(level, abs=0.025), g
        else:
            # Even the narrowest ranges hold more: the zero outcome alone is heavier.
            assert share >= level - 0.025, g
    assert covered.mean() >= level - 0.015
    # Uncalibrated, the same ranges hold at least the mean of max(level, p): more than asked
    # (more still where a range is widened to reach the expected value).
    raw_low, raw_high = profile.ranges(clv2, p2, level)
    raw = ((value2 >= raw_low) & (value2 <= raw_high)).mean()
    assert raw >= np.mean(np.maximum(level, p2)) - 0.015
    # A range starts at zero exactly when the zero outcome is heavier than the lower tail.
    assert ((low == 0) == (p2 >= (1 - tau) / 2)).all()
    # Every range holds the expected value it stands beside; none is [0, 0] beside a CLV.
    assert ((low <= clv2) & (clv2 <= high)).all()
    assert not ((high == 0) & (clv2 > 0)).any()


def test_likely_buyers_get_ranges_a_whole_base_calibration_would_make_too_narrow():
    # A base of mostly lapsed customers beside a few likely buyers, as a real shop's is.
    rng = np.random.default_rng(11)

    def mostly_lapsed(n):
        p = np.where(rng.random(n) < 0.75, rng.uniform(0.75, 0.97, n), rng.uniform(0.05, 0.5, n))
        mean = rng.gamma(2.0, 50.0, n)
        buys = rng.random(n) >= p
        value = np.where(buys, mean * np.exp(rng.normal(-0.18, 0.6, n)), 0.0)
        return p, mean * (1 - p), value, np.where(buys, 1 + rng.poisson(1.5, n), 0)

    p, clv, value, orders = mostly_lapsed(20_000)
    p2, clv2, value2, _ = mostly_lapsed(20_000)
    grouped = Profile.fit(clv, p, np.ones(len(p)), value, orders)
    # The same residuals calibrated over the whole base as one group.
    whole = replace(grouped, coverage=(), risk_edges=())
    whole_level = float(np.interp(0.8, _base_coverage(whole, clv, p, value), LEVEL_GRID))
    likely = p2 < np.quantile(p2, 0.2)

    def share(low, high):
        return ((value2 >= low) & (value2 <= high))[likely].mean()

    assert share(*whole.ranges(clv2, p2, whole_level)) < 0.75
    assert share(*grouped.interval(clv2, p2, 0.8)) == pytest.approx(0.8, abs=0.025)


def _base_coverage(profile, clv, p, value):
    return np.maximum.accumulate(
        [
            ((value >= low - 0.01) & (value <= high + 0.01)).mean()
            for low, high in (profile.ranges(clv, p, float(t)) for t in LEVEL_GRID)
        ]
    )


def test_a_model_saved_before_the_risk_groups_keeps_its_one_calibration():
    rng = np.random.default_rng(4)
    p, clv, value, orders = zero_inflated(rng, 5000)
    profile = Profile.fit(clv, p, np.ones(5000), value, orders)
    stored = profile.to_dict()
    assert Profile.from_dict(stored) == profile
    old = {**stored, "coverage": stored["coverage"][0]}
    del old["risk_edges"]
    restored = Profile.from_dict(old)
    # Marked as saved before the groups (the gate takes it as outdated), and served as it was.
    assert restored.risk_edges is None and restored.coverage == (profile.coverage[0],)
    assert np.unique(restored.customer_levels(p, 0.8)).size == 1
    assert Profile.from_dict(restored.to_dict()) == restored


def test_a_share_a_churning_base_cannot_reach_is_exceeded_not_missed():
    rng = np.random.default_rng(5)
    p, clv, value, orders = zero_inflated(rng, 5000)
    p = 0.9 + 0.09 * rng.random(5000)  # nine in ten churn: [0, 0] alone holds 90%
    value = np.where(rng.random(5000) >= p, clv / (1 - p), 0.0)
    profile = Profile.fit(clv, p, np.ones(5000), value, orders)
    low, high = profile.interval(clv, p, 0.5)
    assert ((value >= low) & (value <= high)).mean() >= 0.5


def test_order_scale_matches_the_real_total():
    rng = np.random.default_rng(4)
    p, clv, value, orders = zero_inflated(rng, 5000)
    raw = 2.0 * (1 - p)
    profile = Profile.fit(clv, p, raw, value, orders)
    assert profile.orders_scale * raw.sum() == pytest.approx(orders.sum())
    again = Profile.from_dict(profile.to_dict())
    assert again == profile


def test_profile_refuses_a_holdout_without_buyers_and_bad_levels():
    with pytest.raises(ValueError, match="0 customers who spent anything"):
        Profile.fit(np.ones(3), np.full(3, 0.5), np.ones(3), np.zeros(3), np.zeros(3))
    for level in (0.0, 1.0, 80):
        with pytest.raises(ValueError, match="between 0 and 1"):
            check_level(level)


def test_discounting_weights_the_horizon_as_orders_are_expected():
    steps = np.arange(1, 13) * 365 / 12
    even = np.cumsum(np.ones((1, 12)), axis=1)
    early = np.cumsum(np.r_[10.0, np.ones(11) * 0.01][None, :], axis=1)
    assert discount_factor(even, steps, 0.0) == pytest.approx([1.0])
    factor_even = discount_factor(even, steps, 0.1)[0]
    # Spread over a year at 10%: about (1.1 ** -0.5), the value of money half a year out.
    assert factor_even == pytest.approx(1.1**-0.5, abs=0.01)
    assert discount_factor(early, steps, 0.1)[0] > factor_even
    with pytest.raises(ValueError, match="yearly rate"):
        discount_factor(even, steps, 1.5)


def test_median_wait_is_the_median_of_an_active_customers_next_order():
    history = PurchaseHistory(
        x=np.array([0.0, 2.0, 10.0]),
        t_x=np.array([0.0, 100.0, 300.0]),
        T=np.array([50.0, 200.0, 320.0]),
        spend=np.array([np.nan, 30.0, 40.0]),
    )
    wait = PURCHASE.median_wait(history)
    for i, days in enumerate(wait):
        quiet = PURCHASE.quiet(history, days)[i]
        assert quiet == pytest.approx(0.5)
    assert wait[2] < wait[1] < wait[0]  # frequent buyers come back sooner


@pytest.fixture(scope="module")
def model_and_rows():
    rng = np.random.default_rng(0)
    n = 3000
    X = customer_rows(rng, n, NAMES)
    X["revenue_total"] = rng.gamma(2.0, 100.0, n)
    buy = rng.random(n) < np.exp(-X["days_since_last_order"] / 150) * (0.3 + 0.1 * X["frequency"])
    orders = np.where(buy, 1 + rng.poisson(1.0, n), 0)
    value = pd.Series(np.where(buy, rng.gamma(2.0, 40.0, n) * orders, 0.0))
    churned = pd.Series((~buy).astype(int))
    model = CustomerValueModel(SPEC, ModelParams(n_estimators=30), seed=1).fit(
        X[:2000], value[:2000] / 2, churned[:2000], purchase=PURCHASE, window_days=90
    )
    model.fit_stack(X[2000:], value[2000:], churned[2000:], future_orders=pd.Series(orders[2000:]))
    return model, X, value, churned, orders


def test_profile_columns_agree_with_the_models_own_predictions(model_and_rows):
    model, X, *_ = model_and_rows
    frame = model.profile(X[2000:], level=0.8, discount_rate=0.1)
    assert np.allclose(frame["total_value"], frame["historic_value"] + frame["clv"])
    assert (frame["clv_low"] <= frame["clv_high"]).all()
    assert (frame["clv_discounted"] < frame["clv"]).all()
    # Activity is what the served churn implies, for every customer: P(no order in H) =
    # 1 - a + a * g(H), with g an active customer's chance of no order.
    history = model._history(X[2000:][model.feature_names_in_].to_numpy())
    activity = model.purchase_.activity(history, frame["p_churn"].to_numpy(), SPEC.horizon_days)
    assert np.allclose(activity.p_active, frame["p_active"])
    assert np.allclose(1 - activity.p_order_by(SPEC.horizon_days), frame["p_churn"])
    # Ordering means being active: p_active is never under the chance of ordering.
    assert (frame["p_active"] >= 1 - frame["p_churn"] - 1e-9).all()
    # A date exactly for customers more likely to order within the horizon than not, inside it.
    dated = frame["next_order_days"].notna()
    clear = (frame["p_churn"] - 0.5).abs() > 1e-9
    assert (dated == (frame["p_churn"] < 0.5))[clear].all()
    assert (frame.loc[dated, "next_order_days"] < SPEC.horizon_days).all()
    # Expected orders (before the holdout's scale) are never under the chance of any order.
    scale = model.require_stack().profile.orders_scale * model.season_
    assert (frame["expected_orders"] / scale >= 1 - frame["p_churn"] - 1e-6).all()
    no_discount = model.profile(X[2000:2100])
    assert np.allclose(no_discount["clv_discounted"], no_discount["clv"])


def test_profile_metrics_against_the_rows_it_was_fit_on(model_and_rows):
    model, X, value, _, orders = model_and_rows
    actual = pd.DataFrame(
        {
            "future_value": value[2000:].to_numpy(),
            "future_orders": orders[2000:],
            "days_to_next_order": np.where(orders[2000:] > 0, 30.0, np.nan),
        }
    )
    frame = model.profile(X[2000:]).reset_index(drop=True)
    metrics = profile_metrics(actual, frame, 0.8, model.purchase_orders(X[2000:]))
    # The order scale is fit on these rows: the total matches by construction.
    assert metrics["orders_total_error_pct"] == pytest.approx(0.0, abs=1e-6)
    assert 0.7 <= metrics["interval_coverage"] <= 1.0
    # The likely buyers' share is theirs alone, and is absent without p_churn.
    likely = frame["p_churn"].to_numpy() < 0.5
    assert likely.any() and not likely.all()
    inside = (actual["future_value"] >= frame["clv_low"] - 0.01) & (
        actual["future_value"] <= frame["clv_high"] + 0.01
    )
    assert metrics["interval_coverage_likely"] == pytest.approx(inside[likely].mean())
    no_risk = profile_metrics(actual, frame.drop(columns="p_churn"), 0.8)
    assert np.isnan(no_risk["interval_coverage_likely"])
    assert metrics["next_order_customers"] > 0
    assert {"purchase_orders_total_error_pct", "purchase_orders_mae"} <= set(metrics)


def test_expected_orders_never_fall_under_the_chance_of_an_order(model_and_rows):
    # A served level below 1 scales the orders down with the value; the chance of ordering
    # at all (1 - p_churn) is still a floor: whoever orders places at least one order.
    model, X, *_ = model_and_rows
    stack = model.require_stack()
    lowered = copy.copy(model).with_stack(replace(stack, level=0.2))
    frame = lowered.profile(X[2000:])
    assert (frame["expected_orders"] >= 1 - frame["p_churn"] - 1e-12).all()
    assert (frame["expected_orders"] == 1 - frame["p_churn"]).any()


def test_the_order_scale_is_solved_with_the_floor_in_place():
    expected = np.array([0.1, 0.2, 2.0, 4.0])
    p_order = np.array([0.5, 0.5, 0.9, 0.9])
    actual = np.array([1.0, 0.0, 3.0, 4.0])
    scale = orders_scale(expected, p_order, actual)
    assert np.maximum(scale * expected, p_order).sum() == pytest.approx(actual.sum(), rel=1e-9)
    # A base ordering less than its chances imply: no scale matches, the plain ratio stays.
    assert orders_scale(expected, p_order, np.array([0.5, 0, 0, 0])) == pytest.approx(0.5 / 6.3)
