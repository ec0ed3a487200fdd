"""The online API's request and answer schema: what ``POST /score`` accepts and returns.

Pydantic models with the per-request bounds (customers, inline rows) and the 503 body of a
lookup store that cannot answer. The service (:mod:`serving.online.service`) declares them as
its input and output; the request tests validate against them without a server.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from starlette.responses import JSONResponse

from features.history import as_cutoff
from features.io import MAX_ID_LENGTH
from serving.lookup_store import StoreUnavailable
from serving.online.guard import EXPLAINED

MAX_CUSTOMERS = 1000
MAX_ORDERS = 10_000
MAX_EVENTS = 10_000
#: Customers sent with their history, per request: each costs CPU to validate and build, and
#: many would hold up every other request of the process (see docs/lab-notes.md, "Inline
#: history bounds").
MAX_INLINE_CUSTOMERS = 25
#: Inline orders + service events over all customers of one request. The body is parsed on the
#: event loop (BentoML) before any other request of the process can be answered (see
#: docs/lab-notes.md, "Inline history bounds").
MAX_INLINE_ROWS = 20_000
#: ``Retry-After`` seconds of a 503 because the lookup store cannot answer.
STORE_RETRY_SECONDS = 1

#: The same bound as the files' customer_id (features.io.MAX_ID_LENGTH): every id a batch run
#: scores can be asked for, and a longer one is refused by both.
Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)
]
Text = Annotated[str, StringConstraints(max_length=64)]
#: Values are checked by the same validation as files (features.io), so a bad value makes the
#: customer ``invalid`` with the loader's message instead of failing the whole request. Strict
#: numbers: JSON ``true`` is not a number (lax pydantic read it as 1.0 and scored it); text
#: stays allowed, as in a CSV file, for the validation to parse or refuse.
When = Text | StrictInt
Number = StrictFloat | Text


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
    def _inline_work_is_bounded(self) -> ScoreRequest:
        rows = sum(len(c.orders or ()) + len(c.service_events or ()) for c in self.customers)
        if rows > MAX_INLINE_ROWS:
            raise ValueError(
                f"customers carry {rows} inline orders and service events in total; expected at "
                f"most {MAX_INLINE_ROWS} per request (split the request)"
            )
        inline = sum(c.orders is not None for c in self.customers)
        if inline > MAX_INLINE_CUSTOMERS:
            raise ValueError(
                f"{inline} customers are sent with orders; expected at most "
                f"{MAX_INLINE_CUSTOMERS} inline histories per request (split the request, or "
                "score the whole base with `make score`)"
            )
        return self


class CustomerResult(BaseModel):
    """The answer for one requested customer, in request order."""

    customer_id: str
    status: Literal["ok", "unknown_customer", "invalid"]
    cutoff: str | None
    horizon_days: int
    clv: float | None = Field(description="predicted revenue over the horizon")
    clv_low: float | None = Field(
        description="low end of the range the revenue falls in for the run's share of "
        "customers at the same risk (the batch run's --interval, 80% by default)"
    )
    clv_high: float | None = Field(description="high end of that range")
    clv_discounted: float | None = Field(
        description="clv discounted at the batch run's yearly --discount-rate (0: = clv)"
    )
    clv_percentile: float | None = Field(
        description="share of the scored base (0-100) predicted to spend at most this"
    )
    p_churn: float | None = Field(description="probability of no order in the horizon")
    p_active: float | None = Field(description="probability of still being a customer now")
    expected_orders: float | None = Field(description="orders expected in the horizon")
    next_order_date: str | None = Field(
        description="expected (median) date of the next order; null when more likely gone"
    )
    avg_days_between_orders: float | None = Field(
        description="mean days between past orders; null before a second order"
    )
    historic_value: float | None = Field(description="revenue before the cutoff")
    total_value: float | None = Field(description="historic_value + clv")
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
    run_id: str = Field(
        description="the batch run every lookup of this answer came from (and whose value "
        "tiers and percentiles place the customers); checked in the same read as the answers"
    )
    results: list[CustomerResult]


class StoreUnavailableAnswer(BaseModel):
    """Body of a 503 because the lookup store cannot answer for the served run."""

    status: Literal["store_unavailable"]
    reason: Literal["unreachable", "gone", "changed", "unreadable"]
    error: str


def store_unavailable(error: StoreUnavailable) -> JSONResponse:
    """The 503 of a request the lookup store cannot answer: JSON, saying why, never a guess."""
    body = StoreUnavailableAnswer(
        status="store_unavailable",
        reason=error.kind,  # type: ignore[arg-type]  # one of StoreUnavailable.KINDS
        error=error.answer(),
    )
    return JSONResponse(
        body.model_dump(),
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_SECONDS), EXPLAINED: "store"},
    )
