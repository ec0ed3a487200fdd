"""Insight: what service quality is worth, what to spend, and one HTML report on a run.

:mod:`serving.insight.impact` (the what-if, ``python -m serving.impact``),
:mod:`serving.insight.impact_truth` (the what-if beside a demo store's planted truth),
:mod:`serving.insight.budget` and :mod:`serving.insight.report` (``python -m serving.report``).
"""
