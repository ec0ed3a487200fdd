"""The inputs of a run over a whole customer base: its flags, demo defaults and model.

Batch scoring, Spark scoring and the service-impact what-if read the base the same way and
score it with the same model by default; this is where that is said once, below all three
products (the online service takes its default model from here too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from features.history import as_cutoff
from features.run_inputs import NO_EVENTS, data_end
from features.run_inputs import add_input_arguments as add_file_arguments
from training.config import (
    DEMO_DIR,
    DEMO_MODEL_NAME,
    add_name_argument,
    champion_uri,
    model_name_for,
)

#: The demo store's files: what a run reads when it is given none.
DEMO_ORDERS = DEMO_DIR / "orders.parquet"
DEMO_EVENTS = DEMO_DIR / "service_events.parquet"
#: The model a run scores with when neither ``--model-uri`` nor a shop's orders name another:
#: the demo's champion (``models:/customer-value@champion``).
DEFAULT_MODEL_URI = champion_uri(DEMO_MODEL_NAME)


def resolve_cutoff(cutoff: str, orders: pd.DataFrame) -> pd.Timestamp:
    """``latest`` -> the day after the last order (everything known is used); else the date."""
    if cutoff == "latest":
        return data_end(orders)
    try:
        return as_cutoff(cutoff)
    except ValueError as err:
        raise ValueError(f"--cutoff: {err}; expected YYYY-MM-DD or 'latest'") from err


def add_input_arguments(
    parser: argparse.ArgumentParser, events_help: str = "", *, strict: bool = False
) -> None:
    """Add the flags of a run over a base's files: the run's inputs, cutoff and model.

    Shared by the commands that read the base as batch scoring does (``serving.batch``,
    ``serving.spark``, ``serving.impact``): the input flags are every command's
    (:func:`features.run_inputs.add_input_arguments`), with the demo's orders as the default;
    :func:`chosen_events` resolves the events default.
    """
    add_file_arguments(
        parser,
        orders_default=DEMO_ORDERS,
        orders_help="orders CSV/TSV/Parquet (default: the demo orders)",
        events_help="service events file, or 'none' (default: the demo events with the demo "
        "orders, else none)" + events_help,
        strict=strict,
    )
    parser.add_argument("--cutoff", default="latest", help="YYYY-MM-DD or 'latest'")
    parser.add_argument(
        "--model-uri",
        default=None,
        help="the model to score with (default: the champion of the shop's registered model, "
        "named as training names it from --orders or --name; models:/customer-value@champion "
        "for the demo data)",
    )
    add_name_argument(parser)


def chosen_model_uri(args: argparse.Namespace) -> str:
    """``--model-uri``, or the champion of the model training registered for these orders.

    Raises
    ------
    ValueError
        When ``--name`` is not a valid model name.
    """
    if args.model_uri:
        return str(args.model_uri)
    return champion_uri(model_name_for(args.orders, args.name or None))


def chosen_events(args: argparse.Namespace) -> Path | None:
    """``--events``, or the demo events when the demo orders are scored without one.

    ``--events none`` is no events, as ``--features-out none`` and ``--store none`` are no
    such output: the demo orders otherwise bring the demo events, and scoring them without
    events had no spelling.
    """
    if args.events == NO_EVENTS:
        return None
    if args.events is None and args.orders == DEMO_ORDERS:
        return DEMO_EVENTS
    return args.events
