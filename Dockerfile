# syntax=docker/dockerfile:1
# Build: one static binary, the same `go build` of the module root as
# `go tool task run` makes, without cgo (nothing here needs it) and without
# the symbol table. The Go version is go.mod's (its `go` line); keep the two
# in step.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pushdesk .

# Run: distroless static image (CA certificates, tzdata, a non-root user).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushdesk /pushdesk
ENV PUSHDESK_ADDR=:8080
EXPOSE 8080 8081
USER nonroot:nonroot
# CMD only (no ENTRYPOINT): fly.toml's process and release commands replace
# it whole, as does `docker run image /pushdesk worker`.
CMD ["/pushdesk", "serve"]
