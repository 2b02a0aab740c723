# syntax=docker/dockerfile:1
# kubesignal: one binary for the agent, the evaluator, the demo app and the CLI tools.
#
# Build:  docker build -t kubesignal:dev .
# The final image is distroless (glibc, CA certificates, no shell) and runs as the
# `nonroot` user (65532), matching the manifests' securityContext.

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole crate (Cargo.toml may name benches and tests by path); .dockerignore keeps the
# bundle files, target/ and .git out of the context.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kubesignal \
 && install -D -m 0755 target/release/kubesignal /out/kubesignal \
 && install -d -m 0750 /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/kubesignal /usr/local/bin/kubesignal
# The evaluator's default state directory, owned by the runtime user so a fresh named volume
# mounted there (docker-compose) is writable.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/kubesignal
USER 65532:65532
# agent 9847, evaluator 9848, demo 8080
EXPOSE 9847 9848 8080
ENTRYPOINT ["/usr/local/bin/kubesignal"]
CMD ["--help"]
