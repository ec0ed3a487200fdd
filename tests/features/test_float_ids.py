"""Float customer ids in Parquet are read exactly, never wrapped or merged (issue 21, M3).

Before, a float id column was cast with ``astype("int64")``: ids at or above 2**63 (1e19,
2e19, 3e19) all became ``"-9223372036854775808"``, one customer, merged silently; and one
``inf`` id stopped the whole load with numpy's message, naming no file, column or row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.io import DataValidationError, load_events, load_orders

DATES = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])


def _parquet(tmp_path, ids, name="orders.parquet"):
    path = tmp_path / name
    pd.DataFrame({"customer_id": ids, "ordered_at": DATES, "amount": [1.0, 2.0, 3.0]}).to_parquet(
        path, index=False
    )
    return path


def test_ids_beyond_int64_stay_three_customers_with_their_exact_value(tmp_path):
    result = load_orders(_parquet(tmp_path, [1e19, 2e19, 3e19]))
    assert result.frame["customer_id"].tolist() == [
        "10000000000000000000",
        "20000000000000000000",
        "30000000000000000000",
    ]
    assert result.rows_quarantined == 0
    # Said, not silent: a float cannot hold every id that large exactly.
    assert any("beyond 2**53 stored as floats" in p for p in result.problems)


def test_ordinary_float_ids_read_as_their_integer_text(tmp_path):
    result = load_orders(_parquet(tmp_path, [1.0, 42.0, -7.0]))
    assert result.frame["customer_id"].tolist() == ["1", "42", "-7"]
    assert result.problems == []


def test_an_infinite_id_is_quarantined_naming_the_column_and_the_rest_load(tmp_path):
    path = _parquet(tmp_path, [1.0, 2.0, np.inf])
    result = load_orders(path)
    assert result.frame["customer_id"].tolist() == ["1", "2"]
    assert result.quarantine["reason"].tolist() == ["non-finite customer_id"]
    assert result.quarantine["source_row"].tolist() == [2]
    assert result.rows_read == 3
    message = [p for p in result.problems if "infinite" in p]
    assert message and "column 'customer_id' has 1 infinite values" in message[0]
    assert str(path) in message[0]
    with pytest.raises(DataValidationError, match="column 'customer_id' has 1 infinite values"):
        load_orders(path, strict=True)


def test_non_integral_float_ids_keep_their_text(tmp_path):
    result = load_orders(_parquet(tmp_path, [1.5, -np.inf, 2.0]))
    assert result.frame["customer_id"].tolist() == ["1.5", "2"]
    assert result.quarantine["reason"].tolist() == ["non-finite customer_id"]


def test_float_order_ids_in_events_are_exact_too(tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "occurred_at": DATES,
            "kind": ["return"] * 3,
            "order_id": [1e19, 2e19, np.inf],
        }
    ).to_parquet(path, index=False)
    result = load_events(path)
    assert result.frame["order_id"].tolist() == ["10000000000000000000", "20000000000000000000"]
    assert result.quarantine["reason"].tolist() == ["non-finite order_id"]
