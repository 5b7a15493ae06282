# registry-monitor: python:3.11-slim, locked dependencies, non-root.
FROM python:3.11-slim

# MALLOC_ARENA_MAX: worker threads parsing large bodies no longer each keep a glibc arena
# (peak RSS under hostile input 146 -> 128 MiB, BENCHMARKS.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 10001 monitor \
    && useradd --system --uid 10001 --gid monitor --home-dir /var/lib/registry-monitor \
       --create-home --shell /usr/sbin/nologin monitor \
    && install -d -o monitor -g monitor /var/lib/registry-monitor/data

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install --no-deps .

USER monitor:monitor
WORKDIR /var/lib/registry-monitor
ENV REGISTRY_MONITOR_DATABASE_DATA_DIR=/var/lib/registry-monitor/data
EXPOSE 5080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5080/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["registry-monitor"]
CMD ["serve", "--config", "/etc/registry-monitor/config.yml"]
