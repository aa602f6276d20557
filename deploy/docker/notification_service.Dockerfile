# NotificationService: alerts, inboxes, streams, webhooks.
# Build from the repository root:
#   docker build -f deploy/docker/notification_service.Dockerfile -t custos/notification_service .
# Stage 1 compiles with Debian's toolchain and libraries; stage 2 holds only
# the binary and the shared libraries it loads, and runs as a non-root user.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
      --no-install-recommends build-essential cmake pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      grpc-proto libabsl-dev libhiredis-dev libsqlite3-dev libssl-dev \
      libcurl4-openssl-dev libpq-dev libgtest-dev libgmock-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release \
    && cmake --build /build -j"$(nproc)" --target notification_service \
    && strip /build/services/notification_service/notification_service

FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
      --no-install-recommends libgrpc++1.51 libprotobuf32 libabsl20220623 \
      libhiredis0.14 libsqlite3-0 libpq5 libssl3 libcurl4 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/services/notification_service/notification_service /usr/local/bin/notification_service
# 65532: the conventional "nonroot" uid; the root filesystem is read-only
# in Kubernetes, so state lives on mounted volumes only.
USER 65532:65532
EXPOSE 50053 9090
ENTRYPOINT ["/usr/local/bin/notification_service"]
