"""A customer's features are a function of that customer's rows alone (issue 21, M1/M2).

Before, :func:`features.history.status_at` decided how returns are dated over every customer
built together: one customer's return event switched the "delivered before the cutoff" rule
off for all of them, and return events matched orders on order_id alone. So a customer's
revenue depended on who else was in the batch chunk or the online request.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import FeatureSpec, build_features
from features.history import status_at
from features.io import validate_events, validate_orders

SPEC = FeatureSpec(horizon_days=180)
CUTOFF = pd.Timestamp("2024-07-01")


def _orders(rows: list[dict]) -> pd.DataFrame:
    return validate_orders(pd.DataFrame(rows), strict=True, unique_order_ids=False).frame


def _events(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "occurred_at", "kind", "order_id"])
    return validate_events(frame, strict=True).frame


def _order(customer: str, order_id: str, day: str, amount: float, status: str, delivered: str):
    return {
        "customer_id": customer,
        "order_id": order_id,
        "ordered_at": day,
        "amount": amount,
        "status": status,
        "delivered_at": delivered,
    }


#: A: a returned order delivered before the cutoff and no return event (the delivery dates it).
A_ORDERS = [
    _order("A", "1", "2024-02-01", 120.0, "completed", "2024-02-03"),
    _order("A", "2", "2024-04-01", 300.0, "returned", "2024-04-03"),
    _order("A", "3", "2024-06-01", 80.0, "completed", "2024-06-03"),
]
#: B: a returned order dated by its return event (the m1 reproduction's second customer).
B_ORDERS = [_order("B", "9", "2024-03-01", 20.0, "returned", "2024-03-02")]
B_EVENTS = [{"customer_id": "B", "occurred_at": "2024-03-10", "kind": "return", "order_id": "9"}]


def test_a_return_event_of_another_customer_does_not_change_how_a_return_is_dated():
    alone = build_features(_orders(A_ORDERS), _events([]), cutoff=CUTOFF, spec=SPEC)
    together = build_features(
        _orders(A_ORDERS + B_ORDERS), _events(B_EVENTS), cutoff=CUTOFF, spec=SPEC
    )
    # The returned 300 is known (delivered before the cutoff): A's revenue is 200 either way.
    assert alone.loc["A", "revenue_total"] == 200.0
    pd.testing.assert_series_equal(together.loc["A"], alone.loc["A"])
    assert together.loc["B", "revenue_total"] == 0.0


def test_return_events_match_orders_on_customer_and_order_id():
    # C's order "7" is returned but was delivered only after the cutoff: at the cutoff it looks
    # kept. D has a return event for its own order "7", which says nothing about C's.
    c_orders = [_order("C", "7", "2024-06-20", 50.0, "returned", "2024-07-05")]
    d_orders = [_order("D", "7-d", "2024-05-01", 10.0, "completed", "2024-05-03")]
    d_events = [
        {"customer_id": "D", "occurred_at": "2024-06-25", "kind": "return", "order_id": "7"}
    ]
    past = _orders(c_orders + d_orders)
    status = status_at(past, _events(d_events), CUTOFF)
    assert status.tolist() == ["completed", "completed"]
    # C's own event for "7" before the cutoff does date it.
    own = [{"customer_id": "C", "occurred_at": "2024-06-25", "kind": "return", "order_id": "7"}]
    assert status_at(past, _events(own), CUTOFF).tolist() == ["returned", "completed"]


def test_a_customer_with_return_events_has_returns_dated_by_them_only():
    # E logs returns as events: its order returned without an event before the cutoff is not
    # known as returned yet, even though it was delivered before the cutoff.
    e_orders = [
        _order("E", "e1", "2024-03-01", 40.0, "returned", "2024-03-03"),
        _order("E", "e2", "2024-04-01", 60.0, "returned", "2024-04-03"),
    ]
    e_events = [
        {"customer_id": "E", "occurred_at": "2024-03-20", "kind": "return", "order_id": "e1"},
        {"customer_id": "E", "occurred_at": "2024-07-20", "kind": "return", "order_id": "e2"},
    ]
    past = _orders(e_orders + A_ORDERS)
    status = status_at(past, _events(e_events), CUTOFF)
    assert status.tolist() == ["returned", "completed", "completed", "returned", "completed"]


# -- the property: alone == in any batch == in any chunking -------------------------------------

_DAYS = st.integers(min_value=-400, max_value=30)  # days from the cutoff (some after it)
_STATUSES = st.sampled_from(["completed", "returned", "cancelled", None])
#: A small pool of order ids, so that customers share them (as separate shops' exports do).
_ORDER_IDS = st.sampled_from(["1", "2", "3", "4", "5"])


@st.composite
def _customer(draw: st.DrawFn, name: str) -> tuple[list[dict], list[dict]]:
    order_ids = draw(st.lists(_ORDER_IDS, min_size=1, max_size=4, unique=True))
    orders = []
    for order_id in order_ids:
        day = draw(_DAYS)
        delivered = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=40)))
        orders.append(
            {
                "customer_id": name,
                "order_id": order_id,
                "ordered_at": CUTOFF + pd.Timedelta(days=day),
                "amount": float(draw(st.integers(min_value=0, max_value=500))),
                "status": draw(_STATUSES),
                "delivered_at": None
                if delivered is None
                else CUTOFF + pd.Timedelta(days=day + delivered),
            }
        )
    events = [
        {
            "customer_id": name,
            "occurred_at": CUTOFF + pd.Timedelta(days=draw(_DAYS)),
            "kind": draw(st.sampled_from(["return", "return", "ticket", "review"])),
            "order_id": draw(st.one_of(st.none(), _ORDER_IDS)),
        }
        for _ in range(draw(st.integers(min_value=0, max_value=3)))
    ]
    return orders, events


@st.composite
def _store(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, list[list[str]]]:
    names = [f"c{k}" for k in range(draw(st.integers(min_value=2, max_value=7)))]
    orders: list[dict] = []
    events: list[dict] = []
    for name in names:
        o, e = draw(_customer(name))
        orders += o
        events += e
    # Any split of the customers into chunks (in any order).
    shuffled = draw(st.permutations(names))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(names) - 1))))
    bounds = [0, *cuts, len(names)]
    chunks = [list(shuffled[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    orders_frame = pd.DataFrame(orders)
    orders_frame["status"] = orders_frame["status"].astype("object")
    return _orders(orders_frame.to_dict("records")), _events(events), chunks


def _features_of(orders: pd.DataFrame, events: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    return build_features(
        orders.loc[orders["customer_id"].isin(ids)],
        events.loc[events["customer_id"].isin(ids)],
        cutoff=CUTOFF,
        spec=SPEC,
    )


def _assert_same(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    actual = actual.loc[expected.index]
    np.testing.assert_allclose(
        actual.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9, equal_nan=True
    )


# 60 examples (make test); make test-fast's hypothesis profile caps them (tests/conftest.py).
@settings(
    max_examples=min(60, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_store())
def test_features_alone_in_a_batch_and_in_any_chunking_are_the_same(store):
    orders, events, chunks = store
    everyone = build_features(orders, events, cutoff=CUTOFF, spec=SPEC)
    chunked = pd.concat([_features_of(orders, events, ids) for ids in chunks])
    assert sorted(chunked.index) == list(everyone.index)
    _assert_same(everyone, chunked)
    for customer in everyone.index:
        _assert_same(everyone.loc[[customer]], _features_of(orders, events, [customer]))


def test_return_events_match_orders_on_the_whole_pair_not_on_joined_text():
    # ("a", "bc") and ("ab", "c") join to the same text; only the first pair has its event.
    orders = [
        _order("a", "bc", "2024-03-01", 40.0, "returned", "2024-03-03"),
        _order("ab", "c", "2024-03-01", 40.0, "returned", "2024-03-03"),
    ]
    events = [
        {"customer_id": "a", "occurred_at": "2024-03-20", "kind": "return", "order_id": "bc"},
        {"customer_id": "ab", "occurred_at": "2024-03-20", "kind": "return", "order_id": "x"},
    ]
    status = status_at(_orders(orders), _events(events), CUTOFF)
    assert status.tolist() == ["returned", "completed"]
