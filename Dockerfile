# Sandcat server image, in two stages:
#  1. build: wheels of sandcat with its Cython framing (setup.py) and of the Rust shard
#     hashing (maturin), on a Python image with the Rust toolchain copied in;
#  2. run: the wheels on a slim Python, as an unprivileged user; the build fails unless
#     `sandcat info` reports both compiled twins (no silent fallback to pure Python).
# Every base image is pinned to a version (bump them together, on purpose).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG RUST_IMAGE=rust:1.83.0-slim-bookworm

FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN pip install --no-cache-dir "maturin==1.8.1"
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sandcat ./sandcat
COPY native ./native
RUN maturin build --release -m native/rust/Cargo.toml --out /wheels \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && pip wheel --wheel-dir /wheels /wheels/sandcat-*.whl

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 sandcat
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && sandcat info | tee /dev/stderr | grep -q "^framing: cython" \
    && sandcat info | grep -q "^shard hashing: rust"
WORKDIR /app
COPY config.yml ./config.yml
# The listeners bind every interface, so login cannot derive the address clients use:
# `docker run -e SANDCAT__WEBSOCKET__PUBLIC_ADDR=ws://HOST:50000/ws ...` (check-config and
# serve refuse to start without it, rather than hand out ws://0.0.0.0).
ENV SANDCAT__SERVER__HOST=0.0.0.0 \
    SANDCAT__WEBSOCKET__HOST=0.0.0.0 \
    SANDCAT__EMBEDDED__DATA_DIR=/data
RUN mkdir -m 0700 /data && chown sandcat /data
USER sandcat
VOLUME /data
EXPOSE 50000 50001
# The embedded server (role all) answers /ready on its API port once it can serve.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:50001/ready', timeout=4)"]
ENTRYPOINT ["sandcat"]
CMD ["serve"]
