"""Thin adapters between the DAGs' tasks and the stage modules.

Each function takes plain values (the run id, the run's params, references from upstream tasks),
calls the stage inside :func:`.boundary.stage` (which records the outcome in the run record and
turns user-fixable errors into non-retried failures) and returns JSON-serialisable references
for XCom. :mod:`.retrain` and :mod:`.ship` serve ``ml_retrain``, :mod:`.monitor` ``ml_monitor``;
:mod:`.params` reads the run's params.
"""
