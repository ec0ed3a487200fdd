"""Benchmark: one whole training run (``python -m training.train``): wall, peak memory, phases.

Runs the training command in a child process under ``/usr/bin/time -v`` against a store of its
own (``MLFLOW_TRACKING_URI=sqlite:///<work>/mlflow.db``, quarantine under ``<work>``), so
``models/`` is not touched, and prints a Markdown block for bench/RESULTS.md: the machine, the
commit, the load average before and after, wall seconds, peak RSS, CPU seconds, the training's
stages and the fit's phases (window rows, boosted parts, Pareto/NBD, level) as the run logged
them.

    python bench/train_bench.py --orders DIR/orders.parquet --events DIR/service_events.parquet \
        --work /tmp/cv/train_bench [--horizon-days 365] [-- extra training flags]

The data: ``python -m demo --customers 1000000 --seed 7 --out DIR`` (the issue's 1M store).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            int(line.split()[1]) / 2**20
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        memory = float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.machine()}, "
        f"python {platform.python_version()}"
    )


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cs"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + (" (+ uncommitted changes in the tree)" if dirty else "")


def _timings(text: str, prefix: str) -> dict[str, float]:
    """``name 1.2s, other 3.4s`` (or ``name 1.2``) after the last ``prefix`` in ``text``."""
    found = re.findall(re.escape(prefix) + r"(.*)", text)
    if not found:
        return {}
    pairs = re.findall(r"([\w./-]+) ([\d.]+)s?(?:,|$)", found[-1].strip())
    return {name: float(value) for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=Path, required=True)
    parser.add_argument("--events", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="store, logs, quarantine")
    parser.add_argument("--horizon-days", type=int, default=365)
    parser.add_argument("extra", nargs="*", help="more training flags (after --)")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    command = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "training.train",
        "--orders",
        str(args.orders),
        "--horizon-days",
        str(args.horizon_days),
        "--output-dir",
        str(args.work),
    ]
    if args.events is not None:
        command += ["--events", str(args.events)]
    command += args.extra
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{args.work.resolve()}/mlflow.db")
    load_before = os.getloadavg()
    started = time.perf_counter()
    with (args.work / "train.log").open("w") as log:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    text = (args.work / "train.log").read_text()
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    peak_gib = int(peak.group(1)) / 2**20 if peak else float("nan")
    # CPU seconds and share: on a shared machine the wall time says more about the other jobs.
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    share = re.search(r"Percent of CPU this job got: (\d+)%", text)
    stages = _timings(text, "stage seconds: ")
    phases = _timings(text, "fit phases: ")
    rows = re.findall(r"fit at (\S+): (\d+) window rows at (\d+) cutoffs in ([\d.]+)s", text)

    print(f"machine: {_machine()}")
    print(f"commit: {_commit()}")
    print(f"command: {' '.join(command[2:])} (exit {done.returncode}; log {args.work}/train.log)")
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in load_after)
    )
    print()
    print("| what | value |")
    print("|---|---:|")
    print(f"| wall | {seconds:,.0f} s |")
    print(f"| peak RSS | {peak_gib:.2f} GiB |")
    print(f"| CPU (user + system) | {cpu:,.0f} s ({share.group(1) if share else '?'}% of a core) |")
    for name, value in stages.items():
        print(f"| stage {name} | {value:,.1f} s |")
    for name, value in phases.items():
        print(f"| fit phase {name} | {value:,.1f} s |")
    for cutoff, count, cutoffs, took in rows:
        print(f"| window rows at {cutoff} ({cutoffs} cutoffs) | {int(count):,} in {took} s |")
    if done.returncode != 0:
        sys.exit(done.returncode)


if __name__ == "__main__":
    main()
