"""The service's settings: every environment variable it reads, read in one place.

Configuration is infrastructure only (where the model and the table or store are, how to answer
lookups, how often to look for a new batch run, the API key); what the model does is decided
at training time. ``MLFLOW_TRACKING_URI`` is read by :func:`training.tracking.tracking_uri`.
BentoML's own settings (worker count, access log, ...) go through ``BENTOML_CONFIG_OPTIONS``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serving.base_inputs import DEFAULT_MODEL_URI
from serving.run_files import DEFAULT_FEATURES_OUT

MODEL_URI_ENV = "CUSTOMER_VALUE_MODEL_URI"
FEATURES_ENV = "CUSTOMER_VALUE_FEATURES"
STORE_ENV = "CUSTOMER_VALUE_STORE"
LOOKUPS_ENV = "CUSTOMER_VALUE_LOOKUPS"
RELOAD_ENV = "CUSTOMER_VALUE_RELOAD_SECONDS"
API_KEY_ENV = "CUSTOMER_VALUE_API_KEY"
STORE_TIMEOUT_ENV = "CUSTOMER_VALUE_STORE_TIMEOUT"
FAST_PATH_ENV = "CUSTOMER_VALUE_FAST_PATH"

logger = logging.getLogger(__name__)

#: How lookups are answered: from the batch run's scores when they belong to the served model
#: and the table's cutoff (``batch``, the default), or by the model on every request (``model``).
LOOKUP_MODES: tuple[str, ...] = ("batch", "model")
#: How often (at most) a request checks whether the feature table file changed.
DEFAULT_RELOAD_SECONDS = 30.0
#: Seconds a lookup store call may take before the request gets 503: a lookup costs about a
#: millisecond, so a store slower than this is down or hung, and callers are better told so
#: than kept waiting (a hung Redis held every request for its old 30 s socket timeout).
DEFAULT_STORE_TIMEOUT = 0.5
#: ``CUSTOMER_VALUE_FAST_PATH``: lookups by id answered by :mod:`serving.online.fast_path`
#: (``on``, the default) or every request by the API (``off``).
FAST_PATH_MODES: tuple[str, ...] = ("on", "off")


@dataclass(frozen=True)
class OnlineConfig:
    """Where the service finds its model and feature table, and how it answers.

    Attributes
    ----------
    model_uri : str
        ``CUSTOMER_VALUE_MODEL_URI`` (default ``models:/customer-value@champion``).
    features : pathlib.Path
        ``CUSTOMER_VALUE_FEATURES``: the online feature table of the batch run, loaded into
        each worker's memory (when no store is set).
    store : str
        ``CUSTOMER_VALUE_STORE``: the lookup store shared by the workers, a SQLite file or a
        ``redis://host:port/db`` URL (:mod:`serving.lookup_store`); empty: the feature table.
    lookups : str
        ``CUSTOMER_VALUE_LOOKUPS``: one of :data:`LOOKUP_MODES`.
    reload_seconds : float
        ``CUSTOMER_VALUE_RELOAD_SECONDS``: seconds between checks for a new batch run (0 on
        every request, < 0 never).
    api_key : str
        ``CUSTOMER_VALUE_API_KEY``: when set, requests must carry it (:mod:`serving.online.guard`).
        Surrounding whitespace is stripped, with a warning: a key written with ``echo`` into
        a secret ends with a newline no caller sends, and every caller got 401. Not shown in
        ``repr``, so it never reaches a log.
    store_timeout : float
        ``CUSTOMER_VALUE_STORE_TIMEOUT``: seconds a lookup store call may take (default
        :data:`DEFAULT_STORE_TIMEOUT`); past it the request gets 503.
    fast_path : bool
        ``CUSTOMER_VALUE_FAST_PATH``: ``on`` (default) answers lookups by id without
        BentoML's API machinery (:mod:`serving.online.fast_path`, the same bytes); ``off``
        sends every request through the API.
    """

    model_uri: str = DEFAULT_MODEL_URI
    features: Path = DEFAULT_FEATURES_OUT
    store: str = field(default="", repr=False)  # a Redis URL may carry a password
    lookups: str = "batch"
    reload_seconds: float = DEFAULT_RELOAD_SECONDS
    api_key: str = field(default="", repr=False)
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    fast_path: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OnlineConfig:
        """Read the settings from the environment (``os.environ`` by default).

        Raises
        ------
        ValueError
            Naming the variable, its value and what was expected, when
            ``CUSTOMER_VALUE_LOOKUPS`` is not one of :data:`LOOKUP_MODES` or
            ``CUSTOMER_VALUE_RELOAD_SECONDS`` is not a number, ``CUSTOMER_VALUE_STORE_TIMEOUT``
            is not a positive number, ``CUSTOMER_VALUE_API_KEY`` is only whitespace, or
            ``CUSTOMER_VALUE_FAST_PATH`` is not one of :data:`FAST_PATH_MODES`.
        """
        env = os.environ if environ is None else environ
        lookups = env.get(LOOKUPS_ENV) or "batch"
        if lookups not in LOOKUP_MODES:
            raise ValueError(
                f"{LOOKUPS_ENV}={lookups!r}; expected one of {', '.join(LOOKUP_MODES)}"
            )
        reload_text = env.get(RELOAD_ENV, "")
        try:
            reload_seconds = float(reload_text) if reload_text else DEFAULT_RELOAD_SECONDS
        except ValueError:
            raise ValueError(
                f"{RELOAD_ENV}={reload_text!r}; expected a number of seconds"
            ) from None
        timeout_text = env.get(STORE_TIMEOUT_ENV, "")
        try:
            store_timeout = float(timeout_text) if timeout_text else DEFAULT_STORE_TIMEOUT
        except ValueError:
            store_timeout = float("nan")
        if not store_timeout > 0 or store_timeout == float("inf"):
            raise ValueError(
                f"{STORE_TIMEOUT_ENV}={timeout_text!r}; expected a positive number of seconds "
                f"(default {DEFAULT_STORE_TIMEOUT})"
            )
        fast_path_text = env.get(FAST_PATH_ENV) or "on"
        fast_path = fast_path_text.strip().lower()
        if fast_path not in FAST_PATH_MODES:
            raise ValueError(
                f"{FAST_PATH_ENV}={fast_path_text!r}; expected one of {', '.join(FAST_PATH_MODES)}"
            )
        return cls(
            model_uri=env.get(MODEL_URI_ENV) or DEFAULT_MODEL_URI,
            features=Path(env.get(FEATURES_ENV) or DEFAULT_FEATURES_OUT),
            store=env.get(STORE_ENV, "").strip(),
            lookups=lookups,
            reload_seconds=reload_seconds,
            api_key=_api_key(env.get(API_KEY_ENV, "")),
            store_timeout=store_timeout,
            fast_path=fast_path == "on",
        )


def _api_key(raw: str) -> str:
    """The API key without surrounding whitespace; refused when nothing else is left."""
    key = raw.strip()
    if raw and not key:
        # Stripped to nothing would silently turn the key check off.
        raise ValueError(
            f"{API_KEY_ENV} is set but holds only whitespace ({len(raw)} characters); expected "
            "the key, or leave it unset to serve without one"
        )
    if key != raw:
        logger.warning(
            "%s had surrounding whitespace (%d characters, e.g. a trailing newline); it was "
            "stripped, so callers send the key without it",
            API_KEY_ENV,
            len(raw) - len(key),
        )
    return key
