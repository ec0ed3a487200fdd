"""Benchmark: issue 25's table in one run: training, batch scoring and the online path.

Runs the project's own commands and benches as child processes on one synthetic store, against
a store of its own under ``--work`` (``models/`` is not touched), and prints one Markdown
table with the machine, the commit and the load average, for bench/RESULTS.md:

1. the demo generator, when ``--work`` has no data yet (``python -m demo``);
2. training, timed by ``bench/train_bench.py`` (wall, peak RSS, CPU, search seconds), with
   ``--time-budget`` when given (then the search's seconds beside the budget);
3. batch scoring of the whole base with reasons (``python -m serving.batch``) under
   ``/usr/bin/time -v``: wall, peak RSS of its largest process, and the peak of the RSS summed
   over it and its worker processes; it writes the lookup store the service reads;
4. ``bench/online_bench.py`` twice against that store: back to back (``/score`` beside
   BentoML's no-op ``/livez`` in the same run, the ratio) and as a storefront (100 ms think
   time: p50 and p99).

    python bench/all.py --customers 1000000 --work /tmp/bench-all [--time-budget 30]
    make bench-all CUSTOMERS=1000000

A 1M run takes most of an hour on 2 cores; ``--customers 20000`` checks the whole chain in a
few minutes. Speed is measured here, never asserted: the figures are printed, not judged.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: The registered model's name in the bench's own MLflow store.
MODEL_NAME = "bench-all"
#: What the figures are read from, in the children's output.
WALL = r"\| wall \| ([\d,]+) s"
PEAK = r"\| peak RSS \| ([\d.]+ GiB)"
CPU = r"\| CPU \(user \+ system\) \| ([^|]+) \|"
THROUGHPUT = r"in [\d.]+s: ([\d,]+) req/s"
LIVEZ = r"right after: ([\d,]+) req/s"
SHARE = r"/score is (\d+%) of it"
P50 = r"p50 ([\d.]+)"
P99 = r"p99 ([\d.]+)"


def _run(
    command: list[str], log: Path, env: dict[str, str], tree: list[int] | None = None
) -> tuple[str, float]:
    """Run ``command`` from the project root, its output to ``log``; text and wall seconds.

    ``tree``: when given, the peak of the summed RSS of the command and all its descendants
    (worker processes), sampled every 0.2 s, is appended to it in bytes.
    """
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while child.poll() is None:
            if tree is not None:
                peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.2)
    if tree is not None:
        tree.append(peak)
    seconds = time.perf_counter() - started
    text = log.read_text()
    if child.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({child.returncode}); {log}:\n{tail}")
    return text, seconds


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:  # a process ended while it was read
        return 0


def _find(pattern: str, text: str, default: str = "?") -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else default


def _peak_gib(text: str) -> str:
    """Peak RSS from ``/usr/bin/time -v`` output, in GiB."""
    kib = _find(r"Maximum resident set size \(kbytes\): (\d+)", text, "")
    return f"{int(kib) / 2**20:.2f} GiB" if kib else "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, required=True, help="data, store, logs")
    parser.add_argument("--horizon-days", type=int, default=365)
    parser.add_argument(
        "--time-budget", type=float, default=0.0, help="the search's budget (0: trials only)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="each online measurement")
    args = parser.parse_args(argv)
    if args.customers <= 0 or args.seconds <= 0 or args.time_budget < 0:
        parser.error("--customers and --seconds must be > 0, --time-budget >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chain and print the table."""
    args = parse_args(argv)
    work = args.work.resolve()
    data = work / "data"
    scores = work / "scores"
    for folder in (data, scores, work / "train"):
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'train' / 'mlflow.db'}")
    python = sys.executable
    load_before = os.getloadavg()
    rows: list[tuple[str, str]] = []

    orders, events = data / "orders.parquet", data / "service_events.parquet"
    if not orders.exists():
        _, seconds = _run(
            [python, "-m", "demo", "--customers", str(args.customers), "--seed", str(args.seed),
             "--out", str(data)],
            work / "data.log",
            env,
        )  # fmt: skip
        rows.append((f"demo data ({args.customers:,} customers)", f"{seconds:,.0f} s"))

    extra = ["--name", MODEL_NAME]
    if args.time_budget:
        extra += ["--time-budget", f"{args.time_budget:g}"]
    report, _ = _run(
        [python, "bench/train_bench.py", "--orders", str(orders), "--events", str(events),
         "--work", str(work / "train"), "--horizon-days", str(args.horizon_days), "--", *extra],
        work / "train_bench.log",
        env,
    )  # fmt: skip
    train_log = (work / "train" / "train.log").read_text()
    wall, peak, cpu = (_find(p, report) for p in (WALL, PEAK, CPU))
    rows.append(
        (
            "training (`python -m training.train`)",
            f"{wall} s wall, peak RSS {peak}, CPU {cpu.strip()}",
        )
    )
    search = re.search(r"search: (\d+) trials on ([\d,]+) rows in (\d+)s", train_log)
    stopped = re.search(r"stopped at the time budget \((\d+)s\) after ([\d.]+)s", train_log)
    if search:
        rows.append(("search", f"{search.group(1)} trials in {search.group(3)} s"))
    if stopped:
        rows.append(
            (
                f"search with --time-budget {args.time_budget:g}",
                f"the running trial stopped {stopped.group(2)} s after it began",
            )
        )

    model_uri = f"models:/{MODEL_NAME}@candidate"
    features, store = scores / "online_features.parquet", scores / "online_store.sqlite"
    tree: list[int] = []
    batch, seconds = _run(
        ["/usr/bin/time", "-v", python, "-m", "serving.batch", "--orders", str(orders),
         "--events", str(events), "--model-uri", model_uri, "--out", str(scores / "scores.parquet"),
         "--features-out", str(features), "--store", str(store)],
        work / "batch.log",
        env,
        tree,
    )  # fmt: skip
    rows.append(
        (
            "batch scoring with reasons, whole base",
            f"{seconds:,.1f} s, peak RSS {_peak_gib(batch)} (largest process), "
            f"{tree[0] / 2**30:.2f} GiB summed over its processes",
        )
    )

    online = [python, "bench/online_bench.py", "--model-uri", model_uri, "--features",
              str(features), "--store", str(store), "--seconds", f"{args.seconds:g}"]  # fmt: skip
    back_to_back, _ = _run(online, work / "online_back_to_back.log", env)
    score_rps, livez_rps, share = (_find(p, back_to_back) for p in (THROUGHPUT, LIVEZ, SHARE))
    rows.append(
        (
            "`/score` back to back, 50 connections (SQLite store)",
            f"{score_rps} req/s; `/livez` {livez_rps} req/s; **/score is {share} of /livez**",
        )
    )
    storefront, _ = _run([*online, "--think-ms", "100", "--no-livez"], work / "online.log", env)
    rps, p50, p99 = (_find(p, storefront) for p in (THROUGHPUT, P50, P99))
    rows.append(
        ("storefront: 50 clients, 100 ms think", f"{rps} req/s, p50 {p50} ms, **p99 {p99} ms**")
    )

    print(_find(r"machine: (.+)", report))
    print(_find(r"commit: (.+)", report))
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    print(f"store: {args.customers:,} demo customers (seed {args.seed}); logs in {work}")
    print()
    print("| what | measured |")
    print("|---|---|")
    for what, measured in rows:
        print(f"| {what} | {measured} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
