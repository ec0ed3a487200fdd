"""Presets for the two exports every small shop has: Shopify orders and Zendesk tickets.

``--preset shopify`` reads the CSV of Shopify admin's *Orders > Export* as the orders file and
``--preset zendesk`` the CSV of Zendesk Support's ticket (or view) export as the service events
file; both flags may be given. A preset replaces the column mapping of its file: it reads the
export's own column names, turns them into the data contract's columns (DESIGN.md section 2) and
hands the result to :func:`features.io.validate_orders` / :func:`features.io.validate_events`,
so its rows are validated, quarantined and counted as any file's.

Identity. Both exports name a customer by email. An email never leaves this module in clear:
the customer id is a keyed hash of the lowercased, trimmed email (HMAC-SHA256 with the salt in
:data:`SALT_VARIABLE`, 32 hex characters), the same in both presets so that the tickets join the
orders. The salt comes from the environment only and is required: no default, since a known
salt lets anyone hash a list of emails and find them in the scores; not a flag, since a command
line is visible to every user of the machine and the commands log their flags (the database
inputs refuse a password in a URL for the same reason). The same salt must be set for training
and every later run, or the same customer gets another id.

A preset travels in the column mapping (``preset=shopify``), which every command already passes
to :func:`features.run_inputs.load_run_inputs`: ``--preset shopify`` and
``--columns preset=shopify`` are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.database import is_database
from features.files import DataValidationError, RawTable, read_table
from features.io import LoadResult, parse_timestamps, validate_events, validate_orders

logger = logging.getLogger(__name__)

#: The environment variable that holds the identity salt.
SALT_VARIABLE = "CUSTOMER_VALUE_IDENTITY_SALT"
#: The shortest salt accepted: a short one can be guessed, and then every email tried.
MIN_SALT_CHARACTERS = 16
#: Hex characters kept of an email's HMAC: 128 bits, no collision among any shop's customers,
#: and a short key for the lookup store and the online requests.
HASH_CHARACTERS = 32
#: The mapping entry that names a preset (``--columns preset=shopify``).
PRESET_KEY = "preset"
#: Shopify financial statuses of an order whose payment never happened.
_VOID_STATUSES = frozenset({"voided", "expired"})


class MissingSalt(DataValidationError):
    """Raised when an export with emails is read without a usable identity salt."""


def identity_salt() -> bytes:
    """The salt of hashed identities, from :data:`SALT_VARIABLE`.

    Returns
    -------
    bytes
        The salt, UTF-8 encoded.

    Raises
    ------
    MissingSalt
        When the variable is unset or shorter than :data:`MIN_SALT_CHARACTERS`.
    """
    salt = os.environ.get(SALT_VARIABLE, "")
    if len(salt) < MIN_SALT_CHARACTERS:
        state = "is not set" if not salt else f"has {len(salt)} characters"
        raise MissingSalt(
            f"{SALT_VARIABLE} {state}; the Shopify and Zendesk presets name customers by a salted "
            f"hash of their email and need a secret salt of at least {MIN_SALT_CHARACTERS} "
            f"characters, e.g. export {SALT_VARIABLE}=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')\" (keep it with the shop's secrets and set the "
            "same one for every run: another salt gives every customer another id)"
        )
    return salt.encode("utf-8")


def hash_emails(emails: pd.Series, salt: bytes) -> pd.Series:
    """The customer id of each email: HMAC-SHA256 of the lowercased, trimmed address.

    Parameters
    ----------
    emails : pandas.Series
        Addresses as written (missing or blank: no identity).
    salt : bytes
        :func:`identity_salt`.

    Returns
    -------
    pandas.Series
        :data:`HASH_CHARACTERS` hex characters per email, None where there is none.
    """
    text = emails.astype("str").str.strip().str.lower().where(emails.notna())
    text = text.mask(text == "")
    digests = {
        email: hmac.new(salt, email.encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_CHARACTERS]
        for email in pd.unique(text.dropna())
    }
    return text.map(digests).astype("str")


@dataclass(frozen=True)
class Preset:
    """An export format and the table it is read as.

    Attributes
    ----------
    name : str
        What ``--preset`` calls it.
    table : str
        ``orders`` or ``service_events``: which input file it reads.
    describe : str
        How messages name the file's kind (``Shopify orders export``).
    load : callable
        ``load(path, strict)`` -> :class:`features.io.LoadResult`.
    """

    name: str
    table: str
    describe: str
    load: Callable[[Path | str, bool], LoadResult]


def split_presets(columns: str | None) -> tuple[dict[str, Preset], str]:
    """The presets a column mapping names, by table, and the rest of the mapping.

    Parameters
    ----------
    columns : str or None
        A column mapping (``preset=shopify,customer_id=cust``).

    Returns
    -------
    presets : dict
        ``{"orders": Preset, "service_events": Preset}``, the tables named.
    rest : str
        The mapping without its preset entries.

    Raises
    ------
    DataValidationError
        For an unknown preset, or two presets for one file.
    """
    chosen: dict[str, Preset] = {}
    rest: list[str] = []
    for pair in (columns or "").split(","):
        key, _, value = (part.strip() for part in pair.partition("="))
        if key != PRESET_KEY:
            if pair.strip():
                rest.append(pair.strip())
            continue
        preset = PRESETS.get(value.lower())
        if preset is None:
            raise DataValidationError(
                f"unknown preset {value!r}; known presets: {', '.join(sorted(PRESETS))}"
            )
        other = chosen.get(preset.table)
        if other is not None and other is not preset:
            raise DataValidationError(
                f"presets {other.name!r} and {preset.name!r} both read the {preset.table} file; "
                "give one of them"
            )
        chosen[preset.table] = preset
    return chosen, ",".join(rest)


def refuse_presets_on_spark(columns: str | None) -> None:
    """Refuse a preset in a Spark command, which reads files through the column mapping only.

    Raises
    ------
    DataValidationError
        Naming the preset and what to do instead.
    """
    presets, _ = split_presets(columns)
    for preset in presets.values():
        raise DataValidationError(
            f"--preset {preset.name} is read by the pandas commands only; the Spark commands do "
            "not read exports: score it with python -m serving.batch (make score), or train "
            "without --spark"
        )


class MappingFlag(argparse.Action):
    """``--columns`` and ``--preset``: one column mapping, in either order.

    A preset is an entry of the mapping (``preset=shopify``), so the commands carry it to the
    loader with the mapping they already pass on; ``--columns`` keeps the presets given before it.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        """Add a preset to the mapping, or set the mapping keeping the presets."""
        current = getattr(namespace, self.dest, None) or ""
        presets = [
            p.strip() for p in current.split(",") if p.partition("=")[0].strip() == PRESET_KEY
        ]
        if option_string == "--preset":
            entries = [*current.split(","), f"{PRESET_KEY}={values}"]
        else:
            entries = [*presets, str(values)]
        setattr(namespace, self.dest, ",".join(e.strip() for e in entries if e.strip()))


def add_preset_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset NAME`` (repeatable), written into ``--columns``' mapping."""
    parser.add_argument(
        "--preset",
        dest="columns",
        action=MappingFlag,
        choices=sorted(PRESETS),
        help="read an export as it is: 'shopify' (orders export, for --orders), 'zendesk' "
        f"(tickets export, for --events); repeatable. Emails are hashed with {SALT_VARIABLE}",
    )


def _read_export(path: Path | str, describe: str) -> tuple[RawTable, pd.DataFrame]:
    """The export's rows that could be read, and the quarantine of the lines that could not.

    A line that could not be split into fields is set aside with its reason and place only:
    its text (``raw_line``) and fields would carry the email in clear.
    """
    if is_database(path):
        raise DataValidationError(
            f"the {describe} preset reads an export file, not a database ({path}); give the "
            "exported CSV, or read the table without the preset"
        )
    table = read_table(path)
    bad = table.malformed.notna().to_numpy()
    quarantine = pd.DataFrame(
        {
            "reason": table.malformed[bad].astype("str").to_numpy(),
            "source_row": np.flatnonzero(bad),
        }
    )
    if table.source_line is not None:
        quarantine["source_line"] = table.source_line[bad]
    return table, quarantine


def _require(
    frame: pd.DataFrame, describe: str, path: Path | str, *needed: tuple[str, ...]
) -> None:
    """Refuse an export without a needed column (each tuple: one of these names)."""
    missing = [" or ".join(map(repr, names)) for names in needed if not set(names) & set(frame)]
    if missing:
        raise DataValidationError(
            f"{describe} {str(path)!r} is missing column(s) {', '.join(missing)}; the file has "
            f"columns: {', '.join(map(str, frame.columns)) or '(none)'}"
        )


def _column(frame: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` the export has, else an all-missing column."""
    for name in names:
        if name in frame.columns:
            return frame[name]
    return pd.Series(None, index=frame.index, dtype="str")


def _timestamps(values: pd.Series) -> pd.Series:
    """Export times as text the validation parses: ``... UTC`` (Zendesk) as ``...+00:00``.

    Kept as text so that a value that does not parse reaches the quarantine as written.
    """
    return values.astype("str").str.replace(r"\s*UTC$", "+00:00", regex=True)


def _number(values: pd.Series) -> pd.Series:
    """Numbers as Shopify writes them (``1,234.50``), NaN where there is none."""
    text = values.astype("str").str.replace(",", "", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _with_lines(canonical: pd.DataFrame, read: RawTable, rows: np.ndarray) -> None:
    """Add each row's line of the export (a CSV's), for the quarantine file to point at."""
    if read.source_line is not None:
        # Not a contract column: validation ignores it, and keeps it in the quarantine.
        canonical["source_line"] = read.source_line[rows]


def _finish(
    result: LoadResult, unreadable: pd.DataFrame, read: RawTable, strict: bool, describe: str
) -> LoadResult:
    """The validation's result with the lines that could not be read counted in."""
    if len(unreadable):
        if strict:
            raise DataValidationError(
                f"{describe}: {len(unreadable)} line(s) could not be read: "
                + "; ".join(read.problems)
            )
        result.quarantine = pd.concat([unreadable, result.quarantine], ignore_index=True)
        result.rows_read += len(unreadable)
        result.problems = [f"{describe}: {p}" for p in read.problems] + result.problems
    # Line counts are the export's, rows are orders or tickets: they no longer add up.
    result.lines = None
    return result


def load_shopify_orders(path: Path | str, strict: bool = False) -> LoadResult:
    """Read a Shopify orders export as validated orders, one row per order.

    The export has a row per line item, the order's columns on its first row: rows are grouped
    by ``Name`` (a row without one is an order of its own) and each column takes the order's
    first non-empty value. ``amount`` is ``Total`` minus ``Refunded Amount``, at least 0 (net
    revenue); ``status`` is ``cancelled`` when ``Cancelled at`` is set or the payment was voided
    or expired, ``returned`` when ``Financial Status`` is ``refunded``, else ``completed`` (a
    partial refund lowers the amount). The customer is the salted hash of ``Email``
    (:func:`hash_emails`); with a ``Customer ID`` column, every order of that customer takes the
    hash of the first email their orders carry, so the tickets of that email join, and a
    customer with no email at all is ``shopify-<id>``. An order with neither is quarantined
    (``missing customer_id``). ``Fulfilled at`` is when the parcel left, not when it arrived:
    ``delivered_at`` stays absent.

    Parameters
    ----------
    path : Path or str
        The export (CSV, or any format :func:`features.files.read_table` reads).
    strict : bool
        Raise instead of quarantining unusable orders.

    Returns
    -------
    LoadResult
        ``rows_read`` counts orders (and unreadable lines); the quarantine holds the contract's
        columns (the hashed id, never the email), ``source_row`` the order's first export row.

    Raises
    ------
    DataValidationError
        Naming the missing column, when the export lacks ``Name``, ``Created at``, ``Total`` or
        both ``Email`` and a customer id column.
    MissingSalt
        Without the identity salt.
    """
    describe = "Shopify orders export"
    read, unreadable = _read_export(path, describe)
    rows = read.frame
    _require(
        rows, describe, path, ("Name",), ("Created at",), ("Total",),
        ("Email", "Customer ID", "Customer Id"),
    )  # fmt: skip
    salt = identity_salt()
    rows = rows[read.malformed.isna().to_numpy()]
    # One group per order; a row without a Name is one by itself (its row number keys it).
    position = pd.Series(np.arange(len(read.frame)), index=read.frame.index)[rows.index]
    name = rows["Name"].astype("str").str.strip().where(rows["Name"].notna())
    key = name.mask(name == "").fillna("\x00row " + position.astype("str"))
    wanted = [
        c
        for c in (
            "Name", "Email", "Customer ID", "Customer Id", "Created at", "Total",
            "Refunded Amount", "Financial Status", "Cancelled at",
        )
        if c in rows.columns
    ]  # fmt: skip
    grouped = rows[wanted].assign(first_row=position).groupby(key.to_numpy(), sort=False)
    orders = grouped.first().reset_index(drop=True)
    orders["first_row"] = grouped["first_row"].min().to_numpy()

    hashed = hash_emails(_column(orders, "Email"), salt)
    customer = _column(orders, "Customer ID", "Customer Id").astype("str").str.strip()
    customer = customer.mask(customer == "")
    # One customer, one id: the hash of the first email any of their orders has.
    by_customer = hashed.groupby(customer.to_numpy()).transform("first")
    identity = hashed.where(customer.isna(), by_customer.fillna("shopify-" + customer))

    total = _number(_column(orders, "Total"))
    refunded = _number(_column(orders, "Refunded Amount")).fillna(0.0)
    financial = _column(orders, "Financial Status").astype("str").str.strip().str.lower()
    cancelled = _column(orders, "Cancelled at").notna() | financial.isin(_VOID_STATUSES)
    status = np.where(
        cancelled, "cancelled", np.where(financial == "refunded", "returned", "completed")
    )
    canonical = pd.DataFrame(
        {
            "customer_id": identity,
            "ordered_at": _timestamps(orders["Created at"]),
            # Missing or unreadable totals stay missing: validation quarantines them.
            "amount": (total - refunded).clip(lower=0.0),
            "order_id": _column(orders, "Name"),
            "status": status,
        }
    )
    _with_lines(canonical, read, orders["first_row"].to_numpy())
    result = validate_orders(
        canonical,
        source=f"{describe} {str(path)!r}",
        strict=strict,
        row_numbers=orders["first_row"].to_numpy(),
    )
    return _finish(result, unreadable, read, strict, describe)


def _score(satisfaction: pd.Series) -> pd.Series:
    """Zendesk's satisfaction rating as a 1-5 score: Good 5, Bad 1, anything else unknown."""
    text = satisfaction.astype("str").str.strip().str.lower()
    # "Good with comment" / "Bad with comment" are older exports' spellings.
    return pd.Series(
        np.select([text.str.startswith("good"), text.str.startswith("bad")], [5.0, 1.0], np.nan),
        index=satisfaction.index,
    )


def load_zendesk_tickets(path: Path | str, strict: bool = False) -> LoadResult:
    """Read a Zendesk Support tickets export as validated service events (kind ``ticket``).

    ``occurred_at`` is ``Created at``; ``resolution_hours`` is ``Full resolution time in
    minutes`` / 60 where the export has it, else ``Solved at`` minus ``Created at`` (missing
    while unsolved); ``score`` is 5 for a *Good* satisfaction rating, 1 for *Bad*, unknown for
    the others (*Offered*, *Unoffered*, *Not Offered*). The customer is the salted hash of
    ``Requester email`` (:func:`hash_emails`, as the Shopify preset's), else ``zendesk-`` and
    the ``Requester id``; a ticket with neither is quarantined. ``Id`` (the ticket) is kept in
    the quarantine file to find a ticket there.

    Parameters
    ----------
    path : Path or str
        The export.
    strict : bool
        Raise instead of quarantining unusable tickets.

    Returns
    -------
    LoadResult

    Raises
    ------
    DataValidationError
        Naming the missing column, when the export lacks ``Created at`` or both ``Requester
        email`` and ``Requester id``.
    MissingSalt
        Without the identity salt.
    """
    describe = "Zendesk tickets export"
    read, unreadable = _read_export(path, describe)
    rows = read.frame
    _require(rows, describe, path, ("Created at",), ("Requester email", "Requester id"))
    salt = identity_salt()
    good = read.malformed.isna().to_numpy()
    rows = rows[good]
    requester = _column(rows, "Requester id").astype("str").str.strip()
    requester = requester.mask(requester == "")
    identity = hash_emails(_column(rows, "Requester email"), salt).fillna("zendesk-" + requester)
    created = _timestamps(rows["Created at"])
    minutes = _number(_column(rows, "Full resolution time in minutes"))
    solved = parse_timestamps(_timestamps(_column(rows, "Solved at")))
    hours = (solved - parse_timestamps(created)).dt.total_seconds() / 3600.0
    canonical = pd.DataFrame(
        {
            "customer_id": identity,
            "occurred_at": created,
            "kind": "ticket",
            "score": _score(_column(rows, "Satisfaction Score")),
            "resolution_hours": (minutes / 60.0).fillna(hours),
            "Id": _column(rows, "Id"),
        }
    )
    _with_lines(canonical, read, np.flatnonzero(good))
    result = validate_events(
        canonical,
        source=f"{describe} {str(path)!r}",
        strict=strict,
        row_numbers=np.flatnonzero(good),
    )
    return _finish(result, unreadable, read, strict, describe)


#: The presets by name.
PRESETS: dict[str, Preset] = {
    "shopify": Preset("shopify", "orders", "Shopify orders export", load_shopify_orders),
    "zendesk": Preset("zendesk", "service_events", "Zendesk tickets export", load_zendesk_tickets),
}
