# syntax=docker/dockerfile:1
# One image per service from one Dockerfile: `docker build --build-arg SERVICE=auth -t ticketing/auth .`
# cargo-chef splits the build so that dependencies (the slow part) are compiled in a layer
# that only changes when Cargo.toml/Cargo.lock change, not on every source edit.

# Matches `rust-version` in Cargo.toml. Bookworm (glibc 2.36) to match the distroless runtime.
ARG RUST_VERSION=1.95

FROM lukemathwalker/cargo-chef:latest-rust-${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /app
# Release profile tweaks for the image only (Cargo.toml keeps symbols for local profiling).
# Set here so that `cook` and `build` see the same profile and share compiled dependencies.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# 1. planner: reduce the workspace to a recipe (manifests + lockfile, no sources).
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# 2. cook + build: dependencies of the one service first (cached), then its own code.
FROM chef AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<auth|tickets|orders|...>" >&2; exit 1; }
COPY --from=planner /app/recipe.json recipe.json
# Same package and binary selection as the build below, so cargo resolves the same features
# and nothing cooked here is rebuilt there.
RUN cargo chef cook --release --locked --recipe-path recipe.json -p "${SERVICE}" --bin "${SERVICE}"
COPY . .
RUN cargo build --release --locked -p "${SERVICE}" --bin "${SERVICE}" \
 && cp "target/release/${SERVICE}" /app/service

# 3. runtime: glibc + libgcc + CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="ticketing-${SERVICE}"
# A fixed path so ENTRYPOINT (exec form, no shell to expand ${SERVICE}) is the same for all.
COPY --from=builder /app/service /usr/local/bin/service
# Distroless's `nonroot` user, by number: Kubernetes' runAsNonRoot can only verify a numeric
# user, so with `USER nonroot` a pod that does not set runAsUser would be refused.
USER 65532:65532
# The services' default PORT.
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/service"]
