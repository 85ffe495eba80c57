-- The Compose stack's PostgreSQL holds two databases: airflow (POSTGRES_DB) and this one.
CREATE DATABASE mlflow;
