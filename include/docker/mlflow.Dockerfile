# The MLflow tracking server of the Compose stack: PostgreSQL backend, artifacts served from a volume,
# basic auth (mlflow[auth]).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    MLFLOW_DISABLE_TELEMETRY=true
COPY constraints.txt /tmp/constraints.txt
RUN python3 -m venv /opt/venv \
    && pip install "mlflow[auth]" psycopg2-binary==2.9.13 -c /tmp/constraints.txt \
    && useradd --system --uid 10002 --user-group --create-home mlflow \
    && mkdir -p /mlflow/artifacts && chown mlflow:mlflow /mlflow/artifacts
USER 10002:10002
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow", "server"]
