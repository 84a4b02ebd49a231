# syntax=docker/dockerfile:1
# One Dockerfile for every bmsgate image: `--build-arg PACKAGE=bmsgate-<service>` installs only
# that service and its dependencies from uv.lock (`bmsgate` itself: the whole CLI, for the sim
# profile). Base images are multi-arch, so the same file builds for amd64 and arm64 (Raspberry Pi):
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg PACKAGE=bmsgate-reader .
# docker-bake.json builds every image that way with the version labels (docs/release.md).
# No secrets in here: configuration and passwords arrive at run time (docker-compose.yml, .env).

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# the web UI's chart library, from its npm lockfile (it is not in git); every build copies it in,
# and the api package's wheel ships it (services/api/pyproject.toml, artifacts)
FROM node:20.18.1-bookworm-slim AS web
WORKDIR /src
COPY services services
RUN npm ci --no-audit --no-fund --omit=dev --prefix services/api/src/bmsgate_api/static

# the workspace's pyproject.toml files alone: their layer stays the same while only code changes
FROM python:3.11.11-slim-bookworm AS manifests
WORKDIR /src
COPY src src
COPY packages packages
COPY services services
RUN find src packages services -type f ! -name pyproject.toml -delete

FROM python:3.11.11-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
# bytecode compiled once at build; a copied venv (no hard links into the cache); the image's
# Python, never a downloaded one; the venv at the path the runtime stage uses
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
ARG PACKAGE=bmsgate
# first the third-party dependencies, from the lockfile and the manifests only: a layer rebuilt
# only when those change, so a change of bmsgate's code does not fetch every wheel again
COPY --from=manifests /src ./
RUN uv sync --frozen --no-dev --no-editable --no-install-workspace --package "${PACKAGE}"
COPY src src
COPY packages packages
COPY services services
COPY --from=web /src/services/api/src/bmsgate_api/static/node_modules services/api/src/bmsgate_api/static/node_modules
# --frozen: exactly the lockfile; --no-editable: the workspace packages go into the venv itself
RUN uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"
# the image's version label must be the packages' version (docker-bake.json passes it)
ARG VERSION=unset
RUN v="$(/app/.venv/bin/python -c 'import importlib.metadata as m; print(m.version("bmsgate-common"))')" \
    && { [ "$VERSION" = unset ] || [ "$VERSION" = "$v" ] \
         || { echo "VERSION=$VERSION but the packages are $v" >&2; exit 1; }; }

FROM python:3.11.11-slim-bookworm
# the module `docker run IMAGE` starts; compose names it explicitly (docker-compose.yml)
ARG MODULE=bmsgate.cli
ARG PACKAGE=bmsgate
ARG VERSION=unset
ARG REVISION=unset
# OCI image annotations (github.com/opencontainers/image-spec, annotations.md)
LABEL org.opencontainers.image.title="${PACKAGE}" \
      org.opencontainers.image.description="bmsgate: gateway for DALY and JK battery BMS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
# a fixed uid so that volumes and the host agree; the dialout group comes from compose (group_add)
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home bmsgate \
    && mkdir -p /data /config && chown bmsgate:bmsgate /data /config
COPY --from=build /app/.venv /app/.venv
COPY deploy/healthcheck.py /app/healthcheck.py
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 \
    BMSGATE_CONFIG=/config/bmsgate.yaml BMSGATE_DATA_DIR=/data SERVICE_MODULE=${MODULE} \
    BMSGATE_INSTALL=container
WORKDIR /data
VOLUME /data
USER 10001:10001
# exec: Python is PID 1 and gets SIGTERM itself (clean shutdown, flushed buffers)
CMD ["sh", "-c", "exec python -m \"$SERVICE_MODULE\""]
