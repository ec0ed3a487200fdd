"""The HTTP edge of the real server: bounded /metrics, safe log lines, 415s, the 400 shape.

One `bentoml serve` with an API key for the module (the same way test_server_e2e.py starts
one); requests are sent with and without the key.
"""

import json
import random
import time

import httpx
import pytest
from test_server_e2e import running_server

pytestmark = pytest.mark.server

#: Random paths per round; each path is sent in several variants (see `scan`).
ROUNDS_OF = 40
#: No line the server writes may be longer (the longest rejection line is about 1.5 KB).
MAX_LOG_LINE = 4096
FORGED = "[ERROR] 2026-01-01T00:00:00 FORGED admin login"


@pytest.fixture(scope="module")
def edge(served_store, latest_scores, tmp_path_factory):
    """The server (a client sending the key) and the file its log goes to."""
    config, _ = latest_scores
    folder = tmp_path_factory.mktemp("edge-server")
    log_path = folder / "server.log"
    with running_server(served_store, config.features_out, folder / "bentoml", log_path) as client:
        yield client, log_path


def scan(client: httpx.Client, rng: random.Random, paths: int) -> list[str]:
    """Request ``paths`` random paths, with and without the key; the random tokens used."""
    url = str(client.base_url)
    tokens = []
    for _ in range(paths):
        token = f"zq{rng.getrandbits(64):016x}"
        tokens.append(token)
        for path in (f"/{token}", f"/static_content/{token}.js", f"/score/{token}"):
            client.get(path)  # with the key
            httpx.get(f"{url}{path}", timeout=30)  # without
        client.post(f"/{token}", json={"customers": []})
    return tokens


def test_unknown_paths_do_not_grow_the_metrics(edge):
    client, _ = edge
    rng = random.Random(7)
    scan(client, rng, 5)  # the folded series exist from here on
    before = client.get("/metrics")
    assert before.status_code == 200
    tokens = scan(client, rng, ROUNDS_OF)
    after = client.get("/metrics").text
    assert not [token for token in tokens if token in after]
    # Counter values gain a digit now and then; a new path would add a whole histogram
    # (about 3 KB) per status code.
    assert len(after) - len(before.text) < 1024, (len(before.text), len(after))


def test_rejected_request_lines_are_escaped_and_bounded(edge):
    client, log_path = edge
    forged = {"customer_id": "a", f"x\n{FORGED}\r\n{FORGED}\x1b[2J": 1}
    huge = {"customer_id": "a", "y" * 1024 * 1024: 1}
    bad_cutoff = {"customer_id": "a", "cutoff": f"2025\n{FORGED}"[:64]}
    for customer in (forged, huge, bad_cutoff):
        response = client.post("/score", json={"customers": [customer]})
        assert response.status_code == 400, response.text
    # The workers write the log; wait until the three rejections are in it.
    deadline, lines = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        lines = log_path.read_text(errors="replace").splitlines()
        if sum("Rejected request on /score" in line for line in lines) >= 3:
            break
        time.sleep(0.2)
    rejected = [line for line in lines if "Rejected request on /score" in line]
    assert len(rejected) >= 3, "\n".join(lines[-40:])
    # A forged record would be a line of its own that starts like one of the server's.
    assert all("Rejected request on /score" in line for line in lines if "FORGED" in line)
    assert not [line for line in lines if "\x1b[2J" in line]
    longest = max(len(line) for line in lines)
    assert longest <= MAX_LOG_LINE, f"a log line of {longest} characters"
    assert any("[truncated" in line for line in rejected)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/vnd.bentoml+pickle",
    ],
)
def test_api_bodies_other_than_json_are_415(edge, content_type):
    client, _ = edge
    body = json.dumps({"customers": [{"customer_id": "a"}]})
    response = client.post("/score", content=body, headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]


def test_json_with_parameters_is_accepted(edge):
    client, _ = edge
    body = json.dumps({"customers": [{"customer_id": "a"}]})
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = client.post("/score", content=body, headers={"content-type": content_type})
        assert response.status_code == 200, (content_type, response.text)


def resolve(spec: dict, schema: dict) -> dict:
    """``schema``, or what its ``$ref`` points to in ``spec``."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_a_400_has_the_shape_the_spec_declares(edge):
    client, _ = edge
    response = client.post("/score", json={"customers": [{"customer_id": "a", "bogus": 1}]})
    assert response.status_code == 400
    body = response.json()
    spec = client.get("/docs.json").json()
    declared = spec["paths"]["/score"]["post"]["responses"]["400"]["content"]
    schema = resolve(spec, declared["application/json"]["schema"])
    assert set(schema["required"]) <= set(body)
    assert isinstance(body["error"], str)
    detail = resolve(spec, schema["properties"]["detail"])
    assert detail["type"] == "array" and isinstance(body["detail"], list)
    item = resolve(spec, detail["items"])
    for problem in body["detail"]:
        assert set(item["required"]) <= set(problem)
    # The statuses the edge answers are documented too.
    assert {"400", "401", "413", "415", "503"} <= set(spec["paths"]["/score"]["post"]["responses"])


def test_unknown_paths_are_404_json_and_known_ones_still_answer(edge):
    client, _ = edge
    url = str(client.base_url)
    unknown = client.get("/no-such-page")
    assert unknown.status_code == 404
    assert "/score" in unknown.json()["error"]
    assert httpx.get(f"{url}/no-such-page", timeout=30).status_code == 401
    for path in ("/", "/docs.json", "/static_content/swagger-ui.css", "/healthz", "/metrics"):
        assert client.get(path).status_code == 200, path
    assert client.get("/score").status_code == 405
