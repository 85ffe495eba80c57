# The model server with one model version baked in: it never reads the registry at start-up.
# Built by the pipeline (include/mlcicd/image/) from a context holding this file,
# requirements.txt, constraints.txt, the server package (mlcicd/serving/) and the model bundle (bundle/:
# the MLflow model, release.json and, for a model project, its code at the version's digest in code/).
# BASE_IMAGE: any Debian-based image with Python 3.11 and venv (default: the official slim image).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/mlcicd/lib:/opt/mlcicd/bundle/code \
    HOST=0.0.0.0 \
    PORT=8080 \
    MLCICD_MODEL_DIR=/opt/mlcicd/bundle

# Dependencies first: this layer is reused by every model version built on the same pins. pip
# compiles the bytecode here: the root filesystem is read-only at run time, so a server start
# would otherwise compile every module it imports.
COPY requirements.txt constraints.txt /opt/mlcicd/
RUN python3 -m venv /opt/venv \
    && pip install -r /opt/mlcicd/requirements.txt -c /opt/mlcicd/constraints.txt \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mlcicd

COPY mlcicd/ /opt/mlcicd/lib/mlcicd/
COPY bundle/ /opt/mlcicd/bundle/

ARG MODEL_NAME=unknown
ARG MODEL_VERSION=unknown
# A model project's version: the commit of the code in bundle/code ("none" for the built-in families).
ARG CODE_COMMIT=none
LABEL org.opencontainers.image.title="mlcicd model server" \
      org.opencontainers.image.source="https://github.com/mlcicd/mlcicd" \
      io.mlcicd.model-name="${MODEL_NAME}" \
      io.mlcicd.model-version="${MODEL_VERSION}" \
      io.mlcicd.code-commit="${CODE_COMMIT}"

USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "mlcicd.serving", "--check-health"]
ENTRYPOINT ["python", "-m", "mlcicd.serving"]
