"""A throwaway ``redis-server`` on a free loopback port: for the Redis lookup store's tests and
the store benchmark; one that a test or the soak can pause (SIGSTOP), stop and restart empty.

Debian's ``redis-server`` (``make test`` installs it with apt-get). Nothing is saved to disk
(``--save '' --appendonly no``); the server is stopped when the block ends. When it cannot be
started the caller gets an error, never a skip.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from local_server import free_port


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed or did not start."""


class RedisProcess:
    """A ``redis-server`` on a fixed loopback port that a test can pause, stop and restart.

    Attributes
    ----------
    url : str
        ``redis://127.0.0.1:<port>/0``.
    """

    def __init__(self, folder: Path, port: int, timeout: float) -> None:
        self.folder = folder
        self.port = port
        self.timeout = timeout
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = folder / f"redis-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (empty: nothing is persisted) and wait until it answers PING."""
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed: apt-get install redis-server (make test does)"
            )
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)]
        command += ["--logfile", str(self.log)]
        self.process = process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                if process.poll() is not None:
                    text = self.log.read_text(errors="replace") if self.log.exists() else ""
                    raise RedisUnavailable(f"redis-server exited ({process.returncode}):\n{text}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RedisUnavailable(
                        f"redis-server on port {self.port} did not answer in {self.timeout}s"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it (its data is lost: it persists nothing)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop it and start it again on the same port, empty."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: it keeps its connections but answers nothing (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_process(folder: Path, *, timeout: float = 20.0) -> Iterator[RedisProcess]:
    """A :class:`RedisProcess` on a free port, started; stopped when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisProcess(folder, free_port(), timeout)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_server(folder: Path, *, timeout: float = 20.0) -> Iterator[str]:
    """Run ``redis-server`` in ``folder`` until the block ends; yields ``redis://...:port/0``."""
    with redis_process(folder, timeout=timeout) as server:
        yield server.url
