"""Benchmark: the nightly job over consecutive days of a demo store, then the monitor's table.

Generates a demo store, trains a model on the history before the first night (its own
tracking store under ``--work``, so ``models/`` is not touched), then runs
``serving.nightly`` once per day: each night the orders and events files (the same paths,
as a shop's export) hold one more day. At the end it prints the monitor's table of the last
night and checks every run whose horizon has passed: the monitor's Gini, churn AUC, ECE and
revenue error must equal ``training.evaluate.holdout_metrics`` (what ``make backtest``
computes for a model's predictions at a cutoff) of the archived predictions against
``features.build_labels`` at that cutoff. Exit status 1 when one differs.

    python bench/nightly_bench.py --customers 3000 --days 120 --horizon-days 90 \
        --work /tmp/cv/nightly_bench
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cv/nightly_bench"))
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.WARNING)

    from demo.generator import generate
    from features import FeatureSpec, build_labels
    from features.io import validate_orders
    from serving import nightly
    from serving.insight.monitor import judge_runs, readable_track_record
    from serving.insight.run_archive import archived_runs
    from training.config import TrainConfig
    from training.evaluate import holdout_metrics
    from training.train import run as train

    orders, events = generate(customers=args.customers, seed=args.seed)
    end = orders["ordered_at"].max().normalize() + pd.Timedelta(days=1)
    first = end - pd.Timedelta(days=args.days)  # the first night's data end
    data = work / "data"
    data.mkdir(exist_ok=True)
    orders_path, events_path = data / "orders.parquet", data / "service_events.parquet"

    def export(until: pd.Timestamp) -> None:
        """The shop's export as of ``until``: every row before it, at the same paths."""
        orders[orders["ordered_at"] < until].to_parquet(orders_path)
        events[events["occurred_at"] < until].to_parquet(events_path)

    export(first - pd.Timedelta(days=1))
    tick = time.perf_counter()
    trained = train(
        TrainConfig(
            orders=orders_path,
            events=events_path,
            horizon_days=args.horizon_days,
            max_trials=0,
            name="nightly-bench",
            output_dir=work / "train",
        )
    )
    print(f"trained v{trained.version} in {time.perf_counter() - tick:.0f} s", flush=True)

    config = nightly.NightlyConfig(
        orders=orders_path,
        events=events_path,
        model_uri=f"models:/nightly-bench/{trained.version}",
        out=work / "scores" / "scores.parquet",
        runs_dir=work / "runs",
        report_out=work / "scores" / "report.html",
        lock=work / "nightly.lock",
        horizon_days=args.horizon_days,
    )
    night = None
    for day in range(args.days):
        until = first + pd.Timedelta(days=day)
        export(until)
        lines: list[str] = []
        tick = time.perf_counter()
        night = nightly.run(config, echo=lines.append)
        print(
            f"{until - pd.Timedelta(days=1):%Y-%m-%d} {time.perf_counter() - tick:5.1f} s "
            f"{nightly.verdict(night)}; {night.step('monitor').summary}",
            flush=True,
        )
        if night.exit_status not in (0, 4):
            print("\n".join(lines))
            return 1

    final = validate_orders(pd.read_parquet(orders_path), strict=True).frame
    runs = archived_runs(config.runs_dir)
    track = judge_runs(runs, final).set_index("run_id")
    print(readable_track_record(track.reset_index()).to_string(index=False))
    checked = differ = 0
    for run in runs:
        if run.run_id not in track.index or not track.loc[run.run_id, "complete"]:
            continue  # its horizon has not started, or not ended
        row = track.loc[run.run_id]
        answers = run.answers()
        labels = build_labels(
            final, cutoff=run.cutoff, spec=FeatureSpec(horizon_days=run.horizon_days)
        ).loc[answers.index]
        expected = holdout_metrics(labels, answers)
        pairs = {
            "gini": expected["clv_gini"],
            "churn_auc": expected["churn_roc_auc"],
            "churn_ece": expected["churn_ece"],
            "revenue_error_pct": expected["clv_total_error_pct"],
        }
        checked += 1
        for name, value in pairs.items():
            if not math.isclose(row[name], value, rel_tol=1e-9, abs_tol=1e-12):
                differ += 1
                print(f"DIFFER {run.cutoff:%Y-%m-%d} {name}: monitor {row[name]} vs {value}")
    print(
        f"{checked} complete runs checked against holdout_metrics: "
        f"{'all equal' if not differ else f'{differ} figures differ'}"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
