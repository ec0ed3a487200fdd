"""Segments, actions and readable reasons."""

import numpy as np
import pandas as pd
import pytest

from features import feature_names
from features.spec import FeatureSpec
from serving.explain import (
    against_usual,
    describe,
    reason_texts,
    same_facts_merged,
    top_reasons,
    unreadable,
)
from serving.segments import (
    ACTIONS,
    NEW_CUSTOMER_ACTIONS_REFUSED,
    Base,
    risk_direction,
    value_thresholds,
)


def test_value_tiers_follow_share_of_predicted_value():
    # One customer holds 60% of the value: alone in "top".
    clv = pd.Series([60.0, 20.0, 10.0, 5.0, 3.0, 2.0])
    value, _, _ = Base.of(clv.to_numpy()).labels(clv.to_numpy(), np.full(6, 0.1))
    assert value.tolist() == ["top", "high", "medium", "medium", "low", "low"]


def test_risk_tiers_and_every_pair_has_an_action():
    clv = pd.Series([10.0, 10.0, 10.0])
    _, risk, action = Base.of(clv.to_numpy()).labels(clv.to_numpy(), np.array([0.1, 0.5, 0.9]))
    assert risk.tolist() == ["low", "medium", "high"]
    assert action.tolist() == ["maintain (VIP care)", "retain", "win back"]
    assert len(ACTIONS) == 12


def test_a_customer_in_their_first_horizon_is_onboarded_or_nurtured_never_won_back():
    clv = np.array([60.0, 20.0, 10.0, 5.0, 3.0, 2.0] * 2)
    p_churn = np.array([0.9, 0.9, 0.9, 0.9, 0.5, 0.1] * 2)
    new = np.repeat([True, False], 6)
    _, _, action = Base.of(clv).labels(clv, p_churn, new)
    assert action[:6].tolist() == ["onboard", "onboard", "nurture", "nurture", "nurture", "grow"]
    assert not set(action[:6]) & set(NEW_CUSTOMER_ACTIONS_REFUSED)
    # An established customer keeps the usual actions.
    assert action[6:].tolist() == Base.of(clv).labels(clv, p_churn)[2][6:].tolist()
    assert action[6:9].tolist() == ["win back", "win back", "reactivate (low cost)"]


def test_all_zero_predictions_make_everyone_low_value():
    clv = pd.Series([0.0, 0.0])
    value, _, action = Base.of(clv.to_numpy()).labels(clv.to_numpy(), np.array([0.9, 0.1]))
    assert value.tolist() == ["low", "low"]
    assert action.tolist() == ["let go", "grow"]
    assert value_thresholds(np.array([]))["low"] == -np.inf


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("late_deliveries_365d", 3.0, "3 late deliveries in the last 365 days"),
        ("days_since_last_order", 210.4, "last order 210 days ago"),
        ("orders_90d", 1.0, "1 order in the last 90 days"),
        ("orders_90d", 0.0, "0 orders in the last 90 days"),
        ("days_since_last_order", 0.6, "last order 1 day ago"),
        ("orders_trend_90d", -1.2, "-1 order vs the previous 90 days"),
        ("open_tickets", 1.0, "1 support ticket still open"),
        ("last_review_score", 1.0, "last review 1 star"),
        ("mean_review_score", 1.0, "reviews average 1.0 stars"),
        (
            "mean_resolution_hours_365d",
            1.0,
            "tickets took 1 h to resolve on average (last 365 days)",
        ),
        ("late_delivery_rate_365d", 0.25, "25% of deliveries late in the last 365 days"),
        ("last_review_score", np.nan, "no last review to go by"),
        ("returns_365d", np.nan, "returns unknown (no order statuses in the last 365 days)"),
        (
            "bad_tickets_365d",
            np.nan,
            "ticket resolutions unknown (no support data for the last 365 days)",
        ),
        ("mystery", 2.0, "mystery = 2"),
    ],
)
def test_describe(feature, value, text):
    assert describe(feature, value) == text


def test_top_reasons_pick_largest_contributions_with_direction():
    contrib = pd.DataFrame(
        {
            "days_since_last_order": [2.0, -0.1],
            "late_deliveries_365d": [0.5, 0.0],
            "orders_90d": [-1.0, 0.3],
            "bias": [9.0, 9.0],
        },
        index=["a", "b"],
    )
    features = pd.DataFrame(
        {
            "days_since_last_order": [300.0, 5.0],
            "late_deliveries_365d": [2.0, 0.0],
            "orders_90d": [0.0, 4.0],
        },
        index=["a", "b"],
    )
    reasons = top_reasons(contrib, features, k=2)
    assert reasons["a"] == "↑ last order 300 days ago; ↓ 0 orders in the last 90 days"
    assert reasons["b"] == "↑ 4 orders in the last 90 days; ↓ last order 5 days ago"


@pytest.mark.parametrize(
    "feature",
    [
        "revenue_trend_90d",  # signed, no decimals
        "avg_order_value",  # thousands separator
        "late_delivery_rate_365d",  # percent
        "mean_review_score",  # one decimal
        "returns_365d",  # missing has its own words
        "mystery",  # no template
    ],
)
def test_reason_texts_say_what_describe_says_for_every_row(feature):
    # The vectorised path describes each distinct (rounded) value once; it must give the
    # same words as describe() row by row, ties, -0 and NaN included.
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.normal(0, 3, 2_000), [0.5, 1.5, 2.5, -0.5, -0.3, -0.0, np.nan, 0.125, 0.135, 4.25]]
    )
    signs = np.where(rng.random(len(values)) < 0.5, -1.0, 1.0)[:, None]
    texts = reason_texts(signs, values[:, None], [feature], k=1).to_pylist()
    # A missing value of these features is a data gap, never a reason.
    expected = [
        ("↑ " if sign >= 0 else "↓ ") + describe(feature, float(value)) if value == value else ""
        for sign, value in zip(signs[:, 0], values, strict=True)
    ]
    assert texts == expected
    # Few rows (an online request) take the row-by-row path: same words.
    few = slice(len(values) - 60, len(values))
    assert reason_texts(signs[few], values[few, None], [feature], k=1).to_pylist() == texts[few]
    assert not any(" -0 " in text or text.startswith(("↑ -0 ", "↓ -0 ")) for text in texts)


def test_reason_texts_rank_by_magnitude_and_check_shapes():
    contributions = np.array([[0.1, -3.0, 2.0], [0.0, 0.0, 0.0]])
    values = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    names = ["orders_90d", "returns_365d", "open_tickets"]
    texts = reason_texts(contributions, values, names, k=2).to_pylist()
    assert texts[0] == "↓ 2 returns in the last 365 days; ↑ 3 support tickets still open"
    assert texts[1] == ""  # nothing moved the prediction: no reason is made up
    partly = reason_texts(np.array([[0.0, 0.5, 0.0]] * 70), values[[0] * 70], names, k=3)
    assert set(partly.to_pylist()) == {"↑ 2 returns in the last 365 days"}
    assert reason_texts(np.array([[0.0, 0.5, 0.0]]), values[:1], names, k=3).to_pylist() == [
        "↑ 2 returns in the last 365 days"
    ]
    with pytest.raises(ValueError, match="rows x 3 features"):
        reason_texts(contributions[:, :2], values, names)
    assert reason_texts(np.empty((0, 3)), np.empty((0, 3)), names).to_pylist() == []


def test_every_feature_has_its_own_words_when_missing():
    # Two missing features among the top reasons must not read as one reason twice.
    names = feature_names(FeatureSpec())
    texts = [describe(name, np.nan) for name in names]
    repeated = {t for t in texts if texts.count(t) > 1}
    assert not repeated, repeated


def test_every_feature_the_model_explains_has_words():
    # The features and what the model derives from them (training.model): none may fall back
    # to "name = value".
    from training.model import P_ALIVE, PURCHASE_CHURN, PURCHASE_VALUE, RECENCY_GAP

    spec = FeatureSpec(windows=(14, 60), quality_days=180)
    names = [
        *feature_names(spec),
        RECENCY_GAP,
        P_ALIVE,
        "expected_orders_45d",
        PURCHASE_CHURN,
        PURCHASE_VALUE,
    ]
    fallback = [name for name in names if describe(name, 2.0).startswith(name.replace("_", " "))]
    assert not fallback, fallback


def test_rows_without_any_reason_keep_their_place():
    # Arrow's join with null_handling="skip" dropped rows whose reasons were all missing, and
    # shifted every later row's reasons onto the wrong customer.
    contributions = np.array([[0.0, 0.0, 0.0], [0.5, -0.2, 0.1]] * 50)
    values = np.ones((100, 3))
    names = ["orders_90d", "returns_365d", "open_tickets"]
    texts = reason_texts(contributions, values, names, k=2).to_pylist()
    assert len(texts) == 100
    assert texts[0::2] == [""] * 50
    assert set(texts[1::2]) == {"↑ 1 order in the last 90 days; ↓ 1 return in the last 365 days"}


def test_a_data_gap_is_never_a_reason_but_a_fact_of_the_history_is():
    names = ["returns_365d", "days_between_orders_mean", "orders_90d"]
    values = np.array([[np.nan, np.nan, 2.0]])
    texts = reason_texts(np.array([[3.0, 2.0, 1.0]]), values, names, k=3).to_pylist()
    assert texts == ["↑ only one order so far; ↑ 2 orders in the last 90 days"]


@pytest.mark.parametrize("rows", [1, 100])  # row by row, and the Arrow path
def test_one_fact_is_one_reason_with_the_sum_of_its_features(rows):
    # Real logs: "↓ customer for 347 days; ↓ first purchase 347 days ago" took two of three
    # reasons, "only one order so far" came twice or beside "0 days between first and last
    # purchase"; their arrows could disagree.
    names = ["days_since_first_order", "T", "days_between_orders_mean", "recency_gap_ratio"]
    names += ["recency", "orders_total", "orders_90d", "repeat_order_value_mean"]
    contributions = np.array(
        [
            [-0.3, -0.2, 0.0, 0.0, 0.05, 0.01, 0.4, 0.0],  # same days: one reason of -0.5
            [0.3, -0.2, 0.0, 0.0, 0.05, 0.01, 0.2, 0.0],  # same days: +0.1, now below 0.2
            [0.3, -0.2, 0.0, 0.0, 0.05, 0.01, 0.15, 0.0],  # other days (a cancelled 1st order)
            [0.0, 0.0, 0.25, 0.2, -0.15, 0.1, -0.3, -0.05],  # one order: one reason of 0.35
            [0.0, 0.0, 0.3, 0.0, -0.2, -0.1, 0.0, 0.0],  # two orders: a 0-day gap is a fact
        ]
    )
    values = np.array(
        [
            [347.0, 347.0, 30.0, 1.5, 200.0, 5.0, 2.0, 40.0],
            [347.0, 347.2, 30.0, 1.5, 200.0, 5.0, 2.0, 40.0],
            [400.0, 380.0, 30.0, 1.5, 200.0, 5.0, 2.0, 40.0],
            [20.0, 20.0, np.nan, np.nan, 0.0, 1.0, 0.0, np.nan],
            [20.0, 20.0, 0.0, np.nan, 0.0, 2.0, 0.0, 40.0],
        ]
    )
    texts = reason_texts(
        np.repeat(contributions, rows, axis=0), np.repeat(values, rows, axis=0), names, k=3
    ).to_pylist()
    assert texts[::rows] == [
        "↓ customer for 347 days; ↑ 2 orders in the last 90 days; ↑ 200 days between first "
        "and last purchase",
        "↑ 2 orders in the last 90 days; ↑ customer for 347 days; ↑ 200 days between first "
        "and last purchase",
        "↑ customer for 400 days; ↓ first purchase 380 days ago; ↑ 2 orders in the last 90 days",
        "↑ only one order so far; ↓ 0 orders in the last 90 days",
        "↑ orders every 0 days on average; ↓ 0 days between first and last purchase; "
        "↓ 2 orders in total",
    ]
    assert len(texts) == 5 * rows and len(set(texts)) == 5
    # Contributions stay additive: what a group shows is what its features added up to.
    merged = same_facts_merged(contributions, values, names)
    np.testing.assert_allclose(merged.sum(axis=1), contributions.sum(axis=1))
    apart = contributions[2:3]
    assert same_facts_merged(apart, values[2:3], names) is apart  # nothing to merge: no copy


def test_a_high_risk_customer_hears_first_what_makes_them_high_risk():
    names = ["orders_90d", "returns_365d", "days_since_last_order"]
    contributions = np.array([[-2.0, 0.3, 0.1], [-2.0, 0.3, 0.1], [2.0, -0.3, 0.1]])
    values = np.array([[5.0, 1.0, 200.0]] * 3)
    prefer = risk_direction(np.array([0.9, 0.5, 0.1]))
    assert prefer.tolist() == [1.0, 0.0, -1.0]
    texts = reason_texts(contributions, values, names, k=2, prefer=prefer).to_pylist()
    assert texts[0] == "↑ 1 return in the last 365 days; ↑ last order 200 days ago"
    assert texts[1] == "↓ 5 orders in the last 90 days; ↑ 1 return in the last 365 days"
    assert texts[2] == "↓ 1 return in the last 365 days; ↑ 5 orders in the last 90 days"


@pytest.mark.parametrize(
    ("target", "no_order", "alive", "arrow", "hidden"),
    [
        # A 60% chance of no order shown as lowering risk reads wrong; raising it reads right.
        ("churn", 0.6, 0.5, -1.0, [True, False]),
        ("churn", 0.6, 0.5, 1.0, [False, True]),
        # 49.6% prints as 50%: read as printed.
        ("churn", 0.496, 0.7, -1.0, [True, False]),
        ("churn", 0.2, 0.7, -1.0, [False, False]),
        # For value, an arrow up is good news: a likely non-buyer's chance does not raise it.
        ("clv", 0.6, 0.3, 1.0, [True, True]),
        ("clv", 0.2, 0.9, 1.0, [False, False]),
    ],
)
def test_purchase_model_probabilities_are_shown_only_when_their_arrow_reads_right(
    target, no_order, alive, arrow, hidden
):
    names = ["purchase_model_p_no_order", "p_alive", "frequency"]
    values = np.array([[no_order, alive, 2.0]])
    contributions = np.array([[arrow, arrow, 0.1]])
    mask = unreadable(contributions, values, names, target=target, clv=np.array([10.0]))
    assert mask[0, :2].tolist() == hidden
    assert not mask[0, 2]


@pytest.mark.parametrize(
    ("target", "overdue", "arrow", "hidden"),
    [
        # 2.4x the usual gap shown as lowering risk reads as a reason to worry less: hidden.
        ("churn", 2.4, -1.0, True),
        ("churn", 2.4, 1.0, False),
        # 1.46 prints as 1.5: read as printed.
        ("churn", 1.46, -1.0, True),
        # Between the two readings the figure is shown either way.
        ("churn", 1.2, -1.0, False),
        ("churn", 0.8, 1.0, False),
        # On rhythm shown as raising risk reads wrong too.
        ("churn", 0.3, 1.0, True),
        ("churn", 0.3, -1.0, False),
        # For value an arrow up is good news: long overdue raising value reads wrong.
        ("clv", 3.0, 1.0, True),
        ("clv", 3.0, -1.0, False),
        # One order so far has no usual gap: no figure, nothing to contradict.
        ("churn", np.nan, -1.0, False),
    ],
)
def test_how_overdue_is_shown_only_when_its_arrow_reads_right(target, overdue, arrow, hidden):
    names = ["recency_gap_ratio", "frequency"]
    values = np.array([[overdue, 2.0]])
    contributions = np.array([[arrow, 0.1]])
    mask = unreadable(contributions, values, names, target=target, clv=np.array([10.0]))
    assert mask[0].tolist() == [hidden, False]


def test_bgnbd_p_alive_of_a_one_time_buyer_and_a_value_the_clv_disowns_are_hidden():
    names = ["p_alive", "frequency", "purchase_model_value"]
    values = np.array([[1.0, 0.0, 100.0], [0.9, 3.0, 100.0], [0.9, 3.0, 100.0]])
    contributions = np.array([[-1.0, 0.2, 0.5]] * 3)
    clv = np.array([60.0, 60.0, 30.0])
    mask = unreadable(contributions, values, names, target="churn", clv=clv)
    assert mask[:, 0].tolist() == [True, False, False]
    # 100 beside a CLV of 60 agrees; beside 30 (over twice) it would quote a figure the
    # answer does not stand by.
    assert mask[:, 2].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="target must be"):
        unreadable(contributions, values, names, target="value", clv=clv)


def test_a_chance_of_no_order_the_served_churn_disowns_is_hidden():
    # What the demo store's scores showed: "↓ 22% chance of no order (purchase pattern)"
    # beside a served p_churn of .59, two answers to one question.
    names = ["purchase_model_p_no_order", "days_since_last_order"]
    values = np.array([[0.22, 160.0], [0.22, 160.0], [0.345, 160.0]])
    contributions = np.array([[-0.5, 0.2]] * 3)
    clv = np.full(3, 50.0)
    p_churn = np.array([0.59, 0.40, 0.59])
    mask = unreadable(contributions, values, names, target="churn", clv=clv, p_churn=p_churn)
    # 37 points apart is hidden; 18 is the stack's calibration of the same figure; 34.5%
    # prints as 34% (round half to even), 25 points from .59: shown.
    assert mask[:, 0].tolist() == [True, False, False]
    assert not mask[:, 1].any()
    # Without the served figure (an analysis call) it is shown as before.
    assert not unreadable(contributions, values, names, target="churn", clv=clv)[:, 0].any()


def test_a_wait_inside_the_horizon_is_a_date_inside_it():
    from serving.scoring import next_order_dates

    cutoff = pd.Timestamp("2008-07-15")
    # 181.6 days end during day 181 after the cutoff; rounding made it the horizon's end.
    dates = next_order_dates(cutoff, np.array([181.6, 0.4, np.nan]))
    assert dates == ["2009-01-12", "2008-07-15", None]


@pytest.mark.parametrize("feature", ["recency_gap_ratio", "p_alive", "mean_review_score"])
def test_reason_texts_group_values_by_their_printed_figure(feature):
    # One decimal and whole percentages are described once per printed figure; values at
    # and a hair around every half (where the product by 10 or 100 may round the other way
    # than the exact decimal value), -0, infinities and NaN are still described as describe()
    # describes each of them.
    steps = np.arange(-400, 400)
    halves = np.concatenate([(steps + 0.5) / 10, (steps + 0.5) / 100, (steps + 0.5) / 1000])
    values = np.concatenate(
        [
            halves,
            np.nextafter(halves, np.inf),
            np.nextafter(halves, -np.inf),
            np.random.default_rng(5).uniform(-3, 3, 5_000),
            [0.0, -0.0, -0.004, -0.04, np.inf, -np.inf, 1e300, np.nan],
        ]
    )
    signs = np.ones((len(values), 1))
    hidden = np.zeros((len(values), 1), dtype=bool)
    texts = reason_texts(signs, values[:, None], [feature], k=1, hidden=hidden).to_pylist()
    expected = [
        "↑ " + describe(feature, float(value))
        if value == value or feature in ("recency_gap_ratio",)
        else ""
        for value in values
    ]
    assert texts == expected


def test_two_windows_printing_the_same_figure_are_one_reason_said_by_the_longer():
    names = ["revenue_90d", "revenue_365d", "revenue_total", "avg_order_value"]
    names += ["orders_365d", "orders_total"]
    contributions = np.array(
        [
            [0.3, -0.2, -0.4, -0.1, 0.05, -0.02],  # one order of 33 within 90 days
            [-0.1, -0.2, 0.25, 0.05, -0.35, 0.1],  # nothing spent for a year, 50 before
            [0.1, 0.2, 0.3, 0.05, 0.02, 0.04],  # figures that differ stay apart
        ]
    )
    values = np.array(
        [
            [33.0, 33.0, 33.0, 33.0, 1.0, 1.0],
            [0.0, 0.0, 50.0, 25.0, 0.0, 2.0],
            [10.0, 20.0, 30.0, 15.0, 2.0, 3.0],
        ]
    )
    texts = reason_texts(contributions, values, names, k=6).to_pylist()
    # 0.3 - 0.2 - 0.4 - 0.1 = -0.4 for the one fact "33 spent in total".
    assert texts[0] == "↓ 33 spent in total; ↑ 1 order in total"
    assert texts[1] == "↓ 0 orders in the last 365 days; ↓ 0 spent in the last 365 days; " + (
        "↑ 50 spent in total; ↑ 2 orders in total; ↑ average order value 25"
    )
    assert texts[2].count(";") == 5  # six reasons, each its own fact
    merged = same_facts_merged(contributions, values, names)
    np.testing.assert_allclose(merged.sum(axis=1), contributions.sum(axis=1))
    np.testing.assert_allclose(merged[0], [0.0, 0.0, -0.4, 0.0, 0.0, 0.03])


@pytest.mark.parametrize("rows", [2, 70])  # the row-by-row path and the vectorised one
def test_a_recent_quantity_on_the_risky_side_reads_as_a_shortfall(rows):
    # "↑ 50 spent in the last 365 days" in a churn reason read as if spending raised the risk
    # (a retail customer's row, read as a marketer would): it is too little spend, and says so.
    names = ["revenue_365d", "orders_90d", "expected_orders_90d", "revenue_total"]
    contributions = np.array(
        [[0.4, 0.3, 0.2, 0.1], [-0.4, -0.3, -0.2, -0.1], [0.4, 0.3, 0.2, 0.1]] * rows
    )[:rows]
    values = np.array([[50.0, 1.0, 0.2, 70.0], [900.0, 4.0, 1.5, 2000.0], [0.0, 0.0, 0.04, 35.0]])
    values = np.tile(values, (rows, 1))[:rows]
    churn = reason_texts(contributions, values, names, k=4, target="churn").to_pylist()
    value = reason_texts(-contributions, values, names, k=4, target="clv").to_pylist()
    # The customer's total is not a recent quantity the trees read one way: no "only".
    assert churn[0] == (
        "↑ only 50 spent in the last 365 days; ↑ only 1 order in the last 90 days; "
        "↑ only 0.2 orders expected in the next 90 days (purchase pattern); ↑ 70 spent in total"
    )
    assert value[0] == churn[0].replace("↑", "↓")
    # On the side that keeps a customer, the figure reads right as it is.
    assert churn[1] == (
        "↓ 900 spent in the last 365 days; ↓ 4 orders in the last 90 days; "
        "↓ 1.5 orders expected in the next 90 days (purchase pattern); ↓ 2,000 spent in total"
    )
    assert value[1] == churn[1].replace("↓", "↑")
    if rows > 2:
        # A figure printed as zero is no "only 0".
        assert churn[2].startswith("↑ 0 spent in the last 365 days; ↑ 0 orders in the last 90")
        assert "only" not in churn[2]
    # Without a target (an analysis call) the words are the plain ones.
    assert "only" not in reason_texts(contributions, values, names, k=4).to_pylist()[0]


@pytest.mark.parametrize("rows", [1, 100])  # row by row, and the Arrow path
def test_orders_all_on_one_day_are_one_reason(rows):
    # A real log: a customer with two orders on one day read "↑ bought on 0 repeat days; ↑ 0
    # days between first and last purchase; ↑ orders every 0 days on average" (serving.sanity
    # counted 5 such rows of 134,982): three reasons for one fact. The demo store's scores then
    # showed "bought on 0 repeat days" beside "no repeat orders yet" (2 of 50,000 rows).
    names = ["frequency", "recency", "days_between_orders_mean", "days_between_orders_std"]
    names += ["revenue_total", "recency_gap_ratio", "repeat_order_value_mean"]
    contributions = np.array(
        [
            [0.2, 0.15, 0.1, 0.05, -0.3, 0.25, 0.05],  # two orders hours apart: one of 0.8
            [0.2, 0.15, 0.1, 0.05, -0.3, 0.25, 0.05],  # one order: the one-order group says it
            [0.2, 0.15, 0.1, 0.05, -0.3, 0.25, 0.05],  # two purchase days: six facts
        ]
    )
    values = np.array(
        [
            [0.0, 0.0, 0.2, np.nan, 182.0, 3.0, np.nan],
            [0.0, 0.0, np.nan, np.nan, 91.0, np.nan, np.nan],
            [1.0, 40.0, 20.0, np.nan, 182.0, 2.0, 91.0],
        ]
    )
    texts = reason_texts(
        np.repeat(contributions, rows, axis=0), np.repeat(values, rows, axis=0), names, k=3
    ).to_pylist()
    assert texts[::rows] == [
        "↑ bought on 0 repeat days; ↓ 182 spent in total",
        "↑ only one order so far; ↓ 91 spent in total",
        "↓ 182 spent in total; ↑ last order 2.0x the usual gap between orders ago; "
        "↑ bought on 1 repeat day",
    ]
    merged = same_facts_merged(contributions, values, names)
    np.testing.assert_allclose(merged.sum(axis=1), contributions.sum(axis=1))
    np.testing.assert_allclose(merged[0], [0.8, 0.0, 0.0, 0.0, -0.3, 0.0, 0.0])


@pytest.mark.parametrize("rows", [2, 70])  # the row-by-row path and the vectorised one
def test_a_whole_history_figure_is_read_against_the_usual_customer(rows):
    # What the demo store's scores showed: "↓ 360 spent in total" in a value reason beside a
    # usual 329 (as if spending lowered the value) and "↑ 13 orders in total" in a churn reason
    # beside a usual 7. Against the model's usual customer, such a reason is not shown; one
    # under the usual on the risky side says "only".
    names = ["revenue_total", "orders_total", "avg_order_value", "days_since_last_order"]
    usual = {"revenue_total": 329.2, "orders_total": 7.0, "avg_order_value": 51.3}
    contributions = np.array([[-0.4, -0.3, -0.2, -0.1], [-0.4, 0.3, 0.2, -0.1]] * rows)[:rows]
    values = np.tile(np.array([[360.0, 13.0, 60.0, 20.0], [38.0, 2.0, 19.0, 20.0]]), (rows, 1))
    values = values[:rows]
    value = reason_texts(contributions, values, names, k=4, target="clv", usual=usual)
    # Row 0: every figure above the usual, shown as lowering the value: only the recency stays.
    assert value.to_pylist()[0] == "↓ last order 20 days ago"
    # Row 1: under the usual; the total reads as a shortfall, the order value as it is, and
    # the two that would say less buying raised the value are not shown.
    assert value.to_pylist()[1] == "↓ only 38 spent in total; ↓ last order 20 days ago"
    churn = reason_texts(-contributions, values, names, k=4, target="churn", usual=usual)
    # For the churn risk the order value is not read against the usual (it says nothing sure
    # about loyalty), the counts and the total spend are.
    assert churn.to_pylist()[0] == "↑ average order value 60; ↑ last order 20 days ago"
    assert (
        churn.to_pylist()[1]
        == "↑ only 38 spent in total; ↓ average order value 19; ↑ last order 20 days ago"
    )
    # Without the usual values (a model saved before they were kept) the words are as before.
    assert (
        "only" not in reason_texts(contributions, values, names, k=4, target="clv").to_pylist()[1]
    )


def test_the_usual_is_compared_as_printed_and_after_the_facts_are_merged():
    names = ["revenue_365d", "revenue_total"]
    usual = {"revenue_total": 329.4}
    # 329.3 prints as the usual's 329: neither more nor less, so it is shown either way.
    hidden = against_usual(
        np.array([[0.0, -0.2], [0.0, 0.2]]),
        np.array([[329.3, 329.3], [329.3, 329.3]]),
        names,
        target="clv",
        usual=usual,
    )
    assert not hidden.any()
    # "400 spent in the last 365 days" and "400 spent in total" are one fact, said by the
    # total with both arrows added: +0.5 - 0.2 raises the value, as 400 over a usual 329 should.
    texts = reason_texts(
        np.array([[0.5, -0.2]]), np.array([[400.0, 400.0]]), names, target="clv", usual=usual
    )
    assert texts.to_pylist() == ["↑ 400 spent in total"]
