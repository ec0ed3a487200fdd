"""One customer's answer never depends on the others scored with it (issue 21, M1/M2).

Scored alone, inside any batch, in any chunking of a batch run, or in any composition of an
online request (the inline-history path, in-process), a customer gets the same numbers to
1e-9. The store has customers whose returns are logged as events and customers whose return
events were left out (returns known only from the order status), the mix that made
``--chunk-customers`` change 562 historic values on the demo store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import build_features
from serving.batch.base_scoring import main
from serving.customer_chunks import CustomerChunks
from serving.online.answers import finish, prepare, score_rows
from serving.online.schema import ScoreRequest
from serving.run_files import NUMBER_FIELDS, load_feature_table
from serving.scoring import ScoreSettings, score_frame
from serving.segments import Base
from training import tracking

CUTOFF = "2025-01-01"
CUSTOMERS = 300
#: The first customers (by id) have their return events left out: their returns are dated by
#: the delivery, the others' by their events.
WITHOUT_RETURN_EVENTS = 120
SETTINGS = ScoreSettings(reasons="none")


@pytest.fixture(scope="module")
def mixed(served_store, tmp_path_factory):
    """The store's first customers, the return events of some of them left out, as Parquet."""
    folder = tmp_path_factory.mktemp("independence")
    orders, events = served_store.orders, served_store.events
    ids = sorted(orders["customer_id"].unique())[:CUSTOMERS]
    first = set(ids[:WITHOUT_RETURN_EVENTS])
    orders = orders.loc[orders["customer_id"].isin(ids)].reset_index(drop=True)
    events = events.loc[events["customer_id"].isin(ids)]
    events = events.loc[~((events["kind"] == "return") & events["customer_id"].isin(first))]
    events = events.reset_index(drop=True)
    # The mix the bug needs: returned orders on both sides of the split.
    returned = orders.loc[orders["status"] == "returned", "customer_id"]
    assert returned.isin(first).any() and (~returned.isin(first)).any()
    orders.to_parquet(folder / "orders.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return folder, orders, events


@pytest.fixture(scope="module")
def model(served_store):
    return tracking.load_model(served_store.model_uri)


@pytest.fixture(scope="module")
def everyone(mixed, model) -> pd.DataFrame:
    """Every customer of ``mixed`` scored in one batch (the same for every example below)."""
    _, orders, events = mixed
    return score_frame(
        model, build_features(orders, events, cutoff=CUTOFF, spec=model.spec), SETTINGS
    )


def _batch(served_store, folder: Path, chunk: int) -> pd.DataFrame:
    out = folder / f"chunk-{chunk}" / "scores.parquet"
    code = main(
        [
            "--orders",
            str(folder / "orders.parquet"),
            "--events",
            str(folder / "events.parquet"),
            "--cutoff",
            CUTOFF,
            "--chunk-customers",
            str(chunk),
            "--out",
            str(out),
            "--features-out",
            str(out.with_name("online_features.parquet")),
            "--store",
            "none",
            "--model-uri",
            served_store.model_uri,
        ]
    )
    assert code == 0
    return pd.read_parquet(out).set_index("customer_id").sort_index()


@pytest.fixture(scope="module")
def batch_runs(served_store, mixed):
    """The same input scored by ``python -m serving.batch`` in one chunk and in chunks of 37."""
    folder, _, _ = mixed
    return {chunk: _batch(served_store, folder, chunk) for chunk in (CUSTOMERS, 37)}


def assert_same_numbers(expected: pd.DataFrame, actual: pd.DataFrame, columns) -> None:
    actual = actual.loc[expected.index]
    for column in columns:
        np.testing.assert_allclose(
            actual[column].to_numpy(dtype="float64"),
            expected[column].to_numpy(dtype="float64"),
            rtol=0,
            atol=1e-9,
            equal_nan=True,
            err_msg=column,
        )


# -- batch ---------------------------------------------------------------------------------


def test_batch_scores_do_not_depend_on_the_chunk_size(batch_runs):
    """The m2 reproduction (m2_chunk_dependence.sh) on the test store."""
    whole, chunked = batch_runs[CUSTOMERS], batch_runs[37]
    assert list(chunked.index) == list(whole.index)
    numbers = [c for c in whole.columns if pd.api.types.is_float_dtype(whole[c])]
    assert {"clv", "p_churn", "historic_value"} <= set(numbers)
    assert_same_numbers(whole, chunked, numbers)
    for column in ("value_segment", "risk_segment", "action"):
        assert chunked[column].tolist() == whole[column].tolist(), column


# 10 examples (make test); make test-fast's hypothesis profile caps them (tests/conftest.py).
@settings(
    max_examples=min(10, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_batch_and_any_chunking_scores_a_customer_as_alone(mixed, model, everyone, data):
    """The batch core (CustomerChunks -> build_features -> score_frame) on random batches."""
    _, orders, events = mixed
    ids = sorted(orders["customer_id"].unique())
    batch = data.draw(
        st.lists(st.sampled_from(ids), min_size=1, max_size=60, unique=True), label="batch"
    )
    size = data.draw(st.integers(min_value=1, max_value=len(batch)), label="chunk size")
    in_batch_orders = orders.loc[orders["customer_id"].isin(batch)]
    in_batch_events = events.loc[events["customer_id"].isin(batch)]
    parts = []
    for chunk_orders, chunk_events in CustomerChunks(in_batch_orders, in_batch_events, size):
        features = build_features(chunk_orders, chunk_events, cutoff=CUTOFF, spec=model.spec)
        parts.append(score_frame(model, features, SETTINGS))
    chunked = pd.concat(parts).sort_index()
    numbers = [c for c in chunked.columns if pd.api.types.is_float_dtype(chunked[c])]
    assert_same_numbers(chunked, everyone, numbers)
    alone_id = data.draw(st.sampled_from(batch), label="alone")
    alone = score_frame(
        model,
        build_features(
            orders.loc[orders["customer_id"] == alone_id],
            events.loc[events["customer_id"] == alone_id],
            cutoff=CUTOFF,
            spec=model.spec,
        ),
        SETTINGS,
    )
    assert_same_numbers(alone, chunked, numbers)


# -- online (the inline-history request path, in-process) ----------------------------------


def _history(frame: pd.DataFrame) -> list[dict]:
    rows = []
    for record in frame.drop(columns="customer_id").to_dict("records"):
        rows.append(
            {
                key: value.isoformat() if isinstance(value, pd.Timestamp) else value
                for key, value in record.items()
                if not pd.isna(value)
            }
        )
    return rows


@pytest.fixture(scope="module")
def online(served_store, batch_runs, mixed, model):
    """What a request needs: the feature table of a batch run, the base, the histories."""
    folder, orders, events = mixed
    table = load_feature_table(
        folder / f"chunk-{CUSTOMERS}" / "online_features.parquet", model.feature_names_in_
    )
    # Each customer's rows in their order in the file (groupby keeps it), none for no events.
    orders_of = dict(tuple(orders.groupby("customer_id", sort=False)))
    events_of = dict(tuple(events.groupby("customer_id", sort=False)))
    no_events = events.iloc[:0]
    items = {
        customer_id: {
            "customer_id": customer_id,
            "cutoff": CUTOFF,
            "orders": _history(orders_of[customer_id]),
            "service_events": _history(events_of.get(customer_id, no_events)),
        }
        for customer_id in sorted(orders["customer_id"].unique())
    }
    base = Base.of(batch_runs[CUSTOMERS]["clv"].to_numpy())
    return table, model, base, items


def _ask(online, body: dict) -> list[dict]:
    """``POST /score``'s work for a body: schema, prepare, score, finish."""
    table, model, base, _ = online
    customers = ScoreRequest.model_validate(body).customers
    items = [customer.model_dump(exclude_none=True) for customer in customers]
    pending = prepare(items, table, model.spec)
    scored = None
    if pending.matrix is not None:
        scored = score_rows(model, pending.matrix, base, ScoreSettings(reasons="approximate"))
    return finish(pending, scored)


def _same_answer(expected: dict, actual: dict) -> None:
    assert actual["status"] == expected["status"] == "ok", (expected["error"], actual["error"])
    for name in NUMBER_FIELDS:
        if expected[name] is None:
            assert actual[name] is None, name
        else:
            assert actual[name] == pytest.approx(expected[name], rel=0, abs=1e-9), name
    for name in ("value_segment", "risk_segment", "action", "next_order_date"):
        assert actual[name] == expected[name], name


#: The m1 reproduction (m1_inline_contamination.sh): A's 300 came back after it was delivered
#: (no return event: the delivery dates it); B's one order came back, dated by its event.
M1_A = {
    "customer_id": "A",
    "cutoff": "2026-07-01",
    "orders": [
        {"order_id": "1", "ordered_at": "2026-02-01", "amount": 120.0, "status": "completed",
         "delivered_at": "2026-02-03"},
        {"order_id": "2", "ordered_at": "2026-04-01", "amount": 300.0, "status": "returned",
         "delivered_at": "2026-04-03"},
        {"order_id": "3", "ordered_at": "2026-06-01", "amount": 80.0, "status": "completed",
         "delivered_at": "2026-06-03"},
    ],
    "service_events": [],
}  # fmt: skip
M1_B = {
    "customer_id": "B",
    "cutoff": "2026-07-01",
    "orders": [
        {"order_id": "9", "ordered_at": "2026-03-01", "amount": 20.0, "status": "returned",
         "delivered_at": "2026-03-02"},
    ],
    "service_events": [{"occurred_at": "2026-03-10", "kind": "return", "order_id": "9"}],
}  # fmt: skip


@pytest.mark.parametrize("order_id_of_b", ["9", "2"])
def test_an_inline_customer_is_scored_the_same_beside_another(online, order_id_of_b):
    """A alone, then A beside B (B's order id also A's, in the second case)."""
    b = json.loads(json.dumps(M1_B).replace('"9"', json.dumps(order_id_of_b)))
    alone = _ask(online, {"customers": [M1_A]})[0]
    assert alone["historic_value"] == 200.0
    for body in ([M1_A, b], [b, M1_A], [b, M1_A, b]):
        answers = _ask(online, {"customers": body})
        for item, answer in zip(body, answers, strict=True):
            if item is M1_A:
                _same_answer(alone, answer)
            else:
                assert answer["historic_value"] == 0.0  # B's one order came back


@pytest.fixture(scope="module")
def alone_answers(online):
    """Each customer's answer when the request holds it alone (computed once, on demand)."""
    answers: dict[str, dict] = {}

    def alone(customer_id: str) -> dict:
        if customer_id not in answers:
            answers[customer_id] = _ask(online, {"customers": [online[3][customer_id]]})[0]
        return answers[customer_id]

    return alone


# 10 examples (make test); make test-fast's hypothesis profile caps them (tests/conftest.py).
@settings(
    max_examples=min(10, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_request_composition_scores_a_customer_as_alone(
    online, batch_runs, alone_answers, data
):
    _, _, _, items = online
    # A few dozen customers, so that requests repeat them (each answered alone once).
    ids = sorted(items)[:: max(1, len(items) // 40)]
    request = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=10), label="request")
    answers = _ask(online, {"customers": [items[c] for c in request]})
    batch = batch_runs[37]
    for customer_id, answer in zip(request, answers, strict=True):
        _same_answer(alone_answers(customer_id), answer)
        # And the same as the batch run's answer for that customer.
        for name in ("clv", "p_churn", "historic_value"):
            assert answer[name] == pytest.approx(batch.loc[customer_id, name], rel=0, abs=1e-9)
