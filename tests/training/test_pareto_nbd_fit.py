"""The Pareto/NBD fit: the library's likelihood in numpy, maximised where find_MAP maximises it.

The baseline fits pymc-marketing's ``ParetoNBDModel`` by MAP under flat priors (the maximum
likelihood). ``pymc.find_MAP`` differentiates the hypergeometric series symbolically, which
took most of a minute; the fit now evaluates the same likelihood in numpy and uses
central-difference gradients (issue 25 item 2). These tests pin the likelihood to the
library's and the optimum to find_MAP's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_baselines import simulate_pareto_nbd

from training.baselines import (
    PARETO_NBD_MAX_SHAPE,
    ParetoNbdGammaGammaBaseline,
    _bgnbd_summary,
    _fit_pareto_nbd_map,
    pareto_nbd_loglik,
)


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return _bgnbd_summary(simulate_pareto_nbd(400, seed=3))


# Slow: PyMC compiles the library's log-likelihood graph (20 s on 2 busy cores).
@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        (0.6, 80.0, 0.8, 250.0),  # alpha < beta
        (2.0, 300.0, 1.5, 40.0),  # alpha > beta
        (1.0, 120.0, 1.0, 120.0),  # alpha == beta
        (2.25, 46.7, 9.999, 2452.0),  # the demo store's fit, s at the cap
    ],
)
def test_the_likelihood_is_the_librarys(summary, params):
    import pymc as pm
    from pymc_marketing.clv.distributions import ParetoNBD

    r, alpha, s, beta = params
    age = summary["T"].to_numpy()
    value = np.column_stack([summary["recency"].to_numpy(), summary["frequency"].to_numpy()])
    expected = pm.logp(ParetoNBD.dist(r=r, alpha=alpha, s=s, beta=beta, T=age), value).eval()

    got = pareto_nbd_loglik(
        summary["frequency"].to_numpy(), summary["recency"].to_numpy(), age, params
    )

    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


def test_the_fit_is_a_maximum_of_the_likelihood(summary):
    start = {"r": 1.0, "alpha": 300.0, "s": 1.0, "beta": 300.0}
    params = _fit_pareto_nbd_map(summary, start)
    columns = [summary[c].to_numpy() for c in ("frequency", "recency", "T")]

    def loglik(values: dict[str, float]) -> float:
        point = [values[k] for k in ("r", "alpha", "s", "beta")]
        return float(pareto_nbd_loglik(*columns, point).sum())

    best = loglik(params)
    for name in params:
        for factor in (0.98, 1.02):
            moved = dict(params, **{name: params[name] * factor})
            if moved[name] < PARETO_NBD_MAX_SHAPE or name not in ("r", "s"):
                assert loglik(moved) <= best + 1e-6


@pytest.mark.slow  # builds and samples the library's model
def test_the_fitted_point_is_the_library_models_and_the_fit_time_is_kept():
    features = simulate_pareto_nbd(600, seed=4)
    fitted = ParetoNbdGammaGammaBaseline(random_seed=0).fit(features)
    posterior = fitted.pareto_nbd_model_.fit_result
    for name, value in fitted.pareto_nbd_params_.items():
        assert posterior[name].shape == (1, 1)
        assert float(posterior[name].mean()) == value
    assert fitted.fit_seconds_ > 0
    assert np.isfinite(fitted.predict_components(features, 90.0).to_numpy()).all()


@pytest.mark.slow
def test_the_fit_reaches_find_maps_optimum(summary):
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import ParetoNBDModel

    from training.baselines import _fit_map

    def shape() -> Prior:
        return Prior("Uniform", lower=0.0, upper=PARETO_NBD_MAX_SHAPE)

    priors = {"r": shape(), "alpha": Prior("HalfFlat"), "s": shape(), "beta": Prior("HalfFlat")}
    scale = float(summary["T"].mean())
    start = {"r": 1.0, "alpha": scale, "s": 1.0, "beta": scale}
    data = summary[["customer_id", "frequency", "recency", "T"]]
    library = _fit_map(
        ParetoNBDModel(model_config=priors), data, "Pareto/NBD", tuple(priors), 0, start=start
    )

    ours = _fit_pareto_nbd_map(summary, start)

    for name in ("r", "alpha", "s", "beta"):
        assert ours[name] == pytest.approx(library[name], rel=0.01)
