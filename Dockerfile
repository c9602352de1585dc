# One image for every eddy service: `docker run eddy <service>` runs python -m services.<service>.
FROM python:3.11-slim AS build
# A compiler for validation's native fast lane (services/validation/_fastcheck.c); the runtime image needs none.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 eddy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY schemas schemas
ENV EDDY_SCHEMAS_DIR=/app/schemas EDDY_CONTRACTS_DIR=/app/schemas/streams EDDY_STATE_DIR=/var/lib/eddy \
    EDDY_HTTP_HOST=0.0.0.0 EDDY_HTTP_PORT=8000
RUN mkdir -p /var/lib/eddy && chown eddy /var/lib/eddy
USER eddy
EXPOSE 8000
ENTRYPOINT ["sh", "-c", "exec python -m services.$0 \"$@\""]
CMD ["validation"]
