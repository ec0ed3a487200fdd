"""Inline histories dated outside 1900-2200 make that customer invalid, never the request fail.

Before, an order dated 0001-01-01 or 9999-12-31 raised pandas' OutOfBoundsDatetime out of the
validation (``POST /score`` answered 500 for every customer of the request), and one dated
1700-05-05 was scored with a last order 118,000 days ago.
"""

import pytest
from pydantic import ValidationError

from features.io import DataValidationError
from serving.online.answers import prepare, validate_history
from serving.online.schema import ScoreRequest
from serving.run_files import load_feature_table
from training import tracking

CUTOFF = "2025-06-01"
GOOD_ORDERS = [
    {"ordered_at": "2025-01-03", "amount": 20.0, "status": "completed"},
    {"ordered_at": "2025-03-01T10:00:00+02:00", "amount": "12.5"},
]
RANGE = "dates outside 1900-01-01 to 2200-01-01 \\(exclusive\\)"


@pytest.fixture(scope="module")
def served(served_store, latest_scores):
    """The served model's feature spec and the feature table of a batch run."""
    config, _ = latest_scores
    model = tracking.load_model(served_store.model_uri)
    return load_feature_table(config.features_out, model.feature_names_in_), model.spec


@pytest.mark.parametrize("date", ["0001-01-01", "9999-12-31", "1700-05-05", 10000101, 99991231])
def test_an_order_out_of_range_is_a_validation_error_naming_field_column_and_range(date):
    orders = [*GOOD_ORDERS, {"ordered_at": date, "amount": 5.0}]
    with pytest.raises(
        DataValidationError, match=rf"customers\[2\]\.orders: column 'ordered_at' has 1 {RANGE}"
    ):
        validate_history(2, orders, None)


def test_a_service_event_out_of_range_is_a_validation_error_too():
    events = [{"occurred_at": "9999-12-31", "kind": "ticket"}]
    with pytest.raises(
        DataValidationError,
        match=rf"customers\[0\]\.service_events: column 'occurred_at' has 1 {RANGE}",
    ):
        validate_history(0, GOOD_ORDERS, events)


def test_out_of_range_dates_make_only_their_customer_invalid(served):
    table, spec = served
    items = [
        {
            "customer_id": "year-1",
            "cutoff": CUTOFF,
            "orders": [*GOOD_ORDERS, {"ordered_at": "0001-01-01", "amount": 5.0}],
        },
        {
            "customer_id": "year-9999",
            "cutoff": CUTOFF,
            "orders": [{"ordered_at": "9999-12-31", "amount": 5.0}, *GOOD_ORDERS],
        },
        {
            "customer_id": "year-1700",
            "cutoff": CUTOFF,
            "orders": [{"ordered_at": "1700-05-05", "amount": 5.0}],
        },
        {"customer_id": "fine", "cutoff": CUTOFF, "orders": GOOD_ORDERS},
    ]
    pending = prepare(items, table, spec)
    results = pending.results
    assert [r["status"] for r in results] == ["invalid", "invalid", "invalid", "ok"]
    for slot, result in enumerate(results[:3]):
        error = result["error"]
        assert error.startswith("1 of "), error
        assert f"customers[{slot}].orders: column 'ordered_at' has 1 dates outside 19" in error
    assert results[3]["error"] is None and results[3]["source"] == "inline"
    assert pending.slots == [3] and pending.matrix.shape == (1, len(table.columns))


def test_an_optional_date_out_of_range_is_missing_and_the_customer_is_scored(served):
    table, spec = served
    orders = [{**GOOD_ORDERS[0], "promised_at": "2025-01-05", "delivered_at": "0001-01-01"}]
    pending = prepare([{"customer_id": "c", "cutoff": CUTOFF, "orders": orders}], table, spec)
    assert pending.results[0]["status"] == "ok" and pending.slots == [0]


@pytest.mark.parametrize("cutoff", ["0001-01-01", "9999-12-31", "1700-05-05"])
def test_a_request_cutoff_out_of_range_is_refused_by_the_schema(cutoff):
    # A 400 naming the value, not a 500 from deep in the feature code.
    body = {"customers": [{"customer_id": "c", "cutoff": cutoff, "orders": GOOD_ORDERS}]}
    with pytest.raises(ValidationError, match=f"cutoff '{cutoff}' is outside the supported dates"):
        ScoreRequest.model_validate(body)
