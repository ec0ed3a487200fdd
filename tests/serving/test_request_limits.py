"""The request schema and the files agree on what a value may be (issue 21, smaller items).

- A JSON ``true`` amount was read as 1.0 and scored; it is refused, naming the field.
- Batch scored customer ids of any length, while an online request with an id over 128
  characters failed with 400: now both refuse ids over :data:`features.io.MAX_ID_LENGTH`
  (batch quarantines the row with the reason), so every id batch scores can be looked up.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from features.io import MAX_ID_LENGTH, load_orders
from serving.online.schema import ScoreRequest


def _inline(order: dict, **extra) -> str:
    customer = {"customer_id": "a", "cutoff": "2024-06-01", "orders": [order], **extra}
    return json.dumps({"customers": [customer]})


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({"ordered_at": "2024-01-01", "amount": True}, "amount"),
        ({"ordered_at": "2024-01-01", "amount": False}, "amount"),
        ({"ordered_at": True, "amount": 1.0}, "ordered_at"),
        ({"ordered_at": "2024-01-01", "amount": 1.0, "delivered_at": True}, "delivered_at"),
    ],
)
def test_a_json_boolean_is_not_a_number_or_a_date(order, field):
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(_inline(order))
    locations = [error["loc"] for error in caught.value.errors()]
    assert all(loc[:4] == ("customers", 0, "orders", 0) for loc in locations), locations
    assert {loc[4] for loc in locations} == {field}


def test_a_json_boolean_event_score_is_refused_too():
    event = {"occurred_at": "2024-01-02", "kind": "review", "score": True}
    body = _inline({"ordered_at": "2024-01-01", "amount": 1.0}, service_events=[event])
    with pytest.raises(ValidationError, match=r"customers\.0\.service_events\.0\.score"):
        ScoreRequest.model_validate_json(body)


@pytest.mark.parametrize("amount", [3, 3.5, "3.5", 0])
def test_numbers_and_text_amounts_still_reach_the_validation(amount):
    request = ScoreRequest.model_validate_json(
        _inline({"ordered_at": "2024-01-01", "amount": amount})
    )
    assert request.customers[0].orders[0].amount == amount


def test_batch_and_online_accept_the_same_customer_ids(tmp_path):
    longest, too_long = "x" * MAX_ID_LENGTH, "y" * (MAX_ID_LENGTH + 1)
    ScoreRequest.model_validate({"customers": [{"customer_id": longest}]})
    with pytest.raises(ValidationError, match=f"at most {MAX_ID_LENGTH} characters"):
        ScoreRequest.model_validate({"customers": [{"customer_id": too_long}]})
    path = tmp_path / "orders.csv"
    pd.DataFrame(
        {"customer_id": [longest, too_long, "c"], "ordered_at": "2024-01-01", "amount": 1.0}
    ).to_csv(path, index=False)
    result = load_orders(path)
    assert result.frame["customer_id"].tolist() == [longest, "c"]
    assert result.quarantine["reason"].tolist() == ["customer_id too long"]
    assert result.quarantine["source_line"].tolist() == [3]
    assert any(f"longer than {MAX_ID_LENGTH} characters" in p for p in result.problems)
