# Multi-stage build of logsec: the host binary and the built-in plugins (host/build.rs builds them
# for wasm32-wasip2 during `cargo build`), then a slim runtime image with nftables, iptables and ipset.
#
#   docker build -t logsec .
#   docker run --rm --cap-add NET_ADMIN --network host \
#     -v /var/log/nginx:/var/log/nginx:ro -v logsec-data:/var/lib/logsec logsec check /var/log/nginx/access.log

FROM rust:1-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
# FEATURES="" leaves out the Azure NSG backend (its crates are large).
ARG FEATURES=azure
RUN cargo build --release --locked --features "$FEATURES" \
 && install -D target/release/logsec /out/usr/bin/logsec \
 && install -d /out/usr/lib/logsec/plugins /out/usr/share/logsec/rules \
 && cp target/plugins/*.wasm /out/usr/lib/logsec/plugins/ \
 && cp rules/patterns.json /out/usr/share/logsec/rules/patterns.json

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables ipset iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# Logs are mounted read-only; plugins can be replaced at run time (hot reload); data holds the store.
VOLUME ["/var/log/nginx", "/usr/lib/logsec/plugins", "/var/lib/logsec"]
WORKDIR /var/lib/logsec
ENTRYPOINT ["/usr/bin/logsec"]
CMD ["plugins"]
