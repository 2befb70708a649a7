# syntax=docker/dockerfile:1
# crossrank container image: `crossrank serve` with only the shared libraries it loads.
#
#   CPU image:  docker build -t crossrank:cpu .
#   CUDA image: docker build --build-arg FLAVOR=cuda -t crossrank:cuda .
#
# Both build against the PyPI torch 2.13.0 wheel (the libtorch tch 0.26 is built for); the CPU
# flavor takes the CPU-only wheel, so its image carries no CUDA libraries. The CUDA image needs the
# NVIDIA container toolkit on the node (it mounts the driver's libcuda at run time).
ARG FLAVOR=cpu

FROM rust:1.95-bookworm AS build
ARG FLAVOR
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv \
 && if [ "$FLAVOR" = cuda ]; then \
      /venv/bin/pip install --no-cache-dir torch==2.13.0; \
    else \
      /venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0; \
    fi
ENV PATH=/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin crossrank
COPY docker/bundle-libs.sh docker/
RUN site=$(python -c 'import site; print(site.getsitepackages()[0])') \
 && docker/bundle-libs.sh target/release/crossrank /out/lib \
      $([ "$FLAVOR" = cuda ] && echo --cuda "$site") \
 && cp target/release/crossrank /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin crossrank \
 && mkdir -p /var/cache/crossrank/huggingface \
 && chown -R 10001:10001 /var/cache/crossrank
COPY --from=build /out/lib /opt/crossrank/lib
COPY --from=build /out/crossrank /usr/local/bin/crossrank
ENV LD_LIBRARY_PATH=/opt/crossrank/lib \
    CROSSRANK_HOST=0.0.0.0 CROSSRANK_PORT=50051 CROSSRANK_METRICS_PORT=9464 \
    CROSSRANK_LOG_FORMAT=json \
    HF_HOME=/var/cache/crossrank/huggingface
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/crossrank", "serve"]
