# crossrank container image: `crossrank serve` with only the shared libraries it loads.
#
#   CPU image:  docker build -t ghcr.io/crossrank/crossrank:0.1.0 .
#   CUDA image: docker build --build-arg FLAVOR=cuda -t ghcr.io/crossrank/crossrank:0.1.0-cuda .
#   From a binary built outside (what scripts/image.sh does, with podman or docker): the `base`
#   target, then docker/prebuilt.Dockerfile on it:
#     docker build --target base -t crossrank-base .
#     docker/bundle-libs.sh target/release/crossrank CONTEXT    # CONTEXT/crossrank, CONTEXT/lib/
#     docker build -f docker/prebuilt.Dockerfile --build-arg BASE_IMAGE=crossrank-base \
#       -t ghcr.io/crossrank/crossrank:0.1.0 CONTEXT
#
# Build arguments:
#   FLAVOR           cpu (default) or cuda
#   BUILDER_IMAGE    the Rust toolchain image (default rust:1.95-bookworm; Debian with python3)
#   RUNTIME_IMAGE    the base of the image (default debian:bookworm-slim; any Debian bookworm)
#   TORCH_INDEX_URL  where pip takes torch==2.13.0 (the libtorch tch 0.26 is built for); default
#                    the PyTorch CPU index for cpu, PyPI (the CUDA wheel) for cuda. With a CUDA
#                    wheel the cpu flavor still leaves libtorch_cuda and the nvidia-* libraries
#                    out (docker/bundle-libs.sh) but for cudart and cupti, which libtorch_cpu names.
# The CUDA image needs the NVIDIA container toolkit on the node (it mounts the driver's libcuda).
# Stages are in the order the legacy builder (which builds every stage up to the target) needs:
# `--target base` builds nothing else.
ARG FLAVOR=cpu
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# What every image shares: the user, the cache directory, the environment, the entrypoint.
FROM ${RUNTIME_IMAGE} AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 crossrank \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin crossrank \
 && mkdir -p /var/cache/crossrank/huggingface \
 && chown -R 10001:10001 /var/cache/crossrank
ENV LD_LIBRARY_PATH=/opt/crossrank/lib \
    CROSSRANK_HOST=0.0.0.0 CROSSRANK_PORT=50051 CROSSRANK_METRICS_PORT=9464 \
    CROSSRANK_LOG_FORMAT=json \
    HF_HOME=/var/cache/crossrank/huggingface
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/crossrank", "serve"]

FROM ${BUILDER_IMAGE} AS build
ARG FLAVOR
ARG TORCH_INDEX_URL=
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv patchelf \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv \
 && default=https://download.pytorch.org/whl/cpu \
 && if [ "$FLAVOR" = cuda ]; then default=https://pypi.org/simple; fi \
 && /venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL:-$default}" torch==2.13.0
ENV PATH=/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin crossrank
COPY docker/bundle-libs.sh docker/
RUN site=$(python -c 'import site; print(site.getsitepackages()[0])') \
 && docker/bundle-libs.sh --flavor "$FLAVOR" target/release/crossrank /out "$site"

# The default target: the binary built from source above, on the shared base.
FROM base AS runtime
COPY --from=build /out/lib /opt/crossrank/lib
COPY --from=build /out/crossrank /usr/local/bin/crossrank
