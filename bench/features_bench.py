"""Benchmark: build features at one cutoff for 50k, 200k and 1M synthetic customers.

Each size runs in its own process so peak RSS is that size's alone. Prints a Markdown table
(rows/s = input order rows processed per second) to paste into bench/RESULTS.md.

    python bench/features_bench.py [--sizes 50000 200000 1000000] [--cache data/bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CUTOFF = "2025-07-01"


def run_one(customers: int, cache: Path) -> dict[str, float]:
    """Generate (or reuse) data for ``customers`` and time ``build_features`` at CUTOFF."""
    import pandas as pd

    from demo.generator import generate
    from features import FeatureSpec, build_features

    folder = cache / f"{customers}"
    if not (folder / "orders.parquet").exists():
        orders, events = generate(customers=customers, seed=7)
        folder.mkdir(parents=True, exist_ok=True)
        orders.to_parquet(folder / "orders.parquet")
        events.to_parquet(folder / "service_events.parquet")
        del orders, events
    orders = pd.read_parquet(folder / "orders.parquet")
    events = pd.read_parquet(folder / "service_events.parquet")
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    features = build_features(orders, events, cutoff=CUTOFF, spec=FeatureSpec())
    seconds = time.perf_counter() - start
    return {
        "customers_generated": customers,
        "customers_scored": len(features),
        "order_rows": len(orders),
        "event_rows": len(events),
        "seconds": seconds,
        "rows_per_s": (len(orders) + len(events)) / seconds,
        "customers_per_s": len(features) / seconds,
        "peak_rss_gib_after_load": rss_loaded,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--cache", type=Path, default=Path("data/bench"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.cache)))
        return
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"python {platform.python_version()}, cutoff {CUTOFF}\n"
    )
    print(
        "| customers | order rows | event rows | features at cutoff (s) | rows/s | "
        "customers/s | peak RSS (GiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--cache", str(args.cache)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {size:,} | {r['order_rows']:,} | {r['event_rows']:,} | {r['seconds']:.1f} | "
            f"{r['rows_per_s']:,.0f} | {r['customers_per_s']:,.0f} | "
            f"{r['peak_rss_gib']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
