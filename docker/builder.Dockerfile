# A stand-in for rust:1.95-bookworm, the Dockerfile's BUILDER_IMAGE, where Docker Hub cannot be
# reached (`scripts/image.sh --from-source` makes it): Debian bookworm's C/C++ compilers and Python
# on the base image, the Rust toolchain of the machine that builds (copied into the context as
# toolchain/), and that machine's CA bundle (ca-certificates.crt: where an egress proxy
# intercepts TLS, as on the development machine, pip and cargo need its CA).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev make binutils ca-certificates \
      python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
COPY ca-certificates.crt /etc/ssl/certs/build-ca-bundle.crt
ENV PATH=/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo \
    SSL_CERT_FILE=/etc/ssl/certs/build-ca-bundle.crt \
    PIP_CERT=/etc/ssl/certs/build-ca-bundle.crt \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/build-ca-bundle.crt
