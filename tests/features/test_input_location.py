"""Command-line inputs: local paths become Paths, URIs stay as written (Path would fold '//')."""

from pathlib import Path

from features.files import input_location


def test_a_uri_is_kept_as_written_and_a_path_is_a_path():
    assert input_location("s3a://lake/orders/") == "s3a://lake/orders/"
    assert input_location("hdfs:///lake/orders") == "hdfs:///lake/orders"
    assert input_location("data/orders.csv") == Path("data/orders.csv")
