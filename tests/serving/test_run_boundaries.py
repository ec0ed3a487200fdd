"""Guards of a run's two boundaries: its inputs (one loader, one refusal) and its model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from features.run_inputs import NoUsableOrders, load_run_inputs

ROOT = Path(__file__).resolve().parents[2]
#: The commands that score with a registry model and stamp their output with its version.
STAMPING = ("serving/batch/base_scoring.py", "serving/batch/spark.py", "serving/insight/impact.py")
#: Every command that reads a shop's orders and events.
ENTRY_POINTS = (
    "training/config.py",  # training.train's flags
    "training/backtest.py",
    "training/readiness.py",
    "serving/base_inputs.py",  # serving.batch, serving.spark, serving.impact
    "serving/insight/report.py",
)


def _calls(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                names.add(f"{func.value.id}.{func.attr}")
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


@pytest.mark.parametrize("path", STAMPING)
def test_stamping_commands_open_their_model_once(path):
    # Loading by alias and asking the alias for its version apart could stamp a version that
    # did not score: tracking.open_model resolves once and loads exactly that version.
    calls = _calls(path)
    assert "tracking.open_model" in calls
    assert "tracking.version_info" not in calls
    if "impact" not in path:  # the impact's truth check loads the twin of the pinned version
        assert "tracking.load_model" not in calls


@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_entry_points_declare_their_inputs_with_the_shared_flags(path):
    text = (ROOT / path).read_text()
    assert "add_input_arguments(" in text or "add_file_arguments(" in text
    assert '"--orders"' not in text.replace('{"--orders"', "").replace('"--orders": ', "")


def test_the_refusal_of_unusable_orders_is_written_once():
    # One message for every command: the file, its rows read and quarantined, and why.
    sources = [p for d in ("features", "training", "serving") for p in (ROOT / d).rglob("*.py")]
    writers = [p.relative_to(ROOT) for p in sources if "no usable orders in" in p.read_text()]
    assert writers == [Path("features/run_inputs.py")]


def test_unusable_orders_are_refused_with_the_file_and_counts(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,ordered_at,amount\na,2024-01-01,-3\nb,not a date,4\n")
    with pytest.raises(NoUsableOrders) as err:
        load_run_inputs(path, None, quarantine_dir=tmp_path / "q")
    assert f"no usable orders in {path}: 2 rows read, 2 quarantined (" in str(err.value)
    assert (tmp_path / "q").is_dir()  # the rows set aside are written before the refusal


def test_run_inputs_carry_the_data_end(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,ordered_at,amount\na,2024-01-01 10:00,3\nb,2024-02-03 23:59,4\n")
    inputs = load_run_inputs(path, None)
    assert str(inputs.data_end) == "2024-02-04 00:00:00"
    assert inputs.quarantined == {"orders": 0}
