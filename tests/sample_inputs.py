"""Every kind of input file the readers take, each holding the same two rows (tests only).

Shared by the format rule's tests (``tests/features/test_input_formats.py``, pandas) and the
Spark reader's (``tests/spark/test_spark_input_formats.py``).
"""

from __future__ import annotations

import bz2
import gzip
import zipfile
from pathlib import Path

import pandas as pd

from features.files import CSV, PARQUET, TSV, InputFormat

ROWS = pd.DataFrame(
    {
        "customer_id": ["00042", "c,2"],
        "ordered_at": ["2024-01-01", "2024-02-01"],
        "amount": ["3", "4.5"],
    }
)
CSV_TEXT = 'customer_id,ordered_at,amount\n00042,2024-01-01,3\n"c,2",2024-02-01,4.5\n'
TSV_TEXT = "customer_id\tordered_at\tamount\n00042\t2024-01-01\t3\nc,2\t2024-02-01\t4.5\n"


def write_inputs(root: Path) -> dict[str, InputFormat]:
    """Every kind of input the readers take, each holding :data:`ROWS`, and its format."""
    (root / "orders.csv").write_text(CSV_TEXT)
    (root / "orders.txt").write_text(CSV_TEXT)
    (root / "orders.tsv").write_text(TSV_TEXT)
    with gzip.open(root / "orders.csv.gz", "wt") as stream:
        stream.write(CSV_TEXT)
    with gzip.open(root / "orders.tsv.gz", "wt") as stream:
        stream.write(TSV_TEXT)
    with bz2.open(root / "orders.CSV.bz2", "wt") as stream:
        stream.write(CSV_TEXT)
    with zipfile.ZipFile(root / "orders.csv.zip", "w") as archive:
        archive.writestr("orders.csv", CSV_TEXT)
    ROWS.to_parquet(root / "orders.parquet", index=False)
    ROWS.to_parquet(root / "orders.pq", index=False)
    parts = root / "parts"
    parts.mkdir()
    ROWS.iloc[:1].to_parquet(parts / "part-0000.parquet", index=False)
    ROWS.iloc[1:].to_parquet(parts / "part-0001.parquet", index=False)
    (parts / "_SUCCESS").write_text("")
    csv_parts = root / "csv_parts"
    csv_parts.mkdir()
    (csv_parts / "part-0000.csv").write_text(CSV_TEXT)
    (csv_parts / ".part-0000.csv.crc").write_text("")
    tsv_parts = root / "orders.tsv.d"
    # A folder Spark wrote with sep=\t: its parts are named .csv, the folder says TSV.
    spark_tsv = root / "spark_out.tsv"
    spark_tsv.mkdir()
    (spark_tsv / "part-0000.csv").write_text(TSV_TEXT)
    tsv_parts.mkdir()
    with gzip.open(tsv_parts / "part-0000.tsv.gz", "wt") as stream:
        stream.write(TSV_TEXT)
    return {
        "orders.csv": InputFormat(CSV),
        "orders.txt": InputFormat(CSV),
        "orders.tsv": InputFormat(TSV),
        "orders.csv.gz": InputFormat(CSV, "gzip"),
        "orders.tsv.gz": InputFormat(TSV, "gzip"),
        "orders.CSV.bz2": InputFormat(CSV, "bz2"),
        "orders.csv.zip": InputFormat(CSV, "zip"),
        "orders.parquet": InputFormat(PARQUET),
        "orders.pq": InputFormat(PARQUET),
        "parts": InputFormat(PARQUET, parts=True),
        "csv_parts": InputFormat(CSV, parts=True),
        "spark_out.tsv": InputFormat(TSV, parts=True),
        "orders.tsv.d": InputFormat(TSV, parts=True),
    }


#: Inputs with a suffix neither reader knows: both refuse them, naming the file.
UNKNOWN = ("orders.json", "orders", "orders.gz", "orders.parquet.gz", "orders.xlsx")
