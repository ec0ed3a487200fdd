"""BentoML service: online CLV and churn for the storefront, by customer_id or inline history.

``POST /score`` looks customers up in the materialised feature table (written by
``serving.batch``) or builds their features from inline history with the feature code used by
training and batch, then scores them with :func:`serving.online.score_rows`, the batch code path
(same numbers, segments and reasons).

Adaptive batching: the model calls of concurrent requests go through BentoML's adaptive
batching dispatcher (``CorkDispatcher``, the class behind ``@bentoml.api(batchable=True)``)
inside the API process, so the feature rows of many requests are scored in one call, in a worker
thread. A ``batchable`` API only batches calls that reach its HTTP route (``self.method(...)``
bypasses the dispatcher), and a separate model service (``bentoml.depends``) adds an HTTP hop
per request that, on BentoML 1.4.39, needed two workarounds (a DataFrame batch-size bug;
sessions closed under in-flight calls, bentoml/BentoML#5540) and cost about twice the server
CPU per request; see bench/RESULTS-online.md.

Lookups at the feature table's cutoff are answered from the scores the same batch run wrote
beside the table (``scores.parquet``: the same features, model and code, so the same answer),
when they belong to the served model version; otherwise, and for inline histories, the model
scores the request. ``CUSTOMER_VALUE_LOOKUPS=model`` makes the model score every lookup.

Configuration is infrastructure only, from the environment: ``CUSTOMER_VALUE_MODEL_URI``
(default ``models:/customer-value@champion``), ``CUSTOMER_VALUE_FEATURES`` (default
``models/scores/online_features.parquet``), ``CUSTOMER_VALUE_LOOKUPS`` (``batch`` or
``model``), ``CUSTOMER_VALUE_API_KEY`` (optional) and ``MLFLOW_TRACKING_URI``. BentoML
settings such as the worker count can be overridden with ``BENTOML_CONFIG_OPTIONS`` (e.g.
``services.CustomerValue.workers=1``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, NoReturn

import anyio
import anyio.to_thread
import bentoml
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml.exceptions import BentoMLException, ServiceUnavailable
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
from serving.online import (
    API_KEY_ENV,
    OnlineConfig,
    finish,
    load_batch_answers,
    load_feature_table,
    load_value_thresholds,
    prepare,
    score_rows,
)
from training import tracking

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_ORDERS = 10_000
MAX_EVENTS = 10_000
#: Inline orders + service events over all customers of one request.
MAX_INLINE_ROWS = 100_000
#: Bodies declaring a larger Content-Length are refused with 413 before they are read.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Adaptive batching of the model call: most feature rows per batch, and the longest a row may
#: wait in the queue before the dispatcher sheds it (the caller gets 503).
MAX_BATCH_ROWS = 500
MAX_LATENCY_MS = 1000
#: API processes; each holds its own model, feature table and batcher.
WORKERS = 2
#: No access log line per request: at storefront rates it cost more server CPU than the
#: lookup itself (bench/RESULTS-online.md); request counts and latencies are on /metrics.
#: Turn it on with BENTOML_CONFIG_OPTIONS="services.CustomerValue.logging.access.enabled=true".
ACCESS_LOG = {"access": {"enabled": False}}
#: Paths that stay open when an API key is configured (probes and Prometheus).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
#: The logger BentoML's API wrapper reports every failed request on (with a traceback).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
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


class ScoreRequest(BaseModel):
    """Body of ``POST /score``."""

    model_config = ConfigDict(extra="forbid")

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


class AdaptiveBatcher:
    """BentoML's adaptive batching around a function of feature rows, inside one process.

    Concurrent calls queue in a ``CorkDispatcher``, which releases them as one batch (at most
    ``max_batch_size`` rows, after a wait it tunes from the observed batch times); the batch is
    scored in a worker thread while the event loop keeps serving. Calls that would wait longer
    than ``max_latency_ms`` are shed with 503.

    Parameters
    ----------
    func : callable
        Feature matrix (rows x features) -> one record per row.
    max_batch_size : int
        Most rows per batch (a larger call is split).
    max_latency_ms : int
        Longest a call may wait for its batch.
    """

    def __init__(
        self,
        func: Callable[[np.ndarray], list[dict[str, Any]]],
        *,
        max_batch_size: int,
        max_latency_ms: int,
    ) -> None:
        self.func = func
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.batches = 0
        self.rows = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch: Callable[[np.ndarray], Any] | None = None

    async def __call__(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        """Score ``matrix`` together with whatever else is queued; one record per row."""
        loop = asyncio.get_running_loop()
        if self._dispatch is None or self._loop is not loop:
            # The dispatcher lives in one event loop; a plain-class caller may use several.
            self._loop = loop
            self._dispatch = CorkDispatcher(
                max_latency_in_ms=self.max_latency_ms,
                max_batch_size=self.max_batch_size,
                fallback=_overloaded,
                get_batch_size=len,
            )(self._score)
        return await self._dispatch(matrix)

    async def _score(self, jobs: Sequence[np.ndarray]) -> list[list[dict[str, Any]] | Exception]:
        try:
            records = await anyio.to_thread.run_sync(self.func, np.concatenate(jobs))
        except Exception:
            if len(jobs) == 1:
                raise
            # The dispatcher would hand one exception to every call in the batch: score each
            # call alone, so only the call whose rows fail gets the error (the dispatcher
            # raises a returned exception in that caller only).
            logger.exception("a batch of %d calls failed; scoring each call alone", len(jobs))
            return [await self._score_alone(job) for job in jobs]
        self.batches += 1
        self.rows += len(records)
        _batch_rows_histogram().observe(len(records))
        bounds = np.cumsum([0, *(len(job) for job in jobs)])
        return [records[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    async def _score_alone(self, job: np.ndarray) -> list[dict[str, Any]] | Exception:
        try:
            return await anyio.to_thread.run_sync(self.func, job)
        except Exception as error:
            return error


#: The 503 body when requests are shed: BentoML replaces every 5xx message with a generic
#: "unexpected error" text, which would send an operator looking for a fault that is not there.
OVERLOADED = (
    "the service is overloaded: the model queue is full (requests waited over "
    f"{MAX_LATENCY_MS} ms); retry after a moment"
)


def _overloaded() -> NoReturn:
    raise ServiceUnavailable(OVERLOADED)


def _explain_overload(send: Any) -> Any:
    """``send`` with a 503 answer replaced by :data:`OVERLOADED` and ``Retry-After: 1``."""
    replaced = False

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal replaced
        if message["type"] == "http.response.start" and message["status"] == 503:
            replaced = True
            await _json(send, 503, {"error": OVERLOADED}, [(b"retry-after", b"1")])
        elif not (replaced and message["type"] == "http.response.body"):
            await send(message)

    return wrapped


@functools.cache
def _batch_rows_histogram() -> Any:
    """Prometheus histogram of rows per model batch, created once per process."""
    # Imported late: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker after importing us.
    import prometheus_client

    return prometheus_client.Histogram(
        "customer_value_model_batch_rows",
        "Feature rows scored per adaptive batch of the model call",
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    )


class ClientErrorLog(logging.Filter):
    """Log a rejected request (4xx, or 503 when shed) as one warning, without a traceback.

    BentoML logs every failed request as an error with the full traceback, so each malformed
    storefront request printed about 40 lines that looked like a server fault. The caller
    already gets the details in the 400 body; the server log keeps one line per rejection, and
    server faults (other 5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of client errors in place; never drop a record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]
            )
            summary = f"{error.error_count()} validation error(s): {problems}"
        elif isinstance(error, ServiceUnavailable) or (
            isinstance(error, BentoMLException) and int(error.error_code) < 500
        ):
            summary = f"{int(error.error_code)}: {error}"
        else:
            return True
        record.msg = "Rejected request on %s [%s]: %s"
        record.args = (*(record.args or ()), summary)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


CLIENT_ERROR_LOG = ClientErrorLog()


@bentoml.service(
    workers=WORKERS,
    envs=THREAD_ENVS,
    traffic={"timeout": 30},
    logging=ACCESS_LOG,
)
class CustomerValue:
    """Customer value API: ``POST /score`` with customer ids or inline order history."""

    def __init__(self) -> None:
        tick = time.perf_counter()
        package = logging.getLogger("serving")
        if package.level == logging.NOTSET:
            # The worker's logging is BentoML's (root at WARNING); show our startup summary.
            package.setLevel(logging.INFO)
        logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(CLIENT_ERROR_LOG)
        config = OnlineConfig.from_env()
        tracking.configure(read_only=True)
        self.model = tracking.load_model(config.model_uri)
        self.info = tracking.version_info(config.model_uri)
        self.table = load_feature_table(config.features, self.model.feature_names_in_)
        self.answers = (
            load_batch_answers(self.table, self.info["model_version"])
            if config.lookups == "batch"
            else None
        )
        self.thresholds, source = load_value_thresholds(self.table, self.model, self.answers)
        # Warm the model path (XGBoost's first calls allocate): the first requests should not
        # pay for it, and the batcher's latency model is fit on the first batches it times.
        for rows in (1, 16):
            score_rows(self.model, self.table.matrix[:rows], self.thresholds)
        self._feature_builder = anyio.CapacityLimiter(1)
        self.batcher = AdaptiveBatcher(
            functools.partial(score_rows, self.model, thresholds=self.thresholds),
            max_batch_size=MAX_BATCH_ROWS,
            max_latency_ms=MAX_LATENCY_MS,
        )
        # Everything loaded so far lives as long as the process: move it out of the garbage
        # collector's reach, or each full collection walks it (stalls of ~0.4 s were measured).
        gc.collect()
        gc.freeze()
        logger.info(
            "serving %s v%s: %d customers at cutoff %s from %s; lookups answered %s; value "
            "thresholds from %s (%.1fs)",
            self.info["model_name"],
            self.info["model_version"],
            len(self.table),
            self.table.cutoff,
            self.table.path,
            "by the model"
            if self.answers is None
            else f"from the batch scores {self.answers.source}",
            source,
            time.perf_counter() - tick,
        )

    @bentoml.api(input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, customers: list[CustomerRequest]) -> ScoreResponse:
        """Score customers by id (feature table) or from inline history; one result each.

        Unknown ids get ``status: unknown_customer``; inline histories with unusable rows get
        ``status: invalid`` with the validation message. Both are per customer, never an error
        for the whole request.
        """
        items = [customer.model_dump(exclude_none=True) for customer in customers]
        if any("orders" in item for item in items):
            # Building features is CPU work in pandas: one thread at a time keeps the event
            # loop free without many threads fighting over the GIL (which slowed the model
            # batches enough for the dispatcher to shed them).
            pending = await anyio.to_thread.run_sync(
                prepare,
                items,
                self.table,
                self.model.spec,
                self.answers,
                limiter=self._feature_builder,
            )
        else:
            pending = prepare(items, self.table, self.model.spec, self.answers)
        scored = None if pending.matrix is None else await self.batcher(pending.matrix)
        return ScoreResponse.model_validate({**self.info, "results": finish(pending, scored)})


class RequestGuard:
    """ASGI middleware: the API key (when ``CUSTOMER_VALUE_API_KEY`` is set) and a body bound.

    The key is read once, when the app is built. Requests must send ``X-API-Key: <key>`` or
    ``Authorization: Bearer <key>``, else 401; the probes and ``/metrics`` stay open. Requests
    that declare a body larger than :data:`MAX_BODY_BYTES` get 413 before the body is read;
    a chunked body (no declared length) gets 413 as soon as it passes the bound. A 503 (the
    model queue is full) says so, with ``Retry-After``, instead of BentoML's generic text.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key = os.environ.get(API_KEY_ENV, "").encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        if self.key and scope.get("path") not in OPEN_PATHS and not self._authorised(headers):
            await _json(
                send,
                401,
                {
                    "error": "missing or wrong API key; send header 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'"
                },
                [(b"www-authenticate", b"Bearer")],
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await _too_large(send, f"request body is {int(length)} bytes")
                return
        elif scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked body declares no length: read it here, up to the bound, and hand the
            # app the buffered body (the app would otherwise read any size into memory).
            body = await _read_bounded(receive)
            if body is None:
                await _too_large(send, f"chunked request body is over {MAX_BODY_BYTES} bytes")
                return
            replay = [{"type": "http.request", "body": body, "more_body": False}]
            upstream = receive

            async def receive() -> dict[str, Any]:
                return replay.pop() if replay else await upstream()

        if scope.get("path") not in OPEN_PATHS:
            send = _explain_overload(send)
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        sent = headers.get(b"x-api-key")
        if sent is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            sent = token.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(sent, self.key)


async def _read_bounded(receive: Any) -> bytes | None:
    """The whole request body, or None once it exceeds :data:`MAX_BODY_BYTES`."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)  # the app sees the short body and answers 400
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _too_large(send: Any, what: str) -> None:
    await _json(
        send,
        413,
        {
            "error": f"{what}; expected at most {MAX_BODY_BYTES} bytes (send fewer "
            "customers per request)"
        },
    )


async def _json(
    send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


CustomerValue.add_asgi_middleware(RequestGuard)
