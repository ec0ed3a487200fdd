"""Sanity checks over a scores file: rows that contradict themselves or the customer's history.

``python -m serving.sanity --scores models/scores/scores.parquet`` (``make sanity``) reads a
batch run's scores and, when the run wrote one, its online feature table (the customer's
history at the cutoff: first and last order, purchase days), and counts the rows a marketer
would read as wrong:

- a one-time buyer silent for a whole horizon served as low risk or as surely active;
- ``p_active`` of at least .9 beside ``p_churn`` of at least .9;
- a customer in their first horizon told to be won back, reactivated or let go;
- ``clv`` outside its own range ``[clv_low, clv_high]``;
- a range ``[0, 0]`` although the chance of no order is under the range's level;
- a likely buyer (``p_churn`` under 1/2) whose range starts above zero yet tops out at the
  ``clv`` itself: a range that rules out no order says the customer buys, and a buyer's
  spend is skewed upwards, so its top lies above the mean (a range ``[0, clv]`` can be right:
  the zero and the buyers under the mean together can hold the level);
- a ``next_order_date`` past the end of the horizon;
- ``avg_days_between_orders`` under one day;
- a reason "↓ N% chance of no order" with N >= 50;
- a reason "last order Nx the usual gap between orders ago" whose arrow reads against the
  figure: a long overdue order (1.5x or more) lowering risk or raising value, or one on
  rhythm (0.5x or less) the other way;
- a whole-history figure (spent in total, orders in total, repeat days, and for the value
  the order values) shown as a risk while another row's lower figure is shown as none: more
  buying read as a risk in one row and less of it as no risk in the next;
- a high-risk customer whose churn reasons all lower the risk (or a low-risk one whose all
  raise it);
- a value reason quoting a purchase-pattern value more than twice the served CLV (or under
  half of it), or a reason quoting a purchase-pattern chance of no order more than a quarter
  away from the served ``p_churn``;
- a data gap as the top reason;
- two reasons of a row saying one fact ("customer for 347 days" beside "first purchase 347
  days ago", "only one order so far" beside "0 days between first and last purchase").

Each check prints its count and one example row. The exit status is 1 when any count is not
zero (``--allow`` names checks whose count is a documented exception), so a scheduler or CI
can run it after scoring.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from serving.explain import (
    DATA_GAP_PHRASES,
    OVERDUE_READS_LATE,
    OVERDUE_READS_ON_TIME,
    PROBABILITY_AGREEMENT,
)
from serving.run_files import DEFAULT_FEATURES_OUT, DEFAULT_OUT, RunStamp
from serving.segments import NEW_CUSTOMER_ACTIONS_REFUSED, RISK_TIERS
from training.profile import DEFAULT_LEVEL, LIKELY_BUYER_CHURN

logger = logging.getLogger(__name__)

#: The history columns the checks read from the run's feature table.
HISTORY_COLUMNS: tuple[str, ...] = ("days_since_first_order", "days_since_last_order", "frequency")
#: A value reason quoting the purchase pattern is out of line beyond this ratio to the CLV.
VALUE_RATIO = 2.0
_ARROW_REASON = re.compile(r"(?:^|; )([↑↓]) ")
_NO_ORDER_DOWN = re.compile(r"↓ (\d+)% chance of no order")
_OVERDUE = re.compile(r"([↑↓]) last order ([\d.]+)x the usual gap between orders ago")
_PATTERN_VALUE = re.compile(r"([↑↓]) ([\d,.]+) expected over the horizon \(purchase pattern\)")
_PATTERN_CHANCE = re.compile(r"[↑↓] (\d+)% chance of no order in the horizon \(purchase pattern\)")
#: A relative slack for comparing figures that went through float32 and rounding.
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Finding:
    """One check's outcome.

    Attributes
    ----------
    name : str
        The check's identifier (for ``--allow``).
    label : str
        What the check counts, in words.
    count : int
        Rows that fail it.
    checked : int
        Rows it applies to (0: not checked, e.g. no feature table).
    example : str
        One failing row, as ``customer_id: the figures that contradict``; empty when none.
    """

    name: str
    label: str
    count: int
    checked: int
    example: str = ""


@dataclass(frozen=True)
class RunRows:
    """A scores file's rows with the history they were scored from.

    Attributes
    ----------
    scores : pandas.DataFrame
        The scores file.
    history : pandas.DataFrame or None
        :data:`HISTORY_COLUMNS` per customer (same rows as ``scores``), or None without a
        feature table of the same run.
    level : float
        The level of the run's ``clv_low``-``clv_high`` range.
    """

    scores: pd.DataFrame
    history: pd.DataFrame | None
    level: float


def load_run(scores_path: Path, features_path: Path | None) -> RunRows:
    """Read a scores file and, when it is the same run's, its feature table.

    Raises
    ------
    FileNotFoundError
        When the scores file does not exist.
    ValueError
        When the feature table belongs to another run (a different run id in its stamp).
    """
    if not scores_path.exists():
        raise FileNotFoundError(
            f"scores file {str(scores_path)!r} does not exist; run `make score` first"
        )
    scores = pd.read_parquet(scores_path)
    stamp = RunStamp.from_metadata(pq.read_schema(scores_path).metadata)
    level = float(stamp.interval) if stamp.interval else DEFAULT_LEVEL
    history = None
    if features_path is not None and features_path.exists():
        table_stamp = RunStamp.from_metadata(pq.read_schema(features_path).metadata)
        if stamp.run_id and table_stamp.run_id != stamp.run_id:
            raise ValueError(
                f"feature table {str(features_path)!r} is from run {table_stamp.run_id or '?'}, "
                f"the scores {str(scores_path)!r} from run {stamp.run_id}; give the feature "
                "table of the same run (--features) or none (--features none)"
            )
        names = pq.read_schema(features_path).names
        wanted = [c for c in HISTORY_COLUMNS if c in names]
        table = pd.read_parquet(features_path, columns=["customer_id", *wanted])
        history = (
            table.set_index("customer_id")
            .reindex(scores["customer_id"].to_numpy())
            .reset_index(drop=True)
        )
    return RunRows(scores=scores, history=history, level=level)


def _example(rows: RunRows, mask: np.ndarray, columns: Sequence[str]) -> str:
    if not mask.any():
        return ""
    row = int(np.flatnonzero(mask)[0])
    frame = rows.scores
    parts = []
    for column in columns:
        if column in frame.columns:
            value = frame[column].iloc[row]
        elif rows.history is not None and column in rows.history.columns:
            value = rows.history[column].iloc[row]
        else:
            continue
        shown = f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)
        parts.append(f"{column}={shown}")
    return f"{frame['customer_id'].iloc[row]}: " + ", ".join(parts)


def _finding(
    rows: RunRows,
    name: str,
    label: str,
    mask: np.ndarray | None,
    applies: np.ndarray | None,
    columns: Sequence[str],
) -> Finding:
    if mask is None or applies is None:
        return Finding(name, label, 0, 0, "not checked: needs the run's feature table")
    mask = np.asarray(mask, dtype=bool) & np.asarray(applies, dtype=bool)
    return Finding(
        name, label, int(mask.sum()), int(np.sum(applies)), _example(rows, mask, columns)
    )


def _silent_one_timers(rows: RunRows) -> Finding:
    s, h = rows.scores, rows.history
    label = "one-time buyer silent a whole horizon, served as low risk or p_active >= .99"
    if h is None or not {"frequency", "days_since_last_order"} <= set(h.columns):
        return _finding(rows, "silent_one_timer", label, None, None, ())
    applies = (h["frequency"].to_numpy() == 0) & (
        h["days_since_last_order"].to_numpy() >= s["horizon_days"].to_numpy()
    )
    wrong = (s["risk_segment"].to_numpy() == "low") | (s["p_active"].to_numpy() >= 0.99)
    columns = ("days_since_last_order", "p_churn", "p_active", "risk_segment", "action")
    return _finding(rows, "silent_one_timer", label, wrong, applies, columns)


def _active_beside_churn(rows: RunRows) -> Finding:
    s = rows.scores
    wrong = (s["p_active"].to_numpy() >= 0.9) & (s["p_churn"].to_numpy() >= 0.9)
    return _finding(
        rows,
        "active_beside_churn",
        "p_active >= .9 beside p_churn >= .9",
        wrong,
        np.ones(len(s), dtype=bool),
        ("p_active", "p_churn"),
    )


def _new_told_win_back(rows: RunRows) -> Finding:
    s, h = rows.scores, rows.history
    label = f"customer in their first horizon told {' / '.join(NEW_CUSTOMER_ACTIONS_REFUSED)}"
    if h is None or "days_since_first_order" not in h.columns:
        return _finding(rows, "new_win_back", label, None, None, ())
    applies = h["days_since_first_order"].to_numpy() < s["horizon_days"].to_numpy()
    wrong = s["action"].isin(NEW_CUSTOMER_ACTIONS_REFUSED).to_numpy()
    columns = ("days_since_first_order", "action", "p_churn")
    return _finding(rows, "new_win_back", label, wrong, applies, columns)


def _clv_outside_range(rows: RunRows) -> Finding:
    s = rows.scores
    clv, low, high = (s[c].to_numpy(dtype="float64") for c in ("clv", "clv_low", "clv_high"))
    slack = _TOLERANCE * np.maximum(np.abs(clv), 1.0)
    applies = np.isfinite(low) & np.isfinite(high)
    wrong = (clv < low - slack) | (clv > high + slack)
    return _finding(
        rows,
        "clv_outside_range",
        "clv outside its own range [clv_low, clv_high]",
        wrong,
        applies,
        ("clv", "clv_low", "clv_high", "p_churn"),
    )


def _empty_range(rows: RunRows) -> Finding:
    s = rows.scores
    high = s["clv_high"].to_numpy(dtype="float64")
    wrong = (high == 0) & (s["p_churn"].to_numpy() < rows.level)
    return _finding(
        rows,
        "zero_range",
        f"range [0, 0] although P(no order) is under the range's level ({rows.level:g})",
        wrong,
        np.isfinite(high),
        ("clv", "clv_low", "clv_high", "p_churn", "expected_orders"),
    )


def _range_tops_at_clv(rows: RunRows) -> Finding:
    s = rows.scores
    clv, low, high = (s[c].to_numpy(dtype="float64") for c in ("clv", "clv_low", "clv_high"))
    slack = _TOLERANCE * np.maximum(np.abs(clv), 1.0)
    applies = np.isfinite(high) & (s["p_churn"].to_numpy() < LIKELY_BUYER_CHURN) & (clv > 0)
    return _finding(
        rows,
        "range_tops_at_clv",
        "likely buyer (p_churn < .5) whose range is [above 0, clv itself]",
        # Exactly at it (a range widened to reach it); above it is the check before.
        (low > 0) & (np.abs(high - clv) <= slack),
        applies,
        ("clv", "clv_low", "clv_high", "p_churn"),
    )


def _date_past_horizon(rows: RunRows) -> Finding:
    s = rows.scores
    dates = pd.to_datetime(s["next_order_date"], errors="coerce")
    end = pd.to_datetime(s["cutoff"]) + pd.to_timedelta(s["horizon_days"], unit="D")
    applies = dates.notna().to_numpy()
    wrong = (dates >= end).to_numpy(dtype=bool, na_value=False)
    return _finding(
        rows,
        "date_past_horizon",
        "next_order_date past the end of the horizon",
        wrong,
        applies,
        ("next_order_date", "cutoff", "p_churn"),
    )


def _sub_day_gap(rows: RunRows) -> Finding:
    gap = rows.scores["avg_days_between_orders"].to_numpy(dtype="float64")
    return _finding(
        rows,
        "sub_day_gap",
        "avg_days_between_orders under one day",
        gap < 1.0,
        np.isfinite(gap),
        ("avg_days_between_orders",),
    )


def _orders_below_chance(rows: RunRows) -> Finding:
    s = rows.scores
    # One order at least is placed with probability 1 - p_churn, so the mean is not below it;
    # the tolerance is the rounding of the two written columns.
    wrong = s["expected_orders"].to_numpy() < 1.0 - s["p_churn"].to_numpy() - 1e-6
    return _finding(
        rows,
        "orders_below_chance",
        "expected_orders under the chance of any order (1 - p_churn)",
        wrong,
        np.ones(len(s), dtype=bool),
        ("expected_orders", "p_churn"),
    )


def _no_order_lowering_risk(rows: RunRows) -> Finding:
    reasons = rows.scores["reasons"].fillna("")
    shares = reasons.str.extract(_NO_ORDER_DOWN, expand=False).astype("float64")
    return _finding(
        rows,
        "no_order_lowers_risk",
        'reason "↓ N% chance of no order" with N >= 50',
        (shares >= 50).to_numpy(dtype=bool, na_value=False),
        (reasons != "").to_numpy(),
        ("p_churn", "reasons"),
    )


def _overdue_against_reading(rows: RunRows) -> Finding:
    s = rows.scores
    wrong = np.zeros(len(s), dtype=bool)
    quoted = np.zeros(len(s), dtype=bool)
    # An arrow up is more risk in the churn reasons and more value in the value reasons.
    for column, risk_arrow in (("reasons", "↑"), ("value_reasons", "↓")):
        found = s[column].fillna("").str.extract(_OVERDUE)
        ratio = pd.to_numeric(found[1], errors="coerce").to_numpy()
        risk = (found[0] == risk_arrow).to_numpy()
        late, on_time = ratio >= OVERDUE_READS_LATE, ratio <= OVERDUE_READS_ON_TIME
        wrong |= (late & ~risk) | (on_time & risk)
        quoted |= np.isfinite(ratio)
    return _finding(
        rows,
        "overdue_against_reading",
        "reason 'last order Nx the usual gap ago' whose arrow reads against N",
        wrong,
        quoted,
        ("p_churn", "reasons", "value_reasons"),
    )


#: Whole-history figures that a reader takes as "more is a better customer"
#: (``serving.explain.MORE_IS_BETTER``), by the reasons column that quotes them: the figure is
#: the first group after the arrow.
_HISTORY_TOTALS: tuple[str, ...] = (
    r"([↑↓]) (?:only )?([\d,]+) spent in total",
    r"([↑↓]) (?:only )?([\d,]+) orders? in total",
    r"([↑↓]) (?:only )?bought on ([\d,]+) repeat days?",
)
_HISTORY_FIGURES: dict[str, tuple[str, ...]] = {
    "reasons": _HISTORY_TOTALS,
    "value_reasons": (
        *_HISTORY_TOTALS,
        r"([↑↓]) average order value ([\d,]+)",
        r"([↑↓]) repeat orders average ([\d,]+)",
    ),
}


def _history_read_both_ways(rows: RunRows) -> Finding:
    s = rows.scores
    wrong = np.zeros(len(s), dtype=bool)
    quoted = np.zeros(len(s), dtype=bool)
    # An arrow up is more risk in the churn reasons and more value in the value reasons.
    for column, risk_arrow in (("reasons", "↑"), ("value_reasons", "↓")):
        texts = s[column].fillna("")
        for pattern in _HISTORY_FIGURES[column]:
            found = texts.str.extract(r"(?:^|; )" + pattern + r"(?=;|$)")
            figure = pd.to_numeric(found[1].str.replace(",", ""), errors="coerce").to_numpy()
            shown = np.isfinite(figure)
            risk = shown & (found[0] == risk_arrow).to_numpy()
            none = shown & ~risk
            quoted |= shown
            if risk.any() and none.any():
                # A figure shown as a risk above another row's shown as none: the two arrows
                # cannot both be read as "more is better". Every such pair has its risky row
                # counted, so one side is enough (and counts the rows that read wrong).
                wrong |= risk & (figure > figure[none].min())
    return _finding(
        rows,
        "history_read_both_ways",
        "whole-history figure shown as a risk above another row's shown as none",
        wrong,
        quoted,
        ("reasons", "value_reasons"),
    )


def _arrows(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether every reason says ↑, and whether every one says ↓ (False if none)."""
    found = texts.fillna("").map(_ARROW_REASON.findall)
    ups = found.map(lambda arrows: bool(arrows) and all(a == "↑" for a in arrows))
    downs = found.map(lambda arrows: bool(arrows) and all(a == "↓" for a in arrows))
    return ups.to_numpy(dtype=bool), downs.to_numpy(dtype=bool)


def _reasons_against_risk(rows: RunRows) -> Finding:
    s = rows.scores
    all_up, all_down = _arrows(s["reasons"])
    high = s["risk_segment"].to_numpy() == RISK_TIERS[-1][0]
    low = s["risk_segment"].to_numpy() == RISK_TIERS[0][0]
    return _finding(
        rows,
        "reasons_against_risk",
        "high-risk customer whose churn reasons all say ↓ (or low-risk, all ↑)",
        (high & all_down) | (low & all_up),
        high | low,
        ("p_churn", "risk_segment", "reasons"),
    )


def _value_reason_off(rows: RunRows) -> Finding:
    s = rows.scores
    found = s["value_reasons"].fillna("").str.extract(_PATTERN_VALUE)
    quoted = pd.to_numeric(found[1].str.replace(",", ""), errors="coerce").to_numpy()
    clv = np.maximum(s["clv"].to_numpy(dtype="float64"), 1e-9)
    applies = np.isfinite(quoted)
    # The text shows whole units: the figure behind "1" lies anywhere in [0.5, 1.5).
    wrong = ((quoted - 0.5) / clv > VALUE_RATIO) | ((quoted + 0.5) / clv < 1.0 / VALUE_RATIO)
    return _finding(
        rows,
        "value_reason_off",
        f"value reason quoting a purchase-pattern value over {VALUE_RATIO:g}x the CLV "
        f"(or under 1/{VALUE_RATIO:g})",
        wrong,
        applies,
        ("clv", "value_reasons"),
    )


def _chance_reason_off(rows: RunRows) -> Finding:
    s = rows.scores
    p_churn = s["p_churn"].to_numpy(dtype="float64")
    wrong = np.zeros(len(s), dtype=bool)
    applies = np.zeros(len(s), dtype=bool)
    for column in ("reasons", "value_reasons"):
        found = s[column].fillna("").str.extract(_PATTERN_CHANCE)[0]
        quoted = pd.to_numeric(found, errors="coerce").to_numpy() / 100.0
        applies |= np.isfinite(quoted)
        # The text shows whole percents: the figure behind "22%" lies in [21.5%, 22.5%).
        with np.errstate(invalid="ignore"):
            wrong |= np.abs(quoted - p_churn) > PROBABILITY_AGREEMENT + 0.005
    return _finding(
        rows,
        "chance_reason_off",
        f"reason quoting a purchase-pattern chance of no order over "
        f"{PROBABILITY_AGREEMENT:.0%} from p_churn",
        wrong,
        applies,
        ("p_churn", "reasons", "value_reasons"),
    )


def _gap_as_top_reason(rows: RunRows) -> Finding:
    s = rows.scores
    gap = re.compile("|".join(DATA_GAP_PHRASES))
    wrong = np.zeros(len(s), dtype=bool)
    applies = np.zeros(len(s), dtype=bool)
    for column in ("reasons", "value_reasons"):
        first = s[column].fillna("").str.split("; ", n=1).str[0].str.slice(2)
        applies |= (first != "").to_numpy()
        wrong |= first.str.match(gap).to_numpy(dtype=bool, na_value=False)
    return _finding(
        rows,
        "data_gap_reason",
        "top churn or value reason is a data gap",
        wrong,
        applies,
        ("reasons", "value_reasons"),
    )


#: Two reasons of one row saying the first order's days twice, or the same words twice.
_SAME_DAYS_OR_WORDS = re.compile(
    r"customer for (\d+) days?\b.*first purchase \1 days? ago"
    r"|first purchase (\d+) days? ago.*customer for \2 days?\b"
    r"|(?:^|; )[↑↓] ([^;]+);(?:.*; )? ?[↑↓] \3(?:;|$)"
)
#: Reasons that each say "one order so far" (a customer with one order).
_ONE_ORDER_REASON = re.compile(
    r"[↑↓] (?:only one order so far|fewer than three orders|no repeat orders yet|0 days "
    r"between first and last purchase|bought on 0 repeat days|1 order in total)(?:;|$| \()"
)


#: A figure of spend or orders over a window or the whole history: two windows of one row
#: printing the same figure say one fact (nothing happened in the longer one's remainder).
_WINDOW_FIGURE = re.compile(
    r"[↑↓] (?:only )?([\d,.]+) (spent|orders?) in (?:the last \d+ days|total)(?=;|$| \()"
)


def _says_one_fact_twice(text: str) -> bool:
    if _SAME_DAYS_OR_WORDS.search(text) is not None or len(_ONE_ORDER_REASON.findall(text)) > 1:
        return True
    figures = [(figure, kind.rstrip("s")) for figure, kind in _WINDOW_FIGURE.findall(text)]
    return len(figures) != len(set(figures))


def _one_fact_twice(rows: RunRows) -> Finding:
    s = rows.scores
    wrong = np.zeros(len(s), dtype=bool)
    applies = np.zeros(len(s), dtype=bool)
    for column in ("reasons", "value_reasons"):
        texts = s[column].fillna("")
        applies |= texts.str.contains("; ", regex=False).to_numpy(dtype=bool)
        # (A search per row: the pattern's back-references need groups, which str.contains
        # warns about.)
        wrong |= np.array([_says_one_fact_twice(text) for text in texts], bool)
    return _finding(
        rows,
        "one_fact_twice",
        "churn or value reasons saying one fact twice",
        wrong,
        applies,
        ("reasons", "value_reasons"),
    )


#: Every check, in the order printed.
CHECKS: tuple[Callable[[RunRows], Finding], ...] = (
    _silent_one_timers,
    _active_beside_churn,
    _new_told_win_back,
    _clv_outside_range,
    _empty_range,
    _range_tops_at_clv,
    _date_past_horizon,
    _sub_day_gap,
    _orders_below_chance,
    _no_order_lowering_risk,
    _overdue_against_reading,
    _history_read_both_ways,
    _reasons_against_risk,
    _value_reason_off,
    _chance_reason_off,
    _gap_as_top_reason,
    _one_fact_twice,
)


def check_rows(rows: RunRows) -> list[Finding]:
    """Run every check of :data:`CHECKS` over a run's rows."""
    return [check(rows) for check in CHECKS]


def format_findings(findings: Sequence[Finding], rows: int) -> str:
    """The findings as a plain-text table with one example per failing check."""
    width = max(len(f.label) for f in findings)
    lines = [f"{'check':<{width}}  {'rows':>9}  {'of':>9}", "-" * (width + 22)]
    for f in findings:
        checked = f"{f.checked:>9,}" if f.checked else "        -"
        lines.append(f"{f.label:<{width}}  {f.count:>9,}  {checked}")
    examples = [f"  {f.name}: {f.example}" for f in findings if f.example]
    lines.append(f"{rows:,} rows scored")
    if examples:
        lines += ["examples / notes:", *examples]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m serving.sanity``."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.sanity",
        description="Count the scored rows that contradict themselves or the customer's history.",
    )
    parser.add_argument("--scores", type=Path, default=DEFAULT_OUT, help="a batch run's scores")
    parser.add_argument(
        "--features",
        default=None,
        help="the same run's online feature table (default: online_features.parquet beside "
        "the scores; 'none' to skip the history checks)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CHECK",
        help="a check whose non-zero count does not fail the run (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the sanity table; exit 1 when a check not allowed has failing rows."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.features is None:
        features: Path | None = args.scores.with_name(DEFAULT_FEATURES_OUT.name)
    elif args.features.lower() == "none":
        features = None
    else:
        features = Path(args.features)
    try:
        rows = load_run(args.scores, features)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    findings = check_rows(rows)
    print(format_findings(findings, len(rows.scores)))
    names = {check.name for check in findings}
    unknown = sorted(set(args.allow) - names)
    if unknown:
        print(f"error: --allow {unknown} names no check; expected one of {sorted(names)}")
        return 2
    failed = [f.name for f in findings if f.count and f.name not in args.allow]
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
