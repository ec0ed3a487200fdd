"""The HTML report: same numbers as the scores file, self-contained, every figure loads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from serving.insight import report
from serving.insight.budget import BudgetAssumptions
from serving.insight.impact_truth import TruthCheck, compare, truth_path
from serving.run_files import SCORE_COLUMNS, RunStamp, write_scores
from serving.segments import Base

matplotlib.use("Agg")

N = 400


def synthetic_scores(n: int = N, seed: int = 3) -> pd.DataFrame:
    """A scores frame in the batch format, segmented like the batch run segments it."""
    rng = np.random.default_rng(seed)
    clv = rng.lognormal(3.0, 1.2, n)
    p_churn = rng.uniform(0.0, 1.0, n)
    if n > 6:
        # Two exact ties in value at risk: the order between them must not depend on row order.
        clv[[5, 6]], p_churn[[5, 6]] = 5000.0, 0.5
    value, risk, action = Base.of(clv).labels(clv, p_churn)
    reasons = [
        f"↑ last order {rng.integers(1, 300)} days ago; ↓ {rng.integers(1, 9)} orders expected"
        f" in the next 90 days (purchase pattern)"
        + ("; ↑ 2 late deliveries in the last 365 days" if i % 7 == 0 else "")
        for i in range(n)
    ]
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "cutoff": pd.Timestamp("2026-07-01"),
            "horizon_days": 365,
            "clv": clv,
            "clv_low": clv * 0.5,
            "clv_high": clv * 1.5,
            "clv_discounted": clv,
            "clv_percentile": np.nan,
            "p_churn": p_churn,
            "p_active": 1 - p_churn,
            "expected_orders": clv / 50,
            "next_order_date": "",
            "avg_days_between_orders": 30.0,
            "historic_value": clv * 2,
            "total_value": clv * 3,
            "value_segment": value.astype(str),
            "risk_segment": risk.astype(str),
            "action": action.astype(str),
            "reasons": reasons,
            "value_reasons": reasons,
            "model_name": "customer-value",
            "model_version": "1",
        }
    )
    return frame[list(SCORE_COLUMNS)]


@pytest.fixture
def scores_file(tmp_path: Path) -> Path:
    path = tmp_path / "scores.parquet"
    stamp = RunStamp("run1", "2026-07-01 00:00:00", "customer-value", "1")
    write_scores([synthetic_scores()], path, stamp)
    return path


def test_segment_and_at_risk_tables_are_the_scores_files_numbers(scores_file: Path) -> None:
    scores, stamp = report.read_scores(scores_file)
    built = report.build_report(scores, stamp=stamp)

    # Recomputed by hand from the file, one segment at a time.
    total_value = scores["clv"].sum()
    for segment, table_row in built.segments.drop(index="all").iterrows():
        rows = scores[scores["value_segment"] == segment]
        assert table_row["customers"] == len(rows)
        assert table_row["share_customers"] == pytest.approx(len(rows) / len(scores))
        assert table_row["predicted_value"] == pytest.approx(rows["clv"].sum())
        assert table_row["share_value"] == pytest.approx(rows["clv"].sum() / total_value)
        assert table_row["mean_p_churn"] == pytest.approx(rows["p_churn"].mean())
        assert table_row["value_at_risk"] == pytest.approx((rows["clv"] * rows["p_churn"]).sum())
    assert set(built.segments.index) == {*scores["value_segment"], "all"}
    assert built.segments.loc["all", "customers"] == len(scores)
    assert built.segments.loc["all", "share_value"] == pytest.approx(1.0)
    # Most valuable first.
    assert list(built.segments.index)[:2] == ["top", "high"]

    # Only customers who ARE at risk (medium or high), the most value at stake first.
    at_risk = scores[scores["risk_segment"].isin(["medium", "high"])]
    at_risk = at_risk.assign(var=at_risk["clv"] * at_risk["p_churn"])
    expected = sorted(at_risk.itertuples(), key=lambda r: (-r.var, r.customer_id))[:20]
    assert built.at_risk["customer_id"].tolist() == [r.customer_id for r in expected]
    assert built.at_risk["value_at_risk"].to_numpy() == pytest.approx([r.var for r in expected])
    assert built.at_risk["reasons"].tolist() == [r.reasons for r in expected]
    assert built.at_risk["customer_id"].tolist()[:2] == ["C00005", "C00006"]  # the tie
    assert set(built.at_risk["risk_segment"]) <= {"medium", "high"}
    # A low-risk customer with more clv x p_churn than every listed one is not listed.
    low = scores[scores["risk_segment"] == "low"]
    assert (low["clv"] * low["p_churn"]).max() > built.at_risk["value_at_risk"].min()

    # And the HTML shows those numbers.
    html = built.render()
    for row in expected:
        assert row.customer_id in html
    assert f"{int(built.segments.loc['all', 'customers']):,}" in html


def test_drivers_count_customers_per_driver() -> None:
    reasons = pd.Series(
        [
            "↑ last order 4 days ago; ↓ 2 returns in the last 365 days",
            "↓ last order 90 days ago",
            "",
        ]
    )
    drivers = report.reason_drivers(reasons).set_index("driver")
    assert drivers.loc["last order # days ago", "customers"] == 2
    assert drivers.loc["last order # days ago", "share"] == pytest.approx(2 / 3)
    assert drivers.loc["last order # days ago", "raises"] == pytest.approx(0.5)
    assert drivers.loc["# returns in the last # days", "customers"] == 1
    assert report.reason_drivers(pd.Series(["", ""])).empty


def test_impact_section_says_why_it_is_missing() -> None:
    scores = synthetic_scores(50)
    built = report.build_report(scores)  # one build for both checks: it is a pure function
    assert built.impact_note == report.NO_IMPACT
    no_data = report.build_report(scores, has_service_data=False)
    assert no_data.impact_note == report.NO_SERVICE_DATA
    assert report.NO_SERVICE_DATA in no_data.render()
    assert "run make impact" in built.render()


def test_impact_per_customer_is_summed_by_kind() -> None:
    impact = pd.DataFrame({"clv": [10.0, 20.0, 30.0], "p_churn": [0.5, 0.4, 0.3]})
    for kind in report.IMPACT_KINDS:
        impact[f"clv_{kind}"] = impact["clv"] + [1.0, 2.0, 4.0]
        impact[f"clv_if_never_{kind}"] = impact["clv"] + [3.0, 2.0, 5.0]
        impact[f"p_churn_{kind}"] = impact["p_churn"] - [0.1, 0.0, 0.3]
        impact[f"affected_{kind}"] = [True, False, True]
    summary = report.impact_summary(impact)
    assert list(summary.index) == list(report.IMPACT_KINDS)
    assert summary.loc["late", "customers_affected"] == 2
    assert summary.loc["late", "clv_difference"] == pytest.approx(1.0 + 4.0)
    assert summary.loc["late", "clv_difference_if_never"] == pytest.approx(3.0 + 5.0)
    assert summary.loc["late", "mean_p_churn_difference"] == pytest.approx((-0.1 - 0.3) / 2)
    # An already summarised table is shown as it is.
    given = pd.DataFrame({"customers_affected": [3], "clv_difference": [-12.5]}, index=["all"])
    html = report.build_report(synthetic_scores(50), impact=given).render()
    assert "-12" in html and report.NO_IMPACT not in html


def test_holdout_table_keeps_models_not_standard_errors() -> None:
    metrics = {
        "holdout.model.clv_gini": 0.8,
        "holdout.bgnbd.clv_gini": 0.7,
        "holdout.simple.churn_roc_auc": 0.6,
        "holdout.se.clv_gini": 0.01,
        "holdout.se_vs_bgnbd.clv_gini": 0.02,
        "holdout.profile.orders_mae": 1.0,
        "seconds_fit": 3.0,
    }
    table = report.holdout_table(metrics)
    assert list(table.index) == ["model", "simple", "bgnbd"]
    assert table.loc["bgnbd", "clv_gini"] == 0.7


def test_budget_section_states_the_formulas(scores_file: Path) -> None:
    scores, _ = report.read_scores(scores_file)
    html = report.build_report(scores, assumptions=BudgetAssumptions(margin=0.45)).render()
    assert "0.45 x predicted value x churn probability x 0.2" in html
    assert "First orders unknown" in html


def _deciles() -> pd.DataFrame:
    """A decile table as training.evaluate.decile_table writes it (model only)."""
    return pd.DataFrame(
        {
            "decile": range(1, 11),
            "customers": 40,
            "mean_predicted": [50.0, 30, 20, 12, 8, 5, 3, 2, 1, 0.5],
            "mean_actual": [48.0, 31, 18, 13, 7, 5, 3, 1, 1, 0.2],
        }
    )


def _fake_run(tmp_path: Path) -> str:
    """A run with metrics, figures and readiness.md, registered as customer-value version 1."""
    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("report", (tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_metric(run_id, "holdout.model.clv_gini", 0.81)
    client.log_metric(run_id, "holdout.pareto_nbd.clv_gini", 0.72)
    figures = tmp_path / "plots"
    figures.mkdir()
    for path, _ in report.QUALITY_FIGURES:
        fig = Figure(figsize=(3, 2))
        fig.subplots().plot([0, 1], [0, 1])
        fig.savefig(tmp_path / path)
    client.log_artifacts(run_id, str(figures), "plots")
    tables = tmp_path / "tables"
    tables.mkdir()
    _deciles().to_csv(tables / "clv_deciles.csv", index=True)
    client.log_artifacts(run_id, str(tables), "tables")
    (tmp_path / "readiness.md").write_text("# Readiness\n\nverdict: ready, 3 caveats\n")
    client.log_artifact(run_id, str(tmp_path / "readiness.md"))
    client.set_terminated(run_id)
    client.create_registered_model("customer-value")
    client.create_model_version("customer-value", f"runs:/{run_id}/model", run_id)
    return uri


@pytest.fixture
def fake_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_tracking_store: Path):
    import mlflow

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # A copy of MLflow's empty store (tests/conftest.py): MLflow would migrate a new one.
    shutil.copyfile(empty_tracking_store, tmp_path / "mlflow.db")
    uri = _fake_run(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_cli_writes_one_self_contained_file_and_logs_it(
    fake_store: str, scores_file: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out" / "report.html"
    assert report.main(["--scores", str(scores_file), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")

    # Self-contained: no script, stylesheet link or remote resource; images inline.
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 1 + len(report.QUALITY_FIGURES)  # histogram + the run's figures
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    # The run's metrics and readiness caveats, by the model version in the scores' stamp.
    assert "0.810" in html and "Pareto/NBD" in html
    assert "Ranking quality (Gini" in html and "clv_gini" not in html
    assert "verdict: ready, 3 caveats" in html
    # The decile panel is the report's own, from the run's decile table, on its own axis.
    assert "own scale" in html

    client = MlflowClient(tracking_uri=fake_store)
    run_id = client.get_model_version("customer-value", "1").run_id
    logged = [a.path for a in client.list_artifacts(run_id, "report")]
    assert logged == ["report/report.html"]


def test_cli_without_a_store_still_writes_the_report(
    scores_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store that does not exist: the read-only check refuses it before MLflow is touched.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    out = tmp_path / "report.html"
    argv = ["--scores", str(scores_file), "--out", str(out), "--no-log"]
    empty = tmp_path / "events.parquet"
    pd.DataFrame({"customer_id": pd.Series(dtype="str")}).to_parquet(empty)
    assert report.main([*argv, "--events", str(empty)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "No MLflow run found" in html
    assert report.NO_SERVICE_DATA in html


# --- in a real browser -----------------------------------------------------------------------

#: Added to the test's copy of the report: after load, writes each image's decoded size.
_PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = JSON.stringify(Array.from(document.images, (img) =>
    ({alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight})));
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.browser
def test_every_figure_loads_in_headless_chromium(
    fake_store: str, scores_file: Path, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: this test renders the report in headless Chromium; "
            "install it with `apt-get install -y chromium` (Debian)"
        )
    out = tmp_path / "report.html"
    assert report.main(["--scores", str(scores_file), "--out", str(out), "--no-log"]) == 0
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="image-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run; chromium said: {result.stderr[-2000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(images) == 1 + len(report.QUALITY_FIGURES)
    broken = [i for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"figures that did not load: {broken}"


def test_the_report_shows_estimate_and_truth_side_by_side(tmp_path):
    kinds = ["late", "returns", "bad_tickets", "all"]
    estimate = pd.DataFrame(
        {"clv_gain": [110.0, 45.0, 12.0, 170.0], "affected": [10, 5, 2, 14]}, index=kinds
    )
    truth = pd.DataFrame(
        {"value_lost": [100.0, 50.0, 10.0, 160.0], "customers": [10, 6, 2, 15]}, index=kinds
    )
    check = TruthCheck("2025-01-01", 180, "models:/customer-value/1",
                       {"customers": 2000, "seed": 11}, compare(estimate, truth))  # fmt: skip
    impact = pd.DataFrame({"clv": [10.0, 20.0], "p_churn": [0.5, 0.4]})
    for kind in ("late", "returns", "bad_tickets", "all"):
        impact[f"clv_{kind}"] = impact["clv"] + 1.0
        impact[f"affected_{kind}"] = True
    html = report.build_report(synthetic_scores(50), impact=impact, truth=check).render()
    assert "Estimate and truth, side by side" in html
    assert "badly resolved tickets" in html and "+20.0" in html  # 12 against 10
    assert "in the true order" in html
    assert "model-based what-if" in html
    without = report.build_report(synthetic_scores(50), impact=impact).render()
    assert "side by side" not in without


def impact_of(scores: pd.DataFrame) -> pd.DataFrame:
    """A per-customer impact table as ``make impact`` writes it for these scores."""
    impact = scores[["customer_id", "value_segment", "clv", "p_churn"]].copy()
    hit = np.arange(len(scores)) % 3 == 0
    for kind in report.IMPACT_KINDS:
        impact[f"clv_{kind}"] = impact["clv"] + np.where(hit, 2.0, 0.0)
        impact[f"clv_if_never_{kind}"] = impact["clv"] + np.where(hit, 3.0, 0.0)
        impact[f"p_churn_{kind}"] = impact["p_churn"] - np.where(hit, 0.01, 0.0)
        impact[f"affected_{kind}"] = hit
    return impact


def _truth_check(model_uri: str = "models:/customer-value/1") -> TruthCheck:
    kinds = ["late", "returns", "bad_tickets", "all"]
    estimate = pd.DataFrame(
        {"clv_gain": [110.0, 45.0, 12.0, 170.0], "affected": [10, 5, 2, 14]}, index=kinds
    )
    truth = pd.DataFrame(
        {"value_lost": [100.0, 50.0, 10.0, 160.0], "customers": [10, 6, 2, 15]}, index=kinds
    )
    return TruthCheck("2025-07-01", 365, model_uri, {"customers": 2000, "seed": 11},
                      compare(estimate, truth))  # fmt: skip


@pytest.fixture
def store_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scores of a (tiny, fake) synthetic store: its manifest beside its two files."""
    from demo.manifest import write_manifest

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    store = tmp_path / "demo"
    store.mkdir()
    pd.DataFrame({"customer_id": ["C00000"], "ordered_at": [pd.Timestamp("2024-01-02")],
                  "amount": [1.0]}).to_parquet(store / "orders.parquet")  # fmt: skip
    pd.DataFrame({"customer_id": ["C00000"], "occurred_at": [pd.Timestamp("2024-01-03")],
                  "kind": ["ticket"]}).to_parquet(store / "service_events.parquet")  # fmt: skip
    write_manifest(store, customers=2000, seed=11, start="2022-07-01", end="2026-07-01",
                   params={})  # fmt: skip
    path = tmp_path / "scores" / "scores.parquet"
    path.parent.mkdir()
    stamp = RunStamp("run1", "2026-07-01 00:00:00", "customer-value", "1",
                     orders=str(store / "orders.parquet"))  # fmt: skip
    write_scores([synthetic_scores()], path, stamp)
    return path


def _report_with_impact(scores_file: Path, impact_file: Path, *extra: str) -> str:
    out = scores_file.with_name("report.html")
    argv = ["--scores", str(scores_file), "--impact", str(impact_file), "--out", str(out)]
    assert report.main([*argv, "--no-log", *extra]) == 0
    return out.read_text(encoding="utf-8")


def test_make_report_after_make_impact_reads_the_written_files(store_run: Path) -> None:
    # The README's flow: make impact writes impact.parquet and impact_truth.json beside it,
    # make report reads both back from disk (JSON gives the counts back as numbers).
    scores, _ = report.read_scores(store_run)
    impact_file = store_run.with_name("impact.parquet")
    impact_of(scores).to_parquet(impact_file, index=False)
    _truth_check().write(truth_path(impact_file))
    html = _report_with_impact(store_run, impact_file)
    assert "left out" not in html
    assert "Estimate and truth, side by side" in html
    assert "+20.0" in html  # bad tickets: 12 estimated against 10 true


def test_an_impact_file_of_another_run_is_left_out_naming_both_files(store_run: Path) -> None:
    scores, _ = report.read_scores(store_run)
    other = impact_of(synthetic_scores(seed=4))  # same customer ids, another run's CLV
    impact_file = store_run.with_name("impact.parquet")
    other.to_parquet(impact_file, index=False)
    _truth_check().write(truth_path(impact_file))
    html = _report_with_impact(store_run, impact_file)
    assert f"impact file {impact_file} left out" in html
    assert f"scored run {store_run}" in html
    assert "clv differs for" in html
    # None of its figures, nor the truth check beside it.
    assert "Estimate and truth" not in html
    summed = report.impact_summary(other)
    # In the page's text: the figures' base64 data may hold the same digits by chance.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert f"{summed.loc['all', 'clv_difference']:,.0f}" not in text

    # Another shop: other customers.
    shop = impact_of(synthetic_scores(30)).assign(customer_id=lambda f: "R" + f["customer_id"])
    assert report.impact_differences(scores, RunStamp("", "", "", ""), shop) == [
        "400 of the 400 scored customers are not in it (e.g. 'C00000')",
        "it has 30 customers the scores do not have (e.g. 'RC00000')",
    ]
    assert report.impact_differences(scores, RunStamp("", "", "", ""), impact_of(scores)) == []


def test_a_stamped_impact_file_is_judged_by_its_stamp_too(store_run: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    scores, stamp = report.read_scores(store_run)
    table = pa.Table.from_pandas(impact_of(scores), preserve_index=False)
    theirs = RunStamp("imp1", "2025-07-01 00:00:00", "customer-value", "2", orders=stamp.orders)
    impact_file = store_run.with_name("impact.parquet")
    meta = {**(table.schema.metadata or {}), **theirs.metadata()}
    pq.write_table(table.replace_schema_metadata(meta), impact_file)
    html = _report_with_impact(store_run, impact_file)
    assert "cutoff &#39;2026-07-01 00:00:00&#39; vs &#39;2025-07-01 00:00:00&#39;" in html
    assert "model_version &#39;1&#39; vs &#39;2&#39;" in html
    # The same run's stamp (the run id is the impact run's own) is accepted.
    same = RunStamp("imp2", "2026-07-01", "customer-value", "1", orders=stamp.orders)
    assert report.impact_differences(scores, stamp, impact_of(scores), same) == []


def test_a_truth_check_of_another_model_or_store_is_left_out(store_run: Path) -> None:
    scores, stamp = report.read_scores(store_run)
    impact_file = store_run.with_name("impact.parquet")
    impact_of(scores).to_parquet(impact_file, index=False)
    _truth_check("models:/customer-value/7").write(truth_path(impact_file))
    html = _report_with_impact(store_run, impact_file)
    assert f"truth check {truth_path(impact_file)} left out" in html
    assert "model &#39;models:/customer-value/1&#39; vs &#39;models:/customer-value/7&#39;" in html
    assert "Estimate and truth" not in html
    assert "Summed from the service-quality impact file" in html  # the impact itself stays

    other_store = TruthCheck(**{**_truth_check().__dict__, "store": {"seed": 5}})
    assert report.truth_differences(other_store, scores, stamp) == ["synthetic store seed 11 vs 5"]
    # Scores of a real shop (no manifest beside its orders): no planted truth is theirs.
    shop = RunStamp("run2", stamp.cutoff, "customer-value", "1", orders=str(store_run))
    assert (
        "is not an unchanged synthetic store"
        in report.truth_differences(_truth_check(), scores, shop)[0]
    )


def test_cohorts_from_another_orders_file_are_left_out(store_run: Path) -> None:
    out = store_run.with_name("report.html")
    other = store_run.parent.parent / "shop.csv"
    pd.DataFrame({"customer_id": ["C00001"], "ordered_at": ["2024-01-01"],
                  "amount": [3.0]}).to_csv(other, index=False)  # fmt: skip
    argv = ["--scores", str(store_run), "--orders", str(other), "--out", str(out), "--no-log"]
    assert report.main(argv) == 0
    html = out.read_text(encoding="utf-8")
    assert f"orders file {other} left out" in html
    assert "By acquisition cohort" in html and "2024-01" not in html


def test_the_summary_comes_first_with_the_base_value_risk_and_three_things_to_do() -> None:
    scores = synthetic_scores()
    built = report.build_report(scores, assumptions=BudgetAssumptions(margin=0.4))
    summary = built.summary
    assert summary.predicted_value == pytest.approx(scores["clv"].sum())
    assert summary.value_at_risk == pytest.approx((scores["clv"] * scores["p_churn"]).sum())
    at_risk = scores["risk_segment"] != "low"
    assert summary.at_risk_customers == int(at_risk.sum())
    assert summary.historic_value == pytest.approx(scores["historic_value"].sum())

    # Customers per action, by hand, the most value at risk first.
    actions = built.actions
    for action, row in actions.iterrows():
        rows = scores[scores["action"] == action]
        assert row["customers"] == len(rows)
        assert row["value_at_risk"] == pytest.approx((rows["clv"] * rows["p_churn"]).sum())
        assert row["max_retention_spend"] == pytest.approx(
            (0.4 * rows["clv"] * rows["p_churn"] * 0.2).mean()
        )
    assert actions["customers"].sum() == len(scores)
    assert list(actions["value_at_risk"]) == sorted(actions["value_at_risk"], reverse=True)
    # The three things to do: the actions with the most at stake, never a no-spend one.
    spending = [a for a in actions.index if a != "let go"][:3]
    assert len(summary.todo) == 3
    for line, action in zip(summary.todo, spending, strict=True):
        assert line.lower().startswith(action)
        assert f"{int(actions.loc[action, 'customers']):,} customers" in line

    html = built.render()
    assert html.index("At a glance") < html.index("at-risk customers with the most value")
    assert html.index("At a glance") < html.index("Model quality")
    assert f"{summary.predicted_value:,.0f}" in html
    assert f"{summary.value_at_risk:,.0f}" in html
    for action in actions.index:
        assert f"<td>{action}</td>" in html


def test_readable_labels_dates_and_caveats_instead_of_identifiers_and_markdown() -> None:
    scores = synthetic_scores(60)
    readiness = (
        "## Data readiness for a 365-day horizon\n\n- **history**: 2022 to 2026 <4 years>\n"
        "\n**Verdict: ready**\n\nCaveats:\n\n- `returns` unknown\n"
    )
    metrics = {
        "holdout.model.clv_gini": 0.8,
        "holdout.hybrid.clv_gini": 0.79,
        "holdout.simple.churn_ece": 0.2,
    }
    run = report.ModelRun(
        "models:/customer-value/1",
        "r1",
        metrics,
        {"readiness.md": readiness.encode(), report.DECILE_TABLE: _deciles().to_csv().encode()},
    )
    stamp = RunStamp("run1", "2026-07-01 00:00:00", "customer-value", "1")
    html = report.build_report(scores, stamp=stamp, run=run, impact=impact_of(scores)).render()
    # Metrics and rows by name, each row explained in one line.
    for raw in ("clv_gini", "churn_ece", "value_at_risk", "p_churn", "mean_clv"):
        assert raw not in html, raw
    assert "Ranking quality (Gini" in html and "Churn calibration error (ECE" in html
    assert "Hybrid family" in html and "purchase model and boosted trees, stacked" in html
    assert "Simple formula" in html and "average order value x purchase rate" in html
    # The impact by the failure's name, its columns in words.
    for raw in ("clv_difference", ">late<", "bad_tickets", "customers_affected", "clv_gain"):
        assert raw not in html, raw
    assert "late deliveries" in html and "Value if they had never happened" in html
    # The cutoff as a date.
    assert "00:00:00" not in html and "on 2026-07-01" in html
    # The caveats as text, not Markdown (and escaped).
    assert "**" not in html and "## Data" not in html
    assert "<h4>Data readiness for a 365-day horizon</h4>" in html
    assert "<li><strong>history</strong>: 2022 to 2026 &lt;4 years&gt;</li>" in html
    assert "<strong>Verdict: ready</strong>" in html and "<code>returns</code>" in html


def test_the_models_decile_panel_has_its_own_axis() -> None:
    table = _deciles()
    fig = report.decile_figure(table)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    # Scaled to the model's own figures: a baseline's 10x larger decile does not flatten it.
    assert high < 1.2 * max(table["mean_predicted"].max(), table["mean_actual"].max())
    assert low <= 0.2


def test_the_budget_section_states_the_levels_measured_band() -> None:
    """The total a budget rests on comes with how far it missed at earlier origins."""
    from training.level import OriginTotals, choose_level, with_blend

    origins = (
        OriginTotals(
            pd.Timestamp("2024-01-01"),
            10,
            1000.0,
            with_blend({"model": 920.0, "bgnbd": 1500.0, "pareto_nbd": 1400.0}),
        ),
        OriginTotals(
            pd.Timestamp("2023-07-01"),
            9,
            800.0,
            with_blend({"model": 840.0, "bgnbd": 1300.0, "pareto_nbd": 1200.0}),
        ),
    )
    level = choose_level(origins, {"model": 500.0, "bgnbd": 800.0, "pareto_nbd": 700.0})
    artifacts = {report.LEVEL_FILE: json.dumps(level.to_dict()).encode()}
    run = report.ModelRun("models:/customer-value/1", "abc", {}, artifacts)
    note = report.level_note(run)
    assert "the model's" in note and "2 earlier origin(s)" in note
    assert "-8% to +5%" in note
    # A run from before the level was measured, and one that could not be replayed, say so.
    assert "unvalidated" in report.level_note(report.ModelRun("m", "r", {}, {}))
    unmeasured = choose_level((), {"model": 1.0})
    run = report.ModelRun(
        "m", "r", {}, {report.LEVEL_FILE: json.dumps(unmeasured.to_dict()).encode()}
    )
    assert "no measured track record" in report.level_note(run)
    assert report.level_note(None) == ""
