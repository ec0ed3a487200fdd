"""The served level: chosen by its track record at earlier origins (training.level)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.io import validate_orders
from training.baselines import BgNbdGammaGammaBaseline, ParetoNbdGammaGammaBaseline
from training.level import (
    SWITCH_MARGIN,
    HorizonSeason,
    Level,
    OriginTotals,
    buyers,
    buyers_blend,
    choose_level,
    churn_shift,
    classical_figures,
    season_index,
    track_scores,
    with_blend,
)
from training.purchase import PurchaseHistory, PurchaseModel


def _origin(day: str, actual: float, **totals: float) -> OriginTotals:
    return OriginTotals(pd.Timestamp(day), 100, actual, with_blend(totals))


def test_a_candidate_with_a_clearly_better_record_sets_the_level() -> None:
    origins = (
        _origin("2020-07-01", 1000.0, model=700.0, bgnbd=1010.0, pareto_nbd=1300.0),
        _origin("2020-01-01", 1000.0, model=650.0, bgnbd=980.0, pareto_nbd=1350.0),
    )
    level = choose_level(origins, with_blend({"model": 600.0, "bgnbd": 900.0, "pareto_nbd": 990.0}))
    assert level.source == "bgnbd"
    assert level.factor == pytest.approx(1.5)
    assert "bgnbd" in level.reason
    # The band is the chosen level's own misses at the origins.
    assert level.band_pct() == pytest.approx((-2.0, 1.0))


def test_the_model_keeps_its_level_unless_beaten_by_the_margin() -> None:
    # BG/NBD is better, but by less than the margin: noise with two origins.
    slightly = math.exp(SWITCH_MARGIN / 2)
    origins = (
        _origin("2020-07-01", 1000.0, model=1000.0 * slightly * 1.02, bgnbd=1020.0, pareto_nbd=2e3),
    )
    level = choose_level(origins, with_blend({"model": 500.0, "bgnbd": 700.0, "pareto_nbd": 9e2}))
    assert level.source == "model"
    assert level.factor == 1.0


def test_a_blend_wins_when_the_parts_miss_in_opposite_directions() -> None:
    origins = (_origin("2020-07-01", 1000.0, model=800.0, bgnbd=1250.0, pareto_nbd=1000.0),)
    scores = track_scores(origins)
    assert scores["blend"] == pytest.approx(0.0)  # 800 x 1250 x 1000 = 1000^3
    level = choose_level(origins, with_blend({"model": 800.0, "bgnbd": 1200.0, "pareto_nbd": 1e3}))
    # Pareto/NBD and the blend are both exact; the tie goes to the first candidate listed.
    assert level.source in {"pareto_nbd", "blend"}
    assert level.factor == pytest.approx(1000.0 / 800.0)


def test_without_a_replayed_model_only_a_trusted_classical_level_is_taken() -> None:
    trusted = (_origin("2020-07-01", 1000.0, bgnbd=1050.0, pareto_nbd=1300.0),)
    served = with_blend({"model": 800.0, "bgnbd": 1000.0, "pareto_nbd": 1200.0})
    level = choose_level(trusted, served)
    assert level.source == "bgnbd"
    assert level.factor == pytest.approx(1.25)
    # Neither validated nor known to be bad: the blend hedges between the levels.
    usable = (_origin("2020-07-01", 1000.0, bgnbd=1200.0, pareto_nbd=1180.0),)
    level = choose_level(usable, served)
    assert level.source == "blend"
    assert level.factor == pytest.approx((800.0 * 1000.0 * 1200.0) ** (1 / 3) / 800.0)
    assert "averaged" in level.reason
    # A classical model that missed by far says nothing on the level: the model's is kept.
    untrusted = (_origin("2020-07-01", 1000.0, bgnbd=1900.0, pareto_nbd=2000.0),)
    level = choose_level(untrusted, served)
    assert level.source == "model"
    assert level.factor == 1.0
    assert "unvalidated" in level.reason


def test_two_classical_records_that_differ_by_noise_serve_their_mean() -> None:
    # One origin, BG/NBD 6.3% short and Pareto/NBD 3.5% over (entry 35's young store): picking
    # Pareto/NBD would serve a 3-point difference of luck. Their geometric mean missed by
    # about 1.5% there, so the mean of their totals now is served.
    close = (_origin("2020-07-01", 1000.0, bgnbd=937.0, pareto_nbd=1035.0),)
    served = with_blend({"model": 400.0, "bgnbd": 1167.0, "pareto_nbd": 1254.0})
    assert served["classical_mean"] == pytest.approx(math.sqrt(1167.0 * 1254.0))
    level = choose_level(close, served)
    assert level.source == "classical_mean"
    assert level.factor == pytest.approx(math.sqrt(1167.0 * 1254.0) / 400.0)
    assert level.band_pct() == pytest.approx((-1.52, -1.52), abs=0.01)
    # Where one is clearly the better (the other missed by 22%), its own record wins.
    apart = (_origin("2020-07-01", 1000.0, bgnbd=1022.0, pareto_nbd=1223.0),)
    assert choose_level(apart, served).source == "bgnbd"
    # With the model replayed, the mean is one more candidate and must beat the model's own
    # record by the margin like any other.
    replayed = (_origin("2020-07-01", 1000.0, model=1040.0, bgnbd=937.0, pareto_nbd=1035.0),)
    assert choose_level(replayed, served).source == "model"
    worse = (_origin("2020-07-01", 1000.0, model=1300.0, bgnbd=900.0, pareto_nbd=1110.0),)
    assert choose_level(worse, served).source == "classical_mean"
    # One of them beats the model by the margin but the mean by less (entry 45's young
    # wholesaler: BG/NBD 62%, the mean 65%, the model 79%): their mean is served, as where the
    # model could not be replayed.
    young = (
        _origin("2020-07-01", 1000.0, model=1100.0, bgnbd=1921.0, pareto_nbd=2204.0),
        _origin("2020-01-01", 1000.0, model=343.0, bgnbd=732.0, pareto_nbd=775.0),
    )
    level = choose_level(young, served)
    assert track_scores(young)["bgnbd"] <= track_scores(young)["model"] - SWITCH_MARGIN
    assert level.source == "classical_mean"
    assert "not better than the classical mean" in level.reason
    # Without a replayed model the same holds (BG/NBD 3%, the mean 7%, both trusted) ...
    near = (_origin("2020-07-01", 1000.0, bgnbd=1030.0, pareto_nbd=1120.0),)
    assert choose_level(near, served).source == "classical_mean"
    # ... but the mean must itself be within the trusted miss: BG/NBD's 8% against the
    # mean's 11% keeps BG/NBD, the one trusted record.
    one_trusted = (_origin("2020-07-01", 1000.0, bgnbd=1080.0, pareto_nbd=1150.0),)
    scores = track_scores(one_trusted)
    assert scores["classical_mean"] < scores["bgnbd"] + SWITCH_MARGIN
    assert choose_level(one_trusted, served).source == "bgnbd"


def test_without_a_replayed_model_the_classical_record_bounds_the_level_on_its_side() -> None:
    # Both classical totals fell far short at the origin (a growing shop): each of them is
    # too low by the record, so a model total below the higher of them has no support, and
    # the higher one is served, whether the model was below both or between them.
    short = (_origin("2020-07-01", 1000.0, bgnbd=700.0, pareto_nbd=680.0),)
    served = with_blend({"model": 600.0, "bgnbd": 850.0, "pareto_nbd": 920.0})
    for own in (600.0, 880.0):
        level = choose_level(short, with_blend({**served, "model": own}))
        assert level.source == "pareto_nbd"
        assert level.factor == pytest.approx(920.0 / own)
        assert "fell short there (-30.0% and -32.0%)" in level.reason
        assert "the higher classical level (pareto_nbd's)" in level.reason
        assert level.band_pct() == pytest.approx((-32.0, -32.0))  # the served level's record
    # Above both, the model's level contradicts nothing: it stays, unvalidated.
    level = choose_level(short, with_blend({**served, "model": 1500.0}))
    assert (level.source, level.factor) == ("model", 1.0)
    assert "unvalidated" in level.reason
    # Both overshot (a file that starts mid-life): a model total above the lower of the two
    # is brought down to it.
    over = (_origin("2020-07-01", 1000.0, bgnbd=1900.0, pareto_nbd=2000.0),)
    for own in (1500.0, 1100.0):
        level = choose_level(
            over, with_blend({"model": own, "bgnbd": 1000.0, "pareto_nbd": 1200.0})
        )
        assert level.source == "bgnbd"
        assert level.factor == pytest.approx(1000.0 / own)
        assert "overshot there (+90.0% and +100.0%)" in level.reason
    level = choose_level(over, with_blend({"model": 900.0, "bgnbd": 1000.0, "pareto_nbd": 1200.0}))
    assert (level.source, level.factor) == ("model", 1.0)
    # The two disagree on the side (and their mean missed by 28%): no bound.
    mixed = (_origin("2020-07-01", 1000.0, bgnbd=400.0, pareto_nbd=1300.0),)
    assert choose_level(mixed, served).source == "model"


def test_no_record_keeps_the_model_and_says_so() -> None:
    level = choose_level((), {"model": 10.0, "bgnbd": 20.0, "pareto_nbd": 30.0})
    assert (level.source, level.factor) == ("model", 1.0)
    assert level.band_pct() is None
    assert "unvalidated" in level.summary()


def test_a_level_round_trips_and_tabulates() -> None:
    origins = (_origin("2020-07-01", 1000.0, model=900.0, bgnbd=1500.0, pareto_nbd=1400.0),)
    level = choose_level(origins, with_blend({"model": 1.0, "bgnbd": 2.0, "pareto_nbd": 2.0}))
    again = Level.from_dict(level.to_dict())
    assert again == level
    table = level.table()
    assert list(table["origin"]) == ["2020-07-01"]
    assert table.loc[0, "model_error_pct"] == pytest.approx(-10.0)
    assert table.loc[0, "bgnbd_error_pct"] == pytest.approx(50.0)
    assert np.isfinite(table.loc[0, "blend_error_pct"])
    assert table.loc[0, "classical_mean_error_pct"] == pytest.approx(
        100.0 * (math.sqrt(1500.0 * 1400.0) / 1000.0 - 1.0), abs=0.05
    )


def test_the_blend_is_the_mean_in_the_scale_the_levels_are_judged_in() -> None:
    # A classical total that doubles and one that halves cancel (log misses), where an
    # arithmetic mean would be pulled 25% up by the doubling (BG/NBD on a left-censored file).
    blend = with_blend({"model": 1000.0, "bgnbd": 2000.0, "pareto_nbd": 500.0})["blend"]
    assert blend == pytest.approx(1000.0)
    # A total that is not positive has no log: no blend, rather than a NaN level.
    assert "blend" not in with_blend({"model": 0.0, "bgnbd": 2000.0, "pareto_nbd": 500.0})


def test_the_churn_shift_serves_the_count_of_buyers_asked_for_and_keeps_the_order() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(2.0, 3.0, 500)
    for target in (50.0, 180.0, 400.0):
        shift = churn_shift(p, target)
        served = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + shift)))
        assert buyers(served) == pytest.approx(target, rel=1e-9)
        # One shift for everyone: the churn ranking is unchanged.
        assert (np.argsort(served, kind="stable") == np.argsort(p, kind="stable")).all()
    assert churn_shift(p, buyers(p)) == pytest.approx(0.0, abs=1e-8)
    for impossible in (0.0, 500.0, -1.0):
        with pytest.raises(ValueError, match="between 0 and 500 customers"):
            churn_shift(p, impossible)


def test_the_served_churn_rate_is_the_geometric_mean_of_the_three_counts() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(3.0, 2.0, 1000)
    own = buyers(p)
    counts = {"model": own, "bgnbd": own * 0.5, "pareto_nbd": own * 2.0}
    level = buyers_blend(counts, p)
    # The halving and the doubling cancel in log terms: the model's own count is served.
    assert level.counts["blend"] == pytest.approx(own)
    assert level.shift == pytest.approx(0.0, abs=1e-8)
    level = buyers_blend({**counts, "pareto_nbd": own * 0.5}, p)
    assert level.counts["blend"] == pytest.approx(own * 0.5 ** (2 / 3))
    served = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + level.shift)))
    assert buyers(served) == pytest.approx(level.counts["blend"], rel=1e-9)
    assert level.shift > 0  # fewer buyers: more churn
    assert level.summary().startswith(f"churn level: blend (logit shift {level.shift:+.4f})")
    assert f"model {own:,.0f}, bgnbd {own / 2:,.0f} (-50.0%)" in level.summary()
    assert level.to_dict()["counts"]["blend"] == level.counts["blend"]


def _busy_shop(start: str, end: str, busy_months: tuple[int, ...]) -> pd.DataFrame:
    """Two customers ordering every day, twice as much in the busy months (no growth)."""
    days = pd.date_range(start, end, freq="D")
    amount = np.where(days.month.isin(busy_months), 20.0, 10.0)
    raw = pd.DataFrame(
        {
            "customer_id": np.repeat(["c1", "c2"], len(days)),
            "ordered_at": np.tile(days, 2),
            "amount": np.tile(amount, 2),
        }
    )
    return validate_orders(raw, strict=True).frame


def test_the_horizon_season_is_measured_only_where_two_years_tell_it_from_growth() -> None:
    # Busy from July to December: the served half (July on) holds the peak, the half the
    # stack learnt on (January to June) does not.
    shop = _busy_shop("2022-01-01", "2024-06-30", busy_months=(7, 8, 9, 10, 11, 12))
    end = pd.Timestamp("2024-07-01")
    season = HorizonSeason.measure(shop, data_end=end, horizon_days=182)
    assert season is not None
    # Revenue per day in each half against the year's: 20 and 10 against 15.
    assert season.served == pytest.approx(4 / 3, rel=0.02)
    assert season.learnt == pytest.approx(2 / 3, rel=0.02)
    # Under two years the index mixes season and growth, and a year-long horizon has every
    # season: the counts keep no season then.
    short = shop[shop["ordered_at"] >= pd.Timestamp("2023-03-01")]
    assert HorizonSeason.measure(short, data_end=end, horizon_days=182) is None
    assert HorizonSeason.measure(shop, data_end=end, horizon_days=365) is None


def test_a_busier_horizon_raises_each_count_as_the_purchase_model_stretches_its_time() -> None:
    model = PurchaseModel(r=0.6, alpha=80.0, a=0.7, b=2.0, p=5.0, q=4.0, v=20.0)
    rng = np.random.default_rng(5)
    ages = rng.uniform(100.0, 700.0, 400)
    x = rng.integers(0, 6, 400).astype("float64")
    history = PurchaseHistory(x, np.where(x > 0, ages * rng.uniform(0.1, 1.0, 400), 0.0), ages, x)
    factors = HorizonSeason(served=1.5, learnt=0.75).factors(model, history, 182.0)

    def count(days: float) -> float:
        return buyers(model.p_no_order(history, days))

    assert factors["model"] == pytest.approx(count(273.0) / count(136.5))
    assert factors["classical"] == pytest.approx(count(273.0) / count(182.0))
    # Customers who have dropped out buy in no season, so the count rises less than the
    # buying rate: 1 < factor < ratio of the indices.
    assert 1.0 < factors["classical"] < factors["model"] < 2.0
    assert HorizonSeason(1.0, 1.0).factors(model, history, 182.0) == pytest.approx(
        {"model": 1.0, "classical": 1.0}
    )


def test_the_counts_are_put_in_the_served_season_before_their_mean() -> None:
    rng = np.random.default_rng(6)
    p = rng.beta(3.0, 2.0, 1000)
    own = buyers(p)
    counts = {"model": own, "bgnbd": own * 1.2, "pareto_nbd": own * 0.9}
    season = {"served": 1.4, "learnt": 0.7, "model": 1.5, "classical": 1.2}
    level = buyers_blend(counts, p, season)
    expected = (own * 1.5 * own * 1.2 * 1.2 * own * 0.9 * 1.2) ** (1 / 3)
    assert level.counts["blend"] == pytest.approx(expected)
    # The counts stay each model's own; the season is stated beside them.
    assert level.counts["model"] == own
    assert level.season == season
    assert level.to_dict()["season"] == season
    assert "model's count x1.500, the classical counts x1.200" in level.summary()
    assert "in the served horizon's season" in level.reason
    plain = buyers_blend(counts, p)
    assert plain.season == {}
    assert "with no season" in plain.reason
    assert level.shift < plain.shift  # more buyers: less churn


def test_without_both_classical_counts_the_model_keeps_its_churn_rate() -> None:
    p = np.full(10, 0.5)
    for counts in ({"model": 5.0, "bgnbd": 4.0}, {"model": 5.0, "bgnbd": 0.0, "pareto_nbd": 4.0}):
        level = buyers_blend(counts, p)
        assert level.shift == 0.0
        assert "blend" not in level.counts
        assert "model's own churn rate" in level.summary()


def test_a_model_replayed_at_some_origins_is_judged_where_it_was() -> None:
    # A short file: the model could be replayed at the latest origin, not at the one before.
    origins = (
        _origin("2020-07-01", 1000.0, model=810.0, bgnbd=1280.0, pareto_nbd=1340.0),
        _origin("2020-01-01", 1000.0, bgnbd=200.0, pareto_nbd=830.0),
    )
    served = with_blend({"model": 800.0, "bgnbd": 1100.0, "pareto_nbd": 1200.0})
    level = choose_level(origins, served)
    # At the latest origin the blend missed by +11.8% against the model's -19%.
    assert level.source == "blend"
    assert level.factor == pytest.approx(served["blend"] / 800.0)
    assert "at the 1 of 2 earlier origins the model could be replayed at" in level.reason
    assert "missed by +11.6% to +11.6% at 1 earlier origin(s)" in level.summary()
    # Both origins stay in the record the run prints.
    assert list(level.table()["origin"]) == ["2020-07-01", "2020-01-01"]


@pytest.mark.slow
def test_the_classical_level_in_season_is_both_models_over_a_stretched_horizon() -> None:
    from test_baselines import simulate  # tests/training is on sys.path (pytest prepend mode)

    features = simulate(800, seed=8)
    bgnbd = BgNbdGammaGammaBaseline(random_seed=1).fit(features)
    pareto = ParetoNbdGammaGammaBaseline(random_seed=1).fit(features)
    plain, counts = classical_figures(features, 182, 1, bgnbd, pareto)
    assert "classical_season" not in plain
    busy, busy_counts = classical_figures(features, 182, 1, bgnbd, pareto, season=1.5)
    assert busy_counts == counts  # the counts of buyers are put in season elsewhere
    stretched = [m.predict(features, 273.0)["clv"].sum() for m in (bgnbd, pareto)]
    assert busy["classical_season"] == pytest.approx(math.sqrt(stretched[0] * stretched[1]))
    # A busier horizon holds more, though less than in proportion (dropout goes on).
    mean = with_blend(plain)["classical_mean"]
    assert mean < busy["classical_season"] < 1.5 * mean
    # An index of one is the classical mean itself.
    flat, _ = classical_figures(features, 182, 1, bgnbd, pareto, season=1.0)
    assert flat["classical_season"] == pytest.approx(mean)


def test_the_season_of_the_classical_level_needs_two_years_and_a_short_horizon() -> None:
    shop = _busy_shop("2022-01-01", "2024-06-30", busy_months=(7, 8, 9, 10, 11, 12))
    end = pd.Timestamp("2024-07-01")
    assert season_index(shop, cutoff=end, horizon_days=182) == pytest.approx(4 / 3, rel=0.02)
    # Under two years (growth and season cannot be told apart) and over a year's horizon
    # (every season is in it), the classical level is taken as it is.
    short = shop[shop["ordered_at"] >= pd.Timestamp("2023-03-01")]
    assert season_index(short, cutoff=end, horizon_days=182) == 1.0
    assert season_index(shop, cutoff=end, horizon_days=365) == 1.0


def test_a_season_no_origin_could_measure_loses_a_tie_to_the_plain_classical_mean() -> None:
    # Both origins under two years: the classical level in season was the plain mean there,
    # so its record is the mean's; the season it would add at the data end is unvalidated.
    def origin(day: str, actual: float, **totals: float) -> OriginTotals:
        combined = with_blend(totals)
        return OriginTotals(
            pd.Timestamp(day),
            100,
            actual,
            {**combined, "classical_season": combined["classical_mean"]},
        )

    origins = (
        origin("2020-07-01", 1000.0, model=600.0, bgnbd=950.0, pareto_nbd=1050.0),
        origin("2020-01-01", 1000.0, model=1500.0, bgnbd=1050.0, pareto_nbd=950.0),
    )
    served = with_blend({"model": 700.0, "bgnbd": 900.0, "pareto_nbd": 1000.0})
    level = choose_level(origins, {**served, "classical_season": 1300.0})
    assert level.source == "classical_mean"
    assert level.factor == pytest.approx(served["classical_mean"] / 700.0)
    # Where an origin measured it and it missed least, the season is served.
    measured = (
        OriginTotals(
            origins[0].origin, 100, 1000.0, {**origins[0].totals, "classical_season": 1000.5}
        ),
        origins[1],
    )
    assert (
        choose_level(measured, {**served, "classical_season": 1300.0}).source == "classical_season"
    )
