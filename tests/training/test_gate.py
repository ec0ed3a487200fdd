"""The promotion gate's decisions."""

from training.gate import KEEP, NOT_COMPARABLE, PROMOTE, better, decide

BASE = {
    "simple": {"clv_spearman": 0.5, "clv_gini": 0.6, "clv_rmse": 50.0, "churn_roc_auc": 0.7},
    "bgnbd": {"clv_spearman": 0.55, "clv_gini": 0.62, "clv_rmse": 45.0, "churn_roc_auc": 0.72},
}
GOOD = {"clv_spearman": 0.6, "clv_gini": 0.7, "clv_rmse": 40.0, "churn_roc_auc": 0.8}


def test_first_version_needs_only_to_hold_up_against_the_baselines():
    decision = decide(GOOD, BASE, None)
    assert decision.promote and decision.outcome == PROMOTE
    assert decision.reasons == [
        "loses to none of simple, bgnbd beyond noise on clv_spearman, clv_gini, clv_rmse, "
        "churn_roc_auc"
    ]
    assert list(decision.table.columns) == ["candidate", "simple", "bgnbd"]


def test_losing_to_a_baseline_beyond_noise_blocks_and_within_noise_does_not():
    worse = {**GOOD, "clv_gini": 0.61, "clv_rmse": 46.0}
    decision = decide(worse, BASE, None, noise={"clv_gini": 0.005, "clv_rmse": 2.0})
    assert decision.outcome == KEEP
    assert decision.reasons == [
        "clv_gini: candidate 0.6100 loses to bgnbd 0.6200 by more than the noise (0.0100 > 0.0050)"
    ]
    assert decide(worse, BASE, None, noise={"clv_gini": 0.02, "clv_rmse": 2.0}).promote


def test_lower_rmse_is_better():
    assert better("clv_rmse", 1.0, 2.0) and not better("clv_gini", 1.0, 2.0)
    assert not better("clv_gini", float("nan"), 0.1) and better("clv_gini", 0.1, float("nan"))
    decision = decide({**GOOD, "clv_rmse": 60.0}, BASE, None)
    assert not decision.promote
    assert decision.reasons[0].startswith("clv_rmse: candidate 60.0000 loses to simple 50.0000")


def test_champion_must_not_be_lost_to_and_must_be_beaten_somewhere():
    assert decide(GOOD, BASE, {**GOOD, "churn_roc_auc": 0.79}).promote
    worse = decide(GOOD, BASE, {**GOOD, "clv_gini": 0.71, "churn_roc_auc": 0.5})
    assert not worse.promote
    assert worse.reasons == [
        "clv_gini: candidate 0.7000 loses to champion 0.7100 by more than the noise "
        "(0.0100 > 0.0000)"
    ]
    tie = decide(GOOD, BASE, dict(GOOD))
    assert not tie.promote
    assert tie.reasons == ["candidate ties the champion on every gate metric; champion stays"]
    assert list(tie.table.columns) == ["candidate", "simple", "bgnbd", "champion"]
    # A champion saved without the customer profile gives way to a candidate that ties it,
    # but not to one that loses to it.
    replaced = decide(GOOD, BASE, dict(GOOD), champion_outdated=True)
    assert replaced.promote and "older version of this code" in replaced.reasons[0]
    assert not decide(
        GOOD, BASE, {**GOOD, "clv_gini": 0.71, "churn_roc_auc": 0.5}, champion_outdated=True
    ).promote


def test_a_champion_of_another_horizon_is_not_comparable_and_stays():
    decision = decide(GOOD, BASE, None, comparable=False)
    assert decision.outcome == NOT_COMPARABLE and not decision.promote
    assert "cannot be judged on this holdout" in decision.reasons[-1]


def test_missing_candidate_metric_blocks_and_missing_baseline_metric_is_skipped():
    assert not decide({"clv_spearman": 0.9, "clv_gini": 0.9}, BASE, None).promote
    no_churn = {"simple": {"clv_spearman": 0.1, "clv_gini": 0.1}}
    assert decide(GOOD, no_churn, None).promote


def test_a_total_worse_than_the_better_classical_models_by_over_five_points_blocks():
    baselines = {
        "simple": {**BASE["simple"], "clv_total_error_pct": 1.0},  # not a classical model
        "bgnbd": {**BASE["bgnbd"], "clv_total_error_pct": 20.0},
        "pareto_nbd": {**BASE["bgnbd"], "clv_total_error_pct": -2.0},
    }
    decision = decide({**GOOD, "clv_total_error_pct": -7.5}, baselines, None)
    assert decision.outcome == KEEP
    assert decision.reasons == [
        "clv_total_error_pct: the candidate's base total misses by -7.5%, more than 5 points "
        "worse than pareto_nbd's -2.0% (budgets are built on the total)"
    ]
    # Within five points of the better classical total, or without a total: judged as before.
    assert decide({**GOOD, "clv_total_error_pct": 6.9}, baselines, None).promote
    assert decide(GOOD, baselines, None).promote
