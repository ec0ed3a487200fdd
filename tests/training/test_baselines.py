"""The baselines: exact simple-formula values, BG/NBD behaviour on simulated data, contracts."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from training.baselines import BgNbdGammaGammaBaseline, SimpleFormulaBaseline

HORIZON = 90.0
# BG/NBD (days) and Gamma-Gamma parameters the simulated customers are drawn from.
TRUE = {"r": 0.5, "alpha": 60.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 15.0}


def simulate(n: int, seed: int, horizon: float = HORIZON) -> pd.DataFrame:
    """Customers drawn from BG/NBD + Gamma-Gamma, summarised as ``build_features`` does.

    Each customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)`` and drops out after each
    repeat purchase with probability ``p ~ Beta(a, b)``; the first purchase is ``T`` days before
    the cutoff. Purchases in ``[T, T + horizon)`` are the future; each has a Gamma(p, nu) value.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    dropout = rng.beta(TRUE["a"], TRUE["b"], n)
    age = np.floor(rng.uniform(30, 730, n))
    clock, past, last, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        i = np.flatnonzero(active)
        clock[i] += rng.exponential(1.0 / rate[i])
        before = clock[i] < age[i]
        inside = ~before & (clock[i] < age[i] + horizon)
        past[i[before]] += 1
        last[i[before]] = clock[i[before]]
        future[i[inside]] += 1
        active[i[(clock[i] >= age[i] + horizon) | (rng.random(i.size) < dropout[i])]] = False
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["v"], n)
    repeats = np.maximum(past, 1.0)
    repeat_mean = rng.gamma(TRUE["p"] * repeats, 1.0 / (nu * repeats))
    future_value = rng.gamma(TRUE["p"] * np.maximum(future, 1.0), 1.0 / nu)
    return pd.DataFrame(
        {
            "frequency": past,
            "recency": last,
            "T": age,
            "days_since_first_order": age,
            "repeat_order_value_mean": np.where(past > 0, repeat_mean, np.nan),
            "future_purchases": future,
            "future_value": np.where(future > 0, future_value, 0.0),
        },
        index=pd.Index([f"c{k:05d}" for k in range(n)], name="customer_id"),
    )


def probe(rows: list[dict[str, float]]) -> pd.DataFrame:
    """Hand-built customers with the BG/NBD columns (``T`` doubles as the tenure)."""
    frame = pd.DataFrame(rows)
    frame["days_since_first_order"] = frame["T"]
    frame["repeat_order_value_mean"] = 40.0
    frame.index = pd.Index([f"p{k}" for k in range(len(frame))], name="customer_id")
    return frame


# --------------------------------------------------------------------------- simple formula


@pytest.fixture
def simple_features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "orders_total": [4.0, 1.0, 0.0, 2.0],
            "avg_order_value": [50.0, 30.0, np.nan, np.nan],
            "days_since_first_order": [200.0, 10.0, 50.0, 100.0],
        },
        index=pd.Index(["a", "b", "c", "d"], name="customer_id"),
    )


def test_simple_formula_exact_values(simple_features):
    out = SimpleFormulaBaseline().fit(simple_features).predict(simple_features, horizon_days=100)

    assert list(out.columns) == ["clv", "p_churn"]
    assert out.index.equals(simple_features.index)
    # a: 4 orders in 200 days -> 0.02 orders/day; 50 x 0.02 x 100 = 100.
    assert out.loc["a", "clv"] == pytest.approx(100.0)
    assert out.loc["a", "p_churn"] == pytest.approx(math.exp(-2.0))
    # b: 10 days of tenure are floored to 30 -> 1/30 per day; 30 x (1/30) x 100 = 100.
    assert out.loc["b", "clv"] == pytest.approx(100.0)
    assert out.loc["b", "p_churn"] == pytest.approx(math.exp(-100 / 30))
    # c: only cancelled orders -> no rate, no value, certain churn.
    assert out.loc["c", "clv"] == 0.0
    assert out.loc["c", "p_churn"] == 1.0
    # d: orders but no revenue (all returned) -> no value, the rate still sets the churn.
    assert out.loc["d", "clv"] == 0.0
    assert out.loc["d", "p_churn"] == pytest.approx(math.exp(-2.0))


def test_simple_formula_tenure_floor_is_a_parameter(simple_features):
    out = (
        SimpleFormulaBaseline(min_tenure_days=5)
        .fit(simple_features)
        .predict(simple_features, horizon_days=100)
    )
    assert out.loc["b", "clv"] == pytest.approx(30.0 * (1 / 10) * 100)


def test_simple_formula_rejects_a_bad_floor_and_horizon(simple_features):
    with pytest.raises(ValueError, match="min_tenure_days must be a positive"):
        SimpleFormulaBaseline(min_tenure_days=0).fit(simple_features)
    fitted = SimpleFormulaBaseline().fit(simple_features)
    with pytest.raises(ValueError, match="horizon_days must be a positive"):
        fitted.predict(simple_features, horizon_days=0)


# --------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize(
    ("baseline", "drop"),
    [
        (SimpleFormulaBaseline(), ["avg_order_value"]),
        (BgNbdGammaGammaBaseline(), ["recency", "repeat_order_value_mean"]),
    ],
)
def test_missing_columns_are_named(baseline, drop):
    features = simulate(50, seed=0).assign(orders_total=1.0, avg_order_value=10.0)
    with pytest.raises(ValueError, match=re.escape(f"missing required column(s) {drop}")):
        baseline.fit(features.drop(columns=drop))


@pytest.mark.parametrize("baseline", [SimpleFormulaBaseline(), BgNbdGammaGammaBaseline()])
def test_predict_before_fit_is_an_error(baseline):
    features = simulate(50, seed=0).assign(orders_total=1.0, avg_order_value=10.0)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        baseline.predict(features, HORIZON)


def test_bgnbd_without_repeat_buyers_is_a_runtime_error():
    features = simulate(200, seed=0).assign(frequency=0.0, recency=0.0)
    with pytest.raises(RuntimeError, match="BG/NBD fit failed: no customer has a repeat"):
        BgNbdGammaGammaBaseline().fit(features)


def test_gamma_gamma_without_repeat_spend_is_a_runtime_error():
    features = simulate(200, seed=0).assign(repeat_order_value_mean=0.0)
    with pytest.raises(RuntimeError, match="Gamma-Gamma fit failed: 0 customers"):
        BgNbdGammaGammaBaseline().fit(features)


# --------------------------------------------------------------------------- BG/NBD + Gamma-Gamma


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate(4000, seed=1)


@pytest.fixture(scope="module")
def bgnbd(simulated) -> BgNbdGammaGammaBaseline:
    return BgNbdGammaGammaBaseline(random_seed=0).fit(simulated)


@pytest.mark.slow
def test_bgnbd_recovers_the_simulated_future(bgnbd, simulated):
    parts = bgnbd.predict_components(simulated, HORIZON)
    clv = bgnbd.predict(simulated, HORIZON)["clv"]

    actual = simulated["future_purchases"]
    assert parts["purchases"].sum() == pytest.approx(actual.sum(), rel=0.15)
    assert clv.sum() == pytest.approx(simulated["future_value"].sum(), rel=0.15)
    assert parts["p_churn"].mean() == pytest.approx((actual == 0).mean(), abs=0.02)
    # One-time buyers are alive under BG/NBD; pymc-marketing's own formula overstates their
    # churn, the baseline's closed form matches the simulation.
    once = simulated["frequency"] == 0
    assert parts.loc[once, "p_churn"].mean() == pytest.approx((actual[once] == 0).mean(), abs=0.02)
    assert bgnbd.bgnbd_params_["r"] / bgnbd.bgnbd_params_["alpha"] == pytest.approx(
        TRUE["r"] / TRUE["alpha"], rel=0.2
    )


@pytest.mark.slow
def test_bgnbd_more_recent_or_frequent_means_more_purchases_and_less_churn(bgnbd):
    customers = probe(
        [
            {"frequency": 5, "recency": 360, "T": 365},  # recent
            {"frequency": 5, "recency": 100, "T": 365},  # same frequency, long silent
            {"frequency": 10, "recency": 360, "T": 365},  # recent and more frequent
            {"frequency": 2, "recency": 360, "T": 365},  # recent, less frequent
        ]
    )
    parts = bgnbd.predict_components(customers, HORIZON)
    purchases, churn = parts["purchases"], parts["p_churn"]

    assert purchases["p0"] > purchases["p1"] and churn["p0"] < churn["p1"]
    assert purchases["p2"] > purchases["p0"] > purchases["p3"]
    assert churn["p2"] < churn["p0"] < churn["p3"]


@pytest.mark.slow
def test_bgnbd_output_contract(bgnbd, simulated):
    features = simulated.head(30).copy()
    features.iloc[:3, features.columns.get_loc("frequency")] = np.nan  # only cancelled orders
    features.iloc[:3, features.columns.get_loc("recency")] = np.nan
    features.iloc[3, features.columns.get_loc("recency")] = 10_000.0  # recency > T is clipped
    features.index = ["same"] * 30  # the index is carried through, not interpreted

    out = bgnbd.predict(features, HORIZON)

    assert list(out.columns) == ["clv", "p_churn"]
    assert list(out.index) == ["same"] * 30
    assert not out.isna().any().any()
    assert (out["clv"] >= 0).all()
    assert out["p_churn"].between(0, 1).all()
    # Customers without a purchase are scored like one-time buyers of the same age.
    one_time = probe([{"frequency": 0, "recency": 0, "T": features["T"].iloc[0]}])
    expected = bgnbd.predict(one_time, HORIZON).iloc[0]
    assert out.iloc[0].to_numpy() == pytest.approx(expected.to_numpy())


@pytest.mark.slow
def test_bgnbd_relabelling_and_reordering_customers_changes_nothing(bgnbd, simulated):
    features = simulated.head(200)
    before = bgnbd.predict(features, HORIZON)
    shuffled = features.sample(frac=1.0, random_state=3)
    original = shuffled.index
    shuffled.index = pd.Index([f"z{k}" for k in range(len(shuffled))], name="customer_id")

    after = bgnbd.predict(shuffled, HORIZON).set_axis(original)

    pd.testing.assert_frame_equal(after.loc[features.index], before, check_names=False)


@pytest.mark.slow
def test_bgnbd_fits_on_a_seeded_subsample(simulated):
    model = BgNbdGammaGammaBaseline(random_seed=0, max_fit_customers=1000).fit(simulated)
    assert model.n_fit_customers_ == 1000
    out = model.predict(simulated, HORIZON)
    assert out.index.equals(simulated.index)
    assert out["clv"].sum() == pytest.approx(simulated["future_value"].sum(), rel=0.3)
