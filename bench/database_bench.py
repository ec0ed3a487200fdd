"""Benchmark: orders read from PostgreSQL and SQLite beside the same rows from Parquet, and a
score table written and swapped in.

Each read runs in a fresh interpreter, so its peak memory (max RSS) is its own. Starts a
throwaway PostgreSQL (tests/postgres_server.py) unless ``--url`` names one.

    python bench/database_bench.py [--rows 1000000] [--scores 200000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent

# Peak memory from VmHWM: ru_maxrss survives fork and exec, so a child would report the
# parent's peak (the benchmark's own frame) whenever that is higher.
READ = """
import json, re, sys, time
from pathlib import Path
from features.run_inputs import load_run_inputs
tick = time.perf_counter()
result = load_run_inputs(sys.argv[1], None).orders
seconds = time.perf_counter() - tick
peak = int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"seconds": seconds, "rows": result.rows_read, "max_rss_mib": peak / 1024}))
"""


def orders_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    """Orders shaped like the demo's: text ids, timestamps, amounts, statuses."""
    rng = np.random.default_rng(seed)
    customers = max(rows // 8, 1)
    return pd.DataFrame(
        {
            "customer_id": ("c" + pd.Series(rng.integers(0, customers, rows)).astype("str")),
            "order_id": ("o" + pd.Series(np.arange(rows)).astype("str")),
            "ordered_at": pd.Timestamp("2022-01-01")
            + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, rows), unit="s"),
            "amount": rng.gamma(2.0, 40.0, rows).round(2),
            "status": rng.choice(["completed", "cancelled", "returned"], rows, p=[0.9, 0.05, 0.05]),
        }
    )


def timed_read(location: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", READ, location],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scores", type=int, default=200_000)
    parser.add_argument("--url", help="a PostgreSQL URL (default: a throwaway server)")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from postgres_server import postgres_server

    from serving.batch.score_tables import score_table, stage_score_table
    from serving.run_files import NUMBER_FIELDS, SCORE_COLUMNS, RunStamp

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(postgres_server()).url
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        frame = orders_frame(args.rows)
        parquet = folder / "orders.parquet"
        frame.to_parquet(parquet, index=False)
        sqlite = f"sqlite:///{folder / 'shop.db'}"
        tick = time.perf_counter()
        for target in (url, sqlite):
            engine = sa.create_engine(target)
            with engine.begin() as connection:
                frame.to_sql("bench_orders", connection, index=False, if_exists="replace")
            engine.dispose()
        seconds = time.perf_counter() - tick
        print(f"loaded {args.rows:,} rows into both databases in {seconds:.0f} s")
        print("| input | rows | seconds | max RSS (MiB) |\n|---|---|---|---|")
        for name, location in (
            ("Parquet file", str(parquet)),
            ("PostgreSQL table", f"{url}?table=bench_orders"),
            ("SQLite table", f"{sqlite}?table=bench_orders"),
        ):
            got = timed_read(location)
            print(f"| {name} | {got['rows']:,} | {got['seconds']:.1f} | {got['max_rss_mib']:.0f} |")

        rng = np.random.default_rng(2)
        scores = pd.DataFrame({"customer_id": [f"c{i}" for i in range(args.scores)]})
        for column in SCORE_COLUMNS[1:]:
            if column in NUMBER_FIELDS:
                scores[column] = rng.random(args.scores)
            elif column == "cutoff":
                scores[column] = pd.Timestamp("2025-01-01")
            elif column == "horizon_days":
                scores[column] = 365
            else:
                scores[column] = "some text"
        print("| score table | rows | write + index (s) | swap (s) |\n|---|---|---|---|")
        for name, target in (("PostgreSQL", url), ("SQLite", sqlite)):
            table = score_table(f"{target}?table=bench_scores")
            stamp = RunStamp("bench", "2025-01-01", "m", "1")
            with stage_score_table(table, stamp) as staged:
                tick = time.perf_counter()
                parts = (scores.iloc[i : i + 50_000] for i in range(0, args.scores, 50_000))
                staged.write(parts)
                wrote = time.perf_counter() - tick
                tick = time.perf_counter()
                staged.publish()
                swapped = time.perf_counter() - tick
            print(f"| {name} | {args.scores:,} | {wrote:.1f} | {swapped:.2f} |")


if __name__ == "__main__":
    main()
