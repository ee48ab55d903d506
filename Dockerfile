# syntax=docker/dockerfile:1
# The portcullis image: a release build on Debian bookworm, run on distroless (glibc, CA
# certificates, user 65532, no shell). Without a container engine, build/oci-image.py builds
# the same layout from a release binary and Debian's packages.
#
#   docker build -t registry.example.com/portcullis:0.1.0 \
#       --build-arg REVISION=$(git rev-parse HEAD) .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY benches benches
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && install -m 0755 target/release/portcullis /portcullis \
    && /portcullis --version

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Supply-chain security gate for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /portcullis /usr/local/bin/portcullis
USER 65532:65532
WORKDIR /home/nonroot
ENV PORTCULLIS_LISTEN=0.0.0.0:8443
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
