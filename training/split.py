"""Choose snapshot cutoffs and split them by time: training cutoffs, validation, holdout."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class CutoffPlan:
    """Which cutoffs train, validate and test, and whether the holdout is strictly separated.

    Attributes
    ----------
    fit_cutoffs : list of Timestamp
        Snapshots the models learn from.
    valid_cutoff : Timestamp
        The latest training snapshot: early stopping, calibration and the search score on it.
    holdout_cutoff : Timestamp
        The latest cutoff whose label window fits in the data; metrics are reported on it.
    strict : bool
        True when every training label window ends on or before the holdout cutoff
        (``cutoff + horizon <= holdout_cutoff``). False on short histories, where training
        labels overlap the holdout period: the run still trains and says so.
    data_end : Timestamp
        First day after the last order; label windows must end on or before it.
    note : str
        One line that says what was chosen and why.
    """

    fit_cutoffs: list[pd.Timestamp]
    valid_cutoff: pd.Timestamp
    holdout_cutoff: pd.Timestamp
    strict: bool
    data_end: pd.Timestamp
    note: str

    @property
    def training_cutoffs(self) -> list[pd.Timestamp]:
        """Fit and validation cutoffs, oldest first."""
        return [*self.fit_cutoffs, self.valid_cutoff]

    @property
    def all_cutoffs(self) -> list[pd.Timestamp]:
        """Every cutoff with a complete label window (the refit uses all of them)."""
        return sorted({*self.training_cutoffs, self.holdout_cutoff})


def temporal_split(
    first_order: pd.Timestamp,
    last_order: pd.Timestamp,
    *,
    horizon_days: int,
    step_days: int = 30,
    max_train_cutoffs: int = 12,
    min_history_days: int = 90,
) -> CutoffPlan:
    """Plan the cutoffs for data spanning ``first_order`` to ``last_order``.

    The holdout is the latest cutoff with ``cutoff + horizon <= data_end``. Training cutoffs
    step back from ``holdout - horizon`` every ``step_days`` (the gap rule), no earlier than
    ``min_history_days`` after the first order. When no cutoff satisfies the gap rule, the
    training cutoffs step back from just before the holdout instead and the plan is marked not
    strict.

    Parameters
    ----------
    first_order, last_order : Timestamp
        Span of the order history.
    horizon_days : int
        Label window length.
    step_days : int
        Spacing of the training cutoffs.
    max_train_cutoffs : int
        At most this many training cutoffs (the most recent ones), bounding memory and time.
    min_history_days : int
        The earliest cutoff is at least this long after the first order.

    Returns
    -------
    CutoffPlan
    """
    if step_days <= 0 or max_train_cutoffs < 2:
        raise ValueError(
            f"step_days must be > 0 and max_train_cutoffs >= 2; got {step_days}, "
            f"{max_train_cutoffs}"
        )
    data_start = pd.Timestamp(first_order).normalize()
    data_end = pd.Timestamp(last_order).normalize() + pd.Timedelta(days=1)
    span = (data_end - data_start).days
    horizon = pd.Timedelta(days=horizon_days)
    earliest = data_start + pd.Timedelta(days=min_history_days)
    holdout = data_end - horizon
    if holdout <= earliest:
        longest = max(span - min_history_days - 2 * step_days, 1)
        raise ValueError(
            f"horizon_days={horizon_days} is too long for {span} days of orders "
            f"({data_start.date()} to {data_end.date()}): a holdout needs {min_history_days} "
            f"days of history plus the horizon; use --horizon-days {longest} or less"
        )
    step = pd.Timedelta(days=step_days)
    strict_cutoffs = _step_back(holdout - horizon, earliest, step, max_train_cutoffs)
    if len(strict_cutoffs) >= 2:
        cutoffs, strict = strict_cutoffs, True
        note = (
            f"strict holdout at {holdout.date()}: {len(cutoffs)} training cutoffs from "
            f"{cutoffs[0].date()} to {cutoffs[-1].date()}, each label window ending on or before "
            "the holdout cutoff"
        )
    else:
        cutoffs = _step_back(holdout - step, earliest, step, max_train_cutoffs)
        if len(cutoffs) < 2:
            raise ValueError(
                f"{span} days of orders leave fewer than 2 training cutoffs before the holdout "
                f"at {holdout.date()} with horizon {horizon_days} days and step {step_days} "
                "days; use a shorter --horizon-days or --step-days"
            )
        strict = False
        note = (
            f"NOT a strict holdout: {span} days of orders are too short for training label "
            f"windows of {horizon_days} days to end before the holdout cutoff {holdout.date()}; "
            f"training cutoffs {cutoffs[0].date()} to {cutoffs[-1].date()} have labels that "
            "overlap the holdout period, so holdout metrics are optimistic"
        )
    return CutoffPlan(
        fit_cutoffs=cutoffs[:-1],
        valid_cutoff=cutoffs[-1],
        holdout_cutoff=holdout,
        strict=strict,
        data_end=data_end,
        note=note,
    )


def _step_back(
    latest: pd.Timestamp, earliest: pd.Timestamp, step: pd.Timedelta, limit: int
) -> list[pd.Timestamp]:
    out = []
    cutoff = latest
    while cutoff >= earliest and len(out) < limit:
        out.append(cutoff)
        cutoff -= step
    return sorted(out)
