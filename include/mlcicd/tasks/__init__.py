"""Thin adapters between the DAGs' tasks and the stage modules: the worker's side of Airflow.

Each function takes plain values (the run id, the run's params, references from upstream tasks),
calls the stage inside :func:`mlcicd.boundary.stage` (which records the outcome in the run record
and turns user-fixable errors into non-retried failures) and returns JSON-serialisable references
for XCom. :mod:`.retrain`, :mod:`.search`, :mod:`.scan`, :mod:`.ship` and :mod:`.rollout` serve
``ml_retrain``, :mod:`.monitor` ``ml_monitor``; :mod:`mlcicd.conf.run` reads the run's params.
No adapter imports another (tests/unit/test_layout.py): what two share lives below them.
"""
