"""Budget guidance: the ceilings recomputed by hand from their stated formulas."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serving.insight.budget import (
    BUDGET_COLUMNS,
    DEFAULT_MARGIN,
    DEFAULT_SAVE_RATE,
    BudgetAssumptions,
    budget_table,
    cohort_budget,
    cohort_labels,
    customer_budget,
    first_order_months,
)


@pytest.fixture
def scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "clv": [100.0, 300.0, 10.0],
            "p_churn": [0.5, 0.1, 0.9],
            "value_segment": ["high", "top", "low"],
        }
    )


def test_defaults_are_the_stated_ones() -> None:
    assert (DEFAULT_MARGIN, DEFAULT_SAVE_RATE) == (0.3, 0.2)
    assumptions = BudgetAssumptions()
    assert (assumptions.margin, assumptions.save_rate) == (0.3, 0.2)


def test_customer_ceilings_by_hand(scores: pd.DataFrame) -> None:
    out = customer_budget(scores, BudgetAssumptions(margin=0.4, save_rate=0.25))
    # Customer a: clv 100, p_churn 0.5.
    assert out.loc[0, "value_at_risk"] == pytest.approx(100 * 0.5)
    assert out.loc[0, "max_acquisition_cost"] == pytest.approx(0.4 * 100)
    assert out.loc[0, "max_retention_spend"] == pytest.approx(0.4 * 100 * 0.5 * 0.25)


def test_group_table_by_hand(scores: pd.DataFrame) -> None:
    scores = pd.concat([scores, scores.iloc[[0]].assign(customer_id="d", clv=50.0, p_churn=0.2)])
    table = budget_table(scores, "value_segment")
    assert list(table.columns) == list(BUDGET_COLUMNS)
    # Most valuable segment first, then the whole base.
    assert list(table.index) == ["top", "high", "low", "all"]
    high = table.loc["high"]  # a (100, 0.5) and d (50, 0.2)
    assert high["customers"] == 2
    assert high["mean_clv"] == pytest.approx(75.0)
    assert high["mean_p_churn"] == pytest.approx(0.35)
    assert high["max_acquisition_cost"] == pytest.approx(0.3 * 75.0)
    spends = [0.3 * 100 * 0.5 * 0.2, 0.3 * 50 * 0.2 * 0.2]
    assert high["max_retention_spend"] == pytest.approx(sum(spends) / 2)
    assert high["retention_budget"] == pytest.approx(sum(spends))
    everyone = table.loc["all"]
    assert everyone["customers"] == 4
    assert everyone["retention_budget"] == pytest.approx(
        table.drop(index="all")["retention_budget"].sum()
    )


def test_cohorts_from_orders(scores: pd.DataFrame) -> None:
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "ordered_at": pd.to_datetime(
                ["2024-03-31 23:00", "2024-01-15 08:00", "2024-02-01 00:00"]
            ),
        }
    )
    assert first_order_months(orders).to_dict() == {"a": "2024-01", "b": "2024-02"}
    labels = cohort_labels(scores, orders)
    assert labels is not None
    assert labels.tolist() == ["2024-01", "2024-02", "unknown"]  # c has no orders
    table = cohort_budget(scores, orders)
    assert table is not None
    assert table.loc["2024-01", "max_acquisition_cost"] == pytest.approx(0.3 * 100)
    assert table.loc["unknown", "customers"] == 1


def test_cohorts_from_a_scores_column_first(scores: pd.DataFrame) -> None:
    scores["first_order_at"] = pd.to_datetime(["2023-05-02", "2023-06-30", "2023-05-31"])
    labels = cohort_labels(scores, orders=None)
    assert labels is not None and labels.tolist() == ["2023-05", "2023-06", "2023-05"]


def test_no_cohorts_without_first_orders(scores: pd.DataFrame) -> None:
    assert cohort_budget(scores) is None


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan, True])
def test_assumptions_refuse_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        BudgetAssumptions(margin=bad)
    with pytest.raises(ValueError, match="save_rate"):
        BudgetAssumptions(save_rate=bad)


def test_formulas_carry_the_numbers() -> None:
    text = " ".join(BudgetAssumptions(margin=0.25, save_rate=0.1).formulas())
    assert "0.25 x predicted value (" in text
    assert "0.25 x predicted value x churn probability x 0.1" in text
    # Read by a marketer: words, not the scores' column names.
    assert "clv" not in text and "p_churn" not in text


def test_missing_columns_are_named() -> None:
    with pytest.raises(KeyError, match="p_churn"):
        customer_budget(pd.DataFrame({"clv": [1.0]}))
