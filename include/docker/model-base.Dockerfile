# A base image for the model-server images with their dependencies already installed, for Docker
# engines that cannot reach PyPI (air-gapped hosts, the Compose test's network namespace): set
# MODEL_BASE_IMAGE (Compose) or MLCICD_BASE_IMAGE to it, and each model image's pip step finds
# everything satisfied. Build it where PyPI is reachable:
#   docker build -f include/docker/model-base.Dockerfile -t mlcicd/model-base:<tag> .
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY include/docker/model-server.requirements.txt /tmp/mlcicd/requirements.txt
COPY constraints.txt /tmp/mlcicd/constraints.txt
RUN python3 -m venv /opt/venv \
    && pip install -r /tmp/mlcicd/requirements.txt -c /tmp/mlcicd/constraints.txt \
    && rm -rf /tmp/mlcicd
