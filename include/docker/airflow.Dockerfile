# Airflow 3 with the project's pinned stack and the project itself baked in: the image of the Compose
# stack (docker-compose.yaml, where dags/, include/ and plugins/ are also mounted over the baked copies so
# edits need no rebuild) and of the Helm chart (include/k8s/airflow-values.yaml, where they are not).
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}

# HAProxy: the docker target copies it into its traffic front's image (mlcicd.image.haproxy). Debian's
# 2.6 LTS branch; the exact build is whatever bookworm's security archive serves.
USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy=2.6.* \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER 50000

COPY requirements.txt constraints.txt include/docker/airflow.requirements.txt /tmp/mlcicd/
RUN pip install --no-cache-dir -r /tmp/mlcicd/requirements.txt -r /tmp/mlcicd/airflow.requirements.txt \
        -c /tmp/mlcicd/constraints.txt
# The image build's context takes the project's lock (include/mlcicd/image/__init__.py).
COPY --chown=50000:0 constraints.txt /opt/airflow/constraints.txt
COPY --chown=50000:0 dags/ /opt/airflow/dags/
COPY --chown=50000:0 plugins/ /opt/airflow/plugins/
COPY --chown=50000:0 include/ /opt/airflow/include/
# mlcicd as an installed package (editable, over the include/ folder the Compose file mounts): its
# Airflow plugin registers through the package's `airflow.plugins` entry point.
COPY --chown=50000:0 pyproject.toml README.md /opt/airflow/
RUN mkdir -p /opt/airflow/tools && pip install --no-cache-dir --no-deps -e /opt/airflow
ENV PYTHONPATH=/opt/airflow/include \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    MLCICD_HAPROXY=/usr/sbin/haproxy \
    MLFLOW_DISABLE_TELEMETRY=true
