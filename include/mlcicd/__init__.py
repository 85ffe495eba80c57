"""mlcicd: CI/CD for machine learning models, built as Apache Airflow DAGs."""

__version__ = "0.1.0"
