"""A throwaway ``redis-server`` on a free loopback port: for the Redis lookup store's tests and
the store benchmark.

Debian's ``redis-server`` (``make test`` installs it with apt-get). Nothing is saved to disk
(``--save '' --appendonly no``); the server is stopped when the block ends. When it cannot be
started the caller gets an error, never a skip.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from local_server import free_port


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed or did not start."""


@contextlib.contextmanager
def redis_server(folder: Path, *, timeout: float = 20.0) -> Iterator[str]:
    """Run ``redis-server`` in ``folder`` until the block ends; yields ``redis://...:port/0``."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(
            "redis-server is not installed: apt-get install redis-server (make test does)"
        )
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"redis-{port}.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    command += ["no", "--daemonize", "no", "--dir", str(folder), "--logfile", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RedisUnavailable(f"redis-server exited ({process.returncode}):\n{text}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"redis-server on port {port} did not answer in {timeout}s")
            time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
