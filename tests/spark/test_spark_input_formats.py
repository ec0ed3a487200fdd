"""Spark reads every kind of input the format rule names, as pandas reads it (issue 24).

The rule is :func:`features.files.input_format`, shared by both readers; the inputs are the
ones its own tests classify (``tests/features/test_input_formats.py``). Each is read here by
:func:`features.spark_input.read_rows` and must give the rows, in order, that pandas gives.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sample_inputs import ROWS, write_inputs

from features.files import read_table
from features.spark_input import read_rows
from features.spark_slices import ROW

pytestmark = pytest.mark.spark


def test_spark_reads_each_input_as_pandas_does(spark, tmp_path):
    formats = write_inputs(tmp_path)
    for name, fmt in formats.items():
        if fmt.compression == "zip":
            continue  # refused before reading (test_input_formats)
        rows = read_rows(spark, tmp_path / name, {}, f"orders file {name!r}")
        got = rows.frame.orderBy(ROW).select(*rows.data_columns).toPandas()
        assert rows.count == len(ROWS), name
        pd.testing.assert_frame_equal(got.astype("str"), ROWS.astype("str"), obj=name)
        if not fmt.parts or fmt.kind == "Parquet":
            expected = read_table(tmp_path / name).frame
            pd.testing.assert_frame_equal(got.astype("str"), expected.astype("str"), obj=name)
