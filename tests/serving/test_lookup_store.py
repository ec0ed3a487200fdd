"""The lookup store on its own: write, read, pairing, refusals and new runs, for both backends.

SQLite tests run everywhere; the Redis ones start a real ``redis-server`` (marked ``server``).
Frames are hand-made: two features, the scored fields, three customers.
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from serving.lookup_store import (
    REDIS_CURRENT,
    SKETCH_POINTS,
    StoreUnavailable,
    open_lookup_store,
    open_view,
    stage_lookup_store,
    store_location,
    store_signature,
    write_lookup_store,
)
from serving.run_files import NUMBER_FIELDS, SCORED_FIELDS, RunStamp, TableMismatch
from serving.segments import Base, value_thresholds

FEATURES = ["recency", "frequency"]
TRACKING = "sqlite:////srv/cv/mlflow.db"


def stamp(run_id: str = "run-1", **changes: str) -> RunStamp:
    fields = {
        "run_id": run_id,
        "cutoff": "2025-07-01 00:00:00",
        "model_name": "customer-value",
        "model_version": "3",
        "store": TRACKING,
        "orders": "/data/orders.parquet",
        "interval": "0.9",
        "discount_rate": "0.1",
        "reasons": "approximate",
    }
    return RunStamp(**{**fields, **changes})


def frame(ids=("a", "b", "c"), offset: float = 0.0) -> pd.DataFrame:
    n = len(ids)
    data = {
        "customer_id": pd.array(list(ids), dtype="str"),
        "recency": np.arange(n, dtype="float64") + offset,
        "frequency": np.array([np.nan] + [2.0] * (n - 1)),
    }
    for k, name in enumerate(NUMBER_FIELDS):
        data[name] = np.arange(n, dtype="float64") * 10 + k + offset
    data["avg_days_between_orders"] = np.array([np.nan] * n)  # a figure that does not apply
    data["next_order_date"] = pd.array(["2025-07-09"] + [None] * (n - 1), dtype="str")
    data["value_segment"] = pd.array(["top"] * n, dtype="str")
    data["risk_segment"] = pd.array(["low"] * n, dtype="str")
    data["action"] = pd.array(["maintain (VIP care)"] * n, dtype="str")
    data["reasons"] = pd.array([f"↑ last order {i} days ago" for i in range(n)], dtype="str")
    data["value_reasons"] = pd.array([""] * n, dtype="str")
    return pd.DataFrame(data)


def view(target, *, version="3", reasons="approximate", lookups="batch", names=FEATURES):
    return open_view(
        target,
        names,
        tracking_store=TRACKING,
        model_version=version,
        reasons=reasons,
        lookups=lookups,
    )


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.server)])
def target(request, tmp_path):
    """An empty store of each backend: a file path, or a flushed Redis database."""
    if request.param == "sqlite":
        return str(tmp_path / "online_store.sqlite")
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


def test_what_is_written_is_read_back(target):
    source = pd.concat([frame(("a", "b")), frame(("c",), offset=5.0)], ignore_index=True)
    assert (
        write_lookup_store(target, [frame(("a", "b")), frame(("c",), 5.0)], stamp(), FEATURES) == 3
    )
    store = view(target)
    assert store.answers and store.stamp == stamp() and len(store) == 3
    assert str(store.cutoff.date()) == "2025-07-01"
    found = store.find(["c", "nobody", "a", "a", "b"])
    assert set(found.features) == {"a", "b", "c"}  # unknown ids are simply not found
    expected = source.set_index("customer_id")
    for customer_id in ("a", "b", "c"):
        row = expected.loc[customer_id]
        np.testing.assert_array_equal(found.features[customer_id], row[FEATURES].to_numpy(float))
        answer = found.answers[customer_id]
        assert list(answer) == [
            *NUMBER_FIELDS,
            *[f for f in SCORED_FIELDS if f not in NUMBER_FIELDS],
        ]
        for name in SCORED_FIELDS:
            want = None if pd.isna(row[name]) else row[name]
            assert answer[name] == want, name
    assert found.answers["a"]["next_order_date"] == "2025-07-09"
    assert found.answers["b"]["next_order_date"] is None
    assert found.answers["a"]["avg_days_between_orders"] is None
    assert found.answers["a"]["reasons"] == "↑ last order 0 days ago"


def test_the_base_is_the_batch_runs(target):
    rng = np.random.default_rng(3)
    frames = []
    for chunk in range(3):
        f = frame([f"{chunk}-{i}" for i in range(5000)])
        f["clv"] = rng.lognormal(3, 1.5, len(f)).round(1)  # ties, as real CLVs have
        frames.append(f)
    write_lookup_store(target, frames, stamp(), FEATURES)
    base = view(target).store.meta.base
    clv = np.concatenate([f["clv"].to_numpy() for f in frames])
    assert base.thresholds == value_thresholds(clv)  # the tiers are exact
    exact = Base.of(clv)
    probes = np.concatenate([clv[:2000], [-1.0, 0.0, clv.max(), clv.max() + 1]])
    # 15,000 customers > SKETCH_POINTS: a sketch, within its bound.
    assert len(base.sorted_clv) == SKETCH_POINTS
    difference = base.percentile(probes) - exact.percentile(probes)
    assert difference.min() >= 0 and difference.max() <= 100 / (SKETCH_POINTS - 1)


def test_the_sketch_bound_holds_on_a_large_base():
    rng = np.random.default_rng(5)
    clv = np.concatenate([np.zeros(100_000), rng.gamma(0.5, 200, 400_000).round(2)])
    exact = Base.of(clv)
    for points in (11, 1001, SKETCH_POINTS):
        sketch = exact.sketch(points)
        probes = np.concatenate([rng.choice(clv, 50_000), rng.uniform(-1, clv.max() + 1, 5000)])
        difference = sketch.percentile(probes) - exact.percentile(probes)
        assert difference.min() >= 0, points
        assert difference.max() <= 100 / (points - 1), points
    small = Base.of(clv[:500])
    assert small.sketch(SKETCH_POINTS) is small  # a small base is kept whole: exact


def test_an_empty_run_is_a_store_without_customers(target):
    assert write_lookup_store(target, [], stamp(), FEATURES) == 0
    store = view(target)
    assert len(store) == 0 and store.find(["a"]).features == {}
    assert np.isnan(store.store.meta.base.percentile(np.array([1.0]))).all()
    assert store.sample().shape == (0, 2)


def test_stored_answers_are_served_only_when_they_fit(target):
    write_lookup_store(target, [frame()], stamp(), FEATURES)
    assert view(target).answers
    assert not view(target, version="4").answers  # another model version: the model scores
    assert not view(target, reasons="exact").answers
    assert not view(target, lookups="model").answers
    lookups = view(target, version="4").find(["a"])
    assert lookups.answers is None and set(lookups.features) == {"a"}
    # The served model's feature order, whatever the store's.
    reordered = view(target, names=["frequency", "recency"]).find(["b"])
    np.testing.assert_array_equal(reordered.features["b"], [2.0, 1.0])


def test_a_store_of_another_tracking_store_is_refused_naming_both(target):
    write_lookup_store(target, [frame()], stamp(store="sqlite:////elsewhere/mlflow.db"), FEATURES)
    with pytest.raises(
        TableMismatch, match=r"tracking store sqlite:////elsewhere.*store sqlite:////srv"
    ):
        view(target)


def test_a_store_without_a_model_feature_is_refused(target):
    write_lookup_store(target, [frame()], stamp(), FEATURES)
    with pytest.raises(ValueError, match=r"missing feature\(s\) \['tickets_90d'\]"):
        view(target, names=[*FEATURES, "tickets_90d"])


def test_bad_frames_are_refused_naming_the_problem(target):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['p_churn'\]"):
        write_lookup_store(target, [frame().drop(columns="p_churn")], stamp(), FEATURES)
    with pytest.raises(ValueError, match="customer_id repeats"):
        write_lookup_store(target, [frame(), frame(("c", "d"))], stamp("run-2"), FEATURES)


def test_a_failed_write_leaves_the_served_sqlite_store_whole(tmp_path):
    target = tmp_path / "online_store.sqlite"
    write_lookup_store(target, [frame()], stamp(), FEATURES)
    with pytest.raises(ValueError, match="customer_id repeats"):
        write_lookup_store(target, [frame(), frame(("a",))], stamp("run-2"), FEATURES)
    assert view(target).run_id == "run-1" and len(view(target)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["online_store.sqlite"]  # no temp file left


def test_a_new_sqlite_run_changes_the_signature_and_old_readers_keep_their_run(tmp_path):
    target = tmp_path / "online_store.sqlite"
    assert store_signature(target) is None
    write_lookup_store(target, [frame()], stamp("run-1"), FEATURES)
    first = store_signature(target)
    old = view(target)
    write_lookup_store(target, [frame(("x", "y"))], stamp("run-2"), FEATURES)
    assert store_signature(target) != first and store_signature(target)[-1] == "run-2"
    # The renamed-over file stays readable by whoever opened it: a request in flight during
    # the swap finishes on its own run.
    assert old.run_id == "run-1" and set(old.find(["a", "x"]).features) == {"a"}
    assert set(view(target).find(["a", "x"]).features) == {"x"}


@pytest.mark.server
def test_redis_flips_runs_atomically_and_keeps_only_the_previous_one(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    assert store_signature(redis_url) is None
    write_lookup_store(redis_url, [frame()], stamp("run-1"), FEATURES)
    assert store_signature(redis_url) == ("redis", "run-1")
    old = view(redis_url)
    write_lookup_store(redis_url, [frame(("x", "y"))], stamp("run-2"), FEATURES)
    assert client.get(REDIS_CURRENT) == b"run-2"
    # The previous run is kept for readers that opened it; new readers get the new one.
    assert set(old.find(["a", "x"]).features) == {"a"}
    assert set(view(redis_url).find(["a", "x"]).features) == {"x"}
    write_lookup_store(redis_url, [frame(("z",))], stamp("run-3"), FEATURES)
    runs = {key.split(b":")[1] for key in client.scan_iter(match="cv:run-*")}
    assert runs == {b"run-2", b"run-3"}  # run-1 deleted, run-2 (previous) kept
    assert client.lrange("cv:runs", 0, -1) == [b"run-2", b"run-3"]
    with pytest.raises(ValueError, match="already in the lookup store"):
        write_lookup_store(redis_url, [frame()], stamp("run-3"), FEATURES)


@pytest.mark.server
def test_a_redis_run_killed_midway_is_never_served_and_is_deleted_later(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    write_lookup_store(redis_url, [frame()], stamp("run-1"), FEATURES)

    def dying():
        yield frame(("k1", "k2"))
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_lookup_store(redis_url, dying(), stamp("run-2"), FEATURES)
    assert view(redis_url).run_id == "run-1"  # cv:current still names the whole run
    write_lookup_store(redis_url, [frame()], stamp("run-3"), FEATURES)
    assert not list(client.scan_iter(match="cv:run-2:*"))


def test_a_staged_run_is_served_only_once_published(target):
    write_lookup_store(target, [frame()], stamp("run-1"), FEATURES)
    staged = stage_lookup_store(target, [frame(("x", "y"))], stamp("run-2"), FEATURES)
    assert staged.customers == 2 and staged.run_id == "run-2"
    assert view(target).run_id == "run-1"  # written, not served
    staged.publish()
    assert view(target).run_id == "run-2" and set(view(target).find(["a", "x"]).features) == {"x"}
    with pytest.raises(RuntimeError, match="already published or discarded"):
        staged.publish()
    # A run discarded (the batch run failed after staging) leaves the store as it was.
    with stage_lookup_store(target, [frame(("z",))], stamp("run-3"), FEATURES) as other:
        assert other.customers == 1
    assert view(target).run_id == "run-2"
    if not str(target).startswith("redis://"):
        assert sorted(p.name for p in Path(target).parent.iterdir()) == ["online_store.sqlite"]
    else:
        assert not list(redis.Redis.from_url(target).scan_iter(match="cv:run-3:*"))


@pytest.mark.server
def test_two_interleaved_redis_runs_never_corrupt_each_other(redis_url):
    # Issue 21 M4 (m5_redis_interleave.py): run B is written and published while run A is
    # still writing. B's clean-up used to delete A's keys, then A flipped cv:current to its
    # remains (83% of lookups unknown_customer).
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    a_ids = [f"a{i}" for i in range(30)]

    def frames_of_a():
        for start in range(0, len(a_ids), 10):
            if start == 10:  # B runs from start to end while A is writing
                write_lookup_store(redis_url, [frame(("b1", "b2"))], stamp("run-B"), FEATURES)
                assert view(redis_url).run_id == "run-B"
            yield frame(a_ids[start : start + 10])

    write_lookup_store(redis_url, frames_of_a(), stamp("run-A"), FEATURES)
    served = view(redis_url)
    assert served.run_id == "run-A" and len(served) == 30
    assert set(served.find(a_ids).features) == set(a_ids)  # every key of A is there
    # B (the previous run) is kept whole for readers that opened it.
    keys = {k.decode() for k in client.scan_iter(match="cv:run-B:c:*")}
    assert keys == {"cv:run-B:c:b1", "cv:run-B:c:b2"}
    assert not list(client.scan_iter(match="cv:*:writing"))


@pytest.mark.server
def test_a_redis_run_that_lost_its_writing_marker_is_never_published(redis_url):
    # The marker is what keeps other runs' clean-up away; gone (the writer stalled past its
    # lifetime, or the server restarted), the run's keys may be incomplete.
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    write_lookup_store(redis_url, [frame()], stamp("run-1"), FEATURES)
    staged = stage_lookup_store(redis_url, [frame(("x",))], stamp("run-2"), FEATURES)
    assert client.ttl("cv:run-2:writing") > 0
    client.delete("cv:run-2:writing")
    with pytest.raises(ValueError, match=r"run-2 was not published.*writing marker"):
        staged.publish()
    assert view(redis_url).run_id == "run-1"
    assert not list(client.scan_iter(match="cv:run-2:*"))


def test_missing_and_unreadable_stores_say_what_to_do(tmp_path):
    missing = tmp_path / "nowhere" / "online_store.sqlite"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist; run `make score`"):
        open_lookup_store(missing)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=f"{junk}.*not a readable SQLite store"):
        open_lookup_store(junk)
    other = tmp_path / "other.sqlite"
    write_lookup_store(other, [frame()], stamp(), FEATURES)
    import sqlite3

    with sqlite3.connect(other) as connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'format'", (b"0",))
    with pytest.raises(ValueError, match="has format '0', expected '1'"):
        open_lookup_store(other)


@pytest.mark.server
def test_missing_and_unreachable_redis_stores_say_what_to_do(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    with pytest.raises(FileNotFoundError, match="has no run"):
        open_lookup_store(redis_url)
    closed = f"redis://127.0.0.1:{_closed_port()}/0"
    with pytest.raises(ConnectionError, match=f"{closed} cannot be read"):
        open_lookup_store(closed)


def test_store_locations_carry_no_password(tmp_path):
    assert store_location("redis://user:secret@cache.internal:6380/2") == (
        "redis://cache.internal:6380/2"
    )
    assert store_location(tmp_path / "x.sqlite") == str((tmp_path / "x.sqlite").resolve())


def test_the_meta_is_plain_json_and_numbers(tmp_path):
    # Another producer (the distributed batch) writes through write_lookup_store; the meta a
    # reader sees is what the stamp and the frames said.
    target = tmp_path / "online_store.sqlite"
    write_lookup_store(target, [frame()], stamp(), FEATURES)
    import sqlite3

    with sqlite3.connect(target) as connection:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(meta["feature_names"]) == FEATURES
    assert json.loads(meta["stamp"])["run_id"] == "run-1"
    assert int(meta["customers"]) == 3


def _closed_port() -> int:
    from local_server import free_port

    return free_port()


# --- a served run that the store no longer holds (issue 21 M5, M6, M7) ---------------------


@pytest.mark.server
def test_a_retired_or_wiped_redis_run_is_refused_not_answered_as_unknown(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    write_lookup_store(redis_url, [frame()], stamp("run-1"), FEATURES)
    idle = view(redis_url)  # a worker that had no request while two runs landed
    write_lookup_store(redis_url, [frame()], stamp("run-2"), FEATURES)
    write_lookup_store(redis_url, [frame()], stamp("run-3"), FEATURES)
    with pytest.raises(StoreUnavailable, match="no longer holds run run-1") as caught:
        idle.find(["a"])
    assert caught.value.kind == "gone" and not caught.value.transient
    served = view(redis_url)
    assert set(served.find(["a"]).features) == {"a"}
    client.flushdb()  # the server restarted empty (a cache without persistence)
    with pytest.raises(StoreUnavailable, match="no longer holds run run-3"):
        served.find(["a"])
    with pytest.raises(StoreUnavailable):
        served.store.check()


@pytest.mark.server
def test_a_hung_or_down_redis_is_unavailable_within_the_timeout(tmp_path):
    from redis_server import redis_process

    with redis_process(tmp_path / "redis") as server:
        write_lookup_store(server.url, [frame()], stamp("run-1"), FEATURES)
        served = open_view(
            server.url,
            FEATURES,
            tracking_store=TRACKING,
            model_version="3",
            reasons="approximate",
            lookups="batch",
            timeout=0.2,
        )
        server.pause()
        try:
            with pytest.raises(StoreUnavailable, match="cannot be read") as caught:
                served.find(["a"])
            assert caught.value.kind == "unreachable" and caught.value.transient
        finally:
            server.resume()
        assert set(served.find(["a"]).features) == {"a"}
        server.stop()
        with pytest.raises(StoreUnavailable, match="cannot be read"):
            served.find(["a"])


def test_a_sqlite_store_copied_over_in_place_is_refused_never_mixed(tmp_path):
    # Issue 21 M7: `cp new.sqlite online_store.sqlite` served the new run's numbers under the
    # old run's stamp until the next reload check.
    live = tmp_path / "online_store.sqlite"
    write_lookup_store(live, [frame()], stamp("run-1"), FEATURES)
    served = view(live)
    assert served.find(["a"]).answers["a"]["clv"] == 0.0 + NUMBER_FIELDS.index("clv")
    other = tmp_path / "other.sqlite"
    write_lookup_store(other, [frame(offset=100.0)], stamp("run-2"), FEATURES)
    with open(other, "rb") as source, open(live, "r+b") as target:  # cp: same inode
        target.write(source.read())
        target.truncate()
    with pytest.raises(StoreUnavailable, match="rewritten in place") as caught:
        served.find(["a"])
    assert caught.value.kind == "changed"
    assert view(live).run_id == "run-2"  # a reload reads the new run whole


def test_a_damaged_sqlite_store_is_unavailable_not_a_crash(tmp_path):
    live = tmp_path / "online_store.sqlite"
    write_lookup_store(live, [frame([f"c{i}" for i in range(2000)])], stamp("run-1"), FEATURES)
    served = view(live)
    size = live.stat().st_size
    with open(live, "r+b") as target:  # a copy in place, caught halfway
        target.seek(size // 3)
        target.write(os.urandom(size // 3))
    with pytest.raises(StoreUnavailable) as caught:
        served.find([f"c{i}" for i in range(0, 2000, 7)])
    assert caught.value.kind in ("unreadable", "changed")


@pytest.mark.parametrize("control", [False, True])
def test_answers_are_packed_as_json_dumps_packs_them(control):
    # The answers' texts are built column-wise by Arrow; they must be json.dumps' bytes
    # (compact, non-ASCII as is, quotes and backslashes escaped, missing as null). A text
    # with a control character takes json.dumps itself.
    from serving.lookup_store import _pack, _texts_arrow

    texts = [
        'say "hi"',
        "back\\slash",
        "↑ 3 orders; ↓ 0%",
        "",
        None,
        "tab\there" if control else "x",
    ]
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(texts))],
            **{name: [float(i) for i in range(len(texts))] for name in FEATURES},
            **{name: np.linspace(-1.0, 1.0, len(texts)) for name in NUMBER_FIELDS},
            **{
                name: pd.array(texts[i:] + texts[:i], dtype="str")
                for i, name in enumerate(f for f in SCORED_FIELDS if f not in NUMBER_FIELDS)
            },
        }
    )
    assert (_texts_arrow(frame) is None) == control
    ids, features, answers = _pack(frame, FEATURES)
    numbers = frame[list(NUMBER_FIELDS)].to_numpy(dtype="float64")
    text_fields = [f for f in SCORED_FIELDS if f not in NUMBER_FIELDS]
    for row in range(len(frame)):
        listed = [
            None if pd.isna(frame.at[row, name]) else frame.at[row, name] for name in text_fields
        ]
        expected = (
            numbers[row].tobytes()
            + json.dumps(listed, ensure_ascii=False, separators=(",", ":")).encode()
        )
        assert answers[row] == expected
        assert features[row] == frame.loc[row, FEATURES].to_numpy(dtype="float64").tobytes()
    assert ids == list(frame["customer_id"])
