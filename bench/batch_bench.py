"""Benchmark: batch scoring - the predict step, the cost of reasons, and the whole 1M-customer run.

Needs a registered model (``make train``) and the 1M-customer bench data that
``bench/features_bench.py`` generates under data/bench/1000000.

    python bench/batch_bench.py [--model-uri models:/customer-value@champion] [--customers 1000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default="models:/customer-value@champion")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=Path("data/bench"))
    parser.add_argument("--exact-sample", type=int, default=2_000)
    parser.add_argument("--predict-runs", type=int, default=5)
    args = parser.parse_args()

    from features import build_features
    from serving.batch.base_scoring import BatchConfig, run
    from serving.scoring import score_frame
    from training import tracking

    tracking.configure(read_only=True)
    model = tracking.load_model(args.model_uri)
    folder = args.cache / str(args.customers)
    orders = pd.read_parquet(folder / "orders.parquet")
    events = pd.read_parquet(folder / "service_events.parquet")
    cutoff = orders["ordered_at"].max().normalize() + pd.Timedelta(days=1)
    features = build_features(orders, events, cutoff=cutoff, spec=model.spec)
    X = features[model.feature_names_in_]
    n = len(X)
    print(
        f"model {args.model_uri}: {model.clv_model_.get_booster().num_boosted_rounds()} CLV "
        f"trees, {model.churn_model_.get_booster().num_boosted_rounds()} churn trees, "
        f"max_depth {model.params.max_depth}; {n:,} customers at {cutoff.date()}\n"
    )

    rows = []
    runs = []
    for _ in range(args.predict_runs):
        tick = time.perf_counter()
        model.predict(X)
        runs.append(time.perf_counter() - tick)
    print(
        f"predict, {len(runs)} runs: "
        + ", ".join(f"{n / seconds:,.0f}" for seconds in runs)
        + " customers/s (the median is in the table)\n"
    )
    rows.append((f"predict (clv + p_churn), median of {len(runs)}", n, float(np.median(runs))))
    tick = time.perf_counter()
    model.contributions(X, approximate=True)
    rows.append(("contributions, approximate (both models)", n, time.perf_counter() - tick))
    sample = X.iloc[: args.exact_sample]
    tick = time.perf_counter()
    model.contributions(sample, approximate=False)
    rows.append(
        ("contributions, exact TreeSHAP (both models)", len(sample), time.perf_counter() - tick)
    )
    tick = time.perf_counter()
    score_frame(model, features.iloc[:200_000])
    rows.append(
        ("score_frame: predict + reasons text", min(n, 200_000), time.perf_counter() - tick)
    )
    print("| step | customers | seconds | customers/s | µs per customer |")
    print("|---|---:|---:|---:|---:|")
    for name, count, secs in rows:
        print(
            f"| {name} | {count:,} | {secs:.2f} | {count / secs:,.0f} | {secs / count * 1e6:.1f} |"
        )
    del features, X

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.parquet"
        config = BatchConfig(
            orders=folder / "orders.parquet",
            events=folder / "service_events.parquet",
            out=out,
            features_out=Path(tmp) / "online_features.parquet",
            model_uri=args.model_uri,
        )
        print()
        for mode in ("approximate", "none"):
            tick = time.perf_counter()
            summary = run(replace(config, reasons=mode))
            wall = time.perf_counter() - tick
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items())
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(
                f"whole batch (`serving.batch.base_scoring.run`, reasons={mode}): "
                f"{summary.scored:,} customers scored in {wall:.1f}s "
                f"({summary.scored / wall:,.0f} customers/s); stages: {stages}; "
                f"peak RSS of this process so far {peak:.2f} GiB"
            )


if __name__ == "__main__":
    main()
