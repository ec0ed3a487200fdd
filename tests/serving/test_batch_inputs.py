"""Batch runs on inputs the loader used to misread (issue 21, M3 and M4), end to end."""

from __future__ import annotations

import pandas as pd

from serving.batch.base_scoring import main

DATES = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])


def _parquet(tmp_path, ids, name="orders.parquet"):
    path = tmp_path / name
    pd.DataFrame({"customer_id": ids, "ordered_at": DATES, "amount": [1.0, 2.0, 3.0]}).to_parquet(
        path, index=False
    )
    return path


def test_batch_scores_three_float_id_customers_as_three(served_store, tmp_path):
    """The m3 reproduction (m3_float_ids.sh) through ``python -m serving.batch``."""
    out = tmp_path / "scores.csv"
    code = main(
        [
            "--orders",
            str(_parquet(tmp_path, [1e19, 2e19, 3e19])),
            "--cutoff",
            "2025-01-01",
            "--out",
            str(out),
            "--model-uri",
            served_store.model_uri,
        ]
    )
    assert code == 0
    scores = pd.read_csv(out, dtype={"customer_id": "str"})
    assert sorted(scores["customer_id"]) == [
        "10000000000000000000",
        "20000000000000000000",
        "30000000000000000000",
    ]
    assert sorted(scores["historic_value"]) == [1.0, 2.0, 3.0]


def _score(served_store, orders, out) -> pd.DataFrame:
    code = main(
        [
            "--orders",
            str(orders),
            "--cutoff",
            "2025-01-01",
            "--out",
            str(out),
            "--model-uri",
            served_store.model_uri,
        ]
    )
    assert code == 0
    return pd.read_parquet(out).set_index("customer_id").sort_index()


def test_a_folder_whose_first_part_lacks_columns_scores_as_one_file(served_store, tmp_path):
    """The m4 reproduction (m4_parquet_folder.sh): the parts' columns are unified."""
    orders = served_store.orders
    orders = orders.loc[orders["customer_id"].isin(sorted(orders["customer_id"].unique())[:300])]
    early = orders["ordered_at"] < "2024-07-01"
    old = orders.loc[early].drop(columns=["status", "promised_at", "delivered_at"])
    new = orders.loc[~early]
    assert new["status"].isin(["cancelled", "returned"]).any()
    folder = tmp_path / "orders"
    folder.mkdir()
    old.to_parquet(folder / "part-0000.parquet", index=False)
    new.to_parquet(folder / "part-0001.parquet", index=False)
    one_file = tmp_path / "orders.parquet"
    pd.concat([old, new], ignore_index=True).to_parquet(one_file, index=False)
    from_folder = _score(served_store, folder, tmp_path / "folder" / "scores.parquet")
    from_file = _score(served_store, one_file, tmp_path / "file" / "scores.parquet")
    pd.testing.assert_frame_equal(from_folder, from_file)
