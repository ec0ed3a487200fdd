"""Feature rows of made-up customers for model tests: BG/NBD inputs that make sense together."""

import numpy as np
import pandas as pd


def customer_rows(rng: np.random.Generator, n: int, names: list[str]) -> pd.DataFrame:
    """``n`` customers with every feature in ``names`` (random) and a coherent purchase history.

    Frequency, age, recency, days since the last order, the usual gap between orders and the
    repeat spend agree with each other, as the purchase model reads them; revenue before the
    cutoff is drawn too.
    """
    X = pd.DataFrame(rng.random((n, len(names))), columns=names)
    frequency = rng.integers(0, 6, n).astype(float)
    age = rng.uniform(30, 700, n)
    last = age * rng.random(n)
    return X.assign(
        frequency=frequency,
        T=age,
        days_since_first_order=age,
        recency=np.where(frequency > 0, last, 0.0),
        days_since_last_order=age - np.where(frequency > 0, last, 0.0),
        days_between_orders_mean=np.where(frequency > 0, last / np.maximum(frequency, 1), np.nan),
        repeat_order_value_mean=np.where(frequency > 0, rng.gamma(2.0, 30.0, n), np.nan),
    )
