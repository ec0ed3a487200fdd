"""Command-line inputs: local paths become Paths, URIs stay as written (Path would fold '//')."""

from pathlib import Path

from features.files import input_location
from serving.batch.spark import parse_args


def test_a_uri_is_kept_as_written_and_a_path_is_a_path():
    assert input_location("s3a://lake/orders/") == "s3a://lake/orders/"
    assert input_location("hdfs:///lake/orders") == "hdfs:///lake/orders"
    assert input_location("data/orders.csv") == Path("data/orders.csv")


def test_the_spark_command_passes_a_uri_through():
    config = parse_args(["--orders", "s3a://lake/orders/", "--events", "s3a://lake/events/"])
    assert config.orders == "s3a://lake/orders/"
    assert config.events == "s3a://lake/events/"
