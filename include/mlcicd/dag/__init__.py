"""What the DAG files import while the DAG processor parses them: the Params (:mod:`.params`), the
Assets, the operator extra links and the approval operator. Cheap to import: Airflow's SDK and the
house's constants, never pandas, scikit-learn, MLflow or GX at module level (tests/dags checks)."""
