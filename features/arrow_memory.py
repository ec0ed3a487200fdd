"""Which allocator Arrow's tables use in the project's commands and their worker processes."""

from __future__ import annotations

import os

import pyarrow as pa

#: Arrow's own switch; when set, it is the user's choice and is kept.
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator() -> str:
    """Make the C library's allocator Arrow's default pool, unless ``POOL_VARIABLE`` is set.

    PyArrow's default (mimalloc) takes its memory from the system in 2 MiB huge pages and gives
    freed ones back; a load that makes and drops gigabytes of temporaries then faults in and
    clears whole huge pages again and again. Reading and checking the 1M-customer benchmark's
    inputs took 6.3-8.4 s with it (9.2 s of system time) and 4.5 s with the C library's
    allocator (2.5 s); jemalloc took 4.3-5.4 s (bench/RESULTS.md).

    Returns
    -------
    str
        The pool in use (``"system"``, or the one the variable chose).
    """
    if not os.environ.get(POOL_VARIABLE):
        pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name
