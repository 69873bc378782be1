# syntax=docker/dockerfile:1
# One build of the workspace for all images: `docker build --build-arg SERVICE=auth -t
# ticketing/auth .`, the six services and the dev cluster's fake Stripe (`--build-arg
# SERVICE=fake-stripe`). Only the last stages depend on SERVICE, so the builder stage is the
# same for every image and BuildKit builds it once; the other images reuse it from the cache.
# cargo-chef splits the build so that dependencies (the slow part) are compiled in a layer
# that only changes when Cargo.toml/Cargo.lock change, not on every source edit.

# Matches `rust-version` in Cargo.toml. Bookworm (glibc 2.36) to match the distroless runtime.
ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
# make: jemalloc, every service's allocator, is built from source (the slim image has gcc only).
# Unpinned: the base image's Debian release fixes which make it gets.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app
# Release profile tweaks for the image only (Cargo.toml keeps symbols for local profiling).
# Set here so that `cook` and `build` see the same profile and share compiled dependencies.
# PACKAGES: the deployed services (infra/check.py compares it with services/*/src/main.rs),
# each a binary named after its package. DEV_PACKAGES and DEV_BINARIES: the images only the
# dev overlay runs (infra/check.py's DEV_TOOLS), the fake Stripe of test-support. They build
# in the same cargo run: their dependencies are the workspace's with the same features, so
# the services' binaries come out the same.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never \
    PACKAGES="-p auth -p tickets -p orders -p payments -p expiration -p client" \
    DEV_PACKAGES="-p test-support" \
    DEV_BINARIES="fake-stripe"

# 1. planner: reduce the workspace to a recipe (manifests + lockfile, no sources).
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# 2. builder: every service's dependencies (cached), then every service, in one cargo run so
# that shared crates compile once.
FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# The same package selection as the build below, so cargo resolves the same features and
# nothing cooked here is rebuilt there.
# hadolint ignore=SC2086
RUN cargo chef cook --release --locked --recipe-path recipe.json $PACKAGES $DEV_PACKAGES --bins
COPY . .
# hadolint ignore=SC2086
RUN set -e; cargo build --release --locked $PACKAGES $DEV_PACKAGES --bins; mkdir /app/bin; \
    for package in $PACKAGES; do \
      [ "$package" = -p ] || cp "target/release/$package" /app/bin/; \
    done; \
    for binary in $DEV_BINARIES; do cp "target/release/$binary" /app/bin/; done

# 3. pick: the one binary this image runs (cheap; the only build step that depends on SERVICE).
FROM builder AS pick
ARG SERVICE
RUN test -x "/app/bin/${SERVICE}" \
 || { echo "build with --build-arg SERVICE=<one of" /app/bin/* ">" >&2; exit 1; } \
 && cp "/app/bin/${SERVICE}" /app/service

# 4. runtime: glibc + libgcc + CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="ticketing-${SERVICE}"
# A fixed path so ENTRYPOINT (exec form, no shell to expand ${SERVICE}) is the same for all;
# `service healthcheck` is compose's health check.
COPY --from=pick /app/service /usr/local/bin/service
# Distroless's `nonroot` user, by number: Kubernetes' runAsNonRoot can only verify a numeric
# user, so with `USER nonroot` a pod that does not set runAsUser would be refused.
USER 65532:65532
# The services' default PORT (the fake Stripe's is 12111).
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/service"]
