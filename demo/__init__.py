"""The demo: a synthetic storefront with planted causes, and the replay of its planted truth.

Not part of the product: it makes data for ``make data`` and the tests, and lets the
service-impact what-if be checked against what the planted effects really cost. The product's
packages reach it through two doors only, named in the import contract (pyproject.toml,
``[tool.importlinter]``): :func:`training.train.ensure_demo_data` and
:mod:`serving.insight.impact_truth`.
"""
