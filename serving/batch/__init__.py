"""Batch outputs: the whole customer base scored at a cutoff, with pandas or on Spark.

:mod:`serving.batch.base_scoring` (``python -m serving.batch``) writes the scores, the online
feature table and the lookup store; :mod:`serving.batch.spark` does the same on Spark, with
:mod:`serving.batch.spark_worker` as what its workers run.
"""
