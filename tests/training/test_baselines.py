"""The baselines: exact simple-formula values, BG/NBD and Pareto/NBD on simulated data."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from training.baselines import (
    PARETO_NBD_MAX_SHAPE,
    BgNbdGammaGammaBaseline,
    ParetoNbdGammaGammaBaseline,
    SimpleFormulaBaseline,
    _anchored_spend,
    _gamma_gamma_nll,
)
from training.purchase import gamma_gamma_spend

HORIZON = 90.0
# BG/NBD (days) and Gamma-Gamma parameters the simulated customers are drawn from.
TRUE = {"r": 0.5, "alpha": 60.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 15.0}
# Pareto/NBD (days): purchase rate ~ Gamma(r, alpha), dropout rate ~ Gamma(s, beta).
PARETO_TRUE = {"r": 0.6, "alpha": 80.0, "s": 0.8, "beta": 250.0}
COMPONENT_COLUMNS = ["purchases", "spend", "p_churn", "p_alive"]


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
    return summarise(rng, past, last, age, future)


def simulate_pareto_nbd(
    n: int, seed: int, horizon: float = HORIZON, dropout_rate: float | None = None
) -> pd.DataFrame:
    """Customers drawn from Pareto/NBD + Gamma-Gamma, summarised as ``build_features`` does.

    Each customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)`` until dying at an
    exponential time of rate ``mu ~ Gamma(s, beta)`` (possibly before any repeat purchase),
    or of rate ``dropout_rate`` for everyone when given (the limit ``s, beta -> inf``). The
    first purchase is ``T`` days before the cutoff. ``alive`` is the true state at the
    cutoff; spend as in :func:`simulate`.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(PARETO_TRUE["r"], 1.0 / PARETO_TRUE["alpha"], n)
    if dropout_rate is None:
        mu = rng.gamma(PARETO_TRUE["s"], 1.0 / PARETO_TRUE["beta"], n)
    else:
        mu = np.full(n, dropout_rate)
    death = rng.exponential(1.0 / mu)
    age = np.floor(rng.uniform(30, 730, n))
    end = np.minimum(death, age + horizon)
    clock, past, last, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        i = np.flatnonzero(active)
        clock[i] += rng.exponential(1.0 / rate[i])
        bought = clock[i] < end[i]
        before = bought & (clock[i] < age[i])
        past[i[before]] += 1
        last[i[before]] = clock[i[before]]
        future[i[bought & ~before]] += 1
        active[i[~bought]] = False
    return summarise(rng, past, last, age, future).assign(alive=death > age)


def summarise(
    rng: np.random.Generator,
    past: np.ndarray,
    last: np.ndarray,
    age: np.ndarray,
    future: np.ndarray,
) -> pd.DataFrame:
    """The feature columns for simulated purchases, with Gamma(p, nu) order values."""
    n = len(past)
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
        (ParetoNbdGammaGammaBaseline(), ["T"]),
    ],
)
def test_missing_columns_are_named(baseline, drop):
    features = simulate(50, seed=0).assign(orders_total=1.0, avg_order_value=10.0)
    with pytest.raises(ValueError, match=re.escape(f"missing required column(s) {drop}")):
        baseline.fit(features.drop(columns=drop))


@pytest.mark.parametrize(
    "baseline",
    [SimpleFormulaBaseline(), BgNbdGammaGammaBaseline(), ParetoNbdGammaGammaBaseline()],
)
def test_predict_before_fit_is_an_error(baseline):
    features = simulate(50, seed=0).assign(orders_total=1.0, avg_order_value=10.0)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        baseline.predict(features, HORIZON)
    if not isinstance(baseline, SimpleFormulaBaseline):
        with pytest.raises(NotFittedError, match=re.escape("call fit(features) before predict")):
            baseline.predict_components(features, HORIZON)


@pytest.mark.parametrize(
    ("baseline", "name"),
    [(BgNbdGammaGammaBaseline(), "BG/NBD"), (ParetoNbdGammaGammaBaseline(), "Pareto/NBD")],
)
def test_without_repeat_buyers_is_a_runtime_error(baseline, name):
    features = simulate(200, seed=0).assign(frequency=0.0, recency=0.0)
    with pytest.raises(RuntimeError, match=f"{name} fit failed: no customer has a repeat"):
        baseline.fit(features)


@pytest.mark.parametrize("baseline", [BgNbdGammaGammaBaseline(), ParetoNbdGammaGammaBaseline()])
def test_gamma_gamma_without_repeat_spend_is_a_runtime_error(baseline):
    features = simulate(200, seed=0).assign(repeat_order_value_mean=0.0)
    with pytest.raises(RuntimeError, match="Gamma-Gamma fit failed: 0 customers"):
        baseline.fit(features)


@pytest.mark.parametrize("cap", [0, 2.5, -3])
def test_a_bad_fit_subsample_is_named(cap):
    with pytest.raises(ValueError, match=f"max_fit_customers must be a positive integer .*{cap}"):
        ParetoNbdGammaGammaBaseline(max_fit_customers=cap).fit(simulate(50, seed=0))


def test_pareto_nbd_fits_on_a_smaller_subsample_by_default():
    assert ParetoNbdGammaGammaBaseline().max_fit_customers == 10_000
    assert BgNbdGammaGammaBaseline().max_fit_customers == 200_000
    assert ParetoNbdGammaGammaBaseline(max_fit_customers=None).max_fit_customers is None


@pytest.mark.parametrize("estimator", [BgNbdGammaGammaBaseline, ParetoNbdGammaGammaBaseline])
def test_a_log_without_revenue_expects_its_one_amount_per_order(estimator):
    # Every amount 1 (a shop that logs orders, not revenue). Gamma-Gamma's likelihood then
    # rises without end, and its optimiser stopped where the mean spend was 0.994 on this
    # sample (0.09 on a counts-only cohort, docs/experiments.md entry 39): every value was
    # off by that factor. The spend is the one amount there is.
    features = simulate(1500, seed=2)
    features["repeat_order_value_mean"] = np.where(features["frequency"] > 0, 1.0, np.nan)

    model = estimator(random_seed=0).fit(features)

    parts = model.predict_components(features, HORIZON)
    assert model.population_spend_ == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(parts["spend"], 1.0, rtol=1e-9)
    clv = model.predict(features, HORIZON)["clv"]
    np.testing.assert_allclose(clv, parts["purchases"], rtol=1e-9)
    # The registered model's purchase model reads the same parameters.
    x = features["frequency"].to_numpy()
    known = x > 0
    served = gamma_gamma_spend(**model.gamma_gamma_params_, x=x, m=np.ones(len(x)), known=known)
    np.testing.assert_allclose(served, 1.0, rtol=1e-9)


@pytest.mark.parametrize("estimator", [BgNbdGammaGammaBaseline, ParetoNbdGammaGammaBaseline])
def test_heavy_tailed_spend_gets_a_finite_mean_spend_instead_of_a_failed_fit(estimator):
    # Customers' mean spends log-normal with sigma 1.5 (a wholesaler's few large accounts):
    # Gamma-Gamma's maximum has q = 0.79 here, a population without a finite mean spend, and
    # training stopped with an error. The refit holds the mean at the customers' own.
    features = simulate(1500, seed=1)
    spend = np.exp(np.random.default_rng(1).normal(np.log(400.0), 1.5, len(features)))
    features["repeat_order_value_mean"] = np.where(features["frequency"] > 0, spend, np.nan)

    model = estimator(random_seed=0).fit(features)

    assert model.gamma_gamma_params_["q"] > 1.0
    own = features["repeat_order_value_mean"].dropna()
    assert model.population_spend_ == pytest.approx(own.mean(), rel=1e-9)
    parts = model.predict_components(features, HORIZON)
    assert np.isfinite(parts["spend"]).all() and (parts["spend"] > 0).all()
    # Among customers with as many repeat orders, a larger mean spend still expects more.
    once = (features["frequency"] == 1).to_numpy()
    order = np.argsort(features["repeat_order_value_mean"].to_numpy()[once])
    assert (np.diff(parts["spend"].to_numpy()[once][order]) > 0).all()


def test_the_gamma_gamma_likelihood_is_the_one_the_library_maximises(bgnbd, simulated):
    repeat = simulated[simulated["frequency"] > 0]
    x = repeat["frequency"].to_numpy()
    m = repeat["repeat_order_value_mean"].to_numpy()
    fitted = bgnbd.gamma_gamma_params_
    at_fit = _gamma_gamma_nll(fitted["p"], fitted["q"], fitted["v"], x, m)
    for name in ("p", "q", "v"):
        for step in (0.97, 1.03):
            moved = {**fitted, name: fitted[name] * step}
            assert _gamma_gamma_nll(moved["p"], moved["q"], moved["v"], x, m) > at_fit, moved


def test_a_gamma_gamma_fit_run_off_to_a_point_mass_gets_the_orders_mean_spend():
    repeat = pd.DataFrame({"frequency": [1.0, 3.0, 2.0], "monetary_value": [10.0, 20.0, 14.0]})
    # Parameters a fit stopped at on a counts-only cohort: a mean spend of 0.09.
    run_off = {"p": 7.183e28, "q": 2.483e45, "v": 3.124e15}

    anchored = _anchored_spend(run_off, repeat)

    assert (anchored["p"], anchored["q"]) == (run_off["p"], run_off["q"])
    mean = anchored["p"] * anchored["v"] / (anchored["q"] - 1.0)
    assert mean == pytest.approx((10.0 + 3 * 20.0 + 2 * 14.0) / 6.0, rel=1e-12)
    # An ordinary fit, with a spread in mean spend, is left as it is.
    ordinary = {"p": 6.0, "q": 4.0, "v": 15.0}
    assert _anchored_spend(ordinary, repeat) == ordinary


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
    assert (parts.loc[once, "p_alive"] == 1.0).all()
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
    purchases, churn, alive = parts["purchases"], parts["p_churn"], parts["p_alive"]

    assert purchases["p0"] > purchases["p1"] and churn["p0"] < churn["p1"]
    assert alive["p0"] > alive["p1"]
    assert purchases["p2"] > purchases["p0"] > purchases["p3"]
    assert churn["p2"] < churn["p0"] < churn["p3"]


@pytest.mark.slow
@pytest.mark.parametrize("fitted", ["bgnbd", "pareto_nbd"])
def test_output_contract(fitted, request, simulated):
    baseline = request.getfixturevalue(fitted)
    features = simulated.head(30).copy()
    features.iloc[:3, features.columns.get_loc("frequency")] = np.nan  # only cancelled orders
    features.iloc[:3, features.columns.get_loc("recency")] = np.nan
    features.iloc[3, features.columns.get_loc("recency")] = 10_000.0  # recency > T is clipped
    features.index = ["same"] * 30  # the index is carried through, not interpreted

    out = baseline.predict(features, HORIZON)
    parts = baseline.predict_components(features, HORIZON)

    assert list(out.columns) == ["clv", "p_churn"]
    assert list(parts.columns) == COMPONENT_COLUMNS
    assert list(out.index) == list(parts.index) == ["same"] * 30
    assert not out.isna().any().any() and not parts.isna().any().any()
    assert (out["clv"] >= 0).all()
    assert out["p_churn"].between(0, 1).all() and parts["p_alive"].between(0, 1).all()
    assert out["clv"].to_numpy() == pytest.approx((parts["purchases"] * parts["spend"]).to_numpy())
    # Customers without a purchase are scored like one-time buyers of the same age.
    one_time = probe([{"frequency": 0, "recency": 0, "T": features["T"].iloc[0]}])
    expected = baseline.predict_components(one_time, HORIZON).iloc[0]
    assert parts.iloc[0].to_numpy() == pytest.approx(expected.to_numpy())
    assert baseline.predict_components(features.head(0), HORIZON).columns.tolist() == (
        COMPONENT_COLUMNS
    )


@pytest.mark.slow
@pytest.mark.parametrize("fitted", ["bgnbd", "pareto_nbd"])
def test_relabelling_and_reordering_customers_changes_nothing(fitted, request, simulated):
    baseline = request.getfixturevalue(fitted)
    features = simulated.head(200)
    before = baseline.predict_components(features, HORIZON)
    shuffled = features.sample(frac=1.0, random_state=3)
    original = shuffled.index
    shuffled.index = pd.Index([f"z{k}" for k in range(len(shuffled))], name="customer_id")

    after = baseline.predict_components(shuffled, HORIZON).set_axis(original)

    pd.testing.assert_frame_equal(after.loc[features.index], before, check_names=False)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [BgNbdGammaGammaBaseline, ParetoNbdGammaGammaBaseline])
def test_fits_on_a_seeded_subsample(estimator, simulated):
    model = estimator(random_seed=0, max_fit_customers=1000).fit(simulated)
    assert model.n_fit_customers_ == 1000
    out = model.predict(simulated, HORIZON)
    assert out.index.equals(simulated.index)
    assert out["clv"].sum() == pytest.approx(simulated["future_value"].sum(), rel=0.3)


# ------------------------------------------------------------------------- Pareto/NBD + Gamma-Gamma


@pytest.fixture(scope="module")
def pareto_simulated() -> pd.DataFrame:
    return simulate_pareto_nbd(3000, seed=2)


@pytest.fixture(scope="module")
def pareto_nbd(pareto_simulated) -> ParetoNbdGammaGammaBaseline:
    return ParetoNbdGammaGammaBaseline(random_seed=0).fit(pareto_simulated)


@pytest.mark.slow
def test_pareto_nbd_recovers_the_simulated_truth(pareto_nbd, pareto_simulated):
    params = pareto_nbd.pareto_nbd_params_
    # r and alpha are pinned down by 3,000 customers (within 12% over 14 seeds); s and beta
    # only as their ratio, the mean dropout rate (within 27%; s alone ranged 0.6-1.6 around 0.8).
    assert params["r"] == pytest.approx(PARETO_TRUE["r"], rel=0.2)
    assert params["alpha"] == pytest.approx(PARETO_TRUE["alpha"], rel=0.2)
    assert params["s"] / params["beta"] == pytest.approx(
        PARETO_TRUE["s"] / PARETO_TRUE["beta"], rel=0.35
    )
    assert params["s"] < PARETO_NBD_MAX_SHAPE  # an interior optimum: the cap plays no part

    parts = pareto_nbd.predict_components(pareto_simulated, HORIZON)
    clv = pareto_nbd.predict(pareto_simulated, HORIZON)["clv"]
    actual = pareto_simulated["future_purchases"]
    assert parts["purchases"].sum() == pytest.approx(actual.sum(), rel=0.1)
    assert clv.sum() == pytest.approx(pareto_simulated["future_value"].sum(), rel=0.15)
    assert parts["p_churn"].mean() == pytest.approx((actual == 0).mean(), abs=0.02)
    assert parts["p_alive"].mean() == pytest.approx(pareto_simulated["alive"].mean(), abs=0.05)
    # One-time buyers can already be dead under Pareto/NBD: pymc-marketing's P(no purchase)
    # is right for them too, and matches what the simulated one-time buyers did.
    once = pareto_simulated["frequency"] == 0
    assert parts.loc[once, "p_churn"].mean() == pytest.approx((actual[once] == 0).mean(), abs=0.03)
    assert parts.loc[once, "p_alive"].mean() == pytest.approx(
        pareto_simulated.loc[once, "alive"].mean(), abs=0.07
    )


@pytest.mark.slow
def test_pareto_nbd_longer_silence_means_more_churn_and_less_alive(pareto_nbd):
    customers = probe(
        [
            {"frequency": 5, "recency": 360, "T": 365},  # recent
            {"frequency": 5, "recency": 200, "T": 365},  # same frequency, silent for longer
            {"frequency": 5, "recency": 50, "T": 365},  # silent for longest
            {"frequency": 10, "recency": 360, "T": 365},  # recent and more frequent
            {"frequency": 0, "recency": 0, "T": 30},  # one-time buyers, ever longer ago
            {"frequency": 0, "recency": 0, "T": 200},
            {"frequency": 0, "recency": 0, "T": 600},
        ]
    )
    parts = pareto_nbd.predict_components(customers, HORIZON)
    purchases, churn, alive = parts["purchases"], parts["p_churn"], parts["p_alive"]

    for steps in (["p0", "p1", "p2"], ["p4", "p5", "p6"]):
        assert churn[steps].is_monotonic_increasing and churn[steps].is_unique
        assert alive[steps].is_monotonic_decreasing and alive[steps].is_unique
        assert purchases[steps].is_monotonic_decreasing and purchases[steps].is_unique
    assert purchases["p3"] > purchases["p0"] and churn["p3"] < churn["p0"]
    assert alive["p4"] < 1.0  # unlike BG/NBD, a one-time buyer may have dropped out
    assert parts["p_churn"].between(0, 1).all() and parts["p_alive"].between(0, 1).all()


@pytest.mark.slow
def test_pareto_nbd_caps_the_dropout_shape_when_dropout_is_homogeneous():
    # Everyone drops out at the same rate: the likelihood keeps rising as s, beta -> inf (as on
    # the real retail data); the fit stops at the cap instead of chasing it.
    features = simulate_pareto_nbd(1500, seed=5, dropout_rate=1 / 300)

    model = ParetoNbdGammaGammaBaseline(random_seed=0).fit(features)

    assert model.pareto_nbd_params_["s"] == pytest.approx(PARETO_NBD_MAX_SHAPE, rel=0.01)
    assert model.pareto_nbd_params_["s"] / model.pareto_nbd_params_["beta"] == pytest.approx(
        1 / 300, rel=0.3
    )
    parts = model.predict_components(features, HORIZON)
    assert np.isfinite(parts.to_numpy()).all()
