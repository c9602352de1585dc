# One image for every eddy service: `docker run eddy <service>` runs python -m eddy.services.<service>.
# Linted by hadolint in tests/unit/test_compose.py; the compose file and the Kubernetes manifests run it.
FROM python:3.11-slim-bookworm AS build
# A compiler for the native Avro codec and linear kernel (shared/eddy/native/);
# the runtime image needs none.
# Not pinned: bookworm's security updates replace these versions, and a pin on a replaced version breaks the build.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY shared shared
# setup.py packs schemas/ into the wheel (eddy/_schemas): the installed package runs without this checkout.
COPY schemas schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# The numeric uid lets Kubernetes' runAsNonRoot check the user without reading /etc/passwd.
RUN useradd --create-home --uid 10001 eddy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# The same schemas again, where deployments mount or replace contracts (EDDY_CONTRACTS_DIR below).
COPY schemas schemas
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    EDDY_SCHEMAS_DIR=/app/schemas EDDY_CONTRACTS_DIR=/app/schemas/streams EDDY_STATE_DIR=/var/lib/eddy \
    EDDY_HTTP_HOST=0.0.0.0 EDDY_HTTP_PORT=8000
RUN mkdir -p /var/lib/eddy && chown 10001 /var/lib/eddy
USER 10001
EXPOSE 8000
# The one-shot topic job overrides this: `python -m eddy.runtime.create_topics`.
ENTRYPOINT ["sh", "-c", "exec python -m eddy.services.$0 \"$@\""]
CMD ["validation"]
