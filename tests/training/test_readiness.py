"""The readiness report: verdicts on a demo-like store, a tiny slice, filtered and real logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from demo.generator import generate, write_tables
from features.io import load_orders, validate_events, validate_orders
from training.readiness import (
    MAX_QUARANTINE_SHARE,
    NOT_ENOUGH_DATA,
    READY,
    READY_WITH_CAVEATS,
    NotReady,
    assess,
    check_before_training,
    main,
)
from training.split import longest_horizon

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EVENT_LOG = SHARED_DATA / "rfmr_event_orders" / "transactions.csv"
RETAIL_LOG = SHARED_DATA / "rfmr_retail_orders" / "transactions.csv"


@pytest.fixture(scope="module")
def store() -> tuple[pd.DataFrame, pd.DataFrame]:
    """3,000 synthetic customers over the demo's four years (generated in under a second)."""
    orders, events = generate(customers=3000, seed=2, start="2022-07-01", end="2026-07-01")
    return validate_orders(orders, strict=True).frame, validate_events(events, strict=True).frame


def slice_of(orders: pd.DataFrame, events: pd.DataFrame, days: int, customers: int):
    """The last ``days`` of the store, for ``customers`` customers drawn at random."""
    end = orders["ordered_at"].max().normalize() + pd.Timedelta(days=1)
    recent = orders[orders["ordered_at"] >= end - pd.Timedelta(days=days)]
    keep = pd.Series(recent["customer_id"].unique()).sample(customers, random_state=3)
    return (
        recent[recent["customer_id"].isin(keep)].reset_index(drop=True),
        events[
            events["customer_id"].isin(keep) & (events["occurred_at"] >= recent["ordered_at"].min())
        ],
    )


def test_demo_like_store_is_ready_without_caveats(store):
    orders, events = store
    readiness = assess(orders, events, horizon_days=365, quarantined={"orders": 0})
    assert readiness.verdict == READY
    assert readiness.failures == [] and readiness.caveats == []
    # 92% of its customers are repeat buyers (a loyal, frequent shop), yet its newest customers
    # are as often one-time buyers as last year's, so it is not taken for a filtered file.
    assert readiness.facts["repeat_share"] > 0.9
    assert readiness.facts["strict_holdout"] and readiness.facts["training_cutoffs"] == 26
    assert readiness.to_text().rstrip().endswith("Verdict: ready: every threshold is met")


def test_sixty_days_of_two_hundred_customers_is_not_enough(store):
    orders, events = slice_of(*store, days=60, customers=200)
    readiness = assess(orders, events, horizon_days=365, quarantined={"orders": 0})
    assert readiness.verdict == NOT_ENOUGH_DATA
    assert len(readiness.failures) == 3
    history, repeat, holdout = readiness.failures
    assert history.startswith("history: 60 days of orders; required at least 180 days")
    assert "MIN_HISTORY_DAYS" in history
    assert repeat.startswith("repeat customers: ") and "required at least 500" in repeat
    assert holdout.startswith("strict holdout: 60 days of orders; required at least 515 days")
    assert "no horizon fits this history" in holdout
    text = readiness.to_text()
    assert "Verdict: not enough data: 3 hard threshold(s) failed" in text


def test_tiny_hand_built_history_counts_repeat_purchases_as_the_purchase_model_does():
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c", "c"],
            "ordered_at": [
                "2024-01-01",
                "2024-01-01T18:00",
                "2024-01-01",
                "2024-02-01",
                "2024-01-05",
                "2024-03-01",
            ],
            "amount": [10.0, 5.0, 20.0, 20.0, 8.0, 9.0],
            # b's second order was cancelled; a's two orders share a day: only c repeats.
            "status": ["completed", "completed", "completed", "cancelled", "completed", "returned"],
        }
    )
    readiness = assess(validate_orders(raw, strict=True).frame, None, horizon_days=30)
    facts = readiness.facts
    assert facts["customers"] == 3
    assert facts["repeat_customers"] == 1
    assert facts["orders"] == 6 and facts["orders_per_customer"] == 2.0
    assert facts["history_days"] == 61
    assert facts["longest_horizon_days"] == 0
    assert readiness.verdict == NOT_ENOUGH_DATA
    assert "quarantined rows" in dict(readiness.lines)
    assert dict(readiness.lines)["quarantined rows"].startswith("not known")


def test_file_filtered_to_repeat_buyers_gets_a_caveat(store):
    orders, events = store
    days = orders.assign(day=orders["ordered_at"].dt.normalize()).groupby("customer_id")["day"]
    repeaters = days.nunique().index[days.nunique() >= 2]
    filtered = orders[orders["customer_id"].isin(repeaters)].reset_index(drop=True)
    readiness = assess(filtered, events, horizon_days=365)
    assert readiness.verdict == READY_WITH_CAVEATS
    (caveat,) = readiness.caveats
    assert caveat.startswith("filtered to repeat buyers?")
    assert "MAX_REPEAT_SHARE" in caveat and "FILTERED_SINGLE_RATIO" in caveat
    assert readiness.facts["newest_single_share"] < 0.05


def test_file_cut_after_a_year_of_trading_starts_mid_life(store):
    orders, events = store
    cut = orders[orders["ordered_at"] >= "2023-07-01"].reset_index(drop=True)
    readiness = assess(cut, events[events["occurred_at"] >= "2023-07-01"], horizon_days=365)
    assert readiness.facts["mid_life_start"]
    assert any(c.startswith("the file probably starts mid-life") for c in readiness.caveats)
    assert readiness.facts["first_days_ratio"] >= 2.0


def test_no_service_data_and_heavy_quarantine_are_caveats(store):
    orders, _ = store
    bad = int(len(orders) * MAX_QUARANTINE_SHARE) + 50
    readiness = assess(
        orders,
        None,
        horizon_days=365,
        quarantined={"orders": bad},
        problems=[
            "orders file 'x.csv': column 'amount' has 7 negative values; expected amount >= 0"
        ],
    )
    assert readiness.verdict == READY_WITH_CAVEATS
    service, quarantine = readiness.caveats
    assert service.startswith("no service data: no service events file")
    assert quarantine.startswith(f"heavy quarantine: {bad:,} of {len(orders) + bad:,} orders rows")
    assert "MAX_QUARANTINE_SHARE" in quarantine and "7 negative values" in quarantine


def test_check_before_training_refuses_below_hard_thresholds_unless_forced(store, caplog):
    orders, events = slice_of(*store, days=60, customers=200)
    with pytest.raises(
        NotReady,
        match=r"(?s)3 hard threshold\(s\) failed.*history: 60 days.*"
        r"pass --force to train anyway",
    ) as raised:
        check_before_training(orders, events, horizon_days=365, quarantined={"orders": 0})
    assert isinstance(raised.value, ValueError)
    assert raised.value.readiness.verdict == NOT_ENOUGH_DATA
    with caplog.at_level(logging.INFO, logger="training.readiness"):
        readiness = check_before_training(orders, events, horizon_days=365, force=True)
    assert readiness.verdict == NOT_ENOUGH_DATA
    assert "Verdict: not enough data" in caplog.text
    assert "training anyway (--force) with 3 hard threshold(s) failed" in caplog.text


def test_ready_data_passes_the_training_check(store):
    orders, events = store
    assert check_before_training(orders, events, horizon_days=365).verdict == READY


@pytest.mark.parametrize("span", [60, 62, 150, 180, 240, 241, 515, 700])
def test_longest_horizon_is_the_one_training_split_accepts(span):
    from training.split import plan_cutoffs

    first = pd.Timestamp("2024-01-01")
    orders = pd.DataFrame({"ordered_at": [first, first + pd.Timedelta(days=span - 1)]})

    def fits(horizon: int) -> bool:
        try:
            plan_cutoffs(
                orders,
                horizon_days=horizon,
                window_days=90,
                step_days=14,
                max_cutoffs=26,
                min_history_days=60,
            )
        except ValueError:
            return False
        return True

    longest = longest_horizon(span, 90, 60)
    assert (longest == 0 or fits(longest)) and not fits(longest + 1)


def test_the_cutoff_plan_defaults_have_one_source():
    # FitSettings holds them; training's flags and readiness's verdict must plan the same
    # cutoffs as the fit unless told otherwise.
    import inspect

    from training.config import FitSettings, TrainConfig, parse_args

    plan = ("window_days", "step_days", "max_cutoffs", "min_history_days")
    defaults = FitSettings()
    fields = {k: getattr(defaults, k) for k in plan}
    assert {k: getattr(TrainConfig().fit_settings(), k) for k in plan} == fields
    assert {k: getattr(parse_args([]).fit_settings(), k) for k in plan} == fields
    for judge in (assess, check_before_training):
        given = inspect.signature(judge).parameters
        assert {k: given[k].default for k in plan} == fields


def test_cli_exit_codes(store, tmp_path, capsys):
    orders, events = store
    ready = write_tables(orders, events, tmp_path / "ready")
    small = write_tables(*slice_of(orders, events, days=60, customers=200), tmp_path / "small")
    args = [
        "--orders",
        str(ready / "orders.parquet"),
        "--events",
        str(ready / "service_events.parquet"),
    ]
    assert main(args) == 0
    assert "Verdict: ready" in capsys.readouterr().out
    assert main([*args, "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("## Data readiness for a 365-day horizon")
    assert main(["--orders", str(small / "orders.parquet")]) == 1
    assert "Verdict: not enough data" in capsys.readouterr().out
    assert main(["--orders", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv' does not exist" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("cust,date,amount\na,2024-01-01,3\n")
    assert main(["--orders", str(tmp_path / "bad.csv")]) == 2
    assert "missing required column(s) 'customer_id', 'ordered_at'" in capsys.readouterr().err
    (tmp_path / "unusable.csv").write_text("customer_id,ordered_at,amount\na,2024-01-01,-3\n")
    assert main(["--orders", str(tmp_path / "unusable.csv")]) == 2
    err = capsys.readouterr().err
    assert "no usable orders in" in err and "unusable.csv: 1 rows read, 1 quarantined" in err


def _real(path: Path):
    if not path.exists():
        pytest.skip(f"real log {path} is absent (../shared/data is not checked out here)")
    return load_orders(path, columns="ordered_at=date").frame


def test_event_log_lists_its_caveats():
    readiness = assess(_real(EVENT_LOG), None, horizon_days=365, quarantined={"orders": 0})
    assert readiness.verdict == READY_WITH_CAVEATS and readiness.failures == []
    starts = [caveat.split(":")[0].split("?")[0] for caveat in readiness.caveats]
    assert starts[:3] == ["short history", "no service data", "filtered to repeat buyers"]


@pytest.mark.slow  # reads the 11 MB real retail log
def test_retail_log_starts_mid_life():
    readiness = assess(_real(RETAIL_LOG), None, horizon_days=365, quarantined={"orders": 0})
    assert readiness.verdict == READY_WITH_CAVEATS and readiness.failures == []
    assert any(c.startswith("the file probably starts mid-life") for c in readiness.caveats)
    assert not any(c.startswith("filtered to repeat buyers") for c in readiness.caveats)
    assert readiness.facts["first_days_came_back"] > 1.5 * readiness.facts["year_later_came_back"]
