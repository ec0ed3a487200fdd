"""Start-up: a service that cannot load exits; one that is loading says so.

The server tests run ``bentoml serve`` in a subprocess, as ``make serve`` runs it. A missing
or unreadable feature table, an unregistered model or a tracking store without the model must
stop the server with a non-zero exit status and one clear message, instead of BentoML
restarting its workers forever (thousands of log lines a minute, a ``/readyz`` that never
answers). The start-up gate (readiness and the API while loading) is also tested in-process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from local_server import (
    PROJECT_ROOT,
    SERVICE,
    ServerFailed,
    free_port,
    local_server,
    stop,
    wait_for_log,
)

from serving.online import service
from serving.online.service import WORKERS, StartupGate
from serving.online.startup import EXIT_CANNOT_START, FAILED, READY, Startup

API_KEY = "startup-key"
#: Seconds a server that cannot load may take to exit: two processes importing the stack on a
#: small shared machine take ~30 s. A restart loop never exits.
EXIT_WITHIN = 120.0
#: Lines a failed start may print: BentoML's start-up lines, one error per worker, the stop.
#: A restart loop prints a traceback of ~30 lines per attempt.
MAX_LINES = 30


@contextmanager
def serving(
    env: dict[str, str], log_path: Path, target: str = SERVICE
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``bentoml serve <target>`` on a free port, not waiting for it; stopped on exit."""
    port = free_port()
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() signals the group
        )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def server_env(served_store, features: Path, home: Path, **extra: str) -> dict[str, str]:
    """The server's whole environment: the test store, the table, an API key."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": served_store.tracking_uri,
        "CUSTOMER_VALUE_MODEL_URI": served_store.model_uri,
        "CUSTOMER_VALUE_FEATURES": str(features),
        "CUSTOMER_VALUE_API_KEY": API_KEY,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        **extra,
    }


def _missing_table(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    missing = tmp_path / "no-such-dir" / "online_features.parquet"
    return {"CUSTOMER_VALUE_FEATURES": str(missing)}, [str(missing), "does not exist"]


def _random_bytes_table(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    junk = tmp_path / "online_features.parquet"
    junk.write_bytes(os.urandom(64 * 1024))
    return {"CUSTOMER_VALUE_FEATURES": str(junk)}, [str(junk), "Parquet"]


def _random_bytes_store(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    junk = tmp_path / "online_store.sqlite"
    junk.write_bytes(os.urandom(64 * 1024))
    return {"CUSTOMER_VALUE_STORE": str(junk)}, [str(junk.resolve()), "not a readable SQLite"]


def _unregistered_model(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    uri = "models:/no-such-model@champion"
    return {"CUSTOMER_VALUE_MODEL_URI": uri}, [uri, "no-such-model not found"]


def _empty_store_directory(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    return {"MLFLOW_TRACKING_URI": str(empty)}, [str(empty.resolve())]


def _empty_sqlite_file(tmp_path: Path, served_store, features: Path) -> tuple[dict, list[str]]:
    database = tmp_path / "mlflow.db"
    database.touch()
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{database}"}, [str(database.resolve())]


Case = Callable[[Path, object, Path], tuple[dict, list[str]]]


@pytest.mark.server
@pytest.mark.parametrize(
    "case",
    [
        _missing_table,
        _random_bytes_table,
        _random_bytes_store,
        _unregistered_model,
        _empty_store_directory,
        _empty_sqlite_file,
    ],
    ids=[
        "table-missing",
        "table-random-bytes",
        "lookup-store-random-bytes",
        "model-unregistered",
        "store-empty-directory",
        "store-empty-sqlite-file",
    ],
)
def test_a_server_that_cannot_load_exits_non_zero_with_one_message(
    case: Case, served_store, latest_scores, tmp_path
):
    config, _ = latest_scores
    changes, named = case(tmp_path, served_store, config.features_out)
    env = server_env(served_store, config.features_out, tmp_path / "bentoml", **changes)
    log_path = tmp_path / "server.log"
    with serving(env, log_path) as (process, url):
        try:
            code = process.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            code = None
        log = log_path.read_text(errors="replace")
        lines = log.splitlines()
        tail = "\n".join(lines[-40:])
        assert code is not None, f"still running after {EXIT_WITHIN:.0f}s:\n{tail}"
        assert code == EXIT_CANNOT_START, f"exit status {code}:\n{tail}"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/livez", timeout=2)  # nothing left listening
    errors = [line for line in lines if "cannot start: " in line]
    # One message per worker at most (usually one: the others are stopped first), each naming
    # what failed, and no restart loop.
    assert 1 <= len(errors) <= WORKERS, tail
    for fragment in named:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert "Traceback" not in log, tail
    assert len(lines) <= MAX_LINES, tail


#: A service module for the readiness test: the real service, whose load waits for a file.
SLOW_SERVICE = '''
"""The service, with a load that waits until the file in LOAD_GATE exists."""

import os
import time
from pathlib import Path

import serving.online.service as service

_load_served = service.load_served


def _gated_load_served(*args, **kwargs):
    gate = Path(os.environ["LOAD_GATE"])
    while not gate.exists():
        time.sleep(0.05)
    return _load_served(*args, **kwargs)


service.load_served = _gated_load_served
service.LOADING_WAIT_SECONDS = 1.0  # the early request below gets its 503 after 1 s, not 10
CustomerValue = service.CustomerValue
'''


def poll(request: Callable[[], httpx.Response], until: Callable[[httpx.Response], bool], timeout):
    """Call ``request`` until ``until(response)``; the last response (connection errors: wait)."""
    deadline = time.monotonic() + timeout
    response = None
    while time.monotonic() < deadline:
        try:
            response = request()
        except httpx.TransportError:
            response = None
        if response is not None and until(response):
            return response
        time.sleep(0.25)
    raise ServerFailed(f"no expected answer within {timeout:.0f}s; last: {response!r}")


@pytest.mark.server
def test_readyz_answers_503_json_while_loading_and_200_once_loaded(
    served_store, latest_scores, tmp_path
):
    config, scores = latest_scores
    (tmp_path / "slow_service.py").write_text(SLOW_SERVICE)
    gate = tmp_path / "load-now"
    env = server_env(
        served_store,
        config.features_out,
        tmp_path / "bentoml",
        LOAD_GATE=str(gate),
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(PROJECT_ROOT)]),
    )
    body = {"customers": [{"customer_id": scores.index[0]}]}
    headers = {"X-API-Key": API_KEY}
    with serving(env, tmp_path / "server.log", target="slow_service:CustomerValue") as (
        process,
        url,
    ):
        try:
            loading = poll(lambda: httpx.get(f"{url}/readyz", timeout=5), lambda r: True, 120)
            assert loading.status_code == 503, loading.text
            assert loading.headers["content-type"] == "application/json"
            assert loading.json()["status"] == "loading"
            assert "loading its model and feature table" in loading.json()["error"]
            assert httpx.get(f"{url}/livez", timeout=5).status_code == 200  # alive, not ready
            early = httpx.post(f"{url}/score", json=body, headers=headers, timeout=5)
            assert early.status_code == 503, early.text
            assert early.json()["status"] == "loading"
            assert early.headers["retry-after"]
            assert process.poll() is None
        finally:
            gate.touch()  # else a worker whose load waits could outlive the test
        ready = poll(
            lambda: httpx.get(f"{url}/readyz", timeout=5), lambda r: r.status_code != 503, 60
        )
        assert ready.status_code == 200, ready.text
        # Every worker loads on its own; ask until one that has loaded answers.
        answer = poll(
            lambda: httpx.post(f"{url}/score", json=body, headers=headers, timeout=30),
            lambda r: r.status_code != 503,
            60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["status"] == "ok"


@pytest.mark.server
def test_a_failed_reload_keeps_the_server_serving(served_store, latest_scores, tmp_path):
    # Only a process that never loaded stops the server: once serving, a batch run's table that
    # cannot be read is logged and the loaded one keeps answering (serving.online.reload).
    config, scores = latest_scores
    served = tmp_path / "served"
    served.mkdir()
    for source in (config.features_out, config.out):
        shutil.copyfile(source, served / source.name)
    table = served / config.features_out.name
    env = server_env(served_store, table, tmp_path / "bentoml", CUSTOMER_VALUE_RELOAD_SECONDS="0.2")
    body = {"customers": [{"customer_id": scores.index[0]}]}
    cutoff = str(scores["cutoff"].iloc[0].date())
    with local_server(env=env, log_path=tmp_path / "server.log") as server:
        # /readyz is up once one worker has loaded; a worker still loading when the file breaks
        # has never served and rightly stops the server. Break it once every worker serves.
        wait_for_log(server.log_path, f"from {table};", WORKERS, timeout=90)
        staged = served / ".staged"
        staged.write_bytes(os.urandom(64 * 1024))
        os.replace(staged, table)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # New connections, so that both workers see the new file.
            response = httpx.post(
                f"{server.url}/score", json=body, headers={"X-API-Key": API_KEY}, timeout=30
            )
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["cutoff"] == cutoff
            time.sleep(0.1)
        assert server.process.poll() is None
    log = server.log_path.read_text(errors="replace")
    assert "cannot start" not in log
    # The reload was tried, failed and said so (naming the table).
    assert any("[ERROR]" in line and str(table) in line for line in log.splitlines()), log


# -- the start-up gate, in-process --------------------------------------------------------------


class Instance:
    """What the gate needs of the service instance: its start-up state."""

    def __init__(self) -> None:
        self.startup = Startup()


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch) -> Instance:
    """A service instance that BentoML reports as the current one."""
    current = Instance()
    monkeypatch.setattr(service.bentoml, "get_current_service", lambda: current)
    return current


async def through_gate(path: str, method: str = "GET") -> tuple[int, dict, bytes, bool]:
    """A request through :class:`StartupGate`: status, headers, body, whether the app ran."""
    reached = False

    async def app(scope: dict, receive, send) -> None:
        nonlocal reached
        reached = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    await StartupGate(app)(scope, receive, send)
    start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, body, reached


def test_gate_readiness_is_503_json_while_loading_and_open_once_ready(instance):
    status, headers, body, reached = asyncio.run(through_gate("/readyz"))
    assert (status, reached) == (503, False)
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == str(service.LOADING_RETRY_SECONDS)
    assert b'"status":"loading"' in body
    # The liveness probe and the docs are not the gate's.
    assert asyncio.run(through_gate("/livez"))[3]
    instance.startup.settle(READY)
    assert asyncio.run(through_gate("/readyz"))[::3] == (200, True)


def test_gate_holds_an_api_request_until_the_load_ends(instance):
    async def scenario() -> tuple[int, dict, bytes, bool]:
        request = asyncio.create_task(through_gate("/score", "POST"))
        await asyncio.sleep(0.2)
        assert not request.done()  # held, not answered 503
        instance.startup.settle(READY)
        return await request

    status, _, body, reached = asyncio.run(scenario())
    assert (status, body, reached) == (200, b"app", True)


def test_gate_answers_503_after_the_wait_or_when_failed(instance, monkeypatch):
    monkeypatch.setattr(service, "LOADING_WAIT_SECONDS", 0.05)
    status, headers, body, reached = asyncio.run(through_gate("/score", "POST"))
    assert (status, reached) == (503, False)
    assert "retry-after" in headers and b'"status":"loading"' in body
    instance.startup.settle(FAILED, "FileNotFoundError: no table")
    status, headers, body, reached = asyncio.run(through_gate("/score", "POST"))
    assert (status, reached) == (503, False)
    assert "retry-after" not in headers  # retrying will not help: the server is stopping
    assert b'"status":"failed"' in body
    assert b"no table" not in body  # the reason is in the server log, not on an open probe
