"""Redis soak: storefront load on a real server while its Redis store restarts and hangs.

Starts a ``redis-server`` (no persistence: a cache, as many deployments run it) and
``bentoml serve serving.online.service:CustomerValue`` reading it, publishes the batch run of
``make score`` to it, and sends storefront load (``--clients`` loops of one request, 5 known
customers and an unknown one, then ``--think-ms``) for ``--minutes``, localhost only. Meanwhile,
on a fixed schedule (fractions of the run): Redis is restarted EMPTY and, after a pause, a
batch run publishes again (a new run, every CLV + 1, so its answers differ from the first
run's); Redis is paused with SIGSTOP and resumed with SIGCONT; Redis is restarted empty again
and the first run's data is published again as a third run.

Why restart empty and re-publish rather than restart with persistence: an empty restart is
the harder case (the served run's keys are gone: the service must refuse, not answer
``unknown_customer``), and re-publishing is what recovers a cache-only deployment.

Every answer is classified:

- ``ok``: HTTP 200 from a published run (``run_id``) that was current when the request was
  sent or became current while it ran, or the one it replaced (a worker reloads within
  ``CUSTOMER_VALUE_RELOAD_SECONDS``; both are whole runs), with every known customer's
  numbers equal to that run's and the unknown one ``unknown_customer``;
- ``503``: the JSON 503 of a store that cannot answer (or of shed load);
- ``wrong``: HTTP 200 with anything else (a known customer unknown, numbers of another run, a
  run that was never published or is two runs old);
- ``500``: any other status; ``no answer``: the client's timeout (10 s) or a socket error.

Prints a row per 30 s and a summary; exit status 1 unless wrong == 0 and 500 == 0.

    make train && make score
    .venv/bin/python bench/redis_soak.py                 # 5 minutes, 20 clients, 50 ms think
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
# The project root first: tests/ holds folders named like the packages (tests/features).
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from local_server import local_server  # noqa: E402
from redis_server import redis_process  # noqa: E402

from serving.lookup_store import write_lookup_store  # noqa: E402
from serving.run_files import RunStamp  # noqa: E402

SCORES = ROOT / "models/scores/scores.parquet"
FEATURES = ROOT / "models/scores/online_features.parquet"
UNKNOWN = "nobody-at-all"
#: (fraction of the run, event); the schedule of the soak.
SCHEDULE = [
    (0.15, "restart"),  # empty
    (0.22, "publish"),  # run B: every CLV + 1
    (0.40, "pause"),
    (0.47, "resume"),
    (0.62, "restart"),  # empty again
    (0.69, "publish"),  # run C: run A's data again
]


@dataclasses.dataclass
class Runs:
    """The published runs in order, and each run's CLV per customer."""

    order: list[str] = dataclasses.field(default_factory=list)
    clv: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    published_at: dict[str, float] = dataclasses.field(default_factory=dict)

    def acceptable(self, run_id: str, sent_at: float) -> bool:
        """Whether an answer from ``run_id`` is from the current run (or the one it replaced)."""
        if run_id not in self.clv:
            return False
        current = [r for r in self.order if self.published_at[r] <= sent_at]
        if not current:
            return False
        index = self.order.index(run_id)
        # The run current when sent, any published since, or the one before it.
        return index >= self.order.index(current[-1]) - 1


def publish(url: str, frame: pd.DataFrame, names: list[str], stamp: RunStamp) -> None:
    write_lookup_store(url, [frame], stamp, names)


async def client_loop(
    http: httpx.AsyncClient,
    url: str,
    ids: list[str],
    runs: Runs,
    counts: Counter[str],
    until: float,
    think: float,
    rng: random.Random,
    examples: list[str],
) -> None:
    while time.monotonic() < until:
        chosen = rng.sample(ids, 5)
        body = {"customers": [*({"customer_id": i} for i in chosen), {"customer_id": UNKNOWN}]}
        sent = time.monotonic()
        try:
            response = await http.post(f"{url}/score", json=body, timeout=10)
        except httpx.HTTPError:
            counts["no answer"] += 1
            await asyncio.sleep(think)
            continue
        if response.status_code == 503:
            ok = response.headers.get("content-type", "").startswith("application/json")
            counts["503" if ok and "error" in response.json() else "500"] += 1
        elif response.status_code != 200:
            counts["500"] += 1
            if len(examples) < 5:
                examples.append(f"{response.status_code}: {response.text[:200]}")
        else:
            answer = response.json()
            run = answer.get("run_id", "")
            good = runs.acceptable(run, sent)
            results = answer["results"]
            if good:
                expected = runs.clv[run]
                for result in results[:-1]:
                    if result["status"] != "ok" or result["clv"] != expected[result["customer_id"]]:
                        good = False
                good = good and results[-1]["status"] == "unknown_customer"
            counts["ok" if good else "wrong"] += 1
            if not good and len(examples) < 5:
                examples.append(f"wrong: run {run}: {str(results)[:300]}")
        await asyncio.sleep(think)


async def livez_loop(url: str, until: float, worst: list[float], counts: Counter[str]) -> None:
    async with httpx.AsyncClient() as http:
        while time.monotonic() < until:
            tick = time.monotonic()
            try:
                status = (await http.get(f"{url}/livez", timeout=30)).status_code
                counts["livez ok" if status == 200 else "livez failed"] += 1
            except httpx.HTTPError:
                counts["livez failed"] += 1
            worst[0] = max(worst[0], time.monotonic() - tick)
            await asyncio.sleep(1)


async def soak(
    args: argparse.Namespace,
    server_url: str,
    redis: object,
    frame: pd.DataFrame,
    names: list[str],
    stamp: RunStamp,
    runs: Runs,
) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    examples: list[str] = []
    seconds = args.minutes * 60
    start = time.monotonic()
    until = start + seconds
    ids = frame["customer_id"].astype(str).tolist()
    worst = [0.0]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(limits=limits) as http:
        tasks = [
            asyncio.create_task(
                client_loop(
                    http,
                    server_url,
                    ids,
                    runs,
                    counts,
                    until,
                    args.think_ms / 1000,
                    random.Random(k),
                    examples,
                )
            )
            for k in range(args.clients)
        ]
        tasks.append(asyncio.create_task(livez_loop(server_url, until, worst, counts)))
        events = list(SCHEDULE)
        published = 1
        last_row = start
        previous: Counter[str] = Counter()
        print("| t (s) | ok | 503 | wrong | 500 | no answer | event |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        while time.monotonic() < until:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            happened = ""
            while events and now - start >= events[0][0] * seconds:
                _, event = events.pop(0)
                if event == "restart":
                    await asyncio.to_thread(redis.restart)  # type: ignore[attr-defined]
                elif event == "pause":
                    redis.pause()  # type: ignore[attr-defined]
                elif event == "resume":
                    redis.resume()  # type: ignore[attr-defined]
                elif event == "publish":
                    published += 1
                    data = frame.copy()
                    if published == 2:
                        data["clv"] = data["clv"] + 1.0
                    run = dataclasses.replace(
                        stamp, run_id=f"soak-{published}-{uuid.uuid4().hex[:6]}"
                    )
                    await asyncio.to_thread(publish, redis.url, data, names, run)  # type: ignore[attr-defined]
                    runs.clv[run.run_id] = dict(zip(ids, data["clv"].tolist(), strict=True))
                    runs.order.append(run.run_id)
                    runs.published_at[run.run_id] = time.monotonic()
                happened += f"{event} at {time.monotonic() - start:.0f} s; "
            if happened:
                print(f"|  |  |  |  |  |  | {happened.strip()} |", flush=True)
            if now - last_row >= 30 or now >= until:
                last_row = now
                delta = counts - previous
                previous = counts.copy()
                print(
                    f"| {now - start:.0f} | {delta['ok']} | {delta['503']} | {delta['wrong']} | "
                    f"{delta['500']} | {delta['no answer']} |  |",
                    flush=True,
                )
        await asyncio.gather(*tasks)
    counts["livez worst ms"] = round(worst[0] * 1000)
    return counts, examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--think-ms", type=float, default=50.0)
    args = parser.parse_args()
    scores = pd.read_parquet(SCORES)
    features = pd.read_parquet(FEATURES)
    names = [c for c in features.columns if c != "customer_id"]
    frame = scores.merge(features, on="customer_id")
    stamp = RunStamp.from_metadata(pq.read_schema(SCORES).metadata)
    folder = Path(tempfile.mkdtemp(prefix="redis-soak-"))
    with redis_process(folder / "redis") as redis:
        runs = Runs()
        first = dataclasses.replace(stamp, run_id=f"soak-1-{uuid.uuid4().hex[:6]}")
        publish(redis.url, frame, names, first)
        ids = frame["customer_id"].astype(str).tolist()
        runs.clv[first.run_id] = dict(zip(ids, frame["clv"].tolist(), strict=True))
        runs.order.append(first.run_id)
        runs.published_at[first.run_id] = 0.0
        env = {
            **os.environ,
            "CUSTOMER_VALUE_STORE": redis.url,
            "CUSTOMER_VALUE_FEATURES": str(folder / "no-table.parquet"),
            "MLFLOW_TRACKING_URI": os.environ.get(
                "MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'models/mlflow.db'}"
            ),
            "BENTOML_HOME": str(folder / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        log = folder / "server.log"
        with local_server(env=env, log_path=log, ready_timeout=180) as server:
            print(
                f"redis soak: {args.minutes:g} min, {args.clients} clients, "
                f"{args.think_ms:g} ms think; {len(ids)} customers; {os.cpu_count()} cores "
                f"({platform.processor() or platform.machine()}), "
                f"{psutil.virtual_memory().total / 2**30:.1f} GiB; server ready in "
                f"{server.ready_seconds:.1f} s; log {log}"
            )
            counts, examples = asyncio.run(soak(args, server.url, redis, frame, names, stamp, runs))
        text = log.read_text(errors="replace")
    print()
    print("| answers | count |\n|---|---:|")
    for name in ("ok", "503", "wrong", "500", "no answer", "livez ok", "livez failed"):
        print(f"| {name} | {counts[name]} |")
    print(f"| /livez slowest (ms) | {counts['livez worst ms']} |")
    print(
        f"server log: {len(text.splitlines())} lines, {text.count('Traceback')} tracebacks, "
        f"{text.count('cannot answer')} 'cannot answer' lines, "
        f"{text.count('answers again')} 'answers again' lines"
    )
    for example in examples:
        print("example:", example)
    return 0 if counts["wrong"] == 0 and counts["500"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
