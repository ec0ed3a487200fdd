"""`make promote`: show the latest candidate against the champion, and promote on request."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from training import tracking
from training.config import add_name_argument, model_name_for
from training.gate import REPORT_METRICS

ROLES = ("model", "champion", "simple", "bgnbd", "pareto_nbd")


def comparison_table(version: tracking.RegisteredVersion) -> pd.DataFrame:
    """Tabulate the holdout metrics a version's training run logged.

    For itself, the champion of the time and the baselines, all on that run's holdout. The
    champion's column is named with the version it was then (``champion then (v3)``): the
    alias may have moved since, to this very version.
    """
    logged = tracking.version_metrics(version)
    judged = tracking.run_tags(version).get("judged_champion_version")
    names = {
        "model": f"v{version.version} (this)",
        "champion": f"champion then (v{judged})" if judged else "champion then",
    }
    table = pd.DataFrame(
        {
            names.get(role, role): [
                logged.get(f"holdout.{role}.{metric}", float("nan")) for metric in REPORT_METRICS
            ]
            for role in ROLES
        },
        index=pd.Index(REPORT_METRICS, name="metric"),
    )
    return table.dropna(axis=1, how="all")


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; with ``--force`` move ``champion`` to the chosen version."""
    parser = argparse.ArgumentParser(
        prog="python -m training.promote",
        description="Compare a registered version with the champion; --force promotes it.",
    )
    parser.add_argument("--version", help="version to show/promote (default: alias candidate)")
    parser.add_argument(
        "--force", action="store_true", help="point alias champion at it, whatever the gate said"
    )
    parser.add_argument(
        "--orders", help="the orders file the model was trained on (names the model, as training)"
    )
    add_name_argument(parser)
    args = parser.parse_args(argv)
    try:
        name = model_name_for(args.orders, args.name or None)
    except ValueError as err:
        parser.error(str(err))
    tracking.configure(experiment=name)
    version: tracking.RegisteredVersion | None
    if args.version:
        version = tracking.with_run(
            tracking.RegisteredVersion(name, args.version, "", f"models:/{name}/{args.version}")
        )
    else:
        version = tracking.alias_version(tracking.CANDIDATE, name)
    if version is None:
        print(
            f"no candidate of {name} registered yet; run `make train` first (with the same "
            "ORDERS=, or --name)",
            file=sys.stderr,
        )
        return 2
    champion = tracking.alias_version(tracking.CHAMPION, name)
    print(f"candidate: {version.name} v{version.version} (run {version.run_id})")
    now = f"v{champion.version}" if champion else "none"
    if champion is not None and champion.version == version.version:
        now += " (this version)"
    print(f"champion now: {now}")
    print("holdout metrics of this version's training run:")
    print(comparison_table(version).to_string(float_format=lambda v: f"{v:,.4f}"))
    gate = tracking.run_tags(version).get("gate_reasons", "")
    if gate:
        print(f"gate said: {gate}")
    if args.force:
        tracking.set_alias(tracking.CHAMPION, version.version, name)
        print(f"champion -> v{version.version} (forced by a person)")
        tracking.tag_version(version, "forced_promotion", "true")
    elif champion is None or champion.version != version.version:
        print("not promoting: re-run with --force to promote this version anyway")
    return 0


if __name__ == "__main__":
    sys.exit(main())
