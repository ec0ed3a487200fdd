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
model score every lookup. With ``CUSTOMER_VALUE_STORE`` set, the features and answers are read
per request from a lookup store shared by the workers (:mod:`serving.lookup_store`: a SQLite
file or Redis) instead of being loaded into each worker, with the same rules.

Start-up. Under ``bentoml serve`` each API process answers at once and loads the model and
the feature table in the background: until they are loaded ``/readyz`` answers 503 with a JSON
reason, and ``POST /score`` waits for them (at most :data:`LOADING_WAIT_SECONDS`, then the same
503); ``/livez`` and ``/healthz`` stay 200 (the process is alive). A
process that cannot load them logs one error naming what failed (the model URI, the tracking
store, the table) and asks the ``bentoml serve`` process to stop the whole server, which exits
with status :data:`EXIT_CANNOT_START` instead of restarting workers that would fail the same
way. Once serving, a failed reload keeps the loaded state (:mod:`serving.reload`). Used as a
plain class or as an in-process ASGI app (tests), the service loads in ``__init__`` and raises.

Inline histories are bounded per request (:data:`MAX_INLINE_CUSTOMERS`,
:data:`MAX_INLINE_ROWS`) so that one caller's feature building costs a fraction of a second
of CPU and cannot hold up everyone else's lookups.

Configuration is infrastructure only, from the environment (:mod:`serving.settings`):
``CUSTOMER_VALUE_MODEL_URI`` (default ``models:/customer-value@champion``),
``CUSTOMER_VALUE_FEATURES`` (default ``models/scores/online_features.parquet``),
``CUSTOMER_VALUE_STORE`` (a lookup store instead of the table; default none),
``CUSTOMER_VALUE_LOOKUPS`` (``batch`` or ``model``), ``CUSTOMER_VALUE_RELOAD_SECONDS`` (how
often a new batch run is looked for, default 30; :mod:`serving.reload`),
``CUSTOMER_VALUE_API_KEY`` (optional; surrounding whitespace stripped),
``CUSTOMER_VALUE_STORE_TIMEOUT`` (seconds a lookup store call may take, default 0.5) and
``MLFLOW_TRACKING_URI``.

A lookup store that cannot answer for the served run (down, hung, the run gone or replaced)
makes ``/score`` answer 503 with ``{"status": "store_unavailable", "reason": ..., "error":
...}`` and ``Retry-After``, and ``/readyz`` 503 likewise; every answer carries the ``run_id``
of the batch run its lookups came from (:mod:`serving.lookup_store`). BentoML settings such as
the worker count can be overridden with ``BENTOML_CONFIG_OPTIONS`` (e.g.
``services.CustomerValue.workers=1``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import bentoml
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.responses import JSONResponse

from features.history import as_cutoff
from features.io import MAX_ID_LENGTH
from serving.guard import BENTOML_REQUEST_LOGGER, CLIENT_ERROR_LOG, EXPLAINED, RequestGuard
from serving.lookup_store import StoreUnavailable, StoreView
from serving.online import Pending, finish, prepare
from serving.reload import Reloader, Served, freeze_heap, load_served, source_name
from serving.run_files import store_label
from serving.settings import OnlineConfig
from training import tracking

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_ORDERS = 10_000
MAX_EVENTS = 10_000
#: Customers sent with their history, per request. Each costs ~12-16 ms of CPU to validate
#: and build (pandas' fixed cost per customer; the rows themselves are cheap), so 1000 of them
#: cost 12-15 s and held up every other request of the process: 25 cost ~0.3-0.5 s.
MAX_INLINE_CUSTOMERS = 25
#: Inline orders + service events over all customers of one request. The body is parsed on the
#: event loop (BentoML), ~6 us a row, before any other request of the process can be answered:
#: 20,000 rows (~2 MB of JSON) cost ~0.1 s there and ~0.3 s in total.
MAX_INLINE_ROWS = 20_000
#: Lookup store reads at once per process, each in a worker thread (a store call must not
#: block the event loop: a hung Redis froze /livez); more wait for a thread.
STORE_READERS = 8
#: ``Retry-After`` seconds of a 503 because the lookup store cannot answer.
STORE_RETRY_SECONDS = 1
#: API processes; each holds its own model, feature table and batcher.
WORKERS = 2
#: No access log line per request: at storefront rates it cost more server CPU than the
#: lookup itself (bench/RESULTS-online.md); request counts and latencies are on /metrics.
#: Turn it on with BENTOML_CONFIG_OPTIONS="services.CustomerValue.logging.access.enabled=true".
ACCESS_LOG = {"access": {"enabled": False}}
#: One OpenMP thread per process: XGBoost's default thread pool makes small predictions several
#: times slower on small machines, and the workers already share the cores.
THREAD_ENVS = [{"name": "OMP_NUM_THREADS", "value": "1"}]

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
        "customers (the batch run's --interval, 80% by default)"
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


# -- start-up -----------------------------------------------------------------------------------
#
# BentoML 1.4 builds the service instance in each API process's ASGI lifespan, before uvicorn
# answers anything (_bentoml_impl/server/app.py: ServiceAppFactory.create_instance), and circus
# respawns an API process that exits for as long as the server runs (bentoml/serving.py:
# create_watcher, respawn=True outside containers). A model or table that cannot be loaded in
# ``__init__`` therefore meant an endless restart loop, and a /readyz that took connections (the
# socket is the arbiter's) but never answered. So the process answers at once, loads in the
# background, and on failure asks the ``bentoml serve`` process, which runs the deployment hook
# once before any API process starts (_bentoml_impl/server/serving.py: server_on_deployment),
# to stop the server with a non-zero exit status.

#: Set by the deployment hook for the API processes: the pid of the ``bentoml serve`` process
#: that stops the server when one of them cannot load.
SUPERVISOR_ENV = "CUSTOMER_VALUE_SUPERVISOR_PID"
#: How an API process tells the ``bentoml serve`` process it cannot load. circus handles HUP,
#: QUIT, INT, TERM and WINCH (circus/sighandler.py); USR2 is free.
CANNOT_START_SIGNAL = signal.SIGUSR2
#: Exit status of ``bentoml serve`` when an API process could not load its model or table
#: (uvicorn's for a failed start-up).
EXIT_CANNOT_START = 3
#: ``Retry-After`` seconds of a 503 while loading.
LOADING_RETRY_SECONDS = 5
#: How long an API request that reaches a process still loading waits for the load before it
#: gets 503. The API processes share one socket, so a caller that saw one process ready (a
#: load balancer's probe) can reach another that is a second or two behind; well under
#: BentoML's 30 s request timeout.
LOADING_WAIT_SECONDS = 10.0
#: Where the project's code is: a failure's one-line message names the last project line.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

LOADING, READY, FAILED = "loading", "ready", "failed"
#: BentoML's readiness probe.
READINESS_PATH = "/readyz"

T = TypeVar("T")


@dataclass
class Startup:
    """Where this process is in loading what it serves; what ``/readyz`` reports.

    Attributes
    ----------
    state : str
        ``loading``, ``ready`` or ``failed``.
    error : str or None
        Why it failed (the server log has the same message).
    began : float
        ``time.monotonic()`` when loading began.
    """

    state: str = LOADING
    error: str | None = None
    began: float = field(default_factory=time.monotonic)
    _settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def settle(self, state: str, error: str | None = None) -> None:
        """Loading has ended: ``ready``, or ``failed`` because of ``error``."""
        self.state, self.error = state, error
        self._settled.set()

    async def wait(self, timeout: float) -> str:
        """The state once loading has ended, or after ``timeout`` seconds if it has not."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self.state

    def answer(self) -> dict[str, str]:
        """The JSON body of a 503 while not ready.

        Without paths or URIs: ``/readyz`` is open to callers without the API key, and the
        server log names what failed.
        """
        if self.state == FAILED:
            return {
                "status": FAILED,
                "error": "the service could not load its model or feature table and is "
                "stopping; the server log says what failed",
            }
        return {
            "status": LOADING,
            "error": "the service is loading its model and feature table (for "
            f"{time.monotonic() - self.began:.0f} s); retry in a few seconds",
        }


#: In the ``bentoml serve`` process: a worker has reported that it cannot load.
_a_worker_failed = False


def supervise_startup() -> None:
    """In the ``bentoml serve`` process: stop the server when an API process cannot load.

    Installs the handler of :data:`CANNOT_START_SIGNAL` (stop the server as on SIGTERM, then
    exit with :data:`EXIT_CANNOT_START`) and tells the API processes this process's pid in
    :data:`SUPERVISOR_ENV` (circus copies the environment when it creates the workers, after
    the deployment hooks ran). Signals can only be handled in the main thread: elsewhere (the
    threaded ``bentoml.serve()`` API) the API processes load in ``__init__``, as BentoML
    expects, and are restarted by BentoML when that fails.
    """
    if threading.current_thread() is not threading.main_thread():
        os.environ.pop(SUPERVISOR_ENV, None)
        logger.warning(
            "bentoml serve runs outside the main thread: a worker that cannot load its model "
            "or feature table is restarted by BentoML instead of stopping the server"
        )
        return
    signal.signal(CANNOT_START_SIGNAL, _worker_cannot_start)
    atexit.register(_exit_if_a_worker_could_not_start)
    os.environ[SUPERVISOR_ENV] = str(os.getpid())


def _worker_cannot_start(signum: int, frame: Any) -> None:
    global _a_worker_failed
    if _a_worker_failed:
        return  # another worker failed too; the server is already stopping
    _a_worker_failed = True
    logger.error(
        "stopping the server (exit status %d): a worker could not load the model or the "
        "feature table (its error is logged above), and a restarted worker would fail the same "
        "way",
        EXIT_CANNOT_START,
    )
    # circus stops every worker and returns from the arbiter on SIGTERM; the exit status is
    # set at exit, when nothing else runs any more.
    signal.raise_signal(signal.SIGTERM)


def _exit_if_a_worker_could_not_start() -> None:
    if _a_worker_failed:
        # `bentoml serve` returns normally once circus has stopped, and an atexit callback
        # cannot change the exit status except by leaving now (after flushing the log).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_START)


def _supervisor_pid() -> int | None:
    """The ``bentoml serve`` process to signal when this API process cannot load, if any.

    Only our parent, and only when its deployment hook said so: the signal would end a process
    that does not handle it.
    """
    text = os.environ.get(SUPERVISOR_ENV, "")
    if text.isdigit() and int(text) == os.getppid():
        return int(text)
    return None


async def _in_daemon_thread(func: Callable[[], T]) -> T:
    """``func()`` in a daemon thread, awaited.

    Not anyio's worker threads: the interpreter waits for those at exit, so a server stopped
    (or failed) while another worker was still loading a large table would wait for the load.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        result, error = None, None
        try:
            result = func()
        except Exception as caught:
            error = caught
        except BaseException as caught:  # e.g. SystemExit from a library: not for the loop
            error = RuntimeError(f"loading stopped with {caught!r}")
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the event loop has closed: the process is exiting

    threading.Thread(target=run, name="customer-value-load", daemon=True).start()
    return await future


def _one_line(error: BaseException) -> str:
    """``error`` as one log line: its type and message, on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _raised_at(error: BaseException) -> str | None:
    """``path:line`` of the project's code the error came through last, when there is one.

    The one-line message carries no traceback; this says where to look for an error whose
    message does not name its cause (a ``KeyError`` from a file of an older layout, a bug).
    """
    here = None
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if path.is_relative_to(PROJECT_ROOT) and "site-packages" not in path.parts:
            here = f"{path.relative_to(PROJECT_ROOT)}:{frame.lineno}"
    return here


def _store() -> str:
    """The tracking store as a log may show it (no credentials)."""
    try:
        return store_label(tracking.tracking_uri())
    except Exception as error:  # only for a message about another failure
        return f"(unknown: {_one_line(error)})"


@bentoml.service(
    workers=WORKERS,
    envs=THREAD_ENVS,
    traffic={"timeout": 30},
    logging=ACCESS_LOG,
)
class CustomerValue:
    """Customer value API: ``POST /score`` with customer ids or inline order history.

    Under ``bentoml serve`` (the deployment hook ran in the parent process), the model and
    table are loaded in the background after start-up and :attr:`startup` tells ``/readyz``
    where that stands; otherwise they are loaded here and a failure raises.
    """

    def __init__(self) -> None:
        package = logging.getLogger("serving")
        if package.level == logging.NOTSET:
            # The worker's logging is BentoML's (root at WARNING); show our startup summary.
            package.setLevel(logging.INFO)
        logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(CLIENT_ERROR_LOG)
        self.config: OnlineConfig | None = None
        self.reloader: Reloader | None = None
        self.startup = Startup()
        self._supervisor = _supervisor_pid()
        self._loading: asyncio.Task[None] | None = None
        self._feature_builder = anyio.CapacityLimiter(1)
        self._store_reader = anyio.CapacityLimiter(STORE_READERS)
        if self._supervisor is None:
            # A plain class or an in-process ASGI app: nobody to stop, the caller gets the error.
            self._start(*self._load())

    @bentoml.on_deployment
    def _supervise_startup() -> None:
        supervise_startup()

    @bentoml.on_startup
    async def _start_loading(self) -> None:
        # Runs in the worker's lifespan; returning at once lets uvicorn answer /readyz (503)
        # while the model and table load.
        if self.startup.state == LOADING and self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load_in_background())

    async def __is_ready__(self) -> bool:
        """BentoML's readiness hook: loaded, and the lookup store answers for the served run.

        (``/readyz`` itself is answered by :class:`StartupGate`, which asks the store.)
        """
        return (
            self.startup.state == READY
            and self.reloader is not None
            and self.reloader.health.down is None
        )

    @property
    def served(self) -> Served:
        """The model, table and answers requests are answered from now.

        Raises
        ------
        bentoml.exceptions.ServiceUnavailable
            While they are still loading (or could not be loaded).
        """
        if self.reloader is None:
            raise ServiceUnavailable(self.startup.answer()["error"])
        return self.reloader.served

    def _load(self) -> tuple[OnlineConfig, Served]:
        """Read the settings and load the model, table and answers (blocking)."""
        config = self.config = OnlineConfig.from_env()
        tracking.configure(read_only=True)
        return config, load_served(config)

    def _start(self, config: OnlineConfig, served: Served) -> None:
        self.reloader = Reloader(config, served, config.reload_seconds)
        freeze_heap(full=True)
        self.startup.settle(READY)

    async def _load_in_background(self) -> None:
        try:
            self._start(*await _in_daemon_thread(self._load))
        except Exception as error:
            self._cannot_start(error)

    def _cannot_start(self, error: Exception) -> None:
        """Log why, answer 503 ``failed``, and ask ``bentoml serve`` to stop the server."""
        config = self.config
        context = []
        if config is not None:  # (else the settings are wrong, and the error names the variable)
            context.append(
                f"model {config.model_uri} from the tracking store {_store()}, "
                f"{source_name(config)}"
            )
        if (raised_at := _raised_at(error)) is not None:
            context.append(f"raised at {raised_at}")
        where = f" ({'; '.join(context)})" if context else ""
        self.startup.settle(FAILED, f"{_one_line(error)}{where}")
        logger.error("cannot start: %s", self.startup.error)
        logger.debug("cannot start", exc_info=error)
        if self._supervisor is None:
            return  # (only a supervised process loads in the background)
        try:
            os.kill(self._supervisor, CANNOT_START_SIGNAL)
        except OSError as kill_error:
            # Better a worker that answers 503 "failed" than one restarted in a loop.
            logger.error(
                "could not ask the bentoml serve process (pid %d) to stop the server (%s); "
                "this worker answers 503 until it is stopped",
                self._supervisor,
                kill_error,
            )

    @bentoml.api(input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, customers: list[CustomerRequest]) -> ScoreResponse | JSONResponse:
        """Score customers by id (feature table) or from inline history; one result each.

        Unknown ids get ``status: unknown_customer``; inline histories with unusable rows get
        ``status: invalid`` with the validation message. Both are per customer, never an error
        for the whole request. A lookup store that cannot answer for the served run (down,
        hung, the run gone or replaced under the worker) is a 503 with a JSON reason: never an
        answer from a run that is not whole, nor one under another run's stamp.
        """
        reloader = self.reloader
        if reloader is None:  # (the start-up gate holds requests until loaded)
            raise ServiceUnavailable(self.startup.answer()["error"])
        reloader.poke()
        served = reloader.served  # one state for the whole request, even if a reload swaps it
        items = [customer.model_dump(exclude_none=True) for customer in customers]
        try:
            pending = await self._prepare(items, served)
        except StoreUnavailable as error:
            # The run was replaced or retired under this worker: answer from the store's
            # current run once this worker has loaded it, else 503.
            recovered = None if error.transient else await reloader.recover(served)
            if recovered is None:
                reloader.health.failed(error)
                return store_unavailable(error)
            served = recovered
            try:
                pending = await self._prepare(items, served)
            except StoreUnavailable as again:
                reloader.health.failed(again)
                return store_unavailable(again)
        scored = None if pending.matrix is None else await served.batcher(pending.matrix)
        body = {**served.info, "run_id": served.table.stamp.run_id}
        try:
            return ScoreResponse.model_validate({**body, "results": finish(pending, scored)})
        except ValidationError as error:
            # Our answer failing our own schema is a server fault: BentoML would answer a
            # ValidationError with 400 as if the caller had sent something wrong.
            raise RuntimeError(f"the response failed its own schema: {error}") from error

    async def _prepare(self, items: list[dict[str, Any]], served: Served) -> Pending:
        """:func:`serving.online.prepare` off the event loop when it reads a store or builds.

        Raises
        ------
        serving.lookup_store.StoreUnavailable
            The store cannot answer for ``served``'s run (the caller records it in the
            reloader's health when it answers 503), or failed to moments ago.
        """
        reloader = self.reloader
        assert reloader is not None
        args = (items, served.table, served.model.spec, served.answers)
        reads_store = isinstance(served.table, StoreView) and any(
            "orders" not in item for item in items
        )
        if any("orders" in item for item in items):
            # Building features is CPU work in pandas: one thread at a time keeps the event
            # loop free without many threads fighting over the GIL (which slowed the model
            # batches enough for the dispatcher to shed them).
            limiter = self._feature_builder
        elif isinstance(served.table, StoreView):
            limiter = self._store_reader  # a store call may hang: never on the event loop
        else:
            return prepare(*args)  # lookups in memory: answered on the event loop
        if reads_store and (refused := reloader.health.refused()):
            raise refused  # the store just failed to answer: do not wait for it again
        pending = await anyio.to_thread.run_sync(prepare, *args, limiter=limiter)
        if reads_store:
            reloader.health.recovered()
        return pending


class StartupGate:
    """ASGI middleware: readiness and the API while this process loads (or failed to).

    ``/readyz`` answers 503 with a JSON reason (``loading`` or ``failed``) until the model and
    table are loaded; BentoML's own (from :meth:`CustomerValue.__is_ready__`) would answer a
    bare text 503. An API request waits up to :data:`LOADING_WAIT_SECONDS` for the load, then
    gets the same 503 (with ``Retry-After`` while loading), so that it never reaches a service
    with nothing to answer from. This is the outermost of the service's middlewares, before
    the API key check: a caller without the key learns no more than the open ``/readyz``
    tells anyone.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Hold or answer requests on the gated paths while this process is not ready (ASGI)."""
        path = scope.get("path")
        startup = _current_startup() if scope["type"] == "http" and path in _GATED_PATHS else None
        if startup is not None:
            state = startup.state
            if state == LOADING and path != READINESS_PATH:
                state = await startup.wait(LOADING_WAIT_SECONDS)
            if state != READY:
                headers = {"Retry-After": str(LOADING_RETRY_SECONDS)} if state == LOADING else {}
                response = JSONResponse(startup.answer(), status_code=503, headers=headers)
                await response(scope, receive, send)
                return
            if path == READINESS_PATH and (down := await _store_down()) is not None:
                body = {"status": "store_unavailable", "reason": down.kind, "error": down.answer()}
                await JSONResponse(body, status_code=503)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _store_down() -> StoreUnavailable | None:
    """Why the lookup store cannot answer for this process's served run; None when it can."""
    try:
        instance = bentoml.get_current_service()
    except BentoMLException:
        return None
    reloader: Reloader | None = getattr(instance, "reloader", None)
    if reloader is None or await reloader.probe():
        return None
    return reloader.health.down


def _current_startup() -> Startup | None:
    """The start-up state of this process's service instance, once BentoML has made it."""
    try:
        instance = bentoml.get_current_service()
    except BentoMLException:
        return None
    return getattr(instance, "startup", None)


#: The BentoML service ``@bentoml.service`` made of the class (``bentoml`` is untyped, so a
#: type checker sees the class).
_SERVICE: Any = CustomerValue

#: What the start-up gate answers for: readiness and the API routes (not the liveness probes,
#: metrics or the docs).
_GATED_PATHS = frozenset({READINESS_PATH, *(api.route for api in _SERVICE.apis.values())})

# Middlewares added first wrap the ones added later (Starlette builds the stack in order).
_SERVICE.add_asgi_middleware(StartupGate)
_SERVICE.add_asgi_middleware(RequestGuard)
