"""The record of how a synthetic store was generated, so that its planted truth can be replayed.

``python -m demo`` writes ``synthetic_store.json`` beside the two tables: the
arguments of :func:`demo.generator.generate` and a SHA-256 of each file. A tool that is given
those files (``make impact``) can then tell that it is looking at a store whose causal effects
are known, and replay them (:func:`demo.truth.service_effect_truth`). The hashes make sure
the files are still the generated ones: an edited or replaced file is a different shop, whose
truth nobody knows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAME = "synthetic_store.json"
ORDERS_FILE = "orders.parquet"
EVENTS_FILE = "service_events.parquet"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SyntheticStore:
    """How a synthetic store was generated.

    Attributes
    ----------
    customers, seed : int
        As passed to :func:`demo.generator.generate`.
    start, end : str
        The trading period (ISO dates).
    params : dict
        Every field of :class:`demo.generator.SynthParams` (rates and planted effects).
    files : dict
        File name -> SHA-256 of its bytes, for the orders and the service events.
    """

    customers: int
    seed: int
    start: str
    end: str
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(_CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def write_manifest(
    folder: Path, *, customers: int, seed: int, start: str, end: str, params: dict[str, Any]
) -> Path:
    """Write ``folder/synthetic_store.json`` for the tables just written to ``folder``."""
    store = SyntheticStore(
        customers=int(customers),
        seed=int(seed),
        start=str(start),
        end=str(end),
        params=dict(params),
        files={name: file_sha256(folder / name) for name in (ORDERS_FILE, EVENTS_FILE)},
    )
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(asdict(store), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def store_behind(orders: Path, events: Path | None) -> SyntheticStore | None:
    """The synthetic store these files are, or None when they are not (or no longer) one.

    The manifest must sit beside ``orders`` and both files must be byte for byte the ones it
    describes. Anything else (a real shop, a URI, an edited file) is not a synthetic store, and
    the reason is logged at INFO.
    """
    if events is None or "://" in str(orders):
        return None
    path = Path(orders).parent / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        # JSON has no tuples; the generator's parameters do (``peak_months``).
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in data["params"].items()}
        store = SyntheticStore(**{**data, "params": params})
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        logger.info("not using %s: unreadable (%s)", path, err)
        return None
    given = {ORDERS_FILE: Path(orders), EVENTS_FILE: Path(events)}
    for name, file in given.items():
        beside = file.resolve().parent == path.resolve().parent
        if file.name != name or not beside or not file.is_file():
            logger.info("not using %s: %s is not its %s", path, file, name)
            return None
        if file_sha256(file) != store.files.get(name):
            logger.info("not using %s: %s changed since it was generated", path, file)
            return None
    return store
