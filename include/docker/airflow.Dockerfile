# Airflow 3 with the project's pinned stack, for the Compose stack (docker-compose.yaml).
# The DAGs, include/ and plugins/ are mounted by Compose, so editing them needs no rebuild.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}
COPY requirements.txt constraints.txt /tmp/mlcicd/
RUN pip install --no-cache-dir -r /tmp/mlcicd/requirements.txt -c /tmp/mlcicd/constraints.txt
ENV PYTHONPATH=/opt/airflow/include \
    MLFLOW_DISABLE_TELEMETRY=true
