"""Benchmark: batch scoring with pandas (serving.batch) and with Spark (serving.spark) side by side.

Each run is the real command in its own process, on the synthetic store with service events,
at the latest cutoff, with the same model. Wall time is the whole command (start-up, reading,
validation, features, scoring, writing); peak memory is the largest sum of RSS over the
command's process tree (for Spark: the driver's Python and JVM and the Python workers),
sampled every 0.2 s.

    python bench/spark_bench.py [--sizes 200000 1000000] [--master local[2]]

Data is generated once under data/bench/<customers> (as bench/features_bench.py does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq


def ensure_data(folder: Path, customers: int) -> tuple[Path, Path]:
    orders, events = folder / "orders.parquet", folder / "service_events.parquet"
    if not orders.exists():
        from demo.generator import generate, write_tables

        print(f"generating {customers:,} customers into {folder} ...", flush=True)
        write_tables(*generate(customers=customers, seed=7), folder)
    return orders, events


def measure(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (GiB) of the process tree, and the command's last lines."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    tick = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        parent = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)
        seconds = time.perf_counter() - tick
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{text[-3000:]}")
    tail = "\n".join(line for line in text.splitlines() if line.startswith(("scored", "seconds")))
    return seconds, peak / 2**30, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--model-uri", default="models:/customer-value@champion")
    parser.add_argument("--cache", type=Path, default=Path("data/bench"))
    args = parser.parse_args()

    rows = []
    for customers in args.sizes:
        orders, events = ensure_data(args.cache / str(customers), customers)
        order_rows = pq.ParquetFile(orders).metadata.num_rows
        work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
        common = ["--orders", str(orders), "--events", str(events), "--model-uri", args.model_uri]
        runs = {
            "pandas (serving.batch)": [
                sys.executable,
                "-m",
                "serving.batch",
                *common,
                "--out",
                str(work / "pandas" / "scores.parquet"),
                "--features-out",
                "none",
            ],
            f"Spark {args.master} (serving.spark)": [
                sys.executable,
                "-m",
                "serving.spark",
                *common,
                "--master",
                args.master,
                "--out",
                str(work / "spark" / "scores"),
            ],
        }
        for name, command in runs.items():
            seconds, peak, tail = measure(command)
            print(f"{customers:,} customers, {name}: {seconds:.1f} s, peak {peak:.2f} GiB")
            print("  " + tail.replace("\n", "\n  "), flush=True)
            rows.append((customers, order_rows, name, seconds, peak))
        shutil.rmtree(work, ignore_errors=True)

    print(
        "\n| customers | order rows | run | wall (s) | customers/s | peak RSS of the tree (GiB) |"
    )
    print("|---:|---:|---|---:|---:|---:|")
    for customers, order_rows, name, seconds, peak in rows:
        print(
            f"| {customers:,} | {order_rows:,} | {name} | {seconds:.1f} | "
            f"{customers / seconds:,.0f} | {peak:.2f} |"
        )


if __name__ == "__main__":
    main()
