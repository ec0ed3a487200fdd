"""Guards of the rules with one home: placed/paid orders and the service failures."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.generator import generate
from features.history import days_before
from features.io import validate_events, validate_orders
from features.quality import quality_features
from features.spec import FeatureSpec, is_paid, is_placed, is_returned
from serving.insight.impact import bad_ticket_rows, late_delivery_rows, returned_order_rows

ROOT = Path(__file__).resolve().parents[2]


def test_placed_and_paid_orders():
    status = pd.Series(["completed", "cancelled", "returned", None], dtype="str")
    assert is_placed(status).tolist() == [True, False, True, True]
    assert is_paid(status).tolist() == [True, False, False, True]
    assert is_returned(status).tolist() == [False, False, True, False]


def _status_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            words = [c.value for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
            if {"cancelled", "returned"} & set(words):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if isinstance(node, ast.Name) and node.id == "NON_REVENUE_STATUSES":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_order_statuses_are_judged_only_in_features_spec():
    # The placed/paid rules were coded three times; a fourth copy would drift.
    sources = [p for d in ("features", "training", "serving") for p in (ROOT / d).rglob("*.py")]
    copies = [hit for p in sources if p.name != "spec.py" for hit in _status_comparisons(p)]
    assert copies == []


@pytest.fixture(scope="module")
def store():
    orders, events = generate(customers=400, seed=11)
    return validate_orders(orders).frame, validate_events(events).frame


def test_the_impact_undoes_exactly_the_failures_the_features_count(store):
    orders, events = store
    spec = FeatureSpec()
    q = spec.quality_days
    cutoff = orders["ordered_at"].quantile(0.8).normalize()
    features = quality_features(orders, events, cutoff=cutoff, spec=spec)
    recent_orders = (days_before(orders["ordered_at"], cutoff) <= q) & (
        orders["ordered_at"] < cutoff
    ).to_numpy()
    recent_events = days_before(events["occurred_at"], cutoff) <= q

    def per_customer(ids: pd.Series, mask: np.ndarray) -> pd.Series:
        counted = ids[mask].value_counts()
        return counted.reindex(features.index, fill_value=0).astype("float64")

    late = per_customer(orders["customer_id"], late_delivery_rows(orders, cutoff) & recent_orders)
    bad = per_customer(events["customer_id"], bad_ticket_rows(events, cutoff) & recent_events)
    assert late.sum() > 0 and bad.sum() > 0
    has = features[f"late_deliveries_{q}d"].notna()
    pd.testing.assert_series_equal(
        late[has], features.loc[has, f"late_deliveries_{q}d"], check_names=False
    )
    pd.testing.assert_series_equal(bad, features[f"bad_tickets_{q}d"], check_names=False)
    assert returned_order_rows(orders, cutoff).sum() > 0
