# Local stand-ins for the images docker-compose.yaml names, for the Compose test on machines where no
# registry can be reached (tests/e2e/test_compose.py builds them from Debian's packages and PyPI on the
# local base image). Each keeps the interface the Compose file uses of the image it replaces.
ARG BASE_IMAGE=mlcicd-base:bookworm

# postgres, registry and redis: one layer of Debian's packages, shared by the three
FROM ${BASE_IMAGE} AS services
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15=15.* redis-server=5:7.0.* docker-registry=2.8.* \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
COPY registry.yml /etc/docker/registry/config.yml

# postgres:16-bookworm's contract: POSTGRES_USER/PASSWORD/DB, PGDATA, /docker-entrypoint-initdb.d/*.sql, pg_isready
FROM services AS postgres
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]

# registry:2's contract: the Distribution API on :5000, storage in /var/lib/registry
FROM services AS registry
ENTRYPOINT ["docker-registry", "serve", "/etc/docker/registry/config.yml"]

# redis:7's contract: redis-server on :6379 without protected mode, redis-cli for the health check
FROM services AS redis
USER redis
ENTRYPOINT ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no"]

# apache/airflow:3.3.2-python3.11's contract, without Airflow (include/docker/airflow.Dockerfile installs the
# pinned stack): user airflow (50000, group 0), AIRFLOW_HOME=/opt/airflow, pip installing where `airflow`
# runs from, curl, and /entrypoint running `airflow <command>` (bash and python as given).
FROM ${BASE_IMAGE} AS airflow-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl=7.88.* \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home airflow \
    && mkdir -p /opt/airflow && chown 50000:0 /opt/airflow \
    && python3 -m venv /home/airflow/.local && chown -R 50000:0 /home/airflow/.local
COPY airflow-entrypoint.sh /entrypoint
ENV AIRFLOW_HOME=/opt/airflow VIRTUAL_ENV=/home/airflow/.local PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 50000:0
WORKDIR /opt/airflow
ENTRYPOINT ["/entrypoint"]
