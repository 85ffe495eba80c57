-- The Compose stack's PostgreSQL holds two databases: airflow (POSTGRES_DB) and this one.
CREATE DATABASE mlflow;
-- The users and permissions of MLflow's basic-auth app.
CREATE DATABASE mlflow_auth;
