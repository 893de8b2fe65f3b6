# Palaver in a container: one image, one role per container (see docker-compose.yml and
# docs/deploy.md). `docker compose build` (or `docker build .`) compiles it from source.
#
# Stages:
#   base      the runtime: Debian slim, a non-root user `palaver`, /data and /keys owned by it
#   build     compiles the workspace in release mode
#   runtime   base + the binary from `build` (the default target)
# The deployment test builds `--target base` and adds the binary it has just compiled on the
# host, as `runtime` adds the one `build` compiles (crates/palaver/tests/compose.rs).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
RUN groupadd --system --gid 10001 palaver \
 && useradd --system --uid 10001 --gid palaver --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin palaver \
 && mkdir -p /data /keys \
 && chown palaver:palaver /data /keys
WORKDIR /data
ENV PALAVER_KEY_FILE=/keys/cluster.key
# Each role has its own check (`palaver ping broker|proxy|reference|server`), named per
# service in docker-compose.yml: a container's role is known there, not here.
ENTRYPOINT ["palaver"]
CMD ["--help"]

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p palaver \
 && strip --strip-debug -o /palaver target/release/palaver

FROM base AS runtime
COPY --from=build /palaver /usr/local/bin/palaver
USER palaver
