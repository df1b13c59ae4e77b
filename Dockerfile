# One image for every confsync service; the role is the argument:
#   docker build -t confsync .
#   docker run -p 8080:8080 -e CONFSYNC_... confsync serve ingest --host 0.0.0.0 --port 8080
#   docker run confsync serve processor --push --host 0.0.0.0 --port 8080
#   docker run confsync channels renew --before 24h      (any other confsync command works too)
# Cloud Run passes the port as $PORT; infra/terraform sets the args to `--port 8080`, its default.
#
# The base image is pinned by digest, with its tag alongside for people: the multi-arch index of
# python:3.11-slim-trixie (Python 3.11.16) as public build records of August 2026 show it.
# No Docker registry is reachable where this was written, so the digest is NOT verified here:
# check it, or move to a newer one, with `docker buildx imagetools inspect python:3.11-slim-trixie`.
ARG PYTHON_IMAGE=python:3.11-slim-trixie@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# Everything pip installs is pinned with hashes (requirements/, made by scripts/lock): pip and
# setuptools first, then the production lock, then confsync's own wheel without dependencies.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements/build.txt ./requirements/
RUN python -m pip install --no-cache-dir --require-hashes --requirement requirements/build.txt
COPY pyproject.toml README.md ./
COPY confsync ./confsync
COPY accounts ./accounts
COPY ingest ./ingest
COPY processors ./processors
COPY publishers ./publishers
COPY sandbox ./sandbox
COPY stack ./stack
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /nonexistent confsync
COPY requirements/build.txt requirements/production.txt /requirements/
RUN python -m pip install --no-cache-dir --require-hashes --requirement /requirements/build.txt \
    && python -m pip install --no-cache-dir --require-hashes --requirement /requirements/production.txt \
    && rm -rf /requirements
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 10001
ENV PYTHONUNBUFFERED=1 CONFSYNC_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["confsync"]
CMD ["serve", "all", "--host", "0.0.0.0", "--port", "8080"]
