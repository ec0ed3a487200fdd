"""BentoML service: online CLV and churn for the storefront, by customer_id or inline history.

``POST /score`` looks customers up in the materialised feature table (written by
``serving.batch``) or builds their features from inline history with the feature code used by
training and batch, then scores them with :func:`serving.online.answers.score_rows`, the batch
code path (same numbers, segments and reasons).

The model calls of concurrent requests are scored together by adaptive batching
(:mod:`serving.online.batching`); the API key, body bounds and error answers are the HTTP edge's
(:mod:`serving.online.guard`). Requests that only look customers up by id, while batch answers
answer lookups, are answered by :mod:`serving.online.fast_path` (the same bytes, without
BentoML's per-request API machinery; ``CUSTOMER_VALUE_FAST_PATH=off`` turns it off).

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
way. Once serving, a failed reload keeps the loaded state (:mod:`serving.online.reload`). Used as a
plain class or as an in-process ASGI app (tests), the service loads in ``__init__`` and raises.

Inline histories are bounded per request (:data:`MAX_INLINE_CUSTOMERS`,
:data:`MAX_INLINE_ROWS`) so that one caller's feature building costs a fraction of a second
of CPU and cannot hold up everyone else's lookups.

Configuration is infrastructure only, from the environment (:mod:`serving.online.settings`):
``CUSTOMER_VALUE_MODEL_URI`` (default ``models:/customer-value@champion``),
``CUSTOMER_VALUE_FEATURES`` (default ``models/scores/online_features.parquet``),
``CUSTOMER_VALUE_STORE`` (a lookup store instead of the table; default none),
``CUSTOMER_VALUE_LOOKUPS`` (``batch`` or ``model``), ``CUSTOMER_VALUE_RELOAD_SECONDS`` (how
often a new batch run is looked for, default 30; :mod:`serving.online.reload`),
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
import logging
import os
from typing import Any

import anyio
import anyio.to_thread
import bentoml
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError
from starlette.responses import JSONResponse

from serving.lookup_store import StoreUnavailable, StoreView
from serving.online.answers import Pending, finish, prepare
from serving.online.fast_path import FastLookups
from serving.online.guard import BENTOML_REQUEST_LOGGER, CLIENT_ERROR_LOG, RequestGuard
from serving.online.reload import Reloader, Served, freeze_heap, load_served, source_name
from serving.online.schema import (
    CustomerRequest,
    ScoreRequest,
    ScoreResponse,
    store_unavailable,
)
from serving.online.settings import OnlineConfig
from serving.online.startup import (
    CANNOT_START_SIGNAL,
    FAILED,
    LOADING,
    LOADING_RETRY_SECONDS,
    LOADING_WAIT_SECONDS,
    READINESS_PATH,
    READY,
    Startup,
    in_daemon_thread,
    one_line,
    raised_at,
    supervise_startup,
    supervisor_pid,
    tracking_store_label,
)
from training import tracking

logger = logging.getLogger(__name__)

#: Lookup store reads at once per process, each in a worker thread (a store call must not
#: block the event loop: a hung Redis froze /livez); more wait for a thread.
STORE_READERS = 8
#: API processes; each holds its own model, feature table and batcher.
WORKERS = 2
#: No access log line per request: at storefront rates it cost more server CPU than the
#: lookup itself (bench/RESULTS-online.md); request counts and latencies are on /metrics.
#: Turn it on with BENTOML_CONFIG_OPTIONS="services.CustomerValue.logging.access.enabled=true".
ACCESS_LOG = {"access": {"enabled": False}}
#: One OpenMP thread per process: XGBoost's default thread pool makes small predictions several
#: times slower on small machines, and the workers already share the cores.
THREAD_ENVS = [{"name": "OMP_NUM_THREADS", "value": "1"}]


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
        self._supervisor = supervisor_pid()
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
            self._start(*await in_daemon_thread(self._load))
        except Exception as error:
            self._cannot_start(error)

    def _cannot_start(self, error: Exception) -> None:
        """Log why, answer 503 ``failed``, and ask ``bentoml serve`` to stop the server."""
        config = self.config
        context = []
        if config is not None:  # (else the settings are wrong, and the error names the variable)
            context.append(
                f"model {config.model_uri} from the tracking store {tracking_store_label()}, "
                f"{source_name(config)}"
            )
        if (origin := raised_at(error)) is not None:
            context.append(f"raised at {origin}")
        where = f" ({'; '.join(context)})" if context else ""
        self.startup.settle(FAILED, f"{one_line(error)}{where}")
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
        """``answers.prepare`` off the event loop when it reads a store or builds features.

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
# Innermost: lookups by id answered after the gate and the guard, without the API machinery.
_SERVICE.add_asgi_middleware(
    FastLookups, route=_SERVICE.apis["score"].route, service_name=_SERVICE.name
)
