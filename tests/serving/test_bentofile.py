"""The Bento installs the versions the project was tested with."""

import re
from importlib import metadata
from pathlib import Path

from import_closure import third_party
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _installed_with(names: set[str]) -> set[str]:
    """The distributions installing ``names`` brings: each with its requirements, at any depth.

    Read from the installed packages' metadata (this environment has the pinned versions).
    Extras are not followed: a Bento installs what its list names, nothing optional.
    """
    found: set[str] = set()
    pending = [canonicalize_name(name) for name in names]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return found


def test_the_bento_installs_every_package_the_service_imports():
    # bentofile.yaml lists the service's packages by hand, and the built Bento's environment
    # has only those (and BentoML's own). orjson (the /score fast path) and filelock
    # (training.tracking) were missing, both imported when the service starts, so a Bento
    # served from its own environment could not start; redis (the Redis lookup store) was
    # missing too.
    listed = set(pins((ROOT / "bentofile.yaml").read_text())) | {"bentoml"}
    installed = _installed_with(listed)
    distributions = metadata.packages_distributions()
    missing = {
        module: distributions.get(module, [])
        for module in third_party("serving.online.service")
        if not {canonicalize_name(d) for d in distributions.get(module, [])} & installed
    }
    assert not missing, f"imported by the service, not installed in the Bento: {missing}"
