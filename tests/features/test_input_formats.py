"""One rule for which format an input is, shared by the pandas and the Spark readers (issue 24).

:func:`features.files.input_format` decides CSV / TSV / Parquet, compression and folders of part
files; :func:`features.files.read_table` (pandas) and :func:`features.spark_input.read_rows`
(Spark) both read through it. The Spark side's reading of these same inputs is checked against
pandas in ``tests/spark/test_spark_input_formats.py``; here, without Spark: the rule itself, that
pandas reads each input as the rule says, and that both readers refuse the same inputs with the
same message before reading anything.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sample_inputs import CSV_TEXT, ROWS, UNKNOWN, write_inputs

from features.files import (
    CSV,
    PARQUET,
    TSV,
    DataValidationError,
    InputFormat,
    input_format,
    read_table,
)


def test_the_rule_classifies_every_kind_of_input(tmp_path):
    expected = write_inputs(tmp_path)
    assert {name: input_format(tmp_path / name) for name in expected} == expected
    # A path is judged by its name before it exists (the reader then says it is missing).
    assert input_format(tmp_path / "later.tsv.bz2") == InputFormat(TSV, "bz2")


def test_a_remote_location_is_judged_by_its_last_name():
    assert input_format("s3a://lake/orders.csv.gz") == InputFormat(CSV, "gzip")
    assert input_format("hdfs:///lake/orders.tsv/") == InputFormat(TSV)
    assert input_format("s3a://lake/orders.parquet") == InputFormat(PARQUET)
    # A remote folder cannot be listed from here: Spark reads it as Parquet, as before.
    assert input_format("s3a://lake/orders/") == InputFormat(PARQUET, parts=True)


def test_pandas_reads_each_input_as_the_rule_says(tmp_path):
    expected = write_inputs(tmp_path)
    for name, fmt in expected.items():
        if fmt.parts and fmt.kind != PARQUET:
            continue  # CSV part folders are Spark's (below)
        frame = read_table(tmp_path / name).frame
        pd.testing.assert_frame_equal(frame.astype("str"), ROWS.astype("str"), obj=name)


@pytest.mark.parametrize("name", ["csv_parts", "spark_out.tsv"])
def test_pandas_refuses_a_folder_of_csv_parts_naming_it(tmp_path, name):
    write_inputs(tmp_path)
    with pytest.raises(DataValidationError, match=f"input folder '{tmp_path / name}' holds"):
        read_table(tmp_path / name)


@pytest.mark.parametrize("name", UNKNOWN)
def test_both_readers_refuse_an_unknown_suffix_with_the_same_message(tmp_path, name):
    from features.spark_input import read_rows

    path = tmp_path / name
    path.write_text(CSV_TEXT)
    message = (
        f"input file '{path}' has an unknown format; expected .csv, .tsv or .parquet "
        r"\(.txt is read as CSV; a CSV/TSV file may be compressed: .gz, .bz2, .zip\), or a "
        "folder of Parquet or CSV part files"
    )
    with pytest.raises(DataValidationError, match=f"^{message}$") as pandas_error:
        read_table(path)
    # The Spark reader decides before it touches Spark: no session is needed to be refused.
    with pytest.raises(DataValidationError, match=f"^{message}$") as spark_error:
        read_rows(None, path, {}, f"orders file {str(path)!r}")  # type: ignore[arg-type]
    assert str(spark_error.value) == str(pandas_error.value)


def test_spark_refuses_a_zip_archive_before_reading_it(tmp_path):
    from features.spark_input import read_rows

    write_inputs(tmp_path)
    path = tmp_path / "orders.csv.zip"
    with pytest.raises(DataValidationError, match="is a zip archive, which Spark cannot read"):
        read_rows(None, path, {}, f"orders file {str(path)!r}")  # type: ignore[arg-type]
