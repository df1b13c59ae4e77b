# One image for every confsync service; the role is the argument:
#   docker build -t confsync .
#   docker run -p 8080:8080 -e CONFSYNC_... confsync serve ingest --host 0.0.0.0 --port 8080
#   docker run confsync serve processor --push --host 0.0.0.0 --port 8080
#   docker run confsync channels renew --before 24h      (any other confsync command works too)
# Cloud Run passes the port as $PORT; infra/terraform sets the args to `--port 8080`, its default.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY confsync ./confsync
COPY ingest ./ingest
COPY processors ./processors
COPY publishers ./publishers
COPY sandbox ./sandbox
COPY stack ./stack
RUN python -m pip install --no-cache-dir --upgrade pip \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent confsync
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV PYTHONUNBUFFERED=1 CONFSYNC_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["confsync"]
CMD ["serve", "all", "--host", "0.0.0.0", "--port", "8080"]
