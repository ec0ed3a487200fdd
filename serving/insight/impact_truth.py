"""The service-impact estimate beside the synthetic store's planted truth.

On a store made by ``python -m demo`` (recognised by its manifest,
:mod:`demo.manifest`) the causal effects of late deliveries, returns and badly
resolved tickets are known. :func:`demo.truth.service_effect_truth` replays the same
customers over the horizon with the planted effects of their past failures on and off, same
random draws otherwise: the value those failures truly cost from the cutoff on. That is the
estimand of the what-if of :mod:`serving.insight.impact`, so the two can be put side by side.

The truth needs the horizon after the cutoff to be inside the generated period, so the check
is made at the model's holdout cutoff with its evaluation twin (trained only on data before
it), not at the latest cutoff the base is scored at.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from demo.generator import SynthParams
from demo.manifest import EVENTS_FILE, SyntheticStore, store_behind
from demo.truth import service_effect_summary, service_effect_truth

#: The kinds compared, in the order of :data:`serving.insight.impact.KINDS`.
TRUTH_KINDS: tuple[str, ...] = ("late", "returns", "bad_tickets", "all")
#: The failure kinds whose order (by value lost) the estimate must get right.
RANKED_KINDS: tuple[str, ...] = ("late", "returns", "bad_tickets")
TABLE_COLUMNS: tuple[str, ...] = (
    "affected",
    "affected_truth",
    "estimate",
    "truth",
    "error_pct",
)
#: The columns of :data:`TABLE_COLUMNS` that count customers (integers, never missing).
COUNT_COLUMNS: tuple[str, ...] = ("affected", "affected_truth")

STATEMENT = (
    "Checked against the truth: this store is synthetic and knows the effects it planted. The "
    "same customers were simulated over the horizon from the cutoff twice, with the planted "
    "effects of their past service failures on and off (same random draws otherwise): the "
    "difference is the value those failures truly cost from the cutoff on (customers already "
    "gone stay gone), the quantity the what-if estimates. The estimate is made the same way "
    "as above, at the model's holdout cutoff, by its evaluation twin (trained only on data "
    "before that cutoff), because the truth needs the whole horizon inside the generated period."
)


def synthetic_store(orders: Path, events: Path | None) -> SyntheticStore | None:
    """The demo store ``orders`` and ``events`` are, or None for a shop's files.

    The insight products reach the demo package only through this module (the import contract
    in pyproject.toml): a shop's run never needs the simulator, and the simulator can change
    without touching them. See :func:`demo.manifest.store_behind`.
    """
    return store_behind(orders, events)


def events_beside(orders: Path) -> Path:
    """Where a generated store keeps its service events: beside its orders."""
    return orders.with_name(EVENTS_FILE)


def truth_path(impact_out: Path) -> Path:
    """Where ``serving.insight.impact`` writes the check for the impact file ``impact_out``."""
    return impact_out.with_name(f"{impact_out.stem}_truth.json")


def planted_truth(store: SyntheticStore, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Value truly lost to each kind of failure over ``[cutoff, cutoff + horizon)``.

    Returns
    -------
    pandas.DataFrame
        :func:`demo.truth.service_effect_summary` of the ``from_cutoff`` truth.

    Raises
    ------
    ValueError
        When the horizon after ``cutoff`` runs past the generated period.
    """
    truth = service_effect_truth(
        store.customers,
        store.seed,
        cutoff,
        horizon_days,
        SynthParams(**store.params),
        mode="from_cutoff",
        start=store.start,
        end=store.end,
    )
    return service_effect_summary(truth)


def compare(estimate: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The estimate beside the truth, per kind.

    Parameters
    ----------
    estimate : pandas.DataFrame
        ``Impact.by_kind`` of :func:`serving.insight.impact.estimate_impact` (``affected``,
        ``clv_gain``).
    truth : pandas.DataFrame
        :func:`planted_truth` (``customers``, ``value_lost``).

    Returns
    -------
    pandas.DataFrame
        Indexed by kind: ``affected`` (customers with such a failure, as the estimate counts
        them), ``affected_truth`` (as the simulation counts them), ``estimate`` (predicted CLV
        gained without the failures), ``truth`` (value the failures truly cost) and
        ``error_pct`` = 100 x (estimate / truth - 1).
    """
    kinds = [k for k in TRUTH_KINDS if k in estimate.index and k in truth.index]
    out = pd.DataFrame(
        {
            "affected": estimate.loc[kinds, "affected"].astype("int64"),
            "affected_truth": truth.loc[kinds, "customers"].astype("int64"),
            "estimate": estimate.loc[kinds, "clv_gain"].astype("float64"),
            "truth": truth.loc[kinds, "value_lost"].astype("float64"),
        }
    )
    # No truth to compare with (no such failure in the store): NaN, not an infinite error.
    out["error_pct"] = 100.0 * (out["estimate"] / out["truth"].where(out["truth"] != 0) - 1.0)
    return out.rename_axis("kind")


def ranks_agree(table: pd.DataFrame) -> bool:
    """Whether the estimate orders the failure kinds by value lost as the truth does."""
    kinds = [k for k in RANKED_KINDS if k in table.index]
    by_estimate = list(table.loc[kinds, "estimate"].sort_values(kind="stable").index)
    by_truth = list(table.loc[kinds, "truth"].sort_values(kind="stable").index)
    return by_estimate == by_truth


@dataclass(frozen=True)
class TruthCheck:
    """One comparison of the estimate with the planted truth.

    Attributes
    ----------
    cutoff : str
        The holdout cutoff (ISO date) both were made at.
    horizon_days : int
    model_uri : str
        The registered version whose evaluation twin made the estimate.
    store : dict
        Customers, seed and period of the synthetic store.
    table : pandas.DataFrame
        :func:`compare`.
    """

    cutoff: str
    horizon_days: int
    model_uri: str
    store: dict[str, Any]
    table: pd.DataFrame

    @property
    def ranks_agree(self) -> bool:
        """Whether the estimate orders the kinds as the truth does (:func:`ranks_agree`)."""
        return ranks_agree(self.table)

    def write(self, path: Path) -> Path:
        """Write the check as JSON (the report reads it back with :meth:`read`)."""
        data = {k: v for k, v in asdict(self).items() if k != "table"}
        data["ranks_agree"] = self.ranks_agree
        data["rows"] = json.loads(self.table.reset_index().to_json(orient="records"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> TruthCheck:
        """Read a check written by :meth:`write`."""
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = pd.DataFrame(data["rows"]).set_index("kind")[list(TABLE_COLUMNS)]
        # JSON writes NaN (no truth to compare with) as null: back to float, not object. The
        # counts go back to integers, as :func:`compare` made them: JSON alone would give
        # floats where a count is whole (and readers format counts as integers).
        table = rows.astype("float64")
        for column in COUNT_COLUMNS:
            if table[column].isna().any():
                raise ValueError(
                    f"{path}: column '{column}' has {int(table[column].isna().sum())} empty "
                    "values; expected a whole count in every row (rewrite it with make impact)"
                )
            table[column] = table[column].astype("int64")
        return cls(
            cutoff=str(data["cutoff"]),
            horizon_days=int(data["horizon_days"]),
            model_uri=str(data["model_uri"]),
            store=dict(data["store"]),
            table=table,
        )


def store_summary(store: SyntheticStore) -> dict[str, Any]:
    """What the report says of the store: its size, seed and period."""
    return {
        "customers": store.customers,
        "seed": store.seed,
        "start": store.start,
        "end": store.end,
    }
