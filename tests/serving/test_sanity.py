"""The sanity suite: each check finds its planted contradiction, and real scores have none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.run_files import RunStamp
from serving.sanity import RunRows, check_rows, load_run, main

GOOD = {
    "customer_id": "ok",
    "cutoff": pd.Timestamp("2025-01-01"),
    "horizon_days": 180,
    "clv": 100.0,
    "clv_low": 20.0,
    "clv_high": 250.0,
    "p_churn": 0.3,
    "p_active": 0.8,
    "expected_orders": 1.5,
    "next_order_date": "2025-03-01",
    "avg_days_between_orders": 40.0,
    "value_segment": "high",
    "risk_segment": "low",
    "action": "maintain",
    "reasons": "↓ last order 10 days ago; ↓ 5 orders in total",
    "value_reasons": "↑ 1,000 spent in total",
}
HISTORY = {"days_since_first_order": 400.0, "days_since_last_order": 10.0, "frequency": 4.0}
#: One row per check, each contradicting exactly that check (and the history it needs).
PLANTED: dict[str, tuple[dict[str, object], dict[str, float]]] = {
    "silent_one_timer": (
        {
            "p_churn": 0.36,
            "p_active": 1.0,
            "next_order_date": None,
            "avg_days_between_orders": np.nan,
        },
        {"frequency": 0.0, "days_since_last_order": 683.0, "days_since_first_order": 683.0},
    ),
    "active_beside_churn": (
        {
            "p_churn": 0.99,
            "p_active": 1.0,
            "risk_segment": "high",
            "action": "win back",
            "next_order_date": None,
            "reasons": "↑ last order 300 days ago",
        },
        {},
    ),
    "new_win_back": (
        {
            "p_churn": 0.8,
            "p_active": 0.3,
            "risk_segment": "high",
            "action": "win back",
            "next_order_date": None,
            "reasons": "↑ only one order so far",
        },
        {"days_since_first_order": 40.0},
    ),
    "clv_outside_range": ({"clv": 478.8, "clv_low": 0.0, "clv_high": 300.0}, {}),
    "zero_range": ({"clv": 0.0, "clv_low": 0.0, "clv_high": 0.0, "p_churn": 0.48}, {}),
    # What the retailer's scores showed before the range was calibrated per risk group: a
    # likely buyer's range [68, 100] beside a CLV of 100. ([0, 100] is no finding: the zero
    # and the buyers under the mean can hold the level together.)
    "range_tops_at_clv": ({"clv_low": 68.0, "clv_high": 100.0}, {}),
    "date_past_horizon": ({"next_order_date": "2027-01-01"}, {}),
    "sub_day_gap": ({"avg_days_between_orders": 0.0}, {}),
    "orders_below_chance": ({"expected_orders": 0.5}, {}),
    "no_order_lowers_risk": (
        {
            "p_churn": 0.5,
            "risk_segment": "medium",
            "next_order_date": None,
            "reasons": "↓ 60% chance of no order in the horizon (purchase pattern)",
        },
        {},
    ),
    # What the real event log's scores showed: the trees weigh 2.4x against a base where most
    # customers are far more overdue.
    "overdue_against_reading": (
        {"reasons": "↓ 5 orders in total; ↓ last order 2.4x the usual gap between orders ago"},
        {},
    ),
    # What the demo store's scores showed before the reasons were read against the usual
    # customer: 12 orders in total as a risk, where the other rows' 5 are none.
    "history_read_both_ways": ({"reasons": "↓ last order 10 days ago; ↑ 12 orders in total"}, {}),
    "reasons_against_risk": (
        {
            "p_churn": 0.9,
            "p_active": 0.1,
            "risk_segment": "high",
            "action": "let go",
            "next_order_date": None,
            "reasons": "↓ a; ↓ b; ↓ c",
        },
        {},
    ),
    "value_reason_off": (
        {"value_reasons": "↑ 950 expected over the horizon (purchase pattern)"},
        {},
    ),
    # What the demo store's scores showed: BG/NBD's chance beside the stack's served one.
    "chance_reason_off": (
        {
            "p_churn": 0.59,
            "risk_segment": "medium",
            "reasons": "↓ 22% chance of no order in the horizon (purchase pattern)",
        },
        {},
    ),
    "data_gap_reason": (
        {"reasons": "↓ returns unknown (no order statuses in the last 365 days)"},
        {},
    ),
    # What the real event log's scores showed before the features were merged.
    "one_fact_twice": (
        {"value_reasons": "↓ customer for 347 days; ↑ 1,000 spent; ↓ first purchase 347 days ago"},
        {},
    ),
}


def planted_rows() -> RunRows:
    rows, history = [], []
    for name, (changes, past) in PLANTED.items():
        rows.append({**GOOD, "customer_id": name, **changes})
        history.append({**HISTORY, **past})
    rows.append(dict(GOOD))
    history.append(dict(HISTORY))
    return RunRows(pd.DataFrame(rows), pd.DataFrame(history), 0.8)


def test_each_check_counts_its_planted_row_and_nothing_else():
    findings = {f.name: f for f in check_rows(planted_rows())}
    assert set(findings) == set(PLANTED)
    for name, finding in findings.items():
        assert finding.count == 1, (name, finding)
        assert finding.example.startswith(f"{name}:"), finding.example


def test_history_checks_say_they_were_not_run_without_the_feature_table():
    rows = planted_rows()
    findings = {f.name: f for f in check_rows(RunRows(rows.scores, None, 0.8))}
    for name in ("silent_one_timer", "new_win_back"):
        assert findings[name].checked == 0
        assert "not checked" in findings[name].example


def _write(frame: pd.DataFrame, path, run_id: str) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    stamp = RunStamp(run_id=run_id, cutoff="2025-01-01 00:00:00", model_name="m", model_version="1")
    pq.write_table(table.replace_schema_metadata(stamp.metadata()), path)


def test_a_feature_table_of_another_run_is_refused(tmp_path):
    rows = planted_rows()
    _write(rows.scores, tmp_path / "scores.parquet", "run-a")
    features = rows.history.assign(customer_id=rows.scores["customer_id"])
    _write(features, tmp_path / "online_features.parquet", "run-b")
    with pytest.raises(ValueError, match="from run run-b, the scores .* from run run-a"):
        load_run(tmp_path / "scores.parquet", tmp_path / "online_features.parquet")
    assert main(["--scores", str(tmp_path / "scores.parquet")]) == 2


def test_the_command_fails_on_contradictions_unless_they_are_allowed(tmp_path, capsys):
    rows = planted_rows()
    _write(rows.scores, tmp_path / "scores.parquet", "run-a")
    features = rows.history.assign(customer_id=rows.scores["customer_id"])
    _write(features, tmp_path / "online_features.parquet", "run-a")
    assert main(["--scores", str(tmp_path / "scores.parquet")]) == 1
    out = capsys.readouterr().out
    assert "failed: silent_one_timer" in out and f"{len(PLANTED) + 1} rows scored" in out
    allowed = [arg for name in PLANTED for arg in ("--allow", name)]
    assert main(["--scores", str(tmp_path / "scores.parquet"), *allowed]) == 0
    assert main(["--scores", str(tmp_path / "scores.parquet"), "--allow", "nonsense"]) == 2


def test_a_served_models_batch_scores_have_no_contradictions(latest_scores):
    # The whole scoring path (profile, reasons, segments, actions) on a synthetic store.
    config, _ = latest_scores
    findings = check_rows(load_run(config.out, config.features_out))
    assert {f.name: f.count for f in findings if f.count} == {}
    unchecked = {f.name for f in findings if not f.checked}
    # The small served model's reasons need not quote a purchase-pattern figure.
    assert unchecked <= {"value_reason_off", "chance_reason_off"}, unchecked


@pytest.mark.parametrize(
    ("reasons", "twice"),
    [
        ("↓ customer for 347 days; ↓ first purchase 347 days ago", True),
        ("↑ customer for 1 day; ↑ 5 orders in total; ↑ first purchase 1 day ago", True),
        ("↑ customer for 400 days; ↓ first purchase 380 days ago", False),
        ("↑ only one order so far; ↑ 0 days between first and last purchase", True),
        ("↑ 1 order in total; ↓ only one order so far (no usual gap)", True),
        ("↓ only one order so far; ↓ no repeat orders yet; ↓ 17 spent in total", True),
        ("↑ only one order so far; ↓ 0 orders in the last 90 days", False),
        ("↑ 31 orders in total; ↑ only one order so far", False),
        ("↑ last order 9 days ago; ↓ 5 orders in total; ↓ last order 9 days ago", True),
        ("↑ 16 spent in total; ↑ 0.1 orders expected; ↓ 16 spent in the last 365 days", True),
        ("↓ 0 orders in the last 90 days; ↓ 0 orders in the last 365 days", True),
        ("↓ 1,250 spent in the last 365 days; ↓ 1,300 spent in total", False),
        ("↑ 2 orders in the last 90 days; ↑ 2 spent in total", False),
    ],
)
def test_one_fact_twice_is_found_in_any_of_its_wordings(reasons, twice):
    rows = planted_rows()
    scores = pd.DataFrame([{**GOOD, "reasons": reasons}])
    (finding,) = [
        f
        for f in check_rows(RunRows(scores, rows.history.iloc[:1], 0.8))
        if f.name == "one_fact_twice"
    ]
    assert finding.count == int(twice)


def test_a_likely_buyers_range_from_zero_to_the_clv_is_no_finding():
    # Near p_churn .5 with a skewed spend, the zero and the buyers under their mean can hold
    # the level together: [0, clv] may be a calibrated range, not a contradiction.
    row = {**GOOD, "clv": 84.0, "clv_low": 0.0, "clv_high": 84.0, "p_churn": 0.46}
    rows = RunRows(pd.DataFrame([row]), pd.DataFrame([HISTORY]), 0.8)
    finding = {f.name: f for f in check_rows(rows)}["range_tops_at_clv"]
    assert (finding.count, finding.checked) == (0, 1)


def test_a_whole_history_figure_is_read_against_the_other_rows_on_either_side():
    # Churn: "↑" is the risky side; value: "↓". A risky figure at or under every figure shown
    # as none reads right ("only 300 spent" is less than the 329 others are praised for).
    rows = [
        {"reasons": "↑ only 300 spent in total", "value_reasons": "↓ average order value 30"},
        {"reasons": "↓ 329 spent in total", "value_reasons": "↑ average order value 30"},
        {"reasons": "↑ 2 orders in total", "value_reasons": "↓ only bought on 1 repeat day"},
        {"reasons": "↓ 7 orders in total", "value_reasons": "↑ bought on 3 repeat days"},
    ]
    frame = pd.DataFrame([{**GOOD, "customer_id": str(i), **row} for i, row in enumerate(rows)])

    def count(scores: pd.DataFrame) -> int:
        findings = check_rows(RunRows(scores, None, 0.8))
        return next(f.count for f in findings if f.name == "history_read_both_ways")

    assert count(frame) == 0
    # More shown as a risk than another row's shown as none, in either column.
    worse = frame.copy()
    worse.loc[2, "reasons"] = "↑ 9 orders in total"
    worse.loc[3, "value_reasons"] = "↓ bought on 4 repeat days; ↑ 1,000 spent in total"
    worse.loc[0, "value_reasons"] = "↑ bought on 3 repeat days"
    assert count(worse) == 2
