"""A folder of Parquet part files is read with every part's columns (issue 21, M4).

Before, the folder's schema was its first part's: a first part without ``status``,
``promised_at`` and ``delivered_at`` (an export that added them later) made those columns
vanish from every part, silently, and the cancelled and returned orders counted as revenue.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.files import parquet_parts_schema, read_table
from features.io import DataValidationError, load_orders


def _orders(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{k}" for k in range(start, start + n)],
            "order_id": [f"o{k}" for k in range(start, start + n)],
            "ordered_at": pd.date_range("2024-01-01", periods=n, freq="D"),
            "amount": [10.0] * n,
        }
    )


@pytest.fixture
def folder(tmp_path):
    """part-0000 without the optional columns, part-0001 with them."""
    root = tmp_path / "orders"
    root.mkdir()
    _orders(3).to_parquet(root / "part-0000.parquet", index=False)
    later = _orders(3, start=3).assign(
        status=["cancelled", "returned", "completed"],
        promised_at=pd.Timestamp("2024-02-01"),
        delivered_at=pd.Timestamp("2024-02-03"),
    )
    later.to_parquet(root / "part-0001.parquet", index=False)
    return root


def test_columns_of_later_parts_are_read_and_missing_ones_are_null(folder):
    result = load_orders(folder)
    frame = result.frame.set_index("order_id")
    assert frame["status"].isna().tolist() == [True] * 3 + [False] * 3
    assert frame["status"].iloc[3:].tolist() == ["cancelled", "returned", "completed"]
    assert frame["delivered_at"].isna().sum() == 3
    assert (frame["delivered_at"].iloc[3:] == pd.Timestamp("2024-02-03")).all()
    assert result.rows_read == 6 and result.rows_quarantined == 0


def test_the_schema_is_every_parts_columns_in_order_of_appearance(folder):
    schema = parquet_parts_schema(folder)
    assert schema.names == [
        "customer_id",
        "order_id",
        "ordered_at",
        "amount",
        "status",
        "promised_at",
        "delivered_at",
    ]


def test_a_column_with_another_type_in_a_part_is_refused_naming_the_part(folder):
    _orders(2, start=10).astype({"amount": "str"}).to_parquet(
        folder / "part-0002.parquet", index=False
    )
    with pytest.raises(
        DataValidationError,
        match=r"part file '[^']*part-0002\.parquet' has column 'amount' as (large_)?string, "
        r"but part file '[^']*part-0000\.parquet' has it as double",
    ):
        read_table(folder)


def test_a_part_with_a_column_all_null_takes_the_other_parts_type(tmp_path):
    root = tmp_path / "orders"
    root.mkdir()
    _orders(2).assign(status=None).to_parquet(root / "part-0000.parquet", index=False)
    _orders(2, start=2).assign(status="cancelled").to_parquet(
        root / "part-0001.parquet", index=False
    )
    frame = load_orders(root).frame
    assert frame["status"].isna().sum() == 2
    assert frame["status"].iloc[2:].tolist() == ["cancelled", "cancelled"]


def test_an_unreadable_part_is_named(folder):
    (folder / "part-0002.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataValidationError, match=r"part-0002\.parquet"):
        load_orders(folder)
