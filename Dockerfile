# syntax=docker/dockerfile:1
# One image for every `misinfo` service of compose/docker-compose.yml (workers, collectors, moderation,
# Ray head and GPU workers, operator commands): the command picks the role, e.g. `misinfo worker`.
#
#   docker build -t misinfo-watch:latest .
#
# CUDA runtime base for the GPU services; the CPU-only services run the same image without a GPU.
# Python 3.11 (the project's requires-python) is installed by uv, because the CUDA Ubuntu base ships
# another version. Dependencies come from requirements/lock.txt, the tested set, then the project is
# installed with --no-deps so nothing re-resolves. No credentials are baked in: compose passes them
# as environment variables at start (compose/.env, compose/secrets/).

ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.8

# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION
ARG UV_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}" \
    && /opt/uv/bin/uv python install "${PYTHON_VERSION}" \
    && /opt/uv/bin/uv venv --python "${PYTHON_VERSION}" /opt/venv

# The locked dependency set first: this layer is rebuilt only when the lock changes.
COPY requirements/lock.txt /tmp/lock.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv pip install --python /opt/venv/bin/python -r /tmp/lock.txt

# Then the project itself, without touching the dependencies.
COPY . /src
RUN /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps /src \
    && /opt/venv/bin/misinfo --help

# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MISINFO_STATE_DIR=/var/lib/misinfo/state \
    HF_HOME=/var/cache/misinfo/hf

# g++: DeepSpeed and Triton compile small kernels on first use in training and optimization jobs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates g++ \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin misinfo \
    && mkdir -p /var/lib/misinfo/state /var/lib/misinfo/inbox /var/lib/misinfo/eval /var/lib/misinfo/profiles \
        /var/cache/misinfo/hf \
    && chown -R misinfo:misinfo /var/lib/misinfo /var/cache/misinfo

# Same paths as in the build stage: the venv's interpreter links into /opt/python.
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv

USER misinfo
WORKDIR /home/misinfo
# Faust worker web server (metrics), moderation service, Ray GCS and dashboard.
EXPOSE 6066 8080 6379 8265
CMD ["misinfo", "--help"]
