"""One shop, one model: the registered model's name from the orders file, the same everywhere."""

import pytest

from serving.batch.base_scoring import parse_args as batch_args
from training.config import DEMO_DIR, champion_uri, model_name_for, parse_args
from training.model_name import main


@pytest.mark.parametrize(
    ("orders", "name"),
    [
        (None, "customer-value"),
        (DEMO_DIR / "orders.parquet", "customer-value"),
        (
            "../shared/data/rfmr_retail_orders/transactions.csv",
            "customer-value-rfmr_retail_orders-transactions",
        ),
        ("exports/shop 1/orders.csv.gz", "customer-value-shop_1-orders"),
        ("s3://bucket/shop/orders.parquet", "customer-value-shop-orders"),
        ("orders.csv", "customer-value-orders"),
    ],
)
def test_a_shops_model_is_named_from_its_orders_file(orders, name):
    assert model_name_for(orders) == name
    assert model_name_for(orders, "my-shop") == "my-shop"


def test_a_bad_name_is_refused_naming_the_flag(capsys):
    with pytest.raises(ValueError, match="--name 'my shop': expected letters"):
        model_name_for(None, "my shop")
    with pytest.raises(SystemExit):
        parse_args(["--name", "a/b"])
    assert "--name 'a/b'" in capsys.readouterr().err


def test_training_and_scoring_name_the_same_model(capsys):
    orders = "../shared/data/rfmr_retail_orders/transactions.csv"
    assert parse_args(["--orders", orders]).model_name == model_name_for(orders)
    # Scoring those orders uses that model's champion unless told otherwise.
    expected = champion_uri(model_name_for(orders))
    assert batch_args(["--orders", orders]).model_uri == expected
    assert batch_args(["--orders", orders, "--name", "x"]).model_uri == "models:/x@champion"
    assert batch_args(["--model-uri", "models:/y/3"]).model_uri == "models:/y/3"
    assert batch_args([]).model_uri == "models:/customer-value@champion"
    assert main(["--orders", orders]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["--name", "bad name"]) == 2
