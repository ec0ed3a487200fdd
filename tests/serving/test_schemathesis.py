"""The real server against its own OpenAPI document, with schemathesis.

Schemathesis reads ``/docs.json`` and sends requests made from it: the documented example,
the schema's boundaries and near-misses (coverage phase) and random valid and invalid bodies
(fuzzing). Every answer must be no 5xx, a status the document declares, and a body, headers
and Content-Type that match the declaration.

Bounded for CI (two cores): a fixed number of examples per operation and a fixed seed, so
every run sends the same requests (about 440, some 15 seconds); offline (only the loopback
server is spoken to; no example database or cache is kept).
"""

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_server_e2e import API_KEY, running_server

pytestmark = pytest.mark.server

#: Fuzzed requests per operation (the coverage phase adds its own, about 240 for /score).
MAX_EXAMPLES = 200
SEED = 20260701
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)
#: A hung run fails the test long before the suite's timeout.
RUN_TIMEOUT = 300
#: Schemathesis learns constraints from 4xx messages ("error feedback") and keeps what it
#: learnt in a cache under the working directory. Learning in the middle of a fresh run
#: stopped its fuzzing of /score after about 7 requests (200 once the cache held the lesson),
#: so a run's size depended on the runs before it; both are off, for the same requests
#: every time.
CONFIG = """\
[cache]
enabled = false

[phases.fuzzing.error-feedback]
enabled = false
"""


@pytest.fixture(scope="module")
def server_url(served_store, latest_scores, tmp_path_factory):
    """A server with the API key, answering lookups from the batch scores."""
    config, _ = latest_scores
    folder = tmp_path_factory.mktemp("schemathesis-server")
    with running_server(
        served_store, config.features_out, folder / "bentoml", folder / "server.log"
    ) as client:
        yield str(client.base_url).rstrip("/")


def tally(report: Path) -> tuple[Counter, Counter]:
    """Requests by (operation, status) and failed checks by (operation, check), from the
    NDJSON events of a run."""
    statuses, failed = Counter(), Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event is None:
            continue
        recorder = event["recorder"]
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            statuses[recorder["label"], response and response["status_code"]] += 1
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if check["status"] != "success":
                    failed[recorder["label"], check["name"]] += 1
    return statuses, failed


def test_the_server_keeps_to_its_openapi_document(server_url, tmp_path):
    report, config = tmp_path / "events.ndjson", tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{server_url}/docs.json",
        "--url",
        server_url,
        "--header",
        f"X-API-Key: {API_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    start = time.perf_counter()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    seconds = time.perf_counter() - start
    statuses, failed = tally(report) if report.exists() else (Counter(), Counter())
    summary = (
        f"schemathesis: {statuses.total()} requests, {failed.total()} failed checks, "
        f"{seconds:.0f} s; statuses {sorted(statuses.items(), key=str)}"
    )
    print(summary)
    assert run.returncode == 0, f"{summary}\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
    assert not failed, summary
    # The run reached the API with valid and invalid bodies, not only the probes.
    assert statuses["POST /score", 200] and statuses["POST /score", 400], summary
