"""--preset shopify / zendesk: the two exports read as written, emails never in clear."""
# ruff: noqa: E501 (the export files are written line for line as the exports write them)

import argparse
import hashlib
import hmac
import logging

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.files import DataValidationError
from features.presets import SALT_VARIABLE, MissingSalt, refuse_presets_on_spark
from features.run_inputs import add_input_arguments, load_run_inputs
from features.spec import FeatureSpec

SALT = "test-salt-0123456789"
EMAILS = ("ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com")

# Shopify admin's "Export orders" CSV: one row per line item, the order's columns on its first
# row only (Name and Email repeat); the columns a real export has around the ones read.
SHOPIFY = """\
Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Currency,Subtotal,Total,Discount Amount,Created at,Lineitem quantity,Lineitem name,Lineitem price,Cancelled at,Refunded Amount,Id
#1001, Ann@Example.com ,paid,2024-01-05 10:25:00 -0500,fulfilled,2024-01-06 08:00:00 -0500,USD,100.00,105.00,0.00,2024-01-05 10:22:33 -0500,1,Mug,60.00,,0.00,5001
#1001,ann@example.com,,,,,,,,,,2,Plate,20.00,,,
#1001,ann@example.com,,,,,,,,,,1,Spoon,0.00,,,
#1002,bob@example.com,refunded,2024-01-06 09:00:00 +0100,fulfilled,,USD,50.00,50.00,0.00,2024-01-06 00:30:00 +0100,1,Cup,50.00,,50.00,5002
#1003,cy@example.com,voided,,,,USD,30.00,30.00,0.00,2024-02-01 12:00:00 +0000,1,Cup,30.00,2024-02-01 13:00:00 +0000,0.00,5003
#1004,ann@example.com,partially_refunded,2024-02-10 08:00:00 -0800,fulfilled,,USD,80.00,80.00,0.00,2024-02-10 20:00:00 -0800,1,Bowl,50.00,,30.00,5004
#1004,ann@example.com,,,,,,,,,,1,Lid,30.00,,,
#1005,,paid,2024-02-11 10:00:00 +0000,fulfilled,,USD,12.00,12.00,0.00,2024-02-11 10:00:00 +0000,1,Cup,12.00,,0.00,5005
#1006,dee@example.com,expired,,,,USD,40.00,40.00,0.00,2024-02-12 10:00:00 +0000,1,Cup,40.00,,,5006
#1007,bob@example.com,paid,2024-03-01 10:00:00 +0000,fulfilled,,USD,25.00,25.00,0.00,2024-03-01 10:00:00 +0000,1,Cup,25.00,,,5007
"""

# Zendesk Support's ticket export (CSV): one row per ticket.
ZENDESK = """\
Id,Subject,Status,Requester,Requester email,Requester id,Created at,Solved at,Satisfaction Score,Full resolution time in minutes
11,Where is my order,solved,Ann,ANN@example.com,901,2024-01-08 09:00:00 +0000,2024-01-08 12:00:00 +0000,Good,180
12,Broken cup,solved,Bob,bob@example.com ,902,2024-01-09 10:00:00 +0100,2024-01-10 10:00:00 +0100,Bad,
13,Question,open,Eve,,903,2024-02-02 10:00:00 +0000,,Offered,
14,Refund,solved,Cy,cy@example.com,904,2024-02-03 10:00:00 +0000,2024-02-03 10:30:00 +0000,Not Offered,
15,Spam,closed,,,,2024-02-04 10:00:00 +0000,,Unoffered,
"""


def expected_id(email: str) -> str:
    return hmac.new(SALT.encode(), email.encode(), hashlib.sha256).hexdigest()[:32]


@pytest.fixture
def salt(monkeypatch):
    monkeypatch.setenv(SALT_VARIABLE, SALT)


@pytest.fixture
def exports(tmp_path):
    orders, tickets = tmp_path / "orders_export.csv", tmp_path / "tickets.csv"
    orders.write_text(SHOPIFY)
    tickets.write_text(ZENDESK)
    return orders, tickets


def presets_flags(orders, tickets):
    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    argv = ["--preset", "shopify", "--orders", str(orders), "--events", str(tickets)]
    return parser.parse_args([*argv, "--preset", "zendesk"])


def assert_no_email(text: str) -> None:
    assert "@" not in text
    for email in EMAILS:
        assert email.split("@")[0] not in text.lower()


def test_shopify_export_gives_one_row_per_order(salt, exports, tmp_path):
    args = presets_flags(*exports)
    assert args.columns == "preset=shopify,preset=zendesk"
    inputs = load_run_inputs(
        args.orders, args.events, columns=args.columns, quarantine_dir=tmp_path / "q"
    )
    orders = inputs.orders.frame.set_index("order_id")
    assert list(orders.index) == ["#1001", "#1002", "#1003", "#1004", "#1006", "#1007"]
    ann, bob = expected_id("ann@example.com"), expected_id("bob@example.com")
    assert list(orders["customer_id"]) == [
        ann,
        bob,
        expected_id("cy@example.com"),
        ann,
        expected_id("dee@example.com"),
        bob,
    ]
    # Naive UTC: the offsets are applied (#1002 was placed the evening before in UTC).
    assert orders.loc["#1001", "ordered_at"] == pd.Timestamp("2024-01-05 15:22:33")
    assert orders.loc["#1002", "ordered_at"] == pd.Timestamp("2024-01-05 23:30:00")
    assert orders.loc["#1004", "ordered_at"] == pd.Timestamp("2024-02-11 04:00:00")
    # Net revenue: the order total (not the line items summed again), less what was refunded.
    assert orders["amount"].to_dict() == {
        "#1001": 105.0,
        "#1002": 0.0,
        "#1003": 30.0,
        "#1004": 50.0,
        "#1006": 40.0,
        "#1007": 25.0,
    }
    assert orders["status"].to_dict() == {
        "#1001": "completed",
        "#1002": "returned",
        "#1003": "cancelled",
        "#1004": "completed",
        "#1006": "cancelled",
        "#1007": "completed",
    }
    # Fulfilled at is when the parcel left: no delivery date is made up from it.
    assert orders["delivered_at"].isna().all()
    # The order without an email is set aside and counted, at its row of the export.
    assert inputs.quarantined["orders"] == 1
    assert inputs.orders.rows_read == 7
    quarantined = inputs.orders.quarantine
    assert list(quarantined["reason"]) == ["missing customer_id"]
    assert list(quarantined["order_id"]) == ["#1005"]
    assert list(quarantined["source_row"]) == [7]
    assert list(quarantined["source_line"]) == [9]


def test_zendesk_export_gives_tickets_joined_to_the_orders(salt, exports):
    args = presets_flags(*exports)
    inputs = load_run_inputs(args.orders, args.events, columns=args.columns)
    assert inputs.events is not None
    events = inputs.events.frame
    assert list(events["kind"].unique()) == ["ticket"]
    assert list(events["customer_id"]) == [
        expected_id("ann@example.com"),
        expected_id("bob@example.com"),
        "zendesk-903",
        expected_id("cy@example.com"),
    ]
    # The same customers as in the orders: the salted hashes agree across the two exports.
    assert set(events["customer_id"]) - set(inputs.orders.frame["customer_id"]) == {"zendesk-903"}
    assert events["occurred_at"].tolist()[:2] == [
        pd.Timestamp("2024-01-08 09:00"),
        pd.Timestamp("2024-01-09 09:00"),
    ]
    # Minutes when the export has them, else solved minus created; unsolved: unknown.
    np.testing.assert_allclose(events["resolution_hours"], [3.0, 24.0, np.nan, 0.5])
    np.testing.assert_allclose(events["score"], [5.0, 1.0, np.nan, np.nan])
    assert inputs.quarantined["service_events"] == 1
    assert list(inputs.events.quarantine["Id"]) == ["15"]
    assert list(inputs.events.quarantine["reason"]) == ["missing customer_id"]


def test_zendesk_without_resolution_minutes_uses_solved_at(salt, tmp_path):
    tickets = tmp_path / "view.csv"
    tickets.write_text(
        "Id,Requester email,Created at,Solved at,Satisfaction Score\n"
        "1,ann@example.com,2024-01-08 09:00:00 UTC,2024-01-08 15:00:00 UTC,Good\n"
    )
    orders = tmp_path / "orders.csv"
    orders.write_text(SHOPIFY)
    events = load_run_inputs(orders, tickets, columns="preset=shopify,preset=zendesk").events
    assert events is not None
    assert events.frame["resolution_hours"].tolist() == [6.0]
    assert events.frame["occurred_at"].tolist() == [pd.Timestamp("2024-01-08 09:00")]


def test_no_email_in_any_output(salt, exports, tmp_path, caplog):
    orders, tickets = exports
    # A line with one field too many, carrying an email: quarantined without its text.
    with orders.open("a") as out:
        out.write(
            "#1008,eve@example.com,paid,,,,USD,1,1,0,2024-03-02 10:00:00 +0000,1,x,1,,0,1,extra\n"
        )
    caplog.set_level(logging.DEBUG)
    quarantine = tmp_path / "quarantine"
    inputs = load_run_inputs(
        orders, tickets, columns="preset=shopify,preset=zendesk", quarantine_dir=quarantine
    )
    assert inputs.quarantined == {"orders": 2, "service_events": 1}
    assert "too many fields" in set(inputs.orders.quarantine["reason"])
    written = sorted(quarantine.glob("*.csv"))
    assert [p.name for p in written] == ["orders.quarantine.csv", "service_events.quarantine.csv"]
    outputs = [p.read_text() for p in written]
    outputs += [caplog.text, *inputs.orders.problems, *inputs.events.problems]
    outputs += [inputs.orders.frame.to_csv(), inputs.events.frame.to_csv()]
    outputs += [inputs.orders.quarantine.to_csv(), inputs.events.quarantine.to_csv()]
    for text in outputs:
        assert_no_email(text)


def test_strict_refuses_an_export_with_an_unusable_order(salt, exports):
    with pytest.raises(DataValidationError, match="1 of 7 rows are unusable") as refused:
        load_run_inputs(exports[0], None, columns="preset=shopify", strict=True)
    assert_no_email(str(refused.value))


def test_columns_after_a_preset_keep_it():
    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    args = parser.parse_args(
        ["--preset", "shopify", "--columns", "customer_id=cust", "--columns", "kind=type"]
    )
    assert args.columns == "preset=shopify,kind=type"


def test_customer_id_column_keeps_one_id_per_customer(salt, tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "Name,Email,Customer ID,Financial Status,Created at,Total\n"
        "#1,ann@example.com,77,paid,2024-01-01 10:00:00 +0000,10\n"
        "#2,,77,paid,2024-01-02 10:00:00 +0000,20\n"  # a POS order: no email, same customer
        "#3,,88,paid,2024-01-03 10:00:00 +0000,30\n"  # no email anywhere: the shop's id
        "#4,bob@example.com,,paid,2024-01-04 10:00:00 +0000,40\n"
    )
    frame = load_run_inputs(orders, None, columns="preset=shopify").orders.frame
    ann = expected_id("ann@example.com")
    assert list(frame["customer_id"]) == [ann, ann, "shopify-88", expected_id("bob@example.com")]


@pytest.mark.parametrize(
    ("preset", "text", "missing"),
    [
        ("shopify", SHOPIFY.replace("Total,", "Order total,", 1), "'Total'"),
        ("shopify", SHOPIFY.replace("Email,", "Mail,", 1), "'Email' or 'Customer ID'"),
        ("zendesk", ZENDESK.replace("Created at", "Opened"), "'Created at'"),
        (
            "zendesk",
            ZENDESK.replace("Requester email", "Mail").replace("Requester id", "Who"),
            "'Requester email' or 'Requester id'",
        ),
    ],
)
def test_missing_export_column_is_named(salt, tmp_path, preset, text, missing):
    export = tmp_path / "export.csv"
    export.write_text(text)
    orders, events = (export, None) if preset == "shopify" else (tmp_path / "o.csv", export)
    if preset == "zendesk":
        orders.write_text(SHOPIFY)
    with pytest.raises(DataValidationError, match=f"missing column\\(s\\) {missing}"):
        load_run_inputs(orders, events, columns=f"preset=shopify,preset={preset}")


def test_no_hash_without_a_salt(exports, monkeypatch):
    monkeypatch.delenv(SALT_VARIABLE, raising=False)
    with pytest.raises(MissingSalt, match=SALT_VARIABLE):
        load_run_inputs(exports[0], None, columns="preset=shopify")
    monkeypatch.setenv(SALT_VARIABLE, "short")
    with pytest.raises(MissingSalt, match="5 characters"):
        load_run_inputs(exports[0], None, columns="preset=shopify")


def test_unknown_or_clashing_presets_are_refused(exports):
    with pytest.raises(DataValidationError, match="unknown preset 'woo'"):
        load_run_inputs(exports[0], None, columns="preset=woo")
    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--orders", "x.csv", "--preset", "woo"])


def test_features_build_on_the_presets(salt, exports):
    inputs = load_run_inputs(*exports, columns="preset=shopify,preset=zendesk")
    features = build_features(
        inputs.orders.frame, inputs.events.frame, cutoff="2024-04-01", spec=FeatureSpec()
    )
    ann, bob = expected_id("ann@example.com"), expected_id("bob@example.com")
    cy = expected_id("cy@example.com")
    assert len(features) == 4
    # Ann: two paid orders (105 + 50); Bob's refunded order brings nothing, his later one 25.
    assert features.loc[ann, "revenue_365d"] == pytest.approx(155.0)
    assert features.loc[bob, "revenue_365d"] == pytest.approx(25.0)
    assert features.loc[bob, "returns_365d"] == 1
    assert features.loc[cy, "cancellation_rate_365d"] == 1
    # The tickets reach the customers of the orders: Ann's Good in 3 hours, Bob's Bad in 24.
    assert features.loc[ann, "mean_ticket_csat_365d"] == 5
    assert features.loc[ann, "mean_resolution_hours_365d"] == pytest.approx(3.0)
    assert features.loc[bob, "mean_ticket_csat_365d"] == 1
    assert features.loc[bob, "bad_tickets_365d"] == 1


def test_spark_commands_refuse_a_preset():
    refuse_presets_on_spark("customer_id=cust")
    with pytest.raises(DataValidationError, match="--preset zendesk is read by the pandas"):
        refuse_presets_on_spark("customer_id=cust,preset=zendesk")
