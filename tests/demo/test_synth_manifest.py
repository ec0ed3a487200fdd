"""The manifest of a generated synthetic store: written beside the tables, trusted only as is."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

from demo.generator import SynthParams, main
from demo.manifest import (
    EVENTS_FILE,
    MANIFEST_NAME,
    ORDERS_FILE,
    SyntheticStore,
    store_behind,
)


def _generate(folder):
    main(["--customers", "60", "--seed", "3", "--out", str(folder), "--start", "2024-01-01"])
    return folder / ORDERS_FILE, folder / EVENTS_FILE


def test_the_generator_writes_what_it_was_asked_and_the_files_match(tmp_path):
    orders, events = _generate(tmp_path)
    store = store_behind(orders, events)
    assert store == SyntheticStore(
        customers=60,
        seed=3,
        start="2024-01-01",
        end="2026-07-01",
        params=asdict(SynthParams()),
        files=json.loads((tmp_path / MANIFEST_NAME).read_text())["files"],
    )
    assert set(store.files) == {ORDERS_FILE, EVENTS_FILE}
    # Relative and absolute spellings of the same files are the same store.
    assert store_behind(orders.resolve(), events.resolve()) == store


def test_an_edited_file_is_not_the_generated_store(tmp_path):
    orders, events = _generate(tmp_path)
    with open(events, "ab") as handle:
        handle.write(b"\0")
    assert store_behind(orders, events) is None


def test_files_without_a_manifest_or_from_elsewhere_are_not_a_synthetic_store(tmp_path):
    orders, events = _generate(tmp_path / "a")
    assert store_behind(orders, None) is None
    other = tmp_path / "b"
    other.mkdir()
    shutil.copy(events, other / EVENTS_FILE)
    # The events of another folder, even with the same bytes, are not what the manifest vouches for.
    assert store_behind(orders, other / EVENTS_FILE) is None
    shutil.copy(orders, other / ORDERS_FILE)
    assert store_behind(other / ORDERS_FILE, other / EVENTS_FILE) is None  # no manifest there
    (tmp_path / "a" / MANIFEST_NAME).write_text("{not json")
    assert store_behind(orders, events) is None
