"""The service (or a built Bento) as a local ``bentoml serve`` process: start, wait, stop.

For whoever needs a real server on this machine for a while and must not leave it running:
the online benchmark (``bench/online_bench.py``) and the end-to-end tests. The server runs in
its own process group, so stopping it stops BentoML's workers too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: What ``make serve`` serves.
SERVICE = "serving.online.service:CustomerValue"


class ServerFailed(RuntimeError):
    """The server process exited, or never became ready; the message ends with its log."""


@dataclass(frozen=True)
class LocalServer:
    """A running server: where to reach it and what it is.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>``.
    process : subprocess.Popen
        The ``bentoml serve`` process (the leader of its process group).
    ready_seconds : float
        From start until ``/readyz`` answered 200.
    log_path : pathlib.Path
        Its stdout and stderr.
    """

    url: str
    process: subprocess.Popen[bytes]
    ready_seconds: float
    log_path: Path


def store_server_env(
    tracking_uri: str, model_uri: str, home: Path, store: str, api_key: str, **extra: str
) -> dict[str, str]:
    """A BentoML server's environment that answers every lookup from the lookup store ``store``.

    No feature table is where the server looks, so a lookup the store cannot answer fails
    instead of being answered from memory; ``extra`` adds or overrides variables.
    """
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "CUSTOMER_VALUE_MODEL_URI": model_uri,
        "CUSTOMER_VALUE_FEATURES": str(home / "no-table.parquet"),
        "CUSTOMER_VALUE_STORE": store,
        "CUSTOMER_VALUE_API_KEY": api_key,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        **extra,
    }


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url/readyz`` until it answers 200; return the seconds it took.

    Raises
    ------
    ServerFailed
        ``process`` exited first, or ``timeout`` seconds passed.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process is not None and process.poll() is not None:
            raise ServerFailed(f"server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.5)
    raise ServerFailed(f"{url}/readyz did not answer 200 within {timeout:.0f}s")


def wait_for_log(log_path: Path, text: str, count: int, timeout: float) -> None:
    """Wait until ``count`` lines of the server's log hold ``text``.

    ``/readyz`` answers 200 as soon as ONE worker has loaded; a test that needs every worker
    loaded (say, before it breaks the served file) waits for each worker's line instead.

    Raises
    ------
    ServerFailed
        Fewer lines after ``timeout`` seconds; the message says how many were seen.
    """
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        lines = log_path.read_text(errors="replace").splitlines()
        seen = sum(text in line for line in lines)
        if seen >= count:
            return
        time.sleep(0.25)
    raise ServerFailed(
        f"{seen} of {count} lines holding {text!r} in {log_path} after {timeout:.0f}s"
    )


#: What each worker logs once it has loaded its model and run (serving/online/reload.py).
LOADED_LINE = " customers at cutoff "
_WORKERS_OPTION = re.compile(r"services\.CustomerValue\.workers=(\d+)")


def worker_count(env: Mapping[str, str] | None) -> int:
    """The server's workers: as its environment sets them, or the service's count."""
    found = _WORKERS_OPTION.search(
        (env if env is not None else os.environ).get("BENTOML_CONFIG_OPTIONS", "")
    )
    if found:
        return int(found[1])
    from serving.online.service import WORKERS

    return WORKERS


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the server's process group; SIGKILL what is left after ``grace`` seconds.

    The whole group, also when the ``bentoml serve`` process itself has already exited: its
    workers may outlive it. Circus starts each worker in a session of its own, out of the
    group's reach, so the workers found before the SIGTERM are killed one by one too.
    """
    try:
        workers = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    for worker in workers:
        with contextlib.suppress(psutil.Error):
            worker.kill()
    process.wait(timeout=10)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


@contextlib.contextmanager
def local_server(
    target: str = SERVICE,
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path,
    cwd: Path = PROJECT_ROOT,
    ready_timeout: float = 90.0,
) -> Iterator[LocalServer]:
    """``bentoml serve <target>`` on a free loopback port, ready on entry, stopped on exit.

    Parameters
    ----------
    target : str
        A service import path (default :data:`SERVICE`) or a Bento tag
        (``customer-value:latest``, found under ``BENTOML_HOME``).
    env : mapping, optional
        The server's whole environment (default: this process's).
    log_path : pathlib.Path
        Where its output goes; quoted in :class:`ServerFailed`.
    cwd : pathlib.Path
        Its working directory (the project root by default).
    ready_timeout : float
        Seconds to wait for ``/readyz``.

    On entry every worker has also logged its loaded model and run (:func:`worker_count` of
    them): ``/readyz`` answers 200 once ONE has, and a request reaching a worker still
    loading waits for it or gets 503 "loading" (a test that breaks the store right after
    start saw that). That wait ends at ``ready_timeout`` without failing: a test that needs
    every worker asserts it.
    """
    port = free_port()
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env if env is not None else os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the workers
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            ready = wait_ready(url, ready_timeout, process)
        except ServerFailed as error:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
            raise ServerFailed(f"{error}; last lines of {log_path}:\n{tail}") from None
        with contextlib.suppress(ServerFailed):
            wait_for_log(log_path, LOADED_LINE, worker_count(env), timeout=ready_timeout)
        yield LocalServer(url=url, process=process, ready_seconds=ready, log_path=log_path)
    finally:
        stop(process)
