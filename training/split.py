"""Choose the cutoffs of a training by time: the holdout and each fit's window cutoffs."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.run_inputs import data_end


@dataclass
class Plan:
    """The cutoffs of one training: data end, holdout, and each fit's window cutoffs."""

    data_start: pd.Timestamp
    data_end: pd.Timestamp
    holdout: pd.Timestamp
    window_days: int
    twin_cutoffs: list[pd.Timestamp]
    serving_cutoffs: list[pd.Timestamp]

    @property
    def note(self) -> str:
        """One line that says what was chosen."""
        return (
            f"holdout {self.holdout.date()} (data {self.data_start.date()} to "
            f"{self.data_end.date()}); {self.window_days}-day label windows at "
            f"{len(self.twin_cutoffs)} cutoffs up to {self.twin_cutoffs[-1].date()} for the "
            f"evaluation model, {len(self.serving_cutoffs)} up to "
            f"{self.serving_cutoffs[-1].date()} for the serving model"
        )


def plan_cutoffs(
    orders: pd.DataFrame,
    *,
    horizon_days: int,
    window_days: int,
    step_days: int,
    max_cutoffs: int,
    min_history_days: int,
) -> Plan:
    """Choose the holdout and the window cutoffs for data ending after the last order.

    The holdout is ``data_end - horizon``: the latest cutoff whose horizon is complete. Window
    cutoffs step back every ``step_days`` from ``cutoff - window`` (so every window label ends
    on or before the fit's cutoff), no earlier than ``min_history_days`` after the first order,
    at most ``max_cutoffs`` of them. The window is capped at the horizon.

    Raises
    ------
    ValueError
        When the history is too short to hold a horizon-long holdout after one window cutoff,
        naming the longest horizon it supports.
    """
    start = orders["ordered_at"].min().normalize()
    end = data_end(orders)
    window = min(window_days, horizon_days)
    holdout = end - pd.Timedelta(days=horizon_days)
    earliest = start + pd.Timedelta(days=min_history_days)
    step = pd.Timedelta(days=step_days)
    twin = window_cutoffs(holdout, earliest, window, step, max_cutoffs)
    if not twin:
        span = (end - start).days
        longest = longest_horizon(span, window_days, min_history_days)
        advice = f"use --horizon-days {longest} or less" if longest else "no horizon fits"
        raise ValueError(
            f"horizon_days={horizon_days} is too long for {span} days of orders "
            f"({start.date()} to {end.date()}): the holdout needs the horizon plus "
            f"{min_history_days} days of history and one {window}-day window before "
            f"it; {advice}, or bring a longer history"
        )
    serving = window_cutoffs(end, earliest, window, step, max_cutoffs)
    return Plan(start, end, holdout, window, twin, serving)


def longest_horizon(span_days: int, window_days: int, min_history_days: int) -> int:
    """The longest horizon, in days, that ``span_days`` of orders hold as training plans it.

    :func:`plan_cutoffs` needs ``span >= horizon + min(window, horizon) +
    min_history``: a strict holdout one horizon long, one label window before it and
    ``min_history_days`` before that window. 0 when no horizon fits.
    """
    room = span_days - min_history_days
    if room - window_days >= window_days:
        return room - window_days
    return max(room // 2, 0)


def window_cutoffs(
    cutoff: pd.Timestamp, earliest: pd.Timestamp, window: int, step: pd.Timedelta, limit: int
) -> list[pd.Timestamp]:
    """The window cutoffs of a fit at ``cutoff``: every ``step`` back from ``cutoff - window``.

    None before ``earliest``; at most ``limit`` (the latest), in date order.
    """
    out: list[pd.Timestamp] = []
    c = cutoff - pd.Timedelta(days=window)
    while c >= earliest and len(out) < limit:
        out.append(c)
        c -= step
    return sorted(out)
