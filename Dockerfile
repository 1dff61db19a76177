# Sandcat server image: builds the optional compiled twins, runs `sandcat serve`.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sandcat ./sandcat
COPY native ./native
RUN pip wheel --no-deps --wheel-dir /wheels . && pip wheel --wheel-dir /wheels /wheels/*.whl

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 sandcat
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY migrations ./migrations
COPY config.yml ./config.yml
ENV SANDCAT__SERVER__HOST=0.0.0.0 \
    SANDCAT__WEBSOCKET__HOST=0.0.0.0 \
    SANDCAT__EMBEDDED__DATA_DIR=/data \
    SANDCAT_MIGRATIONS_DIR=/app/migrations
RUN mkdir /data && chown sandcat /data
USER sandcat
VOLUME /data
EXPOSE 50000 50001
ENTRYPOINT ["sandcat"]
CMD ["serve"]
