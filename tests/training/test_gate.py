"""The promotion gate's decisions."""

from training.gate import decide

BASE = {
    "simple": {"clv_spearman": 0.5, "clv_gini": 0.6, "churn_roc_auc": 0.7},
    "bgnbd": {"clv_spearman": 0.55, "clv_gini": 0.62, "churn_roc_auc": 0.72},
}
GOOD = {"clv_spearman": 0.6, "clv_gini": 0.7, "churn_roc_auc": 0.8}


def test_first_version_needs_only_to_beat_the_baselines():
    decision = decide(GOOD, BASE, None)
    assert decision.promote
    assert decision.reasons == ["beats simple, bgnbd on clv_spearman, clv_gini, churn_roc_auc"]
    assert list(decision.table.columns) == ["candidate", "simple", "bgnbd"]


def test_losing_to_a_baseline_on_any_gate_metric_blocks():
    decision = decide({**GOOD, "clv_gini": 0.61}, BASE, None)
    assert not decision.promote
    assert decision.reasons == ["clv_gini: candidate 0.6100 does not beat bgnbd 0.6200"]


def test_champion_must_be_matched_everywhere_and_beaten_somewhere():
    assert decide(GOOD, BASE, {**GOOD, "churn_roc_auc": 0.79}).promote
    worse = decide(GOOD, BASE, {**GOOD, "clv_gini": 0.71, "churn_roc_auc": 0.5})
    assert not worse.promote
    assert worse.reasons == ["clv_gini: candidate 0.7000 is worse than champion 0.7100"]
    tie = decide(GOOD, BASE, dict(GOOD))
    assert not tie.promote
    assert tie.reasons == ["candidate ties the champion on every gate metric; champion stays"]
    assert list(tie.table.columns) == ["candidate", "simple", "bgnbd", "champion"]


def test_missing_candidate_metric_blocks_and_missing_baseline_metric_is_skipped():
    assert not decide({"clv_spearman": 0.9, "clv_gini": 0.9}, BASE, None).promote
    no_churn = {"simple": {"clv_spearman": 0.1, "clv_gini": 0.1}}
    assert decide(GOOD, no_churn, None).promote
