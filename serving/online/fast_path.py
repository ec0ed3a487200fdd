"""The fast path of ``POST /score``: lookups by id answered without BentoML's API machinery.

Most storefront requests name customers by id only. For them the work is one read of the
lookup store (or the in-memory table) and the batch answers as JSON, yet BentoML's API path
around it (the IO descriptor, pydantic validation of the request and of the answer, the
response model's encoding, the request context) cost several times the read
(bench/RESULTS-online.md). :class:`FastLookups` is the service's innermost ASGI middleware,
after :class:`serving.online.guard.RequestGuard` (API key, body bounds, media type) and the
start-up gate: it answers such a request itself with exactly the bytes the API would send
(same fields in the same order, same numbers, same messages) and hands everything else to
the API unchanged.

What it answers: a body ``{"customers": [{"customer_id": "<id>"}, ...]}`` (1 to
:data:`~serving.online.schema.MAX_CUSTOMERS` items, each with a ``customer_id`` string of at
most :data:`~features.io.MAX_ID_LENGTH` characters that needs no whitespace stripped and no
other key), while the served run's batch answers answer lookups (the store's, or the scores
beside the in-memory table). Anything else falls through to the API as it came: inline
histories, a ``cutoff``, anything malformed or unusual (the API's 400), lookups the model
scores, a store whose run was replaced or retired (the API recovers or answers 503). A store
that cannot answer at all (down, hung: ``unreachable``) is answered here with the API's own
503, so a hung store is not waited for twice.

``CUSTOMER_VALUE_FAST_PATH=off`` turns it off (every request takes the API path); so does
BentoML's CORS, whose middleware is inside this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import bentoml
import orjson
from bentoml.exceptions import BentoMLException

from features.history import format_cutoff
from features.io import MAX_ID_LENGTH
from serving.lookup_store import StoreUnavailable, StoreView, unpack_answer
from serving.online.answers import (
    SOURCE_TABLE,
    STATUS_OK,
    STATUS_UNKNOWN,
    Lookups,
    unknown_error,
)
from serving.online.reload import Reloader, Served
from serving.online.schema import MAX_CUSTOMERS, CustomerResult, store_unavailable
from serving.online.settings import OnlineConfig
from serving.run_files import NUMBER_FIELDS, SCORED_FIELDS, TEXT_FIELDS, BatchAnswers

logger = logging.getLogger(__name__)

#: At most this many customers are read by one read of a :class:`ReadLane` (a request with
#: more is read alone).
LANE_IDS = 1000

#: The fields of one result, in the order the API's response model writes them.
RESULT_FIELDS = tuple(CustomerResult.model_fields)
#: The scored fields as they sit between ``horizon_days`` and ``source`` in a result.
_SCORED = RESULT_FIELDS[4:-2]
if (
    RESULT_FIELDS[:4] != ("customer_id", "status", "cutoff", "horizon_days")
    or RESULT_FIELDS[-2:] != ("source", "error")
    or set(_SCORED) != set(SCORED_FIELDS)
):
    raise ImportError(
        f"serving.online.schema.CustomerResult's fields {RESULT_FIELDS} are not the ones the "
        "fast path writes; update serving.online.fast_path"
    )
_NUMBERS = frozenset(NUMBER_FIELDS)
_TEXTS = frozenset(TEXT_FIELDS)
#: What a stored answer's fields may hold for the response model to take them as they are.
_KINDS = tuple((name, float if name in _NUMBERS else str) for name in _SCORED)
if set(_SCORED) != _NUMBERS | _TEXTS:
    raise ImportError("serving.run_files.SCORED_FIELDS is not NUMBER_FIELDS + TEXT_FIELDS")


def parse_lookups(body: bytes) -> list[str] | None:
    """The customer ids of a lookup-only request body; None for anything else.

    None is "not for the fast path", never an error: the API validates such a body itself.
    An id is taken only as the API would keep it (a string of 1 to ``MAX_ID_LENGTH``
    characters, nothing to strip at either end).
    """
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(request) is not dict or len(request) != 1:
        return None
    customers = request.get("customers")
    if type(customers) is not list or not 0 < len(customers) <= MAX_CUSTOMERS:
        return None
    ids = []
    for item in customers:
        if type(item) is not dict or len(item) != 1:
            return None
        customer_id = item.get("customer_id")
        if (
            type(customer_id) is not str
            or not 0 < len(customer_id) <= MAX_ID_LENGTH
            or not _unstripped(customer_id[0])
            or not _unstripped(customer_id[-1])
        ):
            return None
        ids.append(customer_id)
    return ids


def _unstripped(char: str) -> bool:
    # Python's whitespace includes every character of Unicode's White_Space, which pydantic
    # strips (Rust's str::trim): a character that is not isspace() is never stripped.
    return "!" <= char <= "~" or not char.isspace()


@dataclass(frozen=True)
class Template:
    """What every lookup answer of one served state shares, computed once per state.

    Attributes
    ----------
    served : Served
        The state it was made for.
    head : bytes
        The answer up to its results: ``{"model_name":...,"model_version":...,"run_id":...,
        "results":[``.
    cutoff : str
        The table's cutoff as results write it.
    horizon_days : int
        The served model's horizon.
    """

    served: Served
    head: bytes
    cutoff: str
    horizon_days: int

    @classmethod
    def of(cls, served: Served) -> Template | None:
        """The template of ``served``, or None.

        None when its lookups are not answered from batch answers, or its names are not
        strings the response model keeps as they are.
        """
        table = served.table
        answered = table.answers if isinstance(table, StoreView) else served.answers is not None
        horizon = served.model.spec.horizon_days
        head = {
            "model_name": served.info.get("model_name"),
            "model_version": served.info.get("model_version"),
            "run_id": table.stamp.run_id,
        }
        if (
            not answered
            or type(horizon) is not int
            or any(type(v) is not str for v in head.values())
        ):
            return None
        return cls(
            served, orjson.dumps(head)[:-1] + b',"results":[', format_cutoff(table.cutoff), horizon
        )

    def answer(self, ids: Sequence[str], records: dict[str, dict[str, Any]]) -> bytes | None:
        """The JSON body of the answer: one result per id, in request order.

        None if a record holds a value the response model would not keep as it is (the API
        then answers).
        """
        results = []
        for customer_id in ids:
            record = records.get(customer_id)
            row: dict[str, Any] = {
                "customer_id": customer_id,
                "status": STATUS_OK if record is not None else STATUS_UNKNOWN,
                "cutoff": self.cutoff,
                "horizon_days": self.horizon_days,
            }
            if record is None:
                row.update(dict.fromkeys(_SCORED))
                error: str | None = unknown_error(customer_id, self.cutoff)
            else:
                for name, kind in _KINDS:
                    value = record[name]
                    if value is not None and type(value) is not kind:
                        return None
                    row[name] = value
                error = None
            row["source"] = SOURCE_TABLE
            row["error"] = error
            results.append(orjson.dumps(row))
        return self.head + b",".join(results) + b"]}"


def answer_records(
    table: Lookups, answers: BatchAnswers | None, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The batch answers of the found ``ids`` (one read of a store), by id.

    Raises
    ------
    serving.lookup_store.StoreUnavailable
        The store cannot answer for the run ``table`` serves.
    """
    if isinstance(table, StoreView):
        return {i: unpack_answer(packed) for i, (_, packed) in table.store.fetch(ids).items()}
    assert answers is not None
    positions = table.positions
    return {i: answers.record(row) for i in ids if (row := positions.get(i)) is not None}


def build_answer(template: Template, ids: Sequence[str]) -> bytes | None:
    """Read ``ids``' answers and write the response body (see :meth:`Template.answer`)."""
    served = template.served
    return template.answer(ids, answer_records(served.table, served.answers, ids))


#: What one read of a :class:`ReadLane` answers: a body, None (the API answers), or why the
#: store could not answer.
Outcome = bytes | None | StoreUnavailable


def build_answers(requests: Sequence[tuple[Template, list[str]]]) -> list[Outcome]:
    """The bodies of several requests, with one store read per served state among them."""
    groups: dict[int, tuple[Template, dict[str, None]]] = {}
    for template, ids in requests:
        groups.setdefault(id(template), (template, {}))[1].update(dict.fromkeys(ids))
    records: dict[int, dict[str, dict[str, Any]] | StoreUnavailable] = {}
    for key, (template, wanted) in groups.items():
        served = template.served
        try:
            records[key] = answer_records(served.table, served.answers, list(wanted))
        except StoreUnavailable as error:
            records[key] = error
    outcomes: list[Outcome] = []
    for template, ids in requests:
        found = records[id(template)]
        outcomes.append(
            found if isinstance(found, StoreUnavailable) else template.answer(ids, found)
        )
    return outcomes


class ReadLane:
    """One store read at a time per process, for every lookup waiting: one thread hop for many.

    A store is read in a worker thread (a store call must never block the event loop), and
    handing work to a thread and back costs more CPU than the read itself under load
    (bench/RESULTS-online.md). Lookups that arrive while a read is under way wait for it and
    are read together in the next one (one ``SELECT``, or one Redis round trip), at most
    :data:`LANE_IDS` customers per read; a lookup that finds the lane idle is read at once.
    """

    def __init__(self) -> None:
        self._waiting: list[tuple[Template, list[str], asyncio.Future[Outcome]]] = []
        self._reading = False
        self._task: asyncio.Task[None] | None = None

    async def answer(self, template: Template, ids: list[str], limiter: Any) -> bytes | None:
        """The body for ``ids`` (:meth:`Template.answer`), read with others waiting.

        Raises
        ------
        serving.lookup_store.StoreUnavailable
            The store cannot answer for ``template``'s run.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((template, ids, future))
        if not self._reading:
            self._reading = True
            # Kept: the event loop holds only a weak reference to a task.
            self._task = loop.create_task(self._read(limiter))
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    async def _read(self, limiter: Any) -> None:
        try:
            while self._waiting:
                size, count = 0, 0
                for _, ids, _ in self._waiting:
                    if count and size + len(ids) > LANE_IDS:
                        break
                    size, count = size + len(ids), count + 1
                batch, self._waiting = self._waiting[:count], self._waiting[count:]
                try:
                    outcomes = await anyio.to_thread.run_sync(
                        build_answers, [(t, ids) for t, ids, _ in batch], limiter=limiter
                    )
                except BaseException as error:
                    # Cancelled too (the worker stops): no lookup waits on a read that ended.
                    for *_, future in batch:
                        if not future.done():
                            if isinstance(error, Exception):
                                future.set_exception(error)
                            else:
                                future.cancel()
                    if not isinstance(error, Exception):
                        raise
                    continue
                for (*_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        except BaseException:
            for *_, future in self._waiting:
                if not future.done():
                    future.cancel()
            self._waiting = []
            raise
        finally:
            self._reading = False


class FastLookups:
    """ASGI middleware, innermost of the service's: lookup-only ``POST /score`` answered here.

    Parameters
    ----------
    app : ASGI app
        The rest of the stack (BentoML's router and API).
    route : str
        The API's path.
    service_name : str
        The BentoML service's name (BentoML's ``Server`` header names it).
    """

    def __init__(
        self, app: Any, route: str = "/score", service_name: str = "CustomerValue"
    ) -> None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        self.app = app
        self.route = route
        try:
            fast = OnlineConfig.from_env().fast_path
        except ValueError as error:
            # The service reports a bad setting itself (its start-up gate answers 503
            # "failed"); raising here, while Starlette builds the middleware stack, would
            # turn every request into a bare 500 instead.
            logger.warning("the /score fast path is off: %s", error)
            fast = False
        self.enabled = fast and not BentoMLContainer.http.cors.enabled.get()
        formats = BentoMLContainer.logging_formatting.get()
        self._server = (b"server", f"BentoML Service/{service_name}".encode())
        self._span_format = formats["span_id"]
        self._trace_format = (
            formats["trace_id"] if BentoMLContainer.http.response.trace_id.get() else None
        )
        self._template: Template | None = None
        self._lane = ReadLane()
        self._logged = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer a lookup-only ``POST`` to the API here, pass anything else on (ASGI)."""
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope.get("path") != self.route
            or scope.get("method") != "POST"
        ):
            await self.app(scope, receive, send)
            return
        message = await receive()
        replay = [message]

        async def replayed() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        ids = None
        if message.get("type") == "http.request" and not message.get("more_body", False):
            ids = parse_lookups(message.get("body", b""))
        if ids is None or not await self._answer(ids, scope, replayed, send):
            await self.app(scope, replayed, send)

    async def _answer(self, ids: list[str], scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """Answer ``ids``; False when the API is to answer instead (nothing was sent)."""
        try:
            instance = bentoml.get_current_service()
        except BentoMLException:
            return False
        reloader: Reloader | None = getattr(instance, "reloader", None)
        if reloader is None:
            return False
        try:
            reloader.poke()
            served = reloader.served
            template = self._template
            if template is None or template.served is not served:
                template = self._template = Template.of(served)
            if template is None:
                return False
            unavailable = None
            if not isinstance(served.table, StoreView):
                body = build_answer(template, ids)  # in memory: on the event loop, as the API
            else:
                health = reloader.health
                body = None
                if (refused := health.refused()) is not None:
                    health.failed(refused)
                    unavailable = store_unavailable(refused)
                else:
                    try:
                        body = await self._lane.answer(template, ids, instance._store_reader)
                        health.recovered()
                    except StoreUnavailable as error:
                        if not error.transient:
                            return False  # replaced or retired: the API waits for the reload
                        health.failed(error)
                        unavailable = store_unavailable(error)
        except Exception:
            if not self._logged:
                self._logged = True
                logger.exception("the /score fast path failed; the API answers instead")
            return False
        if unavailable is not None:
            # Sent outside the try: once an answer has started, the API must not start another.
            await self._respond(unavailable, scope, receive, send)
            return True
        if body is None:
            return False
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                    *self._bentoml_headers(),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    def _bentoml_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers BentoML's API adds to every answer (server, request and trace id)."""
        from bentoml._internal.context import trace_context

        headers = [self._server]
        if (request_id := trace_context.request_id) is not None:
            headers.append(
                (b"x-bentoml-request-id", format(request_id, self._span_format).encode())
            )
        if self._trace_format is not None and (trace_id := trace_context.trace_id) is not None:
            headers.append((b"x-bentoml-trace-id", format(trace_id, self._trace_format).encode()))
        return headers

    async def _respond(self, response: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        for name, value in self._bentoml_headers():
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)
