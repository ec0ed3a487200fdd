"""The model's contract: fit, stack, predict, explain, save and load."""

import copy
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from synthetic_rows import customer_rows

from features import FeatureSpec, feature_names
from training.model import (
    FORMAT_VERSION,
    PURCHASE_CHURN,
    PURCHASE_VALUE,
    USUAL_FEATURES,
    CustomerValueModel,
    ModelParams,
    TimeBudgetSpent,
    monotone_directions,
    usual_values,
)
from training.purchase import PurchaseModel
from training.stack import Stack

SPEC = FeatureSpec(horizon_days=180)
NAMES = feature_names(SPEC)
PURCHASE = PurchaseModel(r=0.6, alpha=80.0, a=0.7, b=2.0, p=5.0, q=4.0, v=20.0)
#: Trees per part in these tests: their claims are about the model's contract (stack, shapes,
#: save/load, constraints, reasons), which hold for a few trees as for many; 60 cost a minute.
TREES = 10


@pytest.fixture(scope="module")
def data():
    """Customers whose chance to buy falls with the days since their last order."""
    rng = np.random.default_rng(0)
    n = 3000
    X = customer_rows(rng, n, NAMES)
    buy = rng.random(n) < np.exp(-X["days_since_last_order"] / 150) * (0.3 + 0.1 * X["frequency"])
    value = np.where(buy, rng.gamma(2.0, 40.0, n), 0.0)
    return X, pd.Series(value), pd.Series((~buy).astype(int))


_FITTED: dict[tuple[int, str], CustomerValueModel] = {}


def fitted(data, seed=1, family="hybrid"):
    """The model fit on ``data`` (one fit per seed and family per test session)."""
    if (seed, family) not in _FITTED:
        _FITTED[seed, family] = _fit(data, seed, family)
    return _FITTED[seed, family]


def _fit(data, seed, family):
    X, value, churned = data
    model = CustomerValueModel(
        SPEC, ModelParams(n_estimators=TREES), seed=seed
    ).fit(
        X[:2000],
        value[:2000] / 2,  # the short window sees about half the horizon's revenue
        churned[:2000],
        purchase=PURCHASE,
        window_days=90,
        early_stopping=(X[2000:2500], value[2000:2500] / 2, churned[2000:2500]),
    )
    return model.fit_stack(X[2500:], value[2500:], churned[2500:], family=family)


def test_not_fitted_and_no_stack_errors(data):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        CustomerValueModel(SPEC).predict(data[0])
    X, value, churned = data
    parts_only = CustomerValueModel(SPEC, ModelParams(n_estimators=5)).fit(
        X, value, churned, purchase=PURCHASE, window_days=90
    )
    with pytest.raises(NotFittedError, match="no stack yet; call fit_stack"):
        parts_only.predict(X)


def test_feature_name_diff_lists_missing_and_unexpected(data):
    model = fitted(data)
    bad = data[0].drop(columns=["T", "frequency"]).assign(shoe_size=1.0)
    with pytest.raises(
        ValueError,
        match=r"Missing features \(2\): \['frequency', 'T'\]\n"
        r"Unexpected features \(1\): \['shoe_size'\]",
    ):
        model.predict(bad)


def test_fit_needs_the_purchase_columns_and_a_known_family(data):
    X, value, churned = data
    with pytest.raises(ValueError, match=r"lack the purchase model's column\(s\) \['T'\]"):
        CustomerValueModel(SPEC).fit(
            X.drop(columns=["T"]), value, churned, purchase=PURCHASE, window_days=90
        )
    with pytest.raises(ValueError, match="family must be one of"):
        fitted(data, family="magic")


def test_column_order_does_not_matter_and_outputs_are_in_range(data):
    model = fitted(data)
    X = data[0]
    shuffled = X[list(reversed(NAMES))]
    pd.testing.assert_frame_equal(model.predict(X), model.predict(shuffled))
    pred = model.predict(X)
    assert (pred["clv"] >= 0).all() and pred["p_churn"].between(0, 1).all()
    # The stack keeps the churn probability smooth: no collapse onto a few isotonic steps.
    assert pred["p_churn"].nunique() > len(X) * 0.9


def test_stack_weights_are_never_negative_and_classical_ignores_the_trees(data):
    hybrid = fitted(data)
    assert min(hybrid.stack_.churn[1:] + hybrid.stack_.value[1:]) >= 0
    classical = fitted(data, family="classical")
    assert classical.stack_.churn[2] == classical.stack_.value[2] == 0
    boosted = fitted(data, family="boosted")
    assert boosted.stack_.churn[1] == boosted.stack_.value[1] == 0


def test_same_seed_same_model_and_save_load_round_trip(data, tmp_path):
    a, b = _fit(data, 3, "hybrid"), _fit(data, 3, "hybrid")
    pd.testing.assert_frame_equal(a.predict(data[0]), b.predict(data[0]))
    loaded = CustomerValueModel.load(a.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(a.predict(data[0]), loaded.predict(data[0]))
    assert loaded.spec == SPEC and loaded.feature_names_in_ == NAMES
    assert loaded.purchase_ == PURCHASE and loaded.stack_ == a.stack_


def test_the_usual_customer_is_kept_with_the_model_and_an_older_model_has_none(data, tmp_path):
    # The reasons read a whole-history figure against the training rows' median
    # (serving.explain.against_usual): the model carries it, saved and loaded.
    model = fitted(data)
    X = data[0][:2000]
    assert set(model.usual_) == set(USUAL_FEATURES) & set(X.columns)
    for name, usual in model.usual_.items():
        assert usual == pytest.approx(float(X[name].median()))
    saved = model.save(tmp_path / "m")
    assert CustomerValueModel.load(saved).usual_ == model.usual_
    # A model saved before the usual values were kept loads, and reads its reasons as before.
    meta = json.loads((saved / "model.json").read_text())
    del meta["usual"]
    (saved / "model.json").write_text(json.dumps(meta))
    assert CustomerValueModel.load(saved).usual_ == {}


def test_the_usual_value_skips_missing_figures_and_reads_every_kth_row_of_many():
    rows = pd.DataFrame(
        {"revenue_total": [10.0, np.nan, 30.0, 50.0], "repeat_order_value_mean": np.nan}
    )
    # A missing figure (no repeat order yet) is no figure; a column with none has no usual.
    assert usual_values(rows) == {"revenue_total": 30.0}
    many = pd.DataFrame({"orders_total": np.arange(1_000_001, dtype="float64")})
    # Every 6th of a million rows: the median to within a few rows of the whole column's.
    assert usual_values(many)["orders_total"] == pytest.approx(500_000.0, abs=6.0)


def test_a_stack_keeps_the_purchase_model_it_was_learnt_on(data, tmp_path):
    # A model given another fit's stack computes the stack's purchase terms with the stack's
    # purchase model, which the stack calibrates; its own feeds the trees and the profile.
    # (Training restates the twin's stack in the serving model's own purchase model first:
    # Stack.restated, tests/training/test_serving_pareto.py.)
    X, value, churned = data
    twin = fitted(data)
    assert twin.stack_.purchase == PURCHASE
    refit = PurchaseModel(r=0.9, alpha=40.0, a=0.5, b=3.0, p=4.0, q=3.0, v=30.0)
    serving = CustomerValueModel(SPEC, ModelParams(n_estimators=TREES), seed=1).fit(
        X[:2000],
        value[:2000] / 2,
        churned[:2000],
        purchase=refit,
        window_days=90,
        n_estimators=twin.best_iterations_,
    )
    serving.with_stack(twin.stack_)
    rows = X[:200].to_numpy()
    for name in ("purchase_churn", "purchase_value"):
        np.testing.assert_array_equal(
            serving.parts_matrix(rows)[name], twin.parts_matrix(rows)[name]
        )
    # The trees' purchase features are the serving model's own.
    assert not np.allclose(serving.derive(rows), twin.derive(rows))
    profile = serving.profile(X[:200])
    # Saved and loaded with the model.
    loaded = CustomerValueModel.load(serving.save(tmp_path / "m"))
    assert loaded.stack_.purchase == PURCHASE and loaded.purchase_ == refit
    pd.testing.assert_frame_equal(loaded.profile(X[:200]), profile)
    # A stack fit on the serving model is learnt on (and keeps) the serving model's own.
    restacked = serving.fit_stack(X[2500:], value[2500:], churned[2500:])
    assert restacked.stack_.purchase == refit


def test_a_stack_restated_in_another_purchase_model_keeps_its_scale_and_takes_its_order(data):
    X, value, churned = data
    model = fitted(data, family="classical")
    history = model.purchase_history(X)
    stack = model.stack_
    # The same purchase model: nothing to restate.
    same = stack.restated(PURCHASE, history, 180.0)
    np.testing.assert_allclose(same.value, stack.value, rtol=1e-12)
    np.testing.assert_allclose(same.churn, stack.churn, rtol=1e-12)
    # A refit with other parameters: the classical family's value is the purchase model's,
    # so the restated stack ranks exactly as the refit does and keeps the mean and spread of
    # the log value the stack was learnt to give.
    refit = PurchaseModel(r=1.1, alpha=40.0, a=0.3, b=3.0, p=3.0, q=6.0, v=30.0)
    restated = stack.restated(refit, history, 180.0)
    assert restated.purchase == refit
    before = copy.copy(model).with_stack(stack).predict(X)
    after = copy.copy(model).with_stack(restated).predict(X)
    refit_value = refit.expected_value(history, 180.0)
    # (to rounding: customers a cent apart may swap)
    assert pd.Series(after["clv"].to_numpy()).corr(pd.Series(refit_value), method="spearman") > (
        1 - 1e-5
    )
    assert np.log(after["clv"]).mean() == pytest.approx(np.log(before["clv"]).mean(), rel=1e-9)
    assert np.log(after["clv"]).std() == pytest.approx(np.log(before["clv"]).std(), rel=1e-9)
    # The reasons' zero point moves with the map: a customer at the old reference contributes
    # what they did before.
    g_before, g_after = stack.value[1], restated.value[1]
    floored = np.log(np.maximum(refit_value, 1e-2))
    assert g_after * (floored - restated.reference[1]) == pytest.approx(
        g_before * (restated_term(stack, refit, history) - stack.reference[1]), rel=1e-9
    )


def restated_term(stack, refit, history):
    """The refit's log value mapped onto the stack's own purchase model's scale."""
    own = np.log(np.maximum(stack.purchase.expected_value(history, 180.0), 1e-2))
    new = np.log(np.maximum(refit.expected_value(history, 180.0), 1e-2))
    return own.mean() + own.std() / new.std() * (new - new.mean())


def test_a_stack_round_trips_with_its_level_and_an_older_format_is_refused(data, tmp_path):
    stack = replace(
        fitted(data).stack_, level=1.25, churn_shift=-0.3, service={"returns_365d": -0.5}
    )
    assert Stack.from_dict(json.loads(json.dumps(stack.to_dict()))) == stack
    saved = fitted(data).save(tmp_path / "m")
    meta = json.loads((saved / "model.json").read_text())
    (saved / "model.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION - 1}))
    with pytest.raises(
        ValueError, match=rf"model format {FORMAT_VERSION - 1} .* retrain with `make train`"
    ):
        CustomerValueModel.load(saved)


def test_contributions_sum_to_the_final_logit_and_log_value(data):
    model = fitted(data)
    X = data[0][:50]
    contrib = model.contributions(X, approximate=False)
    pred = model.predict(X)
    logit = np.log(pred["p_churn"] / (1 - pred["p_churn"]))
    churn_bias = model.stack_.churn[0] + model.stack_.churn[1] * model.stack_.reference[0]
    np.testing.assert_allclose(
        contrib["churn"].sum(axis=1) + churn_bias, logit, rtol=1e-4, atol=1e-4
    )
    value_bias = model.stack_.value[0] + model.stack_.value[1] * model.stack_.reference[1]
    np.testing.assert_allclose(
        contrib["clv"].sum(axis=1) + value_bias,
        np.log(pred["clv"] / model.season_),
        rtol=1e-4,
        atol=1e-4,
    )
    assert list(contrib["clv"].columns)[-3:] == [PURCHASE_CHURN, PURCHASE_VALUE, "bias"]
    assert model.explain(X.to_numpy()).shape == (50, len(model.explanation_names_))


def test_more_days_since_the_last_order_never_lower_churn_or_raise_value(data):
    model = fitted(data)
    X = data[0]
    later = X.assign(days_since_last_order=X["days_since_last_order"] + 60, T=X["T"] + 60)
    before, after = model.predict(X), model.predict(later)
    assert (after["p_churn"] >= before["p_churn"] - 1e-9).all()
    assert (after["clv"] <= before["clv"] * (1 + 1e-9)).all()


def test_constraints_follow_the_spec():
    spec = FeatureSpec(windows=(7, 60), quality_days=180)
    table = monotone_directions(spec, 45)
    assert table["churn"]["orders_7d"] == -1 and table["clv"]["revenue_60d"] == +1
    assert table["churn"]["late_deliveries_180d"] == +1
    assert table["churn"]["expected_orders_45d"] == -1
    assert set(table["churn"]) <= {
        *feature_names(spec),
        "recency_gap_ratio",
        "p_alive",
        "expected_orders_45d",
    }


def test_search_reuses_its_best_model_and_samples_large_fits(data):
    from training.search import PartsRecipe, Slices, fit_on_slices, search

    X, value, churned = data
    frame = X.assign(
        window_value=value, window_churned=churned, customer_id=[f"c{i}" for i in range(len(X))]
    )
    slices = Slices(fit=frame[:2000], stop=frame[2000:2500], score=frame[2500:])
    base = ModelParams(n_estimators=TREES)
    recipe = PartsRecipe(PURCHASE, 90, 1.0)
    found = search(
        slices, NAMES, SPEC, recipe=recipe, time_budget=0, max_trials=2, seed=4, base=base
    )
    assert found.trials == 2 and found.fit_rows == 2000 and found.model is not None
    # Bounded by trials, not time: the same search again finds the same model to the digit.
    again = search(
        slices, NAMES, SPEC, recipe=recipe, time_budget=0, max_trials=2, seed=4, base=base
    )
    assert again.params == found.params and again.best_score == found.best_score
    refit = fit_on_slices(slices, NAMES, SPEC, found.params, 4, recipe)
    np.testing.assert_array_equal(
        found.model.parts_matrix(X.to_numpy())["churn"], refit.parts_matrix(X.to_numpy())["churn"]
    )
    sampled = search(
        slices,
        NAMES,
        SPEC,
        recipe=recipe,
        time_budget=0,
        max_trials=1,
        seed=4,
        base=base,
        max_fit_rows=500,
    )
    assert 300 < sampled.fit_rows < 700 and sampled.model is None


def test_one_scoring_pass_gives_what_the_three_calls_give(data):
    model = fitted(data)
    X = data[0].to_numpy()[:200]
    clv, p_churn, contributions, values = model.score_matrix(X, approximate=True)
    expected_clv, expected_churn = model.predict_matrix(X)
    np.testing.assert_array_equal(clv, expected_clv)
    np.testing.assert_array_equal(p_churn, expected_churn)
    separate = model.contributions_matrix(X, approximate=True)
    for target in ("clv", "churn"):
        np.testing.assert_array_equal(contributions[target], separate[target])
    np.testing.assert_array_equal(values, model.explain(X))


def _service_data(late_effect: float, seed: int = 4):
    """Rows whose horizon value falls with late deliveries more than their window shows."""
    rng = np.random.default_rng(seed)
    n = 3000
    X = customer_rows(rng, n, NAMES)
    q = SPEC.quality_days
    X[f"late_deliveries_{q}d"] = rng.poisson(0.8, n).astype(float)
    X[f"returns_{q}d"] = rng.poisson(0.5, n).astype(float)
    X[f"bad_tickets_{q}d"] = rng.poisson(0.2, n).astype(float)
    buy = rng.random(n) < np.exp(-X["days_since_last_order"] / 150) * (0.3 + 0.1 * X["frequency"])
    window = np.where(buy, rng.gamma(2.0, 40.0, n), 0.0)
    # Over the horizon each late delivery costs a share of the value; the window sees none of it.
    horizon = 2 * window * np.exp(late_effect * X[f"late_deliveries_{q}d"])
    return X, pd.Series(window), pd.Series(horizon), pd.Series((~buy).astype(int))


def _fit_service(X, window, horizon, churned, family="hybrid"):
    model = CustomerValueModel(SPEC, ModelParams(n_estimators=TREES), seed=2).fit(
        X[:2000], window[:2000], churned[:2000], purchase=PURCHASE, window_days=90
    )
    return model.fit_stack(X[2000:], horizon[2000:], churned[2000:], family=family)


def test_the_stack_weighs_what_failures_cost_beyond_the_window(tmp_path):
    X, window, horizon, churned = _service_data(late_effect=-0.4)
    model = _fit_service(X, window, horizon, churned)
    q = SPEC.quality_days
    service = model.stack_.service
    assert service[f"late_deliveries_{q}d"] == pytest.approx(-0.4, abs=0.15)
    # Counts that cost nothing beyond the window get no weight, or a small one, never a positive.
    assert all(weight < 0 for weight in service.values())
    assert abs(service.get(f"returns_{q}d", 0.0)) < 0.15
    # A late delivery more lowers the CLV by about that factor, everything else equal.
    more = X.assign(**{f"late_deliveries_{q}d": X[f"late_deliveries_{q}d"] + 1})
    ratio = model.predict(more)["clv"] / model.predict(X)["clv"]
    assert ratio.max() < 1.0
    # The stack's term is the feature's own in the reasons, and the sums still hold.
    contrib = model.contributions(X[:50], approximate=False)["clv"]
    pred = model.predict(X[:50])
    value_bias = model.stack_.value[0] + model.stack_.value[1] * model.stack_.reference[1]
    np.testing.assert_allclose(
        contrib.sum(axis=1) + value_bias, np.log(pred["clv"] / model.season_), atol=1e-4
    )
    loaded = CustomerValueModel.load(model.save(tmp_path / "m"))
    assert loaded.stack_ == model.stack_
    pd.testing.assert_frame_equal(loaded.predict(X), model.predict(X))
    # The classical family stays the textbook model: no service terms.
    assert _fit_service(X, window, horizon, churned, family="classical").stack_.service == {}


def test_without_service_data_the_stack_has_no_service_terms():
    X, window, horizon, churned = _service_data(late_effect=-0.4)
    q = SPEC.quality_days
    unknown = [f"late_deliveries_{q}d", f"returns_{q}d", f"bad_tickets_{q}d"]
    X[unknown] = np.nan  # an orders-only shop
    model = _fit_service(X, window, horizon, churned)
    assert model.stack_.service == {}
    assert model.stack_.to_dict()["service"] == {}


def test_a_time_budget_stops_the_trial_that_runs_past_it(data):
    from training.search import PartsRecipe, Slices, search

    X, value, churned = data
    frame = X.assign(
        window_value=value, window_churned=churned, customer_id=[f"c{i}" for i in range(len(X))]
    )
    slices = Slices(fit=frame[:2000], stop=frame[2000:2500], score=frame[2500:])
    recipe = PartsRecipe(PURCHASE, 90, 1.0)
    base = ModelParams(n_estimators=TREES)
    # A budget that has passed before the first tree is grown: the default trial stops after
    # one tree, is not counted, no other trial starts, and the default parameters stand.
    found = search(
        slices, NAMES, SPEC, recipe=recipe, time_budget=1e-9, max_trials=3, seed=4, base=base
    )
    assert found.params == base and found.model is None and np.isnan(found.best_score)
    assert found.trials == 1
    # A fit past its deadline stops after one tree and says why; one without keeps all.
    with pytest.raises(TimeBudgetSpent, match="after tree 1"):
        CustomerValueModel(SPEC, base, seed=4).fit(
            X, value, churned, purchase=PURCHASE, window_days=90, deadline=0.0
        )
    bounded = CustomerValueModel(SPEC, base, seed=4).fit(
        X, value, churned, purchase=PURCHASE, window_days=90, deadline=float("inf")
    )
    assert bounded.best_iterations_ == (TREES, TREES)
    assert bounded.clv_model_.get_params()["callbacks"] is None


def test_a_churn_shift_moves_every_churn_logit_and_leaves_value_and_orders(data) -> None:
    model = fitted(data)
    X = data[0].iloc[:400]
    before = model.profile(X)
    shift = 0.7
    shifted = copy.copy(model).with_stack(replace(model.stack_, churn_shift=shift))
    after = shifted.profile(X)

    def logit(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    np.testing.assert_allclose(
        logit(after["p_churn"]), logit(before["p_churn"]) + shift, rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(after["clv"], before["clv"])
    # The orders follow the value's level, not the shift (the value level already counts the
    # base's buyers), and never fall below the served chance of any order.
    floor = 1.0 - after["p_churn"]
    np.testing.assert_allclose(
        after["expected_orders"], np.maximum(before["expected_orders"], floor), rtol=1e-9
    )
    assert (after["expected_orders"] >= floor - 1e-12).all()
