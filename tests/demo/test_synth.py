"""The synthetic storefront: reproducible, on contract, and with the planted effects measurable."""

import numpy as np
import pandas as pd
import pytest

from demo.generator import SynthParams, generate, main
from features.io import validate_events, validate_orders

START, END = pd.Timestamp("2022-07-01"), pd.Timestamp("2026-07-01")
YEAR = pd.Timedelta(days=365)
NO_EFFECTS = SynthParams(
    late_dropout=0.0,
    late_spend=1.0,
    return_dropout=0.0,
    return_spend=1.0,
    bad_ticket_dropout=0.0,
    bad_ticket_spend=1.0,
)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(3_000, seed=11)


@pytest.fixture(scope="module")
def large() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Enough customers for the behavioural measurements to be stable across seeds."""
    return generate(10_000, seed=3)


def test_same_seed_gives_identical_frames_and_another_seed_does_not(small):
    orders, events = generate(3_000, seed=11)
    pd.testing.assert_frame_equal(orders, small[0])
    pd.testing.assert_frame_equal(events, small[1])
    other_orders, other_events = generate(3_000, seed=12)
    assert not other_orders.equals(orders)
    assert not other_events.equals(events)


def test_columns_dtypes_and_ids(small):
    orders, events = small
    assert list(orders.columns) == [
        "customer_id",
        "order_id",
        "ordered_at",
        "amount",
        "status",
        "promised_at",
        "delivered_at",
    ]
    assert list(events.columns) == [
        "customer_id",
        "occurred_at",
        "kind",
        "order_id",
        "score",
        "resolution_hours",
        "amount",
    ]
    for frame, times in [(orders, ["ordered_at", "promised_at", "delivered_at"]), (events, [])]:
        for name in times:
            assert frame[name].dtype == "datetime64[ns]", name
        for name in ["customer_id", "order_id"]:
            assert frame[name].dtype == "str", name
    assert events["occurred_at"].dtype == "datetime64[ns]"
    assert orders["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert orders["order_id"].str.fullmatch(r"O\d{9}").all()
    assert orders["order_id"].is_unique
    assert orders["customer_id"].nunique() == 3_000
    # Every event belongs to an existing order of the same customer.
    owner = orders.set_index("order_id")["customer_id"]
    assert (owner.reindex(events["order_id"]).to_numpy() == events["customer_id"].to_numpy()).all()
    # The project's own loader accepts the output as it is.
    assert validate_orders(orders, strict=True).rows_loaded == len(orders)
    assert validate_events(events, strict=True).rows_loaded == len(events)


def test_values_are_in_range_and_nothing_is_at_or_after_the_export_date(small):
    orders, events = small
    assert (orders["amount"] >= 0).all() and orders["amount"].notna().all()
    assert set(orders["status"]) == {"completed", "cancelled", "returned"}
    for name in ["ordered_at", "promised_at", "delivered_at"]:
        assert (orders[name].dropna() < END).all(), name
    assert (orders["ordered_at"] >= START).all()
    assert (events["occurred_at"] < END).all()

    cancelled = orders["status"] == "cancelled"
    undelivered = orders["delivered_at"].isna()
    assert undelivered[cancelled].all()
    # Apart from cancellations, only orders still in transit at the export date lack a delivery.
    in_transit = undelivered & ~cancelled
    assert (orders.loc[in_transit, "ordered_at"] > END - pd.Timedelta(days=13)).all()
    assert in_transit.sum() < 0.01 * len(orders)
    delivered = orders.loc[~undelivered]
    assert (delivered["delivered_at"] > delivered["ordered_at"]).all()
    late = (delivered["delivered_at"] > delivered["promised_at"]).mean()
    assert 0.08 < late < 0.16
    assert 0.01 < cancelled.mean() < 0.05

    assert set(events["kind"]) == {"ticket", "review", "return"}
    scored = events["score"].dropna()
    assert scored.between(1, 5).all() and (scored == scored.round()).all()
    tickets = events[events["kind"] == "ticket"]
    assert (tickets["resolution_hours"].dropna() >= 0).all()
    assert tickets["resolution_hours"].isna().equals(tickets["score"].isna())  # open: no CSAT
    assert tickets["amount"].isna().all()
    reviews = events[events["kind"] == "review"]
    assert reviews["score"].notna().all() and reviews["resolution_hours"].isna().all()
    # A return event per returned order, refunding its value.
    returns = events[events["kind"] == "return"]
    returned = orders[orders["status"] == "returned"].set_index("order_id")["amount"]
    assert returns["score"].isna().all() and returns["order_id"].is_unique
    assert returns.set_index("order_id")["amount"].sort_index().equals(returned.sort_index())


def test_open_tickets_exist_only_near_the_export_date(large):
    tickets = large[1][large[1]["kind"] == "ticket"]
    still_open = tickets[tickets["resolution_hours"].isna()]
    assert 0 < len(still_open) < 0.02 * len(tickets)
    assert (still_open["occurred_at"] > END - pd.Timedelta(days=120)).all()


def test_custom_period_is_respected():
    orders, events = generate(300, seed=5, start="2024-01-01", end="2024-07-01")
    assert orders["ordered_at"].min() >= pd.Timestamp("2024-01-01")
    for frame, name in [(orders, "ordered_at"), (orders, "delivered_at"), (events, "occurred_at")]:
        assert (frame[name].dropna() < pd.Timestamp("2024-07-01")).all()


def test_acquisition_is_staggered_and_growing(large):
    first = large[0].groupby("customer_id")["ordered_at"].min()
    assert first.min() < START + pd.Timedelta(days=60)
    assert first.max() > END - pd.Timedelta(days=60)
    middle = START + (END - START) / 2
    early, late = (first < middle).sum(), (first >= middle).sum()
    # A density rising threefold puts 62.5% of acquisitions in the second half (ratio 1.67).
    assert late > 1.4 * early


def test_november_december_have_more_orders_per_day(large):
    ordered = large[0]["ordered_at"]
    month = ordered.dt.month
    days = pd.Series(pd.date_range(START, END, inclusive="left")).dt.month
    # The neighbouring months (Sep-Oct, Jan-Feb) sit on either side, so growth cancels out.
    peak = (month >= 11).sum() / (days >= 11).sum()
    around = month.isin([9, 10, 1, 2]).sum() / days.isin([9, 10, 1, 2]).sum()
    assert 1.35 < peak / around < 1.9


def _first_year_churn(orders: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per customer acquired at least two years before the export: first-year service history
    and ``churned`` = no order in the year after their first year."""
    first = orders.groupby("customer_id")["ordered_at"].min().rename("first")
    first = first[first <= END - 2 * YEAR]
    orders = orders.join(first, on="customer_id", how="inner")
    year1 = orders[orders["ordered_at"] < orders["first"] + YEAR]
    year2 = orders[
        (orders["ordered_at"] >= orders["first"] + YEAR)
        & (orders["ordered_at"] < orders["first"] + 2 * YEAR)
    ]
    out = pd.DataFrame(index=first.index)
    late = year1["delivered_at"] > year1["promised_at"]
    out["late"] = out.index.isin(year1.loc[late, "customer_id"])
    out["churned"] = ~out.index.isin(year2["customer_id"])

    tickets = events[events["kind"] == "ticket"].join(first, on="customer_id", how="inner")
    tickets = tickets[tickets["occurred_at"] < tickets["first"] + YEAR]
    bad = (tickets["resolution_hours"] > 72) | (tickets["score"] <= 2)
    out["ticket"] = out.index.isin(tickets["customer_id"])
    out["bad_ticket"] = out.index.isin(tickets.loc[bad, "customer_id"])
    return out


def _churn_gap(table: pd.DataFrame, flag: str) -> float:
    rates = table.groupby(flag)["churned"].mean()
    return float(rates[True] - rates[False])


@pytest.fixture(scope="module")
def churn(large) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First-year churn tables with the planted effects and, same seed, without them."""
    return _first_year_churn(*large), _first_year_churn(*generate(10_000, 3, params=NO_EFFECTS))


def test_late_deliveries_in_the_first_year_raise_churn(churn):
    planted, without = churn
    assert len(planted) > 3_000 and planted["late"].mean() > 0.3
    # Customers with late deliveries had more orders, which on its own means less churn (the
    # gap is negative without the effect); the planted effect must overturn that.
    gap = _churn_gap(planted, "late")
    assert gap > 0.05
    assert gap - _churn_gap(without, "late") > 0.25


def test_badly_resolved_tickets_in_the_first_year_raise_churn(churn):
    planted, without = churn
    # Compared among customers who all opened a ticket, so only the resolution differs.
    ticketed, ticketed_without = planted[planted["ticket"]], without[without["ticket"]]
    assert ticketed["bad_ticket"].sum() > 200
    gap = _churn_gap(ticketed, "bad_ticket")
    assert gap > 0.05
    assert gap - _churn_gap(ticketed_without, "bad_ticket") > 0.08


def _late_deliveries_before_each_order(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders with ``late_before``: the customer's late deliveries that arrived before it."""
    late = orders[orders["delivered_at"] > orders["promised_at"]]
    timeline = pd.concat(
        [
            orders.assign(time=orders["ordered_at"], is_late=0),
            late[["customer_id"]].assign(time=late["delivered_at"], is_late=1),
        ],
        ignore_index=True,
    ).sort_values(["customer_id", "time", "is_late"], kind="stable")
    timeline["late_before"] = timeline.groupby("customer_id")["is_late"].cumsum()
    return timeline[timeline["is_late"] == 0]


def test_late_deliveries_lower_later_spend(large):
    orders = _late_deliveries_before_each_order(large[0])
    first = orders.groupby("customer_id")["amount"].transform("first")
    later = orders[orders.groupby("customer_id").cumcount() > 0]
    # Later order values relative to the customer's own first order (geometric mean), by late
    # deliveries lived through so far: x0.93 each, plus the returns and bad tickets that come
    # with them. Without the planted effects both ratios stay within 0.97-1.02.
    log_ratio = np.log(later["amount"] / first[later.index])
    ratio = np.exp(log_ratio.groupby(later["late_before"].clip(upper=2)).mean())
    assert ratio[1] < 0.96 * ratio[0]
    assert ratio[2] < 0.92 * ratio[0]


def test_invalid_arguments_are_explained():
    with pytest.raises(ValueError, match="customers must be >= 1"):
        generate(0, seed=1)
    with pytest.raises(ValueError, match="end .* must be after start"):
        generate(10, seed=1, start="2024-01-01", end="2023-01-01")
    with pytest.raises(ValueError, match="late_probability must be a probability"):
        SynthParams(late_probability=1.5)
    with pytest.raises(ValueError, match="promise_days_min .* must be <= promise_days_max"):
        SynthParams(promise_days_min=6)


def test_command_line_writes_both_files_atomically(tmp_path):
    main(["--customers", "200", "--seed", "4", "--out", str(tmp_path / "demo")])
    written = sorted(p.name for p in (tmp_path / "demo").iterdir())
    # The two tables and the manifest that lets make impact replay the store's truth.
    assert written == ["orders.parquet", "service_events.parquet", "synthetic_store.json"]
    orders, events = generate(200, seed=4)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "demo" / "orders.parquet"), orders)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "demo" / "service_events.parquet"), events
    )
    assert np.isnan(events.loc[events["kind"] == "review", "amount"]).all()
