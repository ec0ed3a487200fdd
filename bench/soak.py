"""Soak test: storefront load on a real server for minutes, figures per slice of time.

Starts ``bentoml serve serving.online.service:CustomerValue`` (as ``bench/online_bench.py`` does, or
uses ``--url``), then runs ``wrk`` in back-to-back slices (default: 10 slices of 30 s = 5
minutes, 50 connections, 100 ms think time, one random known customer per request). After
every slice it prints one table row: requests, throughput, p50/p99/max latency, non-200
answers and socket errors, and the resident memory of every server process at that moment,
so a leak or a slow-down shows as a trend down the table, not as one averaged figure.

    make train && make score
    .venv/bin/python bench/soak.py                       # 5 minutes, 50 connections, 100 ms
    .venv/bin/python bench/soak.py --minutes 1 --slice-seconds 10 --think-ms 0

Needs ``wrk`` (``apt-get install wrk``). Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import signal
import sys
from pathlib import Path

import psutil
import pyarrow.parquet as pq
from online_bench import ROOT, BenchConfig, run_wrk, server_env
from online_bench import parse_args as bench_args

# The project root first: tests/ holds folders named like the packages (tests/features).
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from local_server import local_server, wait_ready


def process_memory(pid: int) -> dict[str, float]:
    """Resident MiB of a server's processes now: ``arbiter`` and ``worker N`` by pid order."""
    try:
        root = psutil.Process(pid)
        children = sorted(root.children(recursive=True), key=lambda p: p.pid)
    except psutil.NoSuchProcess:
        return {}
    memory = {"arbiter": root.memory_info().rss / 2**20}
    for number, child in enumerate(children, 1):
        with contextlib.suppress(psutil.Error):
            memory[f"proc {number}"] = child.memory_info().rss / 2**20
    return memory


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, int, float]:
    """The load (online_bench's options) plus the soak's length and slice."""
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--slice-seconds", type=float, default=30.0)
    own, rest = parser.parse_known_args(argv)
    defaults = ["--think-ms", "100", "--concurrency", "50", "--warmup", "0"]
    config = bench_args([*defaults, *rest])
    slices = max(1, round(own.minutes * 60 / own.slice_seconds))
    return config, slices, own.slice_seconds


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print one row per slice, then the totals."""
    config, slices, slice_seconds = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not config.features.exists():
        print(
            f"error: feature table {config.features} not found; run `make score`", file=sys.stderr
        )
        return 2
    ids = [str(i) for i in pq.read_table(config.features, columns=["customer_id"]).column(0)]
    print(
        f"# soak: {slices} x {slice_seconds:g} s, {config.concurrency} connections, think "
        f"{config.think_ms:g} ms, {len(ids):,} customers; {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    failed = 0
    total_requests = 0
    with contextlib.ExitStack() as stack:
        url, pid = config.url, None
        if url is None:
            log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "soak-server.log"
            server = stack.enter_context(
                local_server(
                    env=server_env(config), log_path=log_path, ready_timeout=config.ready_timeout
                )
            )
            url, pid = server.url, server.process.pid
            print(f"# server ready in {server.ready_seconds:.1f} s; log {log_path}")
        else:
            wait_ready(url, config.ready_timeout)
        header_done = False
        for number in range(1, slices + 1):
            figures = run_wrk(url, ids, dataclasses.replace(config), slice_seconds)
            memory = process_memory(pid) if pid else {}
            if not header_done:
                names = " | ".join(f"{name} MiB" for name in memory)
                print(
                    "| slice | requests | req/s | p50 ms | p99 ms | max ms | non-200 | "
                    f"socket errors | {names} |"
                )
                print("|" + "---:|" * (8 + len(memory)))
                header_done = True
            errors = sum(v for k, v in figures["errors"].items() if k != "status")
            bad = int(figures["requests"]) - int(figures["ok"])
            failed += bad + errors
            total_requests += int(figures["requests"])
            cells = " | ".join(f"{value:,.0f}" for value in memory.values())
            print(
                f"| {number} | {int(figures['requests']):,} | {figures['throughput_rps']:,.0f} | "
                f"{figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | {figures['max_ms']:.0f} | "
                f"{bad} | {errors} | {cells} |",
                flush=True,
            )
    print(f"# total: {total_requests:,} requests, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
