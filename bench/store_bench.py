"""Lookup store benchmark: a 10M-customer store (embedded SQLite and Redis) against the
in-memory Parquet table, for write time, size, start-up, memory and storefront latency.

The customers are the demo's batch run (``models/scores/scores.parquet`` and
``online_features.parquet`` of ``make score``, 50k customers) replicated under new customer ids
(``R0001-C0000001``, ...): the point is the store, not the model, so every replica has the
same features and answers as its original. Needs ``make train && make score`` first (the
served model must be the one that scored), ``redis-server`` and ``wrk``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/store_bench.py \\
        --customers 10000000 --parquet-customers 1000000 --seconds 60 --work /tmp/store-bench

For each of: the Parquet table at ``--parquet-customers`` (loaded into every worker), the
SQLite store and the Redis store at ``--customers``, it starts ``bentoml serve`` (2 workers),
records the time to ``/readyz`` and each process's RSS, then runs ``wrk`` with 50 connections
pausing 100 ms after each answer (a storefront), each request one random known customer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from local_server import local_server  # noqa: E402
from redis_server import redis_server  # noqa: E402

from serving.lookup_store import write_lookup_store  # noqa: E402
from serving.run_files import SCORED_FIELDS, RunStamp  # noqa: E402

SCORES = ROOT / "models" / "scores" / "scores.parquet"
FEATURES = ROOT / "models" / "scores" / "online_features.parquet"
WRK_SCRIPT = ROOT / "bench" / "wrk_score.lua"


def source() -> tuple[pd.DataFrame, list[str], RunStamp, pa.Table, pa.Table]:
    scores = pq.read_table(SCORES)
    features = pq.read_table(FEATURES)
    names = features.column_names[1:]
    frame = scores.to_pandas()[["customer_id", *SCORED_FIELDS]].merge(
        features.to_pandas(), on="customer_id"
    )
    return frame, names, RunStamp.from_metadata(scores.schema.metadata), scores, features


def replicas(frame: pd.DataFrame, customers: int) -> Iterator[pd.DataFrame]:
    """``customers`` rows: copies of ``frame`` under ids ``R<k>-<id>``, one frame per copy."""
    for k in range(-(-customers // len(frame))):
        part = frame.head(customers - k * len(frame)).copy()
        part["customer_id"] = f"R{k:04d}-" + part["customer_id"].astype(str)
        yield part


def random_ids(frame: pd.DataFrame, customers: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = frame["customer_id"].astype(str).tolist()
    out = []
    for _ in range(count):
        row = rng.randrange(customers)
        out.append(f"R{row // len(ids):04d}-{ids[row % len(ids)]}")
    return out


def write_parquet_run(
    scores: pa.Table, features: pa.Table, customers: int, folder: Path, stamp: RunStamp
) -> None:
    """The Parquet table and scores of a ``customers`` run (replicated), paired by run id."""
    reps = -(-customers // scores.num_rows)

    def grow(table: pa.Table, run_stamp: RunStamp) -> pa.Table:
        parts = []
        ids = pa.array(table.column("customer_id").to_pylist(), pa.string())
        for k in range(reps):
            new_ids = pa.compute.binary_join_element_wise(f"R{k:04d}", ids, "-")
            parts.append(table.set_column(0, "customer_id", new_ids))
        grown = pa.concat_tables(parts).slice(0, customers)
        meta = {**(grown.schema.metadata or {}), **run_stamp.metadata()}
        return grown.replace_schema_metadata(meta)

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(grow(scores, stamp), folder / "scores.parquet")
    pq.write_table(grow(features, replace(stamp, reasons="")), folder / "online_features.parquet")


def processes(pid: int) -> list[dict[str, Any]]:
    out = []
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            cmd = " ".join(process.cmdline())
            out.append(
                {"pid": process.pid, "rss_mib": process.memory_info().rss / 2**20, "cmd": cmd[:90]}
            )
        except psutil.Error:
            continue
    return out


def workers(pid: int) -> list[float]:
    """RSS (MiB) of the API worker processes (the ones that import the service)."""
    return [p["rss_mib"] for p in processes(pid) if "_bentoml_impl.worker" in p["cmd"]]


def run_wrk(url: str, ids: list[str], seconds: float, think_ms: float, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        for customer_id in ids:
            handle.write(json.dumps({"customers": [{"customer_id": customer_id}]}) + "\n")
        bodies = handle.name
    try:
        command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "30s"]
        command += ["-s", str(WRK_SCRIPT), f"{url}/score", "--", bodies, f"{think_ms:g}", ""]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(bodies)
    line = next(x for x in output.splitlines() if x.startswith("wrk-json "))
    figures = json.loads(line.removeprefix("wrk-json "))
    figures["rps"] = figures["requests"] / figures["seconds"]
    return figures


def serve_and_load(
    name: str, env_extra: dict[str, str], ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    env = {
        **os.environ,
        "CUSTOMER_VALUE_RELOAD_SECONDS": "30",
        "BENTOML_DO_NOT_TRACK": "true",
        **env_extra,
    }
    env.pop("CUSTOMER_VALUE_API_KEY", None)
    log = args.work / f"server-{name}.log"
    with local_server(env=env, log_path=log, ready_timeout=600) as server:
        time.sleep(2)  # both workers loaded (readyz answers as soon as one is)
        ready_rss = workers(server.process.pid)
        import httpx

        check = httpx.post(
            f"{server.url}/score",
            json={"customers": [{"customer_id": i} for i in ids[:20]]},
            timeout=30,
        ).json()
        statuses = {r["status"] for r in check["results"]}
        assert statuses == {"ok"}, check  # known customers, answered
        wrk = run_wrk(server.url, ids, args.seconds, args.think_ms, args.connections)
        loaded_rss = workers(server.process.pid)
        tree = processes(server.process.pid)
    result = {
        "name": name,
        "ready_s": server.ready_seconds,
        "worker_rss_ready_mib": ready_rss,
        "worker_rss_after_load_mib": loaded_rss,
        "processes": tree,
        "wrk": wrk,
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/store_bench.py")
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--parquet-customers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think-ms", type=float, default=100)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--bodies", type=int, default=100_000, help="distinct request bodies")
    parser.add_argument("--work", type=Path, default=Path("/tmp/store-bench"))
    parser.add_argument("--only", nargs="*", default=["parquet", "sqlite", "redis"])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'models' / 'mlflow.db'}")
    args.work.mkdir(parents=True, exist_ok=True)
    frame, names, stamp, scores, features = source()
    stamp = replace(stamp, run_id=uuid.uuid4().hex)
    results: dict[str, Any] = {"customers": args.customers, "source_customers": len(frame)}

    if "parquet" in args.only:
        folder = args.work / "parquet"
        tick = time.perf_counter()
        write_parquet_run(scores, features, args.parquet_customers, folder, stamp)
        results["parquet_write_s"] = time.perf_counter() - tick
        ids = random_ids(frame, args.parquet_customers, args.bodies, 1)
        results["parquet"] = serve_and_load(
            "parquet",
            {"CUSTOMER_VALUE_FEATURES": str(folder / "online_features.parquet")},
            ids,
            args,
        )
        shutil.rmtree(folder)

    ids = random_ids(frame, args.customers, args.bodies, 2)
    if "sqlite" in args.only:
        path = args.work / "online_store.sqlite"
        tick = time.perf_counter()
        count = write_lookup_store(path, replicas(frame, args.customers), stamp, names)
        results["sqlite_write_s"] = time.perf_counter() - tick
        results["sqlite_bytes"] = path.stat().st_size
        print(
            f"sqlite: {count:,} customers in {results['sqlite_write_s']:.1f}s, "
            f"{results['sqlite_bytes'] / 2**30:.2f} GiB",
            flush=True,
        )
        results["sqlite"] = serve_and_load("sqlite", {"CUSTOMER_VALUE_STORE": str(path)}, ids, args)
        path.unlink()

    if "redis" in args.only:
        import redis

        with redis_server(args.work / "redis", timeout=30) as url:
            tick = time.perf_counter()
            count = write_lookup_store(url, replicas(frame, args.customers), stamp, names)
            results["redis_write_s"] = time.perf_counter() - tick
            client = redis.Redis.from_url(url)
            info = client.info("memory")
            results["redis_used_memory_bytes"] = info["used_memory"]
            results["redis_rss_bytes"] = info["used_memory_rss"]
            used, rss = info["used_memory"] / 2**30, info["used_memory_rss"] / 2**30
            print(
                f"redis: {count:,} customers in {results['redis_write_s']:.1f}s, used_memory "
                f"{used:.2f} GiB, rss {rss:.2f} GiB",
                flush=True,
            )
            results["redis"] = serve_and_load("redis", {"CUSTOMER_VALUE_STORE": url}, ids, args)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
