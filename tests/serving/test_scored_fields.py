"""Guard: the scored field list, the online answer model and the lookup store's format agree.

A new scored column (``serving.run_files.SCORED_FIELDS``) must reach the service's answer
(:class:`serving.online.schema.CustomerResult` drops fields it does not declare) and must bump
the lookup store's format (``serving.lookup_store.FORMAT``), so that a store written with the
old layout is refused at start-up instead of misread per lookup.
"""

from __future__ import annotations

from serving import lookup_store
from serving.online.schema import CustomerResult
from serving.run_files import NUMBER_FIELDS, SCORED_FIELDS, TEXT_FIELDS

#: The answer layout of each lookup store format (the numbers, then the texts). Adding a
#: scored field: bump ``lookup_store.FORMAT`` and record its layout here.
STORE_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "1": (
        (
            "clv",
            "clv_low",
            "clv_high",
            "clv_discounted",
            "clv_percentile",
            "p_churn",
            "p_active",
            "expected_orders",
            "avg_days_between_orders",
            "historic_value",
            "total_value",
        ),
        ("next_order_date", "value_segment", "risk_segment", "action", "reasons", "value_reasons"),
    ),
}
#: The answer's own fields, around the scored ones.
ENVELOPE = {"customer_id", "status", "cutoff", "horizon_days", "source", "error"}


def test_the_store_format_follows_the_scored_fields():
    assert lookup_store.FORMAT in STORE_LAYOUTS, "record the new format's layout here"
    assert (NUMBER_FIELDS, TEXT_FIELDS) == STORE_LAYOUTS[lookup_store.FORMAT], (
        "the scored fields changed: bump serving.lookup_store.FORMAT (old stores are then "
        "refused at start-up) and record its layout in STORE_LAYOUTS"
    )


def test_the_answer_model_declares_every_scored_field():
    declared = set(CustomerResult.model_fields)
    assert set(SCORED_FIELDS) <= declared, "add the new field to CustomerResult"
    assert declared - set(SCORED_FIELDS) == ENVELOPE


def test_every_scored_field_is_a_number_or_a_text():
    assert set(NUMBER_FIELDS) | set(TEXT_FIELDS) == set(SCORED_FIELDS)
    assert not set(NUMBER_FIELDS) & set(TEXT_FIELDS)
