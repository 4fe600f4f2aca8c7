# syntax=docker/dockerfile:1
# tandem: one static binary on distroless, running as nonroot, its database on the /data volume.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tandem .
#   docker run -p 8080:8080 -v tandem-data:/data tandem
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=none
ARG DATE=unknown
# The same line as `make release`, which the test suite runs outside Docker.
RUN make release VERSION=${VERSION} COMMIT=${COMMIT} DATE=${DATE} OUT=/out/tandem
# An empty /data owned by nonroot: a new named volume copies this ownership.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tandem /usr/local/bin/tandem
COPY --from=build --chown=65532:65532 /out/data /data
COPY config.yaml /etc/tandem/config.yaml
WORKDIR /etc/tandem
# Admin stays on loopback unless a token is given: set TANDEM_ADMIN_ADDR=:9090 and
# TANDEM_ADMIN_TOKEN to reach it (and /metrics) from outside the container.
ENV TANDEM_STORE_PATH=/data/tandem.db \
    TANDEM_SERVER_ADDR=:8080 \
    TANDEM_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080 9090
USER nonroot:nonroot
# No shell or curl in the image: tandem checks itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/tandem", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["serve"]
