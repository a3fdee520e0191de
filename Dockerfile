# syntax=docker/dockerfile:1
# The `autoscaler` image: a slim, non-root Python runtime with the server installed from a wheel:
# `autoscaler run` (metrics pipeline and HPA controller) and its dependencies only, no extras (the
# emulator's, replay's and the operator commands' packages stay out; see docs/install.md).
#
# Reproducible: the base image is pinned by version (pin it by digest in your registry mirror,
# e.g. python:3.11.11-slim-bookworm@sha256:...), dependency versions are resolved once into
# constraints in the build stage, no caches or bytecode timestamps end up in the image, and file
# times are clamped to SOURCE_DATE_EPOCH (BuildKit: --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)).
#
#   docker build -t ghcr.io/autoscaler/autoscaler:0.1.0 .
#   docker run --rm ghcr.io/autoscaler/autoscaler:0.1.0 run --help

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SOURCE_DATE_EPOCH=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
WORKDIR /src
# A C compiler for mypyc: the wheel's HPA decision core is compiled (setup.py), same decisions at
# about half the CPU per sync. Only this stage has it; the runtime stage gets the built wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md setup.py ./
COPY tools/packaging ./tools/packaging
COPY autoscaler ./autoscaler
COPY sim ./sim
# Build the project wheel and its core dependencies' wheels once (no extras); the runtime stage installs only these.
RUN AUTOSCALER_MYPYC=1 pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG SOURCE_DATE_EPOCH=0
LABEL org.opencontainers.image.title="autoscaler" \
      org.opencontainers.image.description="Kubernetes HPA with its own metrics pipeline (drop-in metrics-server)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels autoscaler \
 && find /usr/local/lib/python3.11 -name '__pycache__' -prune -exec rm -rf {} + \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin nonroot
# Same numeric user as the Deployment's securityContext (runAsUser: 65532); the root filesystem
# can be read-only: the only writable path needed is --cert-dir (an emptyDir at /tmp).
USER 65532:65532
WORKDIR /tmp
EXPOSE 10250
ENTRYPOINT ["autoscaler"]
CMD ["run", "--cert-dir=/tmp", "--secure-port=10250"]
