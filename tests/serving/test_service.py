"""Online service: lookups, inline history, per-customer errors, API key, batch == online."""

import asyncio
import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from serving.batch.base_scoring import run as score_base
from serving.online.answers import (
    ONLINE_REASONS,
    build_inline_features,
    finish,
    load_base,
    prepare,
    score_rows,
    table_settings,
    validate_history,
)
from serving.online.guard import BENTOML_REQUEST_LOGGER
from serving.online.schema import (
    MAX_CUSTOMERS,
    MAX_INLINE_CUSTOMERS,
    MAX_INLINE_ROWS,
    MAX_ORDERS,
    REQUEST_EXAMPLE,
    ScoreRequest,
)
from serving.online.service import CustomerValue
from serving.online.settings import OnlineConfig
from serving.run_files import (
    NUMBER_FIELDS,
    RunStamp,
    TableMismatch,
    load_batch_answers,
    load_feature_table,
)
from serving.segments import Base
from training import tracking

API_KEY = "s3cret"
COMPARED = (
    "value_segment",
    "risk_segment",
    "action",
    "reasons",
    "value_reasons",
    "next_order_date",
)
#: Every number of an answer, compared with the batch scores to 1e-6 (None where NaN).
NUMBERS = NUMBER_FIELDS


@pytest.fixture(scope="module")
def online(served_store, latest_scores):
    """Batch-score the store ("latest" cutoff) and point the service's environment at it."""
    config, scores = latest_scores
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUSTOMER_VALUE_MODEL_URI", served_store.model_uri)
        patch.setenv("CUSTOMER_VALUE_FEATURES", str(config.features_out))
        patch.delenv("CUSTOMER_VALUE_API_KEY", raising=False)
        yield config, scores


@pytest.fixture(scope="module")
def served_model(online):
    """The served version, loaded once for the tests that compute with it (they only read it)."""
    config, _ = online
    return tracking.load_model(config.model_uri)


@pytest.fixture(scope="module")
def svc(online):
    """The service as a plain class instance."""
    return CustomerValue()


@pytest.fixture(scope="module")
def client(online):
    """The service's ASGI app in-process, with an API key (lifespan: model and table loaded).

    One app per test process: BentoML's metrics middleware registers Prometheus series that
    cannot be registered twice, so every HTTP test shares this app and sends the key.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUSTOMER_VALUE_API_KEY", API_KEY)
        with TestClient(CustomerValue.to_asgi(), headers={"X-API-Key": API_KEY}) as test_client:
            yield test_client


def score(svc, body: dict) -> dict:
    """Call the API method directly, as Python, with a validated body."""
    customers = ScoreRequest.model_validate(body).customers
    return asyncio.run(svc.score(customers=customers)).model_dump()


def history(frame: pd.DataFrame) -> list[dict]:
    """Rows of a canonical orders/events frame as JSON-ready dicts (no customer_id, no nulls)."""
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


def assert_matches_batch(result: dict, expected: pd.Series) -> None:
    assert result["status"] == "ok", result["error"]
    for name in NUMBERS:
        if pd.isna(expected[name]):
            assert result[name] is None, name
        else:
            assert result[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-6), name
    for name in COMPARED:
        want = None if pd.isna(expected[name]) else expected[name]
        assert result[name] == want, name
    assert pd.Timestamp(result["cutoff"]) == expected["cutoff"]
    assert result["horizon_days"] == expected["horizon_days"]


def some_customers(scores: pd.DataFrame, events: pd.DataFrame) -> list[str]:
    """A mix: highest value, most likely to churn, least likely to churn, with service events."""
    with_events = scores.index.intersection(events["customer_id"].unique())
    picks = [
        scores["clv"].idxmax(),
        scores["p_churn"].idxmax(),
        scores["p_churn"].idxmin(),
        *sorted(with_events)[:3],
    ]
    return list(dict.fromkeys(picks))


# -- the plain class --------------------------------------------------------------------------


def test_lookup_equals_batch_for_every_customer_in_one_request(svc, online):
    _, scores = online
    ids = list(scores.index[:MAX_CUSTOMERS])
    answer = score(svc, {"customers": [{"customer_id": i} for i in ids]})
    assert answer["model_version"] == scores["model_version"].iloc[0]
    assert [r["customer_id"] for r in answer["results"]] == ids
    for result in answer["results"]:
        assert result["source"] == "feature_table"
        assert_matches_batch(result, scores.loc[result["customer_id"]])


def test_inline_history_equals_batch_at_the_batch_cutoff(svc, online, served_store):
    _, scores = online
    cutoff = scores["cutoff"].iloc[0]
    ids = some_customers(scores, served_store.events)
    quiet = scores.index.difference(served_store.events["customer_id"].unique())
    ids.append(quiet[0])  # a customer without service events
    customers = []
    for customer_id in ids:
        orders = served_store.orders[served_store.orders["customer_id"] == customer_id]
        events = served_store.events[served_store.events["customer_id"] == customer_id]
        # Batch had an events file, so "no events" is sent as [] (zero tickets), not omitted.
        item = {
            "customer_id": customer_id,
            "cutoff": str(cutoff),
            "orders": history(orders),
            "service_events": history(events),
        }
        customers.append(item)
    assert any(not c["service_events"] for c in customers)  # some have none
    answer = score(svc, {"customers": customers})
    for result in answer["results"]:
        assert result["source"] == "inline"
        assert_matches_batch(result, scores.loc[result["customer_id"]])


def test_omitted_service_events_mean_unknown_and_an_empty_list_means_none(svc, served_store):
    cutoff = pd.Timestamp("2025-01-01")
    with_events = served_store.events["customer_id"].unique()
    quiet = next(
        c for c in served_store.orders["customer_id"].unique() if c not in set(with_events)
    )
    orders = served_store.orders[served_store.orders["customer_id"] == quiet]
    inline = [
        (0, cutoff, *validate_history(0, history(orders), [])),
        (1, cutoff, *validate_history(1, history(orders), None)),
        # Another customer with events in the same request must not change customer 1.
        (
            2,
            cutoff,
            *validate_history(
                2, history(orders), [{"occurred_at": "2024-06-01", "kind": "ticket"}]
            ),
        ),
    ]
    slots, built = build_inline_features(inline, svc.served.model.spec, svc.served.table.columns)
    rows = dict(zip(slots, built.to_dict("records"), strict=True))
    assert rows[0]["tickets_365d"] == 0 and rows[0]["open_tickets"] == 0
    assert np.isnan(rows[1]["tickets_365d"]) and np.isnan(rows[1]["open_tickets"])
    assert rows[2]["tickets_365d"] == 1


def test_unknown_customer_is_a_per_item_status(svc, online):
    _, scores = online
    known = scores.index[0]
    answer = score(svc, {"customers": [{"customer_id": "nobody"}, {"customer_id": known}]})
    unknown, ok = answer["results"]
    assert unknown["status"] == "unknown_customer"
    assert "'nobody' is not in the feature table" in unknown["error"]
    assert unknown["clv"] is None and unknown["reasons"] is None
    assert ok["status"] == "ok"


def test_bad_inline_rows_make_only_that_customer_invalid(svc, online):
    body = {
        "customers": [
            {
                "customer_id": "bad",
                "cutoff": "2025-06-01",
                "orders": [
                    {"ordered_at": "2025-01-03", "amount": -5},
                    {"ordered_at": "2025-02-03", "amount": "abc"},
                    {"ordered_at": "2025-02-04", "amount": float("inf")},
                    {"ordered_at": "2025-02-05", "amount": 1e39},
                    {"ordered_at": 2**63, "amount": 3.0},
                ],
            },
            {
                "customer_id": "good",
                "cutoff": "2025-06-01",
                "orders": [
                    {"ordered_at": "2025-01-03", "amount": 20.0, "status": "completed"},
                    {"ordered_at": "2025-03-01T10:00:00+02:00", "amount": "12.5"},
                ],
                "service_events": [{"occurred_at": "2025-03-04", "kind": "Ticket", "score": 2}],
            },
        ]
    }
    bad, good = score(svc, body)["results"]
    assert bad["status"] == "invalid"
    assert "customers[0].orders" in bad["error"]
    assert "column 'amount' has 1 negative values" in bad["error"]
    assert "column 'amount' has 2 missing or non-numeric values" in bad["error"]
    assert "column 'amount' has 1 values beyond 1,000,000,000,000 in size" in bad["error"]
    assert "column 'ordered_at' has 1 missing or unparseable values" in bad["error"]
    assert good["status"] == "ok" and good["source"] == "inline"
    assert good["cutoff"] == "2025-06-01"
    assert 0.0 <= good["p_churn"] <= 1.0 and good["clv"] >= 0.0


def test_inline_history_needs_an_order_before_the_cutoff(svc, online):
    body = {
        "customers": [
            {
                "customer_id": "new",
                "cutoff": "2025-01-01",
                "orders": [{"ordered_at": "2025-02-01", "amount": 10}],
            }
        ]
    }
    (result,) = score(svc, body)["results"]
    assert result["status"] == "invalid"
    assert "no order before the cutoff 2025-01-01" in result["error"]


def test_lookup_at_another_cutoff_is_invalid(svc, online):
    _, scores = online
    known = scores.index[0]
    table_cutoff = str(scores["cutoff"].iloc[0].date())
    answer = score(
        svc,
        {
            "customers": [
                {"customer_id": known, "cutoff": "2020-01-01"},
                {"customer_id": known, "cutoff": table_cutoff},
            ]
        },
    )
    other, same = answer["results"]
    assert other["status"] == "invalid"
    assert "differs from the feature table's cutoff" in other["error"]
    assert same["status"] == "ok"


def test_same_customer_twice_inline_keeps_histories_apart(svc, online):
    orders = [{"ordered_at": "2024-01-01", "amount": 10.0}]
    more = orders + [{"ordered_at": f"2024-0{m}-01", "amount": 50.0} for m in range(2, 10)]
    body = {
        "customers": [
            {"customer_id": "twin", "cutoff": "2024-12-01", "orders": orders},
            {"customer_id": "twin", "cutoff": "2024-12-01", "orders": more},
        ]
    }
    few, many = score(svc, body)["results"]
    assert few["status"] == many["status"] == "ok"
    assert many["clv"] > few["clv"]


# -- request schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"customers": []}, "at least 1 item"),
        ({"customers": [{"customer_id": "a"}] * (MAX_CUSTOMERS + 1)}, "at most 1000 items"),
        ({"customers": [{"customer_id": "a", "extra": 1}]}, "Extra inputs are not permitted"),
        ({"customers": [{"customer_id": ""}]}, "at least 1 character"),
        (
            {"customers": [{"customer_id": "a", "orders": [{"ordered_at": "2024-01-01"}]}]},
            "Field required",
        ),
        (
            {"customers": [{"customer_id": "a", "orders": [{"ordered_at": "x", "amount": 1}]}]},
            "cutoff is required with orders",
        ),
        ({"customers": [{"customer_id": "a", "cutoff": "soon"}]}, "is not a date"),
        # pandas would read "now" as the wall clock: not a repeatable point in time.
        ({"customers": [{"customer_id": "a", "cutoff": "now"}]}, "is not a date"),
        (
            {"customers": [{"customer_id": "a", "service_events": []}]},
            "service_events were sent without orders",
        ),
    ],
)
def test_request_schema_names_the_problem(body, message):
    with pytest.raises(ValidationError, match=message):
        ScoreRequest.model_validate(body)


def test_documented_request_example_is_a_valid_request(svc):
    assert ScoreRequest.model_json_schema()["example"] == REQUEST_EXAMPLE
    lookup, inline = score(svc, REQUEST_EXAMPLE)["results"]
    # The example's id is a demo-store id: known there, unknown in the test store.
    expected = "ok" if "C0049000" in svc.served.table.positions else "unknown_customer"
    assert (lookup["customer_id"], lookup["status"]) == ("C0049000", expected)
    assert inline["status"] == "ok", inline["error"]
    assert inline["source"] == "inline" and inline["clv"] >= 0.0


def test_request_schema_bounds_orders_per_customer_and_per_request():
    order = {"ordered_at": "2024-01-01", "amount": 1.0}
    one = {"customer_id": "a", "cutoff": "2024-06-01", "orders": [order] * (MAX_ORDERS + 1)}
    with pytest.raises(ValidationError, match="at most 10000 items"):
        ScoreRequest.model_validate({"customers": [one]})
    full = {**one, "orders": [order] * MAX_ORDERS}
    with pytest.raises(ValidationError, match=f"expected at most {MAX_INLINE_ROWS} per request"):
        ScoreRequest.model_validate({"customers": [full] * (MAX_INLINE_ROWS // MAX_ORDERS + 1)})
    # Inline histories cost CPU per customer: a request carries few of them, lookups many.
    small = {**one, "orders": [order]}
    with pytest.raises(ValidationError, match=f"at most {MAX_INLINE_CUSTOMERS} inline histories"):
        ScoreRequest.model_validate({"customers": [small] * (MAX_INLINE_CUSTOMERS + 1)})
    lookups = [{"customer_id": "b"}] * (MAX_CUSTOMERS - MAX_INLINE_CUSTOMERS)
    ScoreRequest.model_validate({"customers": [small] * MAX_INLINE_CUSTOMERS + lookups})


# -- through the ASGI app ---------------------------------------------------------------------


def test_http_lookup_and_inline(client, online, served_store):
    _, scores = online
    known = scores.index[1]
    orders = served_store.orders[served_store.orders["customer_id"] == known]
    events = served_store.events[served_store.events["customer_id"] == known]
    inline = {
        "customer_id": known,
        "cutoff": str(scores["cutoff"].iloc[0]),
        "orders": history(orders),
        "service_events": history(events),
    }
    response = client.post(
        "/score", json={"customers": [{"customer_id": known}, inline, {"customer_id": "?"}]}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model_name", "model_version", "run_id", "results"}
    lookup, built, unknown = body["results"]
    assert_matches_batch(lookup, scores.loc[known])
    assert_matches_batch(built, scores.loc[known])
    assert (lookup["source"], built["source"]) == ("feature_table", "inline")
    assert unknown["status"] == "unknown_customer"


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b'{"customers": [{"customer_id": "a", "bogus": 1}]}', ["customers", 0, "bogus"]),
        (json.dumps({"customers": [{"customer_id": "a"}] * 1001}).encode(), ["customers"]),
        (b'{"clients": []}', ["customers"]),
        (b"not json", []),
    ],
)
def test_http_malformed_body_is_400_json_naming_the_field(client, content, loc, caplog):
    with caplog.at_level(logging.INFO, logger=BENTOML_REQUEST_LOGGER):
        response = client.post(
            "/score", content=content, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    body = response.json()
    assert "does not match the API's schema" in body["error"]
    assert "IODescriptor" not in response.text  # no framework class names
    assert loc in [error["loc"] for error in body["detail"]]
    # The server log gets one warning naming the field, not an error with a traceback.
    (record,) = [r for r in caplog.records if r.name == BENTOML_REQUEST_LOGGER]
    assert (record.levelname, record.exc_info) == ("WARNING", None)
    assert record.getMessage().startswith("Rejected request on /score [POST]: ")
    assert ".".join(map(str, loc)) in record.getMessage()


def test_http_openapi_page_documents_score_with_the_example(client):
    spec = client.get("/docs.json")
    assert spec.status_code == 200, spec.text
    assert "/score" in spec.json()["paths"]
    assert "new-1" in spec.text  # the request example
    assert client.get("/").status_code == 200  # the Swagger UI page


def test_http_probes_are_open_without_the_key(client):
    for path in ("/healthz", "/livez", "/readyz"):
        assert client.get(path, headers={"X-API-Key": ""}).status_code == 200, path


def test_http_api_key(client, online):
    body = {"customers": [{"customer_id": online[1].index[0]}]}
    request = client.build_request("POST", "/score", json=body)
    del request.headers["X-API-Key"]
    missing = client.send(request)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/score", json=body, headers={"X-API-Key": "guess"}).status_code == 401
    assert client.post("/score", json=body).status_code == 200
    request = client.build_request("POST", "/score", json=body)
    del request.headers["X-API-Key"]
    request.headers["Authorization"] = f"Bearer {API_KEY}"
    assert client.send(request).status_code == 200


# -- startup pieces ---------------------------------------------------------------------------


def test_thresholds_without_the_scores_file_equal_batch(online, served_model, tmp_path):
    config, scores = online
    lonely = tmp_path / "online_features.parquet"
    lonely.write_bytes(config.features_out.read_bytes())
    model = served_model
    version = tracking.version_info(config.model_uri)["model_version"]
    table = load_feature_table(lonely, model.feature_names_in_)
    assert load_batch_answers(table, version, ONLINE_REASONS) is None  # no scores.parquet beside it
    base, source = load_base(table, model)
    assert "predicted" in source
    expected = Base.of(scores["clv"].to_numpy())
    assert base.thresholds == pytest.approx(expected.thresholds, rel=1e-9)
    np.testing.assert_allclose(base.sorted_clv, expected.sorted_clv, rtol=1e-6)
    beside = load_feature_table(config.features_out, model.feature_names_in_)
    answers = load_batch_answers(beside, version, ONLINE_REASONS)
    assert answers is not None
    base, source = load_base(beside, model, answers)
    assert base.thresholds == expected.thresholds and "scores.parquet" in source
    assert (base.sorted_clv == expected.sorted_clv).all()


def test_model_scored_lookups_equal_the_batch_answers(online, served_model):
    # The service answers lookups from the batch scores; the model path it falls back to (and
    # CUSTOMER_VALUE_LOOKUPS=model) must give the same answers for every customer.
    config, scores = online
    model = served_model
    version = tracking.version_info(config.model_uri)["model_version"]
    table = load_feature_table(config.features_out, model.feature_names_in_)
    answers = load_batch_answers(table, version, ONLINE_REASONS)
    base, _ = load_base(table, model, answers)
    items = [{"customer_id": i} for i in scores.index]
    pending = prepare(items, table, model.spec)
    by_model = finish(pending, score_rows(model, pending.matrix, base, table_settings(table)))
    from_batch = prepare(items, table, model.spec, answers)
    assert from_batch.matrix is None  # nothing left for the model
    for computed, stored in zip(by_model, from_batch.results, strict=True):
        assert_matches_batch(computed, scores.loc[computed["customer_id"]])
        for name in ("clv", "p_churn"):
            assert computed[name] == pytest.approx(stored[name], rel=1e-6, abs=1e-9), name
        for name in COMPARED:
            assert computed[name] == stored[name], name


def test_batch_answers_are_refused_when_they_belong_to_another_run(online, served_model, tmp_path):
    config, _ = online
    model = served_model
    version = tracking.version_info(config.model_uri)["model_version"]
    folder = tmp_path / "copy"
    folder.mkdir()
    features = folder / "online_features.parquet"
    features.write_bytes(config.features_out.read_bytes())
    table = load_feature_table(features, model.feature_names_in_)
    scores = pq.read_table(config.out)
    meta = scores.schema.metadata

    def write(scores_table: pa.Table, **changes: bytes) -> None:
        changed = {**meta, **{f"customer_value.{k}".encode(): v for k, v in changes.items()}}
        pq.write_table(scores_table.replace_schema_metadata(changed), folder / "scores.parquet")

    write(scores)
    assert load_batch_answers(table, version, ONLINE_REASONS) is not None
    for label, scores_table, changes in (
        ("another run", scores, {"run_id": b"0" * 32}),
        ("no run id", scores, {"run_id": b""}),
        ("reasons none", scores, {"reasons": b"none"}),
        ("exact reasons", scores, {"reasons": b"exact"}),
    ):
        write(scores_table, **changes)
        assert load_batch_answers(table, version, ONLINE_REASONS) is None, label
    write(scores.slice(1))  # same run id, but not the same customers
    assert load_batch_answers(table, version, ONLINE_REASONS) is None
    write(scores)
    # The table was written by another version.
    assert load_batch_answers(table, "999", ONLINE_REASONS) is None


def test_lookup_mode_comes_from_the_environment():
    assert OnlineConfig.from_env({}).lookups == "batch"
    assert OnlineConfig.from_env({"CUSTOMER_VALUE_LOOKUPS": "model"}).lookups == "model"
    with pytest.raises(ValueError, match="CUSTOMER_VALUE_LOOKUPS='fast'; expected one of batch"):
        OnlineConfig.from_env({"CUSTOMER_VALUE_LOOKUPS": "fast"})


def test_service_starts_on_the_outputs_of_a_run_that_scored_nobody(online, tmp_path, monkeypatch):
    # A batch run at a cutoff before any order writes an empty table and an empty scores file
    # of the same run; the service must start on them and answer with per-customer statuses.
    config, _ = online
    empty_run = dataclasses.replace(
        config,
        cutoff="1990-01-01",
        out=tmp_path / "scores.parquet",
        features_out=tmp_path / "online_features.parquet",
    )
    assert score_base(empty_run).scored == 0
    assert pq.read_schema(empty_run.out).types == pq.read_schema(config.out).types
    monkeypatch.setenv("CUSTOMER_VALUE_FEATURES", str(empty_run.features_out))
    service = CustomerValue()
    assert service.served.answers is not None and len(service.served.table) == 0
    (result,) = score(service, {"customers": [{"customer_id": "anyone"}]})["results"]
    assert result["status"] == "unknown_customer"
    assert result["cutoff"] == "1990-01-01"


def test_feature_table_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make score`"):
        load_feature_table(tmp_path / "missing.parquet", ["recency"])
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"customer_id": ["a"], "recency": [1.0]}), bare)
    with pytest.raises(ValueError, match="no 'customer_value.cutoff' metadata"):
        load_feature_table(bare, ["recency"])
    table = pa.table({"customer_id": ["a"], "recency": [1.0]})
    table = table.replace_schema_metadata({b"customer_value.cutoff": b"2025-01-01"})
    partial = tmp_path / "partial.parquet"
    pq.write_table(table, partial)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['frequency'\]"):
        load_feature_table(partial, ["recency", "frequency"])


def test_a_table_of_another_tracking_store_is_refused(online, served_model, tmp_path):
    # Another store's table carried the same "customer-value v1" label and was served as if
    # it were this store's; its stamp names its store now.
    config, _ = online
    model = served_model
    table = pq.read_table(config.features_out)
    stamp = RunStamp.from_metadata(table.schema.metadata)
    assert stamp.store  # written by this version
    assert load_feature_table(config.features_out, model.feature_names_in_, stamp.store)
    other = tmp_path / "online_features.parquet"
    meta = {**table.schema.metadata, b"customer_value.store": b"sqlite:////elsewhere/mlflow.db"}
    pq.write_table(table.replace_schema_metadata(meta), other)
    with pytest.raises(TableMismatch, match="tracking store sqlite:////elsewhere/mlflow.db"):
        load_feature_table(other, model.feature_names_in_, stamp.store)


def test_a_run_scored_by_another_shops_model_is_not_served(online, tmp_path):
    # One shop, one model: two shops' models may both be at version 1; a run is served only
    # with the model named in its stamp.
    from serving.online.reload import load_served

    config, _ = online
    table = pq.read_table(config.features_out)
    other = tmp_path / "online_features.parquet"
    meta = {**table.schema.metadata, b"customer_value.model_name": b"customer-value-other-shop"}
    pq.write_table(table.replace_schema_metadata(meta), other)
    served = OnlineConfig.from_env(
        {"CUSTOMER_VALUE_MODEL_URI": config.model_uri, "CUSTOMER_VALUE_FEATURES": str(other)}
    )
    with pytest.raises(TableMismatch, match="scored with the model customer-value-other-shop"):
        load_served(served)


def test_unreadable_table_and_scores_are_named(online, served_model, tmp_path, caplog):
    config, _ = online
    model = served_model
    version = tracking.version_info(config.model_uri)["model_version"]
    junk = tmp_path / "junk" / "online_features.parquet"
    junk.parent.mkdir()
    junk.write_bytes(b"\x00not parquet" * 100)
    with pytest.raises(ValueError, match=f"{junk}.*not a readable Parquet file"):
        load_feature_table(junk, model.feature_names_in_)
    # The scores beside the table are optional: a corrupt one is named and lookups fall back
    # to the model, instead of the service failing to start.
    folder = tmp_path / "corrupt-scores"
    folder.mkdir()
    (folder / "online_features.parquet").write_bytes(config.features_out.read_bytes())
    (folder / "scores.parquet").write_bytes(config.out.read_bytes()[:-100])
    table = load_feature_table(folder / "online_features.parquet", model.feature_names_in_)
    with caplog.at_level(logging.WARNING, logger="serving.run_files"):
        assert load_batch_answers(table, version, ONLINE_REASONS) is None
    assert f"{folder / 'scores.parquet'} cannot be read" in caplog.text
