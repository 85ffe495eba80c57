"""The embedded default's own Airflow (:mod:`.server`): API server, scheduler and DAG processor on
loopback, for ``python -m mlcicd airflow``, the trigger client's tests and the benchmark."""
