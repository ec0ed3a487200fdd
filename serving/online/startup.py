"""Start-up of an API process: load in the background, and stop the server when it cannot.

BentoML 1.4 builds the service instance in each API process's ASGI lifespan, before uvicorn
answers anything (_bentoml_impl/server/app.py: ServiceAppFactory.create_instance), and circus
respawns an API process that exits for as long as the server runs (bentoml/serving.py:
create_watcher, respawn=True outside containers). A model or table that cannot be loaded in
``__init__`` therefore meant an endless restart loop, and a /readyz that took connections (the
socket is the arbiter's) but never answered. So the process answers at once, loads in the
background (:func:`in_daemon_thread`), reports where it stands (:class:`Startup`), and on
failure asks the ``bentoml serve`` process, which runs the deployment hook once before any API
process starts (_bentoml_impl/server/serving.py: server_on_deployment), to stop the server with
a non-zero exit status (:func:`supervise_startup`).
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
from typing import Any, TypeVar

from serving.run_files import store_label
from training import tracking

logger = logging.getLogger(__name__)

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
PROJECT_ROOT = Path(__file__).resolve().parents[2]

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


def supervisor_pid() -> int | None:
    """The ``bentoml serve`` process to signal when this API process cannot load, if any.

    Only our parent, and only when its deployment hook said so: the signal would end a process
    that does not handle it.
    """
    text = os.environ.get(SUPERVISOR_ENV, "")
    if text.isdigit() and int(text) == os.getppid():
        return int(text)
    return None


async def in_daemon_thread(func: Callable[[], T]) -> T:
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


def one_line(error: BaseException) -> str:
    """``error`` as one log line: its type and message, on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def raised_at(error: BaseException) -> str | None:
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


def tracking_store_label() -> str:
    """The tracking store as a log may show it (no credentials)."""
    try:
        return store_label(tracking.tracking_uri())
    except Exception as error:  # only for a message about another failure
        return f"(unknown: {one_line(error)})"
