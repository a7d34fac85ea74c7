# esia-broker: multi-stage build of a static binary, run as a non-root user.
# Build:  docker build -t esia-broker .
# Run:    docker run --env-file broker.env -p 8080:8080 esia-broker serve
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/esia-broker ./cmd/esia-broker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/esia-broker /usr/local/bin/esia-broker
USER nonroot:nonroot
ENV ESIA_BROKER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/esia-broker"]
CMD ["serve"]
