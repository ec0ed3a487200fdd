"""Arrow's allocator in the project's commands (features.arrow_memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from features.arrow_memory import POOL_VARIABLE


def _pool_after_the_call(env_value: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    # A fresh interpreter: the default pool is process-wide and PyArrow reads the variable once.
    if env_value is None:
        monkeypatch.delenv(POOL_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(POOL_VARIABLE, env_value)
    code = (
        "from features.arrow_memory import use_system_allocator\n"
        "import pyarrow as pa\n"
        "print(use_system_allocator(), pa.default_memory_pool().backend_name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    returned, in_use = done.stdout.split()
    assert returned == in_use
    return in_use


def test_the_commands_use_the_c_library_allocator(monkeypatch):
    assert _pool_after_the_call(None, monkeypatch) == "system"


def test_a_pool_the_user_chose_is_kept(monkeypatch):
    assert _pool_after_the_call("jemalloc", monkeypatch) == "jemalloc"
