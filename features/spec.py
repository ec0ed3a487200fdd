"""The feature specification: horizon and windows, stored with every trained model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Order statuses the contract knows. Orders with another status are quarantined on load.
ORDER_STATUSES: tuple[str, ...] = ("completed", "cancelled", "returned")
#: Statuses that bring no revenue: a cancelled order was never paid, a returned one was refunded.
NON_REVENUE_STATUSES: tuple[str, ...] = ("cancelled", "returned")


def is_placed(status: pd.Series) -> np.ndarray:
    """Orders that were placed: every status but ``cancelled`` (a missing status counts).

    The purchases of BG/NBD's frequency, of the churn label and of readiness's history.
    """
    return (status != "cancelled").to_numpy(dtype=bool, na_value=True)


def is_paid(status: pd.Series) -> np.ndarray:
    """Orders that brought revenue: no :data:`NON_REVENUE_STATUSES` (a missing status counts)."""
    return ~status.isin(NON_REVENUE_STATUSES).to_numpy(dtype=bool)


def is_returned(status: pd.Series) -> np.ndarray:
    """Orders whose status is ``returned`` (a missing status is not)."""
    return (status == "returned").to_numpy(dtype=bool, na_value=False)


@dataclass(frozen=True)
class FeatureSpec:
    """How features and labels are built; travels with the registered model.

    Parameters
    ----------
    horizon_days : int
        Length of the label window ``[cutoff, cutoff + horizon)``: CLV is the revenue in it and
        a customer has churned when they place no order in it.
    windows : tuple of int
        Look-back windows, in days, for order counts and revenue (``orders_90d``, ...). A window
        of ``w`` days is ``[cutoff - w days, cutoff)``, the mirror of the label window.
    trend_days : int
        Window compared with the one before it for the recent-vs-previous trend features, and
        the window of the recent support-ticket count.
    quality_days : int
        Look-back window, in days, for the service-quality rates and counts.
    """

    horizon_days: int = 365
    windows: tuple[int, ...] = (30, 90, 365)
    trend_days: int = 90
    quality_days: int = 365
    version: int = field(default=1)

    def __post_init__(self) -> None:
        if self.horizon_days <= 0:
            raise ValueError(f"horizon_days must be > 0 days; got {self.horizon_days}")
        if not self.windows or any(int(w) <= 0 for w in self.windows):
            raise ValueError(f"windows must be positive day counts; got {self.windows!r}")
        if self.trend_days <= 0 or self.quality_days <= 0:
            raise ValueError(
                f"trend_days and quality_days must be > 0; got {self.trend_days}, "
                f"{self.quality_days}"
            )
        if self.trend_days == self.quality_days:
            # Recent tickets are counted over trend_days, all tickets over quality_days.
            raise ValueError(
                f"trend_days and quality_days must differ (the ticket counts over each would "
                f"share one column name); got {self.trend_days} for both"
            )
        # Normalise so that a spec read back from JSON (lists) compares equal.
        object.__setattr__(self, "windows", tuple(sorted(int(w) for w in self.windows)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (stored with the model)."""
        out = asdict(self)
        out["windows"] = list(self.windows)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Rebuild a spec from :meth:`to_dict` output; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown FeatureSpec field(s): {sorted(unknown)}")
        return cls(**data)
