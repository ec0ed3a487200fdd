"""A Spark session in local mode for the Spark tests (one for the whole session)."""

import pytest

from features.spark_input import spark_session


@pytest.fixture(scope="session")
def spark():
    session = spark_session("local[2]", app_name="customer-value-tests")
    # Small splits: every input is read as several partitions, as a large one is, so the row
    # numbering across partitions and the groups are exercised.
    session.conf.set("spark.sql.files.maxPartitionBytes", str(64 * 1024))
    yield session
    session.stop()
