"""`make impact` on a synthetic store: the estimate beside the planted truth, and in the report."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.generator import SynthParams
from demo.manifest import EVENTS_FILE, ORDERS_FILE, write_manifest
from serving.insight.impact import main
from serving.insight.impact_truth import TruthCheck, compare, ranks_agree, truth_path


def _by_kind(values, affected):
    kinds = ["late", "returns", "bad_tickets", "all"]
    return pd.DataFrame({"clv_gain": values, "affected": affected}, index=kinds)


def test_compare_puts_estimate_and_truth_side_by_side():
    estimate = _by_kind([110.0, 45.0, 12.0, 170.0], [10, 5, 2, 14])
    truth = pd.DataFrame(
        {"value_lost": [100.0, 50.0, 0.0, 160.0], "customers": [10, 6, 2, 15]},
        index=estimate.index,
    )
    table = compare(estimate, truth)
    assert list(table.columns) == ["affected", "affected_truth", "estimate", "truth", "error_pct"]
    assert table.loc["late", "error_pct"] == pytest.approx(10.0)
    assert table.loc["returns", "error_pct"] == pytest.approx(-10.0)
    assert np.isnan(table.loc["bad_tickets", "error_pct"])  # nothing to compare with
    assert table.loc["returns", "affected_truth"] == 6
    assert ranks_agree(table)
    table.loc["bad_tickets", "estimate"] = 60.0  # now above returns, unlike the truth
    assert not ranks_agree(table)


def test_a_check_reads_back_as_written(tmp_path):
    estimate = _by_kind([110.0, 45.0, 12.0, 170.0], [10, 5, 2, 14])
    truth = pd.DataFrame(
        {"value_lost": [100.0, 50.0, 10.0, 160.0], "customers": [10, 6, 2, 15]},
        index=estimate.index,
    )
    check = TruthCheck("2025-01-01", 180, "models:/customer-value/1", {"customers": 9, "seed": 1},
                       compare(estimate, truth))  # fmt: skip
    back = TruthCheck.read(check.write(tmp_path / "impact_truth.json"))
    pd.testing.assert_frame_equal(back.table, check.table, check_dtype=False)
    assert (back.cutoff, back.horizon_days, back.model_uri) == (
        "2025-01-01",
        180,
        "models:/customer-value/1",
    )
    assert json.loads((tmp_path / "impact_truth.json").read_text())["ranks_agree"] is True


@pytest.fixture(scope="module")
def synthetic_copy(store, tmp_path_factory):
    """The session store's tables in a folder with the manifest the generator would write."""
    folder = tmp_path_factory.mktemp("synthetic")
    shutil.copy(store.orders_path, folder / ORDERS_FILE)
    shutil.copy(store.events_path, folder / EVENTS_FILE)
    # As conftest's `store` generated them.
    write_manifest(folder, customers=2000, seed=11, start="2023-01-01", end="2025-07-01",
                   params=asdict(SynthParams()))  # fmt: skip
    return folder


def impact_argv(folder: Path, model_uri: str, out: Path) -> list[str]:
    """``make impact``'s arguments for the orders and events in ``folder``."""
    return [
        "--orders", str(folder / ORDERS_FILE),
        "--events", str(folder / EVENTS_FILE),
        "--model-uri", model_uri,
        "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow  # the truth check needs a holdout cutoff: a model from the whole training
def test_make_impact_checks_a_synthetic_store_against_its_truth(
    trained_store, synthetic_copy, tmp_path, capsys
):
    out = tmp_path / "impact.parquet"
    assert main(impact_argv(synthetic_copy, trained_store.model_uri, out)) == 0
    printed = capsys.readouterr().out
    assert "Checked against the truth" in printed
    check = TruthCheck.read(truth_path(out))
    holdout = trained_store.result.plan.holdout
    assert check.cutoff == str(holdout.date())
    assert check.horizon_days == 180
    table = check.table
    assert list(table.index) == ["late", "returns", "bad_tickets", "all"]
    # Both sides measured something real: failures cost value, and the estimate sees them.
    assert (table["truth"] > 0).all() and (table["estimate"] > 0).all()
    # The estimate and the truth judge "late before the cutoff" by the same timestamps.
    assert table.loc["late", "affected"] == table.loc["late", "affected_truth"]
    # The same files elsewhere, without the manifest, are just a shop: no check, and an old
    # check beside the output is removed rather than left to be reported with new figures.
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(synthetic_copy / ORDERS_FILE, plain / ORDERS_FILE)
    shutil.copy(synthetic_copy / EVENTS_FILE, plain / EVENTS_FILE)
    assert main(impact_argv(plain, trained_store.model_uri, out)) == 0
    assert "Checked against the truth" not in capsys.readouterr().out
    assert not truth_path(out).exists()


def test_a_model_without_a_holdout_cutoff_gets_the_estimate_and_a_note(
    served_store, synthetic_copy, tmp_path, capsys
):
    """A version not trained by `make train` has no holdout to check at: no check, no failure."""
    out = tmp_path / "impact.parquet"
    truth_path(out).write_text("{}")  # from an earlier run: must not survive
    assert main(impact_argv(synthetic_copy, served_store.model_uri, out)) == 0
    printed = capsys.readouterr().out
    assert "not checked against the synthetic store's truth" in printed
    assert "plan.holdout_cutoff" in printed
    assert out.exists() and not truth_path(out).exists()
