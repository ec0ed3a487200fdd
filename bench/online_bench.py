"""Online scoring benchmark: concurrent single-customer lookups against ``POST /score``.

Needs a registered model and the online feature table it was scored with, e.g. from the
project root::

    make train && make score            # models/mlflow.db + models/scores/*.parquet
    .venv/bin/python bench/online_bench.py

or an explicit store::

    MLFLOW_TRACKING_URI=sqlite:////tmp/svc/mlflow.db .venv/bin/python bench/online_bench.py \\
        --model-uri models:/customer-value/1 --features /tmp/svc/scores/online_features.parquet

Without ``--url`` it starts ``bentoml serve serving.online.service:CustomerValue`` on a free
loopback port, waits for ``/readyz``, samples the server's memory (all its processes) while the load
runs and stops it at the end. With ``--url`` it only sends requests (customer ids still come
from ``--features``).

The load comes from ``wrk`` (``--client wrk``, the default: a C load generator whose CPU cost
is small next to the server's, so the two cores measure the service and not the client; install
it with ``apt-get install wrk``, ``make bench-online`` does) or from a bounded async httpx
client (``--client httpx``: no system package needed, but ~2 ms of client CPU per request on
the same cores). ``--think-ms`` makes each client pause after every answer, like a storefront
worker that renders the rest of its page between two calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
# The local-server helper is test support, not part of the served package.
# The project root first: tests/ holds folders named like the packages (tests/features).
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from local_server import local_server, wait_ready  # noqa: E402

WRK_SCRIPT = Path(__file__).resolve().with_name("wrk_score.lua")
DEFAULT_FEATURES = ROOT / "models" / "scores" / "online_features.parquet"


@dataclass(frozen=True)
class BenchConfig:
    """What to run: target, load shape and bounds."""

    url: str | None
    model_uri: str
    features: Path
    requests: int
    concurrency: int
    warmup: int
    max_seconds: float
    customers_per_request: int
    ready_timeout: float
    api_key: str | None
    seed: int
    workers: int | None
    client: str = "wrk"
    seconds: float = 20.0
    think_ms: float = 0.0
    store: str = ""
    livez: bool = True
    fast_path: str = "on"


@dataclass
class LoadResult:
    """Latencies (seconds) of the measured requests and their status codes."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def server_env(config: BenchConfig) -> dict[str, str]:
    """The environment of the benchmarked server."""
    env = dict(os.environ)
    env["CUSTOMER_VALUE_MODEL_URI"] = config.model_uri
    env["CUSTOMER_VALUE_FEATURES"] = str(config.features)
    if config.store:
        env["CUSTOMER_VALUE_STORE"] = config.store
    if config.api_key:
        env["CUSTOMER_VALUE_API_KEY"] = config.api_key
    env["CUSTOMER_VALUE_FAST_PATH"] = config.fast_path
    if config.workers:
        env["BENTOML_CONFIG_OPTIONS"] = f"services.CustomerValue.workers={config.workers}"
    return env


class RssSampler(threading.Thread):
    """Samples the summed RSS of a process and its children; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_by_process: dict[str, int] = {}
        self.stopped = threading.Event()

    def sample(self) -> None:
        total = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                rss = process.memory_info().rss
                name = f"pid {process.pid}: {' '.join(process.cmdline()[1:4])[:60]}"
            except psutil.Error:
                continue
            total += rss
            self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), rss)
        self.peak_total = max(self.peak_total, total)

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.interval)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the server's processes."""
        total = 0.0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return total
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total


def request_bodies(ids: list[str], config: BenchConfig, count: int) -> list[bytes]:
    """``count`` JSON bodies of ``config.customers_per_request`` random customer ids each."""
    rng = random.Random(config.seed)
    return [
        json.dumps(
            {
                "customers": [
                    {"customer_id": rng.choice(ids)} for _ in range(config.customers_per_request)
                ]
            }
        ).encode()
        for _ in range(count)
    ]


def wrk_command(config: BenchConfig, seconds: float) -> list[str]:
    """``wrk`` with this run's threads, connections and duration (the target comes after)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk is not installed: `apt-get install wrk` (or `make bench-online`), or run with "
            "--client httpx"
        )
    return [
        wrk,
        f"-t{min(2, config.concurrency)}",
        f"-c{config.concurrency}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "30s",
    ]


def run_wrk(url: str, ids: list[str], config: BenchConfig, seconds: float) -> dict[str, Any]:
    """Closed-loop load from ``wrk`` (``config.concurrency`` connections for ``seconds``).

    Returns the figures :func:`summarise` returns, plus the statuses and wrk's error counts.
    """
    command = wrk_command(config, seconds)
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as handle:
        handle.write(b"\n".join(request_bodies(ids, config, 10_000)) + b"\n")
        bodies = handle.name
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command += [
            "-s",
            str(WRK_SCRIPT),
            f"{url}/score",
            "--",
            bodies,
            f"{config.think_ms:g}",
            config.api_key or "",
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(bodies)
    line = next((x for x in output.splitlines() if x.startswith("wrk-json ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    figures = json.loads(line.removeprefix("wrk-json "))
    figures["throughput_rps"] = figures["requests"] / figures["seconds"]
    figures["ok"] = figures["statuses"].get("200", 0)
    figures["client_cpu_s"] = (after.ru_utime + after.ru_stime) - (
        before.ru_utime + before.ru_stime
    )
    return figures


def run_wrk_livez(url: str, config: BenchConfig, seconds: float) -> float:
    """Requests per second of BentoML's own no-op ``GET /livez``, same connections and threads.

    The floor the framework sets on this machine at this moment: ``/score`` is judged as a
    share of it, measured in the same run, so the machine's load cancels out of the ratio.
    """
    command = [*wrk_command(config, seconds), f"{url}/livez"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next((x for x in output.splitlines() if x.startswith("Requests/sec:")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no throughput for /livez:\n{output}")
    return float(line.split(":", 1)[1])


async def run_load(
    url: str, ids: list[str], config: BenchConfig, count: int, max_seconds: float
) -> LoadResult:
    """``count`` requests from ``config.concurrency`` workers, stopping after ``max_seconds``."""
    bodies = request_bodies(ids, config, min(count, 10_000))
    headers = {"content-type": "application/json"}
    if config.api_key:
        headers["x-api-key"] = config.api_key
    result = LoadResult()
    next_request = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        # One client and connection per worker: a single client shared by 50 tasks spends
        # more CPU in its connection pool than the server spends answering.
        nonlocal next_request
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=60, limits=httpx.Limits(max_connections=1)
        ) as client:
            while next_request < count and time.perf_counter() < deadline:
                body = bodies[next_request % len(bodies)]
                next_request += 1
                tick = time.perf_counter()
                try:
                    response = await client.post("/score", content=body)
                    status = str(response.status_code)
                except httpx.HTTPError as err:
                    status = type(err).__name__
                result.latencies.append(time.perf_counter() - tick)
                result.statuses[status] += 1
                if config.think_ms:
                    await asyncio.sleep(config.think_ms / 1000)

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def batch_counts(url: str) -> tuple[float, float] | None:
    """Model batches so far and the rows they held, from the service's Prometheus metrics."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    rows = batches = 0.0
    for line in text.splitlines():
        if line.startswith("customer_value_model_batch_rows_sum"):
            rows += float(line.rsplit(" ", 1)[1])
        elif line.startswith("customer_value_model_batch_rows_count"):
            batches += float(line.rsplit(" ", 1)[1])
    return batches, rows


def summarise(result: LoadResult) -> dict[str, float]:
    """Throughput and latency percentiles in milliseconds."""
    latencies = np.asarray(result.latencies) * 1000.0
    ok = result.statuses.get("200", 0)
    return {
        "requests": float(len(latencies)),
        "ok": float(ok),
        "statuses": dict(result.statuses),
        "seconds": result.seconds,
        "throughput_rps": len(latencies) / result.seconds if result.seconds else 0.0,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p90_ms": float(np.percentile(latencies, 90)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(latencies.max()),
    }


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Build a :class:`BenchConfig` from flags."""
    parser = argparse.ArgumentParser(
        prog="bench/online_bench.py", description="Concurrent /score lookups: latency, RSS."
    )
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument(
        "--model-uri",
        default=os.environ.get("CUSTOMER_VALUE_MODEL_URI", "models:/customer-value@champion"),
    )
    parser.add_argument(
        "--features",
        type=Path,
        default=Path(
            os.environ.get(
                "CUSTOMER_VALUE_FEATURES", ROOT / "models/scores/online_features.parquet"
            )
        ),
        help="online feature table (served, and the source of the customer ids)",
    )
    parser.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk",
        help="load generator: wrk (default; apt-get install wrk) or the async httpx client",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured duration with --client wrk"
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="pause of each client between an answer and its next request (default 0)",
    )
    parser.add_argument(
        "--requests", type=int, default=5000, help="measured requests with --client httpx"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--customers-per-request", type=int, default=1)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--api-key", default=os.environ.get("CUSTOMER_VALUE_API_KEY"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, help="API worker processes (default: the service's own setting)"
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("CUSTOMER_VALUE_STORE", ""),
        help="serve lookups from this lookup store (SQLite file or redis:// URL) instead of "
        "the feature table in each worker's memory",
    )
    parser.add_argument(
        "--no-livez",
        dest="livez",
        action="store_false",
        help="skip the same-run /livez measurement (with --client wrk)",
    )
    parser.add_argument(
        "--fast-path",
        choices=("on", "off"),
        default="on",
        help="CUSTOMER_VALUE_FAST_PATH of the started server: lookups by id answered without "
        "BentoML's API machinery (on, the default) or every request through the API (off)",
    )
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "customers_per_request"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    return BenchConfig(
        url=args.url,
        model_uri=args.model_uri,
        features=Path(args.features),
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        max_seconds=args.max_seconds,
        customers_per_request=args.customers_per_request,
        ready_timeout=args.ready_timeout,
        api_key=args.api_key,
        seed=args.seed,
        workers=args.workers,
        client=args.client,
        seconds=args.seconds,
        think_ms=args.think_ms,
        store=args.store,
        livez=args.livez,
        fast_path=args.fast_path,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    config = parse_args(argv)
    # A SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so the server is stopped on the way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not config.features.exists():
        print(
            f"error: feature table {config.features} not found; run `make train && make score` "
            "or pass --features",
            file=sys.stderr,
        )
        return 2
    ids = [str(i) for i in pq.read_table(config.features, columns=["customer_id"]).column(0)]
    # The machine is often shared: every figure comes with the load it was measured under.
    print(f"load average (1, 5, 15 min) at the start: {_load()}")
    with contextlib.ExitStack() as stack:
        sampler = None
        url = config.url
        if url is None:
            log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "online-bench-server.log"
            server = stack.enter_context(
                local_server(
                    env=server_env(config), log_path=log_path, ready_timeout=config.ready_timeout
                )
            )
            url = server.url
            print(
                f"server ready in {server.ready_seconds:.1f}s at {url} ({len(ids):,} customers "
                "in the table)"
            )
            sampler = RssSampler(server.process.pid)
            sampler.start()
            stack.callback(sampler.join)
            stack.callback(sampler.stopped.set)
        else:
            wait_ready(url, config.ready_timeout)
        if config.warmup:
            asyncio.run(run_load(url, ids, config, config.warmup, config.max_seconds))
        before = batch_counts(url)
        server_cpu = sampler.cpu_seconds() if sampler else None
        livez = None
        if config.client == "wrk":
            figures = run_wrk(url, ids, config, config.seconds)
            client_cpu = figures["client_cpu_s"]
            if config.livez:
                livez = run_wrk_livez(url, config, config.seconds)
        else:
            client_cpu = time.process_time()
            result = asyncio.run(run_load(url, ids, config, config.requests, config.max_seconds))
            client_cpu = time.process_time() - client_cpu
            figures = summarise(result)
        if sampler is not None:
            server_cpu = sampler.cpu_seconds() - server_cpu
        after = batch_counts(url)

    print(f"load average (1, 5, 15 min) at the end: {_load()}")
    if config.url is None:
        print(f"fast path: {config.fast_path} (CUSTOMER_VALUE_FAST_PATH of the started server)")
    print(
        f"{config.client}: {int(figures['requests']):,} requests ({config.customers_per_request} "
        f"customer each, {config.concurrency} concurrent clients, think time "
        f"{config.think_ms:g} ms) in {figures['seconds']:.1f}s: "
        f"{figures['throughput_rps']:,.0f} req/s; statuses {figures['statuses']}"
    )
    print(
        "latency ms: p50 {p50_ms:.1f}  p90 {p90_ms:.1f}  p99 {p99_ms:.1f}  max {max_ms:.1f}".format(
            **figures
        )
    )
    if livez is not None:
        print(
            f"GET /livez (BentoML's no-op), same connections, right after: {livez:,.0f} req/s; "
            f"/score is {figures['throughput_rps'] / livez:.0%} of it"
        )
    if before is not None and after is not None and after[0] > before[0]:
        batches, rows = after[0] - before[0], after[1] - before[1]
        print(f"model batches: {batches:,.0f}, mean {rows / batches:.1f} rows per batch")
    per_request = 1000.0 / max(figures["requests"], 1)
    cpu = f"CPU ms per request: client {client_cpu * per_request:.2f}"
    if server_cpu is not None:
        cpu += f", server {server_cpu * per_request:.2f}"
    print(cpu)
    if sampler is not None:
        print(f"peak RSS of the server (all processes): {sampler.peak_total / 2**20:,.0f} MiB")
        for name, rss in sorted(sampler.peak_by_process.items(), key=lambda kv: -kv[1]):
            print(f"  {rss / 2**20:7,.0f} MiB  {name}")
    return 0 if figures["ok"] == figures["requests"] else 1


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
