"""A throwaway PostgreSQL server on a free loopback port, for the database input/output tests.

Debian's ``postgresql`` (``make test`` installs it with apt-get). A cluster is made with
``initdb`` in a temp folder and started with ``pg_ctl`` on a free port, listening on 127.0.0.1
only, trusting local connections, with fsync off (nothing here needs to survive a crash);
it is stopped and its folder removed when the block ends. PostgreSQL refuses to run as root,
so under root (the test container) the cluster belongs to the ``postgres`` user and its
commands run through ``runuser``. When it cannot be started the caller gets an error, never a
skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from local_server import free_port

#: The user the cluster runs as when the tests run as root.
SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or did not start."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server.

    Attributes
    ----------
    url : str
        ``postgresql://postgres@127.0.0.1:<port>/postgres`` (SQLAlchemy's psycopg driver).
    folder : Path
        The cluster's data folder (its ``server.log`` is beside it).
    """

    url: str
    folder: Path


def _binaries() -> Path:
    """The folder of initdb and pg_ctl: Debian keeps them out of PATH, by major version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed: apt-get install postgresql (make test does)"
    )


def _major(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


def _run(command: list[str], as_service_user: bool) -> None:
    if as_service_user:
        command = ["runuser", "-u", SERVICE_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A :class:`PostgresServer`, started; stopped and removed when the block ends."""
    binaries = _binaries()
    as_service_user = os.geteuid() == 0
    # Not under pytest's tmp_path: the service user must be able to reach the folder, and
    # root's temp folders are private to root.
    root = Path(tempfile.mkdtemp(prefix="customer-value-pg-"))
    data, log = root / "data", root / "server.log"
    if as_service_user:
        shutil.chown(root, user=SERVICE_USER)
    port = free_port()
    started = False
    try:
        _run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            + ["--no-sync", "-E", "UTF8", "--locale", "C"],
            as_service_user,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log)]
            + ["-w", "-t", "60", "start"],
            as_service_user,
        )
        started = True
        yield PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", data)
    except PostgresUnavailable as err:
        text = log.read_text(errors="replace") if log.exists() else ""
        raise PostgresUnavailable(f"{err}\n{text}") from err
    finally:
        if started:
            _run(
                [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                as_service_user,
            )
        shutil.rmtree(root, ignore_errors=True)
