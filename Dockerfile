# syntax=docker/dockerfile:1
# Crypto Watcher: one image for every service. Pick the service with the command:
#   docker run --rm ghcr.io/<owner>/crypto-watcher crypto-producer --help
#   (crypto-producer | crypto-processor | crypto-notifier; default: crypto-producer)
# Dependencies come from requirements.lock (hash-checked, wheels only): no compiler in any stage.
# Regenerate the lock after changing pyproject.toml dependencies:
#   uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 -o requirements.lock

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the locked dependencies and the project ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Locked third-party dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r requirements.lock
# Then the project itself (pure Python). --no-deps: everything it needs is already locked above;
# the build backend (setuptools) lives in pip's temporary build environment, not in the venv.
COPY . .
# Smoke test: every console script the project installs starts and prints its help.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && for cmd in crypto-producer crypto-processor crypto-notifier; do \
         if [ -e "/opt/venv/bin/$cmd" ]; then "/opt/venv/bin/$cmd" --help >/dev/null; fi; \
       done

# ---- runtime: the slim base, the venv, a non-root user; no build tools, no sources, no secrets ----
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="crypto-watcher" \
      org.opencontainers.image.description="Watches cryptocurrency markets live, keeps every price, alerts on sudden drops and spikes (producer, processor, notifier)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/crypto-watcher/crypto-watcher" \
      org.opencontainers.image.documentation="https://github.com/crypto-watcher/crypto-watcher/blob/main/docs/deploy.md"

# A fixed numeric uid/gid (10001) so Kubernetes runAsNonRoot can verify it and volumes can be
# chowned to it. The state dir holds the processor's RocksDB state and the notifier's SQLite
# file of delivered alerts (mount a volume there).
RUN groupadd --system --gid 10001 crypto \
    && useradd --system --uid 10001 --gid crypto --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin crypto \
    && mkdir -p /var/lib/crypto-watcher/state \
    && chown -R 10001:10001 /var/lib/crypto-watcher

COPY --from=build /opt/venv /opt/venv

# Container defaults: serve /livez /readyz /metrics on every interface (Prometheus and the
# kubelet reach the container from outside; the services default to 127.0.0.1), keep the
# processor's RocksDB state and the notifier's delivered-ids database on the state volume, and
# point HOME at /tmp (writable even with a read-only root filesystem) for libraries' caches.
# Two malloc arenas, not one per thread and core: librdkafka's and RocksDB's threads otherwise each
# keep freed memory of their own (docs/performance.md, "Memory").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    CW_HTTP_HOST=0.0.0.0 \
    CW_STATE_DIR=/var/lib/crypto-watcher/state \
    CW_NOTIFY_STATE=/var/lib/crypto-watcher/state/delivered.sqlite \
    MALLOC_ARENA_MAX=2

WORKDIR /var/lib/crypto-watcher
USER 10001:10001

# HTTP (/livez /readyz /metrics) on CW_HTTP_PORT: producer 9101, processor 9102, notifier 9103.
EXPOSE 9101 9102 9103

# The slim image has no curl: probe /livez with Python. Uses CW_HTTP_PORT when set, otherwise the
# first of the three service ports that answers (each container runs one service).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u\nports=[os.environ['CW_HTTP_PORT']] if os.environ.get('CW_HTTP_PORT') else ['9101','9102','9103']\nfor p in ports:\n  try:\n    u.urlopen('http://127.0.0.1:%s/livez' % p, timeout=3); sys.exit(0)\n  except Exception: pass\nsys.exit(1)"]

CMD ["crypto-producer"]
