"""Budget guidance: how much acquiring or keeping a customer may cost and still pay back.

From the batch scores (predicted CLV and churn probability over the horizon) and a gross
margin, two ceilings per customer, summed up per value segment and per acquisition cohort
(month of the first order):

``max_acquisition_cost = margin * clv``
    The most a new customer like these may cost to acquire and still pay back within the
    horizon: the gross profit a customer of the group is predicted to bring in that time.
    It assumes a new customer behaves like the group's existing customers (the recent cohorts
    are the closer guide) and ignores anything after the horizon, so it errs on the safe side.

``max_retention_spend = margin * clv * p_churn * save_rate``
    The most a retention action on this existing customer may cost and still pay back: the
    gross profit at risk (``clv * p_churn``, the value at risk) times the share of it the
    action is assumed to save. An action does not remove the churn risk, it removes part of
    it: ``save_rate`` is that part (default 0.2, a stated assumption to replace with the
    measured uplift of your own campaigns).

Group figures are means per customer (what one customer of the group may cost) and the
retention total (what the whole group may cost). Everything is pure pandas on the scores
frame (:data:`serving.run_files.SCORE_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from serving.segments import VALUE_TIERS

#: Gross margin used when none is given: a stated default, not a measured one.
DEFAULT_MARGIN = 0.3
#: Share of the value at risk a retention action is assumed to save.
DEFAULT_SAVE_RATE = 0.2
#: Columns of :func:`budget_table`, after the group column.
BUDGET_COLUMNS: tuple[str, ...] = (
    "customers",
    "mean_clv",
    "mean_p_churn",
    "max_acquisition_cost",
    "max_retention_spend",
    "retention_budget",
)
#: Columns of a scores file that may carry a customer's first order (first one found wins).
FIRST_ORDER_COLUMNS: tuple[str, ...] = ("first_order_at", "first_order_date", "first_order")


@dataclass(frozen=True)
class BudgetAssumptions:
    """The two numbers the ceilings rest on.

    Attributes
    ----------
    margin : float
        Gross margin on revenue, in (0, 1].
    save_rate : float
        Share of a customer's value at risk that a retention action saves, in (0, 1].
    """

    margin: float = DEFAULT_MARGIN
    save_rate: float = DEFAULT_SAVE_RATE

    def __post_init__(self) -> None:
        for name in ("margin", "save_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not np.isfinite(value) or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be a number in (0, 1]; got {value!r}")

    def formulas(self) -> list[str]:
        """The payback rules, as sentences with the numbers in them (for the report)."""
        # In words, not column names: a marketer reads these (the columns are clv, p_churn).
        return [
            f"Acquisition pays back within the horizon when the cost per new customer is at "
            f"most margin x predicted value = {self.margin:g} x predicted value (a new customer "
            "is assumed to behave like the group's existing customers; value after the "
            "horizon is not counted).",
            f"Retention pays back when the spend per customer is at most margin x predicted "
            f"value x churn probability x save rate = {self.margin:g} x predicted value x "
            f"churn probability x {self.save_rate:g} (the action is assumed to save "
            f"{self.save_rate:.0%} of the value at risk, not to remove the churn risk).",
        ]


def customer_budget(
    scores: pd.DataFrame, assumptions: BudgetAssumptions | None = None
) -> pd.DataFrame:
    """Per-customer ceilings: ``max_acquisition_cost`` and ``max_retention_spend``.

    Parameters
    ----------
    scores : pandas.DataFrame
        At least ``clv`` and ``p_churn``.
    assumptions : BudgetAssumptions, optional
        Margin and save rate (defaults: :data:`DEFAULT_MARGIN`, :data:`DEFAULT_SAVE_RATE`).

    Returns
    -------
    pandas.DataFrame
        ``clv``, ``p_churn``, ``value_at_risk`` (``clv * p_churn``) and the two ceilings, on
        the index of ``scores``.

    Raises
    ------
    KeyError
        If ``clv`` or ``p_churn`` is missing.
    """
    a = assumptions or BudgetAssumptions()
    missing = [c for c in ("clv", "p_churn") if c not in scores.columns]
    if missing:
        raise KeyError(f"scores lack column(s) {missing}; expected a batch scores frame")
    clv = scores["clv"].astype("float64")
    p_churn = scores["p_churn"].astype("float64")
    at_risk = clv * p_churn
    return pd.DataFrame(
        {
            "clv": clv,
            "p_churn": p_churn,
            "value_at_risk": at_risk,
            "max_acquisition_cost": a.margin * clv,
            "max_retention_spend": a.margin * at_risk * a.save_rate,
        },
        index=scores.index,
    )


def budget_table(
    scores: pd.DataFrame, by: str | pd.Series, assumptions: BudgetAssumptions | None = None
) -> pd.DataFrame:
    """Ceilings per group (:data:`BUDGET_COLUMNS`), one row per group, plus an ``all`` row.

    Parameters
    ----------
    scores : pandas.DataFrame
        ``clv``, ``p_churn`` and, when ``by`` is a name, that column.
    by : str or pandas.Series
        The grouping column of ``scores`` (e.g. ``value_segment``), or labels aligned with it.
    assumptions : BudgetAssumptions, optional

    Returns
    -------
    pandas.DataFrame
        Indexed by group (named after ``by``); ``max_*`` are means per customer,
        ``retention_budget`` is the group's total retention ceiling.
    """
    per_customer = customer_budget(scores, assumptions)
    labels = scores[by] if isinstance(by, str) else by
    name = by if isinstance(by, str) else (labels.name or "group")
    per_customer[name] = labels.astype("str").to_numpy()
    groups = per_customer.groupby(name, sort=True)
    table = pd.DataFrame(
        {
            "customers": groups.size(),
            "mean_clv": groups["clv"].mean(),
            "mean_p_churn": groups["p_churn"].mean(),
            "max_acquisition_cost": groups["max_acquisition_cost"].mean(),
            "max_retention_spend": groups["max_retention_spend"].mean(),
            "retention_budget": groups["max_retention_spend"].sum(),
        }
    )
    tiers = [tier for tier, _ in VALUE_TIERS]
    if set(table.index) <= set(tiers):
        # Value segments read most valuable first, not alphabetically.
        table = table.loc[[tier for tier in tiers if tier in table.index]]
    total = pd.DataFrame(
        {
            "customers": [len(per_customer)],
            "mean_clv": [per_customer["clv"].mean()],
            "mean_p_churn": [per_customer["p_churn"].mean()],
            "max_acquisition_cost": [per_customer["max_acquisition_cost"].mean()],
            "max_retention_spend": [per_customer["max_retention_spend"].mean()],
            "retention_budget": [per_customer["max_retention_spend"].sum()],
        },
        index=pd.Index(["all"], name=name),
    )
    return pd.concat([table, total]).astype({"customers": "int64"})


def first_order_months(orders: pd.DataFrame) -> pd.Series:
    """Each customer's acquisition cohort: the month of the first order (``YYYY-MM``).

    Parameters
    ----------
    orders : pandas.DataFrame
        ``customer_id`` and ``ordered_at`` (any order status: acquisition is the first
        order placed).

    Returns
    -------
    pandas.Series
        Text ``YYYY-MM`` indexed by ``customer_id``, named ``cohort``.
    """
    first = pd.to_datetime(orders["ordered_at"]).groupby(orders["customer_id"]).min()
    return first.dt.strftime("%Y-%m").rename("cohort")


def cohort_labels(scores: pd.DataFrame, orders: pd.DataFrame | None = None) -> pd.Series | None:
    """The cohort of each scored customer, aligned with ``scores``; None when unknown.

    The first order comes from a column of the scores (:data:`FIRST_ORDER_COLUMNS`) when
    there is one, else from ``orders``; customers without orders are ``unknown``.
    """
    for column in FIRST_ORDER_COLUMNS:
        if column in scores.columns:
            months = pd.to_datetime(scores[column]).dt.strftime("%Y-%m")
            return months.fillna("unknown").rename("cohort")
    if orders is None:
        return None
    months = first_order_months(orders)
    mapped = scores["customer_id"].astype("str").map(months)
    return mapped.fillna("unknown").rename("cohort")


def cohort_budget(
    scores: pd.DataFrame,
    orders: pd.DataFrame | None = None,
    assumptions: BudgetAssumptions | None = None,
) -> pd.DataFrame | None:
    """:func:`budget_table` by acquisition cohort, or None when first orders are unknown."""
    labels = cohort_labels(scores, orders)
    if labels is None:
        return None
    return budget_table(scores, labels, assumptions)
