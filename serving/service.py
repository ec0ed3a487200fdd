"""BentoML service: online CLV and churn for the storefront, by customer_id or inline history.

``POST /score`` looks customers up in the materialised feature table (written by
``serving.batch``) or builds their features from inline history with the feature code used by
training and batch, then scores them with :func:`serving.online.score_rows`, the batch code path
(same numbers, segments and reasons).

The model calls of concurrent requests are scored together by adaptive batching
(:mod:`serving.batching`); the API key, body bounds and error answers are the HTTP edge's
(:mod:`serving.guard`).

Lookups at the feature table's cutoff are answered from the scores the same batch run wrote
beside the table (``scores.parquet``: the same features, model and code, so the same answer),
when both come from the same batch run with the served model version; otherwise, and for
inline histories, the model scores the request. ``CUSTOMER_VALUE_LOOKUPS=model`` makes the
model score every lookup.

Configuration is infrastructure only, from the environment: ``CUSTOMER_VALUE_MODEL_URI``
(default ``models:/customer-value@champion``), ``CUSTOMER_VALUE_FEATURES`` (default
``models/scores/online_features.parquet``), ``CUSTOMER_VALUE_LOOKUPS`` (``batch`` or
``model``), ``CUSTOMER_VALUE_RELOAD_SECONDS`` (how often a new batch run is looked for,
default 30; :mod:`serving.reload`), ``CUSTOMER_VALUE_API_KEY`` (optional) and
``MLFLOW_TRACKING_URI``. BentoML settings such as the worker count can be overridden with
``BENTOML_CONFIG_OPTIONS`` (e.g. ``services.CustomerValue.workers=1``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import anyio
import anyio.to_thread
import bentoml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from features.history import as_cutoff
from serving.guard import BENTOML_REQUEST_LOGGER, CLIENT_ERROR_LOG, RequestGuard
from serving.online import OnlineConfig, finish, prepare
from serving.reload import Reloader, Served, freeze_heap, load_served, reload_interval
from training import tracking

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_ORDERS = 10_000
MAX_EVENTS = 10_000
#: Inline orders + service events over all customers of one request.
MAX_INLINE_ROWS = 100_000
#: API processes; each holds its own model, feature table and batcher.
WORKERS = 2
#: No access log line per request: at storefront rates it cost more server CPU than the
#: lookup itself (bench/RESULTS-online.md); request counts and latencies are on /metrics.
#: Turn it on with BENTOML_CONFIG_OPTIONS="services.CustomerValue.logging.access.enabled=true".
ACCESS_LOG = {"access": {"enabled": False}}
#: One OpenMP thread per process: XGBoost's default thread pool makes small predictions several
#: times slower on small machines, and the workers already share the cores.
THREAD_ENVS = [{"name": "OMP_NUM_THREADS", "value": "1"}]

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=64)]
#: Values are checked by the same validation as files (features.io), so a bad value makes the
#: customer ``invalid`` with the loader's message instead of failing the whole request.
When = Text | int
Number = float | Text


class InlineOrder(BaseModel):
    """One order of an inline history (the orders data contract, without customer_id)."""

    model_config = ConfigDict(extra="forbid")

    ordered_at: When = Field(description="ISO 8601 date or timestamp, or yyyymmdd")
    amount: Number = Field(description="net revenue of the order, >= 0")
    order_id: Id | None = None
    status: Text | None = Field(None, description="completed, cancelled or returned")
    promised_at: When | None = None
    delivered_at: When | None = None


class InlineEvent(BaseModel):
    """One service interaction of an inline history (ticket, return, review, ...)."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: When
    kind: Text
    order_id: Id | None = None
    score: Number | None = Field(None, description="review stars or CSAT, 1-5")
    resolution_hours: Number | None = None
    amount: Number | None = None


class CustomerRequest(BaseModel):
    """One customer to score: by id (feature table) or with its history (inline)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Id
    cutoff: Text | None = Field(
        None,
        description="point in time to score at; required with orders. For a lookup it must "
        "be omitted or equal the feature table's cutoff",
    )
    orders: Annotated[list[InlineOrder], Field(min_length=1, max_length=MAX_ORDERS)] | None = None
    service_events: Annotated[list[InlineEvent], Field(max_length=MAX_EVENTS)] | None = None

    @field_validator("cutoff")
    @classmethod
    def _cutoff_is_a_date(cls, value: str | None) -> str | None:
        if value is not None:
            as_cutoff(value)  # raises ValueError naming the value and the expected format
        return value

    @model_validator(mode="after")
    def _history_is_complete(self) -> CustomerRequest:
        if self.orders is None and self.service_events is not None:
            raise ValueError("service_events were sent without orders; send the orders too")
        if self.orders is not None and self.cutoff is None:
            raise ValueError(
                "cutoff is required with orders (the point in time to score at, e.g. "
                "'2026-07-01'); only rows before it are used"
            )
        return self


#: The request body shown in the OpenAPI page (``/``, spec at ``/docs.json``): one lookup by
#: id and one inline history. (BentoML's OpenAPI schema takes one ``example``, not a list.)
REQUEST_EXAMPLE: dict = {
    "customers": [
        {"customer_id": "C0049000"},
        {
            "customer_id": "new-1",
            "cutoff": "2026-07-01",
            "orders": [
                {"ordered_at": "2026-05-02", "amount": 80.0, "status": "completed"},
                {
                    "ordered_at": "2026-06-20",
                    "amount": 45.5,
                    "promised_at": "2026-06-23",
                    "delivered_at": "2026-06-29",
                },
            ],
            "service_events": [
                {"occurred_at": "2026-06-29", "kind": "ticket", "score": 2, "resolution_hours": 80}
            ],
        },
    ]
}


class ScoreRequest(BaseModel):
    """Body of ``POST /score``: customers by id (feature table), or with their history."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": REQUEST_EXAMPLE})

    customers: Annotated[list[CustomerRequest], Field(min_length=1, max_length=MAX_CUSTOMERS)]

    @model_validator(mode="after")
    def _inline_rows_are_bounded(self) -> ScoreRequest:
        rows = sum(len(c.orders or ()) + len(c.service_events or ()) for c in self.customers)
        if rows > MAX_INLINE_ROWS:
            raise ValueError(
                f"customers carry {rows} inline orders and service events in total; expected at "
                f"most {MAX_INLINE_ROWS} per request (split the request)"
            )
        return self


class CustomerResult(BaseModel):
    """The answer for one requested customer, in request order."""

    customer_id: str
    status: Literal["ok", "unknown_customer", "invalid"]
    cutoff: str | None
    horizon_days: int
    clv: float | None
    p_churn: float | None
    value_segment: str | None
    risk_segment: str | None
    action: str | None
    reasons: str | None
    value_reasons: str | None
    source: Literal["feature_table", "inline"]
    error: str | None


class ScoreResponse(BaseModel):
    """Body of a ``POST /score`` answer."""

    model_name: str
    model_version: str
    results: list[CustomerResult]


@bentoml.service(
    workers=WORKERS,
    envs=THREAD_ENVS,
    traffic={"timeout": 30},
    logging=ACCESS_LOG,
)
class CustomerValue:
    """Customer value API: ``POST /score`` with customer ids or inline order history."""

    def __init__(self) -> None:
        package = logging.getLogger("serving")
        if package.level == logging.NOTSET:
            # The worker's logging is BentoML's (root at WARNING); show our startup summary.
            package.setLevel(logging.INFO)
        logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(CLIENT_ERROR_LOG)
        config = OnlineConfig.from_env()
        tracking.configure(read_only=True)
        self.reloader = Reloader(config, load_served(config), reload_interval())
        self._feature_builder = anyio.CapacityLimiter(1)
        freeze_heap(full=True)

    @property
    def served(self) -> Served:
        """The model, table and answers requests are answered from now."""
        return self.reloader.served

    @bentoml.api(input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, customers: list[CustomerRequest]) -> ScoreResponse:
        """Score customers by id (feature table) or from inline history; one result each.

        Unknown ids get ``status: unknown_customer``; inline histories with unusable rows get
        ``status: invalid`` with the validation message. Both are per customer, never an error
        for the whole request.
        """
        self.reloader.poke()
        served = self.served  # one state for the whole request, even if a reload swaps it
        items = [customer.model_dump(exclude_none=True) for customer in customers]
        if any("orders" in item for item in items):
            # Building features is CPU work in pandas: one thread at a time keeps the event
            # loop free without many threads fighting over the GIL (which slowed the model
            # batches enough for the dispatcher to shed them).
            pending = await anyio.to_thread.run_sync(
                prepare,
                items,
                served.table,
                served.model.spec,
                served.answers,
                limiter=self._feature_builder,
            )
        else:
            pending = prepare(items, served.table, served.model.spec, served.answers)
        scored = None if pending.matrix is None else await served.batcher(pending.matrix)
        try:
            return ScoreResponse.model_validate({**served.info, "results": finish(pending, scored)})
        except ValidationError as error:
            # Our answer failing our own schema is a server fault: BentoML would answer a
            # ValidationError with 400 as if the caller had sent something wrong.
            raise RuntimeError(f"the response failed its own schema: {error}") from error


CustomerValue.add_asgi_middleware(RequestGuard)
