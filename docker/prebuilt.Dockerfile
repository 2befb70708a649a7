# The image from a binary built outside: the Dockerfile's `base` target (BASE_IMAGE) plus the
# build context that docker/bundle-libs.sh lays out (crossrank, lib/). For where the Rust builder
# image cannot be pulled; scripts/image.sh builds it this way.
ARG BASE_IMAGE=crossrank-base
FROM ${BASE_IMAGE}
COPY lib /opt/crossrank/lib
COPY crossrank /usr/local/bin/crossrank
