"""The CI client: start ``ml_retrain`` and answer its approvals through Airflow's REST API.

Runs where only ``requirements-trigger.txt`` is installed (a CI job): no Airflow, no ML stack, no web
framework. The layout test and tests/e2e/test_trigger.py (a fresh venv) hold it to that."""
