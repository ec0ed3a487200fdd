"""``python -m training.model_name``: the model URI a shop's data is scored with by default.

Training registers a shop's model under a name derived from its orders file
(:func:`training.config.model_name_for`); scoring derives the same name. The service reads
its model from ``CUSTOMER_VALUE_MODEL_URI``, so ``make serve ORDERS=...`` asks this command
for the URI instead of repeating the naming rule in the Makefile.
"""

from __future__ import annotations

import argparse
import sys

from training.config import add_name_argument, champion_uri, model_name_for


def main(argv: list[str] | None = None) -> int:
    """Print ``models:/<name>@champion`` for ``--orders`` / ``--name``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.model_name",
        description="Print the champion URI of the model training registers for these orders.",
    )
    parser.add_argument("--orders", help="the orders file (default: the demo data)")
    add_name_argument(parser)
    args = parser.parse_args(argv)
    try:
        print(champion_uri(model_name_for(args.orders, args.name or None)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
