"""The Bento installs the versions the project was tested with."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", re.MULTILINE)


def pins(text: str) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}


def test_bentofile_pins_match_constraints():
    # bentofile.yaml lists the runtime packages by hand; they must not drift from the lock.
    bento = pins((ROOT / "bentofile.yaml").read_text())
    locked = pins((ROOT / "constraints.txt").read_text())
    assert {"xgboost-cpu", "mlflow", "pandas", "numpy"} <= set(bento)
    drifted = {name: (version, locked.get(name)) for name, version in bento.items()}
    drifted = {name: pair for name, pair in drifted.items() if pair[0] != pair[1]}
    assert not drifted, f"bentofile.yaml pin != constraints.txt: {drifted}"
