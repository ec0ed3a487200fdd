"""Scoring, and its three products.

The scoring core lives here: :mod:`serving.scoring` (the one scoring path), :mod:`serving.explain`
(reasons), :mod:`serving.segments`, :mod:`serving.sanity`, the format of a batch run's files
(:mod:`serving.run_files`) and of its lookup store (:mod:`serving.lookup_store`), and what a run
over a whole base reads (:mod:`serving.base_inputs`, :mod:`serving.customer_chunks`). The
products import the core and never each other: :mod:`serving.batch` (batch and Spark scoring),
:mod:`serving.online` (the BentoML service) and :mod:`serving.insight` (service impact, budget,
report). ``serving/report.py``, ``serving/impact.py`` and ``serving/spark.py`` only keep the
documented ``python -m serving.<command>`` working.
"""
